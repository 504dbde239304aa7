// Package stormlab makes reproducible TCP connection storms inside a
// network namespace, for the end-to-end tests in lab/, the stormlab command
// and the benchmarks.
//
// # Design
//
// A Lab works in one named network namespace (a Namespace: the one
// internal/netnstest made for a test, or one NewNetns made for the
// command) and owns everything it starts there: worker processes, servers
// (redis-server, the stormwatch daemon, node_exporter), nftables tables,
// sysctl changes. Lab.Close undoes it all, last first; tests register it
// with t.Cleanup. A global sysctl (nf_conntrack_max, which no namespace has
// its own copy of) is changed only through SetGlobalSysctl, whose restore
// function the caller must arrange to run.
//
// Sockets are held by workers: the lab's own binary re-executed inside the
// namespace ("ip netns exec"), recognised by an environment variable, so
// every binary hosting a Lab calls RunWorkerIfRequested first (main, or
// TestMain before m.Run). A worker speaks JSON lines on stdin and stdout,
// exits when its stdin closes, and is killed with its parent
// (PR_SET_PDEATHSIG). Being wholly inside the namespace, a worker can use
// the Go net package and procfs freely; the controller enters the
// namespace only on a locked thread (Namespace.Do) for short reads, HTTP
// scrapes and the Probe.
//
// A process may hold about 20k descriptors here (the hard RLIMIT_NOFILE,
// which root cannot raise in this sandbox), so Populate spreads client
// sockets over as many workers as it takes. Server ends cost nothing: they
// wait, never accepted, in the accept queues of listeners with big
// backlogs (somaxconn is raised inside the namespace). Each worker owns a
// block of source addresses, 127.<16+index>.0.0/16, 500 connections per
// address, so no address runs out of ephemeral ports.
//
// # Scenarios
//
// Each storm is a type with a Setup and one method per phase, so a test
// asserts between phases and the command runs them in a row:
//
//   - AcceptQueueStorm: redis-server stalled with SIGSTOP while clients
//     arrive, then SIGCONT.
//   - SynFlood: handshakes held half-open by dropping the final ACK with
//     nftables, with net.ipv4.tcp_syncookies on or off.
//   - HpingFlood: hping3 floods a redis-server with SYNs from a spoofed
//     127.0.0.0/8 source whose SYN-ACKs nftables drops.
//   - ConntrackFill: flows to one port tracked (a ct expression; every
//     other flow notrack) against a lowered global nf_conntrack_max.
//   - ReconnectStorm: a client pool reconnecting to a restarted
//     redis-server, at once or with exponential backoff and full jitter.
//   - Churn: short connections at a steady rate against an accepting
//     redis-server.
//
// Probe samples the accept queues (with stormwatch's own listeners source,
// SYN_RECV counts too when asked) and the namespace's TcpExt counters every
// few milliseconds; Watcher
// scrapes a daemon and remembers what each of its samples said. Ground
// truth comes from the kernel's tools: ss, conntrack -C, /proc/net/netstat
// read from inside the namespace.
//
// # Limits
//
// Linux only; needs root, ip(8), ss(8), nft(8), and, per scenario,
// redis-server, conntrack(8), hping3 and node_exporter; the loaded bench
// runs sha256sum(1) as its CPU-bound process. Only loopback traffic
// inside the namespace. A run killed with SIGKILL leaves its namespace
// ("ip netns list", prefix stormlab- or stormwatch-) and, during the
// conntrack scenario, a lowered nf_conntrack_max behind.
package stormlab

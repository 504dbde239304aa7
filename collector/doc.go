// Package collector samples the kernel's view of a connection storm into
// Snapshots.
//
// Design. Each data source is one file implementing Source (sysctl.go,
// tcpstat.go, conntrack.go, conntrack_stats.go, listeners.go) and
// NewSources lists them all in one table, in the order they run. A Sampler
// runs the table once per cycle into a fresh Snapshot, records each
// source's success and duration, adds the Snapshot to a bounded History and
// publishes it through an atomic pointer: readers (the /metrics handler, the
// rule engine) only ever see complete, immutable Snapshots and never touch
// the kernel themselves.
//
// Degrading. A source that fails keeps its error in the Snapshot and leaves
// its values NaN; the others go on. A subsystem that is absent (no
// conntrack module) returns ErrNoData: "no data", not an error every cycle.
//
// Sources:
//   - sysctl: net.core.somaxconn, tcp_max_syn_backlog, tcp_syncookies,
//     tcp_abort_on_overflow, tcp_synack_retries, ip_local_port_range.
//   - tcpstat: TcpExt and Tcp counters (ListenOverflows, SYN cookies,
//     TCPReqQFull*, PassiveOpens, …) through prometheus/procfs.
//   - conntrack: the table's fill and size from nf_conntrack_count/max
//     (the table itself is never dumped to count it).
//   - conntrack_stats: drop, early_drop, insert_failed, … from
//     /proc/net/stat/nf_conntrack (unprivileged), else from ctnetlink
//     (CAP_NET_ADMIN), else unavailable.
//   - listeners: per listening address and port, the accept queue (LISTEN
//     dump, every cycle) and the half-open handshakes (SYN_RECV dump, on its
//     own cadence), over netlink sock_diag. See listeners.go.
//
// Limits. Everything is read in the caller's network namespace: run the
// daemon in the namespace it should watch. The procfs readers follow
// proc/self, the process's namespace, not a thread's.
package collector

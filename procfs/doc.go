// Package procfs reads the parts of /proc that describe a connection storm:
// the sysctls that size the SYN and accept queues, the conntrack table and
// the per-CPU packet backlog, the TcpExt and Tcp counters, the conntrack
// per-CPU statistics and the per-CPU softnet (packet backlog) statistics.
//
// Every reader is rooted at a directory given to NewFS ("/" in production, a
// fixture tree under testdata/ in tests) and splits reading (a size-capped
// read with no stat) from parsing (a pure function of an io.Reader, fuzzed).
//
// The TcpExt and Tcp counters are parsed by github.com/prometheus/procfs.
// /proc/net/stat/nf_conntrack is parsed here, by its header names, because
// prometheus/procfs either globs and parses every file in /proc/net/stat on
// each call (FS.NetStat) or maps columns by position with pre-6.x names
// (FS.ConntrackStat). /proc/net/softnet_stat is parsed here too, by
// position as its layout grew from 9 columns (2.6.x) to 15 (6.4+): see
// FS.SoftnetStat for why prometheus/procfs's parser does not serve.
//
// Per-CPU counters are 32-bit and wrap; SoftnetTotals turns the softnet
// ones into totals that only grow.
//
// SocketOwners finds the process that holds a socket (by the inode
// sock_diag reports) from the /proc/<pid>/fd links, and reads its name and
// state from /proc/<pid>/stat: bounded (it stops once every inode is found,
// and at a cap of processes and descriptors), with no allocation per
// descriptor. Processes it may not look into (another user's without
// CAP_SYS_PTRACE, or hidden by hidepid as under systemd's
// ProtectProc=invisible) are counted and explained, not errors.
//
// A file the kernel does not provide (a module not loaded, an older kernel)
// yields an error wrapping os.ErrNotExist; a file that cannot be parsed
// yields one wrapping ErrFileParse.
package procfs

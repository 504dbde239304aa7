package collector

import (
	"math"
	"net/netip"
	"strconv"
	"time"
)

// Snapshot is everything one sampling cycle learned about the host. Sources
// fill their own parts; once handed to History it is never modified, so it
// may be shared between goroutines without locks.
//
// Counters are cumulative kernel counters as float64 (the precision loss past
// 2^53 does not matter for rates). A value the kernel does not expose, or that
// its source could not read this cycle, is NaN: see [Present].
type Snapshot struct {
	// Time is when the cycle started.
	Time time.Time

	// Sysctls holds the queue-sizing sysctls that were readable, in a fixed
	// order (see [SysctlNames]).
	Sysctls []Sysctl

	// TCP holds the TcpExt and Tcp counters of /proc/net/netstat and snmp.
	TCP TCPCounters

	// Conntrack holds the conntrack table fill and its per-CPU stats summed.
	Conntrack Conntrack

	// Listeners holds one entry per listening address and port, sorted by
	// port then address. SYN_RECV counts in it are as of SynRecv.Time.
	Listeners []Listener
	// ListenersDropped is how many listeners matched the port filters but
	// were left out because the configured cap was reached.
	ListenersDropped int

	// SynRecv says when the SYN_RECV counts were last dumped, and why.
	SynRecv SynRecvInfo

	// Sources holds one result per source, in table order.
	Sources []SourceResult
}

// Sysctl is one kernel parameter, named as sysctl(8) names it.
type Sysctl struct {
	Name  string
	Value int64
}

// Sysctl returns the value of the named sysctl and whether it was read.
func (s *Snapshot) Sysctl(name string) (int64, bool) {
	for _, sc := range s.Sysctls {
		if sc.Name == name {
			return sc.Value, true
		}
	}
	return 0, false
}

// Source returns the result of the named source, if it ran.
func (s *Snapshot) Source(name string) (SourceResult, bool) {
	for _, r := range s.Sources {
		if r.Name == name {
			return r, true
		}
	}
	return SourceResult{}, false
}

// TCPCounters are the TCP counters that describe a connection storm. Each is
// NaN when absent (older kernels lack some TcpExt fields).
type TCPCounters struct {
	// TcpExt
	ListenOverflows      float64 // accept queue full: SYN or final ACK dropped
	ListenDrops          float64 // every drop of a SYN/ACK at a listener, overflows included
	SyncookiesSent       float64
	SyncookiesRecv       float64
	SyncookiesFailed     float64
	TCPReqQFullDrop      float64 // SYN queue full, no cookies: SYN dropped
	TCPReqQFullDoCookies float64 // SYN queue full, answered with a cookie

	// Tcp (snmp)
	ActiveOpens  float64
	PassiveOpens float64
	AttemptFails float64
	EstabResets  float64
	CurrEstab    float64 // a gauge: connections in ESTABLISHED or CLOSE_WAIT
}

// Conntrack is the netfilter connection tracking table.
type Conntrack struct {
	// Entries and Limit are nf_conntrack_count and nf_conntrack_max, NaN
	// when conntrack is not loaded.
	Entries float64
	Limit   float64
	// Buckets is nf_conntrack_buckets, NaN when absent.
	Buckets float64

	// StatsVia names where the counters below came from: "procfs"
	// (/proc/net/stat/nf_conntrack), "ctnetlink", or "" when unavailable.
	StatsVia string
	// Counters summed over CPUs; NaN when unavailable or when the
	// path used does not carry them (ctnetlink lacks ClashResolve and
	// ChainTooLong).
	Found         float64
	Invalid       float64
	Insert        float64
	InsertFailed  float64
	Drop          float64
	EarlyDrop     float64
	ICMPError     float64
	SearchRestart float64
	ClashResolve  float64
	ChainTooLong  float64
}

// Listener is one listening address and port. Sockets sharing an address and
// port (SO_REUSEPORT groups) are summed: the queue figures are the group's
// totals and MaxFill the fullest socket's fill.
type Listener struct {
	// Addr is the bound address: 0.0.0.0 or :: for a wildcard listener.
	Addr netip.Addr
	// Port is the local port.
	Port uint16
	// Sockets is the number of listening sockets at Addr:Port.
	Sockets int
	// AcceptQueue is the number of completed handshakes waiting for
	// accept() (inet_diag rqueue). It reaches AcceptLimit+1 when full.
	AcceptQueue uint32
	// AcceptLimit is the accept queue limit: min(listen backlog,
	// net.core.somaxconn) (inet_diag wqueue).
	AcceptLimit uint32
	// MaxFill is the highest AcceptQueue/AcceptLimit of any one socket of
	// the group, 0 when the limit is 0.
	MaxFill float64
	// SynRecv is the number of half-open handshakes (request sockets in
	// SYN_RECV) addressed to this listener, as of Snapshot.SynRecv.Time.
	SynRecv uint32
}

// LabelValues returns the listener's address and port as the metrics,
// alerts and checklist label them (addr, port).
func (l *Listener) LabelValues() (addr, port string) {
	return l.Addr.String(), strconv.Itoa(int(l.Port))
}

// SynRecvInfo describes the SYN_RECV dump behind Listener.SynRecv.
type SynRecvInfo struct {
	// Time is when the SYN_RECV counts were dumped; zero if never.
	Time time.Time
	// Ran is true when the dump ran in this cycle.
	Ran bool
	// Reason is why the last dump ran: "signal" (a cheap storm signal moved
	// since the previous cycle) or "interval" (the slow cadence came round).
	Reason string
	// Dumps, Retries and NoBufs count SYN_RECV dumps, dumps restarted because
	// the kernel flagged them inconsistent (NLM_F_DUMP_INTR) and receive
	// buffer overruns (ENOBUFS) since the daemon started.
	Dumps, Retries, NoBufs uint64
}

// SourceResult is how one source fared in one cycle.
type SourceResult struct {
	// Name is the source's name (the collector label of the metrics).
	Name string
	// Success is true when the source read everything it is meant to.
	Success bool
	// NoData is true when the subsystem is absent from this host (e.g. no
	// conntrack module): not a failure, nothing to report.
	NoData bool
	// Duration is how long the source took.
	Duration time.Duration
	// Err is the failure, nil on success and when NoData.
	Err error
}

// Present reports whether v carries a value (is not NaN).
func Present(v float64) bool { return !math.IsNaN(v) }

// NaN is the value of a counter or gauge that was not read.
var NaN = math.NaN()

// NewSnapshot returns an empty Snapshot for time t with every value NaN
// (unread), ready for sources to fill.
func NewSnapshot(t time.Time) *Snapshot {
	return &Snapshot{
		Time: t,
		TCP: TCPCounters{
			ListenOverflows: NaN, ListenDrops: NaN,
			SyncookiesSent: NaN, SyncookiesRecv: NaN, SyncookiesFailed: NaN,
			TCPReqQFullDrop: NaN, TCPReqQFullDoCookies: NaN,
			ActiveOpens: NaN, PassiveOpens: NaN, AttemptFails: NaN,
			EstabResets: NaN, CurrEstab: NaN,
		},
		Conntrack: Conntrack{
			Entries: NaN, Limit: NaN, Buckets: NaN,
			Found: NaN, Invalid: NaN, Insert: NaN, InsertFailed: NaN,
			Drop: NaN, EarlyDrop: NaN, ICMPError: NaN, SearchRestart: NaN,
			ClashResolve: NaN, ChainTooLong: NaN,
		},
	}
}

package headroom

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/stormwatch/stormwatch/collector"
)

var t0 = time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)

// at returns t0 plus sec seconds.
func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// sample is a test's description of one sample of a Valkey host.
type sample struct {
	t         time.Time
	vals      map[string]float64
	listeners []collector.Listener
	sources   map[string]collector.SourceResult
	// noListeners: the listeners source delivered no table.
	noListeners bool
	// synCarried: the SYN_RECV counts are carried from an earlier dump.
	synCarried bool
}

// host returns a sample of a quiet Valkey host at t: conntrack 4100 of
// 262144, listeners 0.0.0.0:6379 and 127.0.0.1:16379 (backlog 511) and
// [::]:22 (128), every queue empty.
func host(t time.Time) *sample {
	s := &sample{t: t, vals: map[string]float64{
		"somaxconn": 4096, "tcp_max_syn_backlog": 4096, "syncookies": 1, "tcp_abort_on_overflow": 0, "nf_conntrack_max": 262144,
		"listen_overflows": 10, "listen_drops": 10, "passive_opens": 50000, "established": 2000,
		"conntrack_entries": 4100, "conntrack_limit": 262144, "conntrack_buckets": 65536,
	}, sources: map[string]collector.SourceResult{}}
	s.listeners = []collector.Listener{
		{Addr: netip.MustParseAddr("0.0.0.0"), Port: 6379, Sockets: 1, AcceptLimit: 511},
		{Addr: netip.MustParseAddr("127.0.0.1"), Port: 16379, Sockets: 1, AcceptLimit: 511},
		{Addr: netip.MustParseAddr("::"), Port: 22, Sockets: 1, AcceptLimit: 128},
	}
	for _, name := range []string{"sysctl", "tcpstat", "conntrack", "conntrack_stats", "listeners"} {
		s.sources[name] = collector.SourceResult{Name: name, Success: true, Duration: time.Millisecond}
	}
	return s
}

// listener returns the listener on port.
func (s *sample) listener(port uint16) *collector.Listener {
	for i := range s.listeners {
		if s.listeners[i].Port == port {
			return &s.listeners[i]
		}
	}
	panic("no listener on port " + strconv.Itoa(int(port)))
}

// fail makes source name fail with err.
func (s *sample) fail(name string, err error) *sample {
	s.sources[name] = collector.SourceResult{Name: name, Err: err}
	return s
}

// snapshot makes the Snapshot, as the sources would have filled it.
func (s *sample) snapshot() *collector.Snapshot {
	return s.build(collector.NewBuilder(collector.DefaultSchema(), s.t)).Snapshot()
}

func (s *sample) build(b *collector.Builder) *collector.Builder {
	for name, v := range s.vals {
		b.Set(name, v)
	}
	for _, name := range []string{"sysctl", "tcpstat", "conntrack", "conntrack_stats", "listeners"} {
		b.Source(s.sources[name])
	}
	if s.synCarried {
		b.PartTime("listeners", "syn_recv", s.t.Add(-time.Second))
	}
	if s.noListeners {
		return b
	}
	b.EmptyTable(collector.KindListener)
	var total float64
	for i := range s.listeners {
		l := &s.listeners[i]
		b.Entity(collector.KindListener, l.Addr.String(), strconv.Itoa(int(l.Port))).
			Set("accept_queue", float64(l.AcceptQueue)).Set("accept_queue_limit", float64(l.AcceptLimit)).
			Set("accept_queue_fill", l.Fill()).Set("sockets", float64(l.Sockets)).Set("syn_recv", float64(l.SynRecv)).
			Set("syn_queue_limit", collector.SynQueueLimit(l, s.vals["syncookies"], s.vals["tcp_max_syn_backlog"]))
		total += float64(l.SynRecv)
	}
	b.Set("listeners", float64(len(s.listeners))).Set("syn_recv", total).Set("syn_recv_total", total)
	return b
}

// history returns a History holding the Snapshots.
func history(snaps ...*collector.Snapshot) *collector.History {
	h := collector.NewHistory(collector.Retention{Host: time.Minute, Kinds: map[string]time.Duration{collector.KindListener: time.Minute}})
	for _, s := range snaps {
		h.Add(s)
	}
	return h
}

// compute judges the last of snaps at its own time (plus 0.2s).
func compute(o Options, alerts []Alert, snaps ...*collector.Snapshot) *Report {
	last := snaps[len(snaps)-1]
	return Compute(Input{Now: last.Time.Add(200 * time.Millisecond), Host: "valkey-1", History: history(snaps...), Alerts: alerts}, o)
}

// opts returns the default options with min.
func opts(min float64) Options {
	o := DefaultOptions()
	o.Min = min
	return o
}

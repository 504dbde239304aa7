package alerts

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/collector"
)

// t0 is the start of every test history.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// at returns t0 plus sec seconds.
func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func mustLoad(t testing.TB, src string) []*Rule {
	t.Helper()
	rules, err := Load([]byte(src))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return rules
}

// fixture is a sample being made for a test: host values by name, the
// listeners, and how their SYN_RECV counts stand.
type fixture struct {
	vals      map[string]float64
	order     []string
	Listeners []collector.Listener
	// SynRecv says whether the listeners' SYN_RECV counts are data: the
	// dump ran in this sample (synRan) or is carried from an earlier one
	// (synCarried); the zero value is no data.
	SynRecv synState
	// NoListeners makes the listeners source fail (no table at all).
	NoListeners bool
}

type synState int

const (
	synNever synState = iota
	synRan
	synCarried
)

// Set sets the host value name.
func (f *fixture) Set(name string, v float64) {
	if _, ok := f.vals[name]; !ok {
		f.order = append(f.order, name)
	}
	f.vals[name] = v
}

// sysctlNames maps sysctl names to the vocabulary's.
var sysctlNames = map[string]string{
	"net.core.somaxconn":             "somaxconn",
	"net.ipv4.tcp_max_syn_backlog":   "tcp_max_syn_backlog",
	"net.ipv4.tcp_syncookies":        "syncookies",
	"net.ipv4.tcp_abort_on_overflow": "tcp_abort_on_overflow",
	"net.netfilter.nf_conntrack_max": "nf_conntrack_max",
}

// Sysctl sets a sysctl by its sysctl(8) name.
func (f *fixture) Sysctl(name string, v float64) {
	n, ok := sysctlNames[name]
	if !ok {
		panic(fmt.Sprintf("no sysctl %s in the test's table", name))
	}
	f.Set(n, v)
}

// snap returns a Snapshot at second sec made by f.
func snap(sec int, f func(s *fixture)) *collector.Snapshot {
	fx := &fixture{vals: map[string]float64{}}
	if f != nil {
		f(fx)
	}
	return fx.build(at(sec))
}

func (f *fixture) build(t time.Time) *collector.Snapshot {
	b := collector.NewBuilder(collector.DefaultSchema(), t)
	for _, n := range f.order {
		b.Set(n, f.vals[n])
	}
	if f.NoListeners {
		b.Source(collector.SourceResult{Name: "listeners", Err: fmt.Errorf("LISTEN dump failed")})
		return b.Snapshot()
	}
	b.EmptyTable(collector.KindListener)
	b.Source(collector.SourceResult{Name: "listeners", Success: true})
	cookies, maxSyn := collector.NaN, collector.NaN
	if v, ok := f.vals["syncookies"]; ok {
		cookies = v
	}
	if v, ok := f.vals["tcp_max_syn_backlog"]; ok {
		maxSyn = v
	}
	var total float64
	for i := range f.Listeners {
		l := &f.Listeners[i]
		e := b.Entity(collector.KindListener, l.Addr.String(), strconv.Itoa(int(l.Port))).
			Set("accept_queue", float64(l.AcceptQueue)).
			Set("accept_queue_limit", float64(l.AcceptLimit)).
			Set("accept_queue_fill", l.Fill()).
			Set("sockets", float64(l.Sockets)).
			Set("syn_queue_limit", collector.SynQueueLimit(l, cookies, maxSyn))
		if f.SynRecv != synNever {
			e.Set("syn_recv", float64(l.SynRecv))
			total += float64(l.SynRecv)
		}
	}
	b.Set("listeners", float64(len(f.Listeners)))
	switch f.SynRecv {
	case synNever:
		b.PartTime("listeners", "syn_recv", time.Time{})
	case synRan:
	case synCarried:
		b.PartTime("listeners", "syn_recv", t.Add(-time.Second))
	}
	if f.SynRecv != synNever {
		b.Set("syn_recv", total).Set("syn_recv_total", total)
	}
	return b.Snapshot()
}

// listener returns a listener on addr:port with the given queue, limit and
// half-open count.
func listener(addr string, port uint16, queue, limit, synRecv uint32) collector.Listener {
	return collector.Listener{
		Addr: netip.MustParseAddr(addr), Port: port, Sockets: 1,
		AcceptQueue: queue, AcceptLimit: limit, SynRecv: synRecv,
	}
}

// history returns a History keeping everything for an hour.
func history() *collector.History {
	return collector.NewHistory(collector.Retention{Host: time.Hour, Kinds: map[string]time.Duration{collector.KindListener: time.Hour}})
}

// counterHistory returns a History of n one-second Snapshots with
// passive_opens set to value(i).
func counterHistory(n int, value func(i int) float64) *collector.History {
	h := history()
	for i := range n {
		h.Add(snap(i, func(s *fixture) { s.Set("passive_opens", value(i)) }))
	}
	return h
}

package alerts

import (
	"net/netip"
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

// snap returns a Snapshot at second sec with f applied.
func snap(sec int, f func(s *collector.Snapshot)) *collector.Snapshot {
	s := collector.NewSnapshot(at(sec))
	if f != nil {
		f(s)
	}
	return s
}

// listener returns a listener on addr:port with the given queue, limit and
// half-open count.
func listener(addr string, port uint16, queue, limit, synRecv uint32) collector.Listener {
	return collector.Listener{
		Addr: netip.MustParseAddr(addr), Port: port, Sockets: 1,
		AcceptQueue: queue, AcceptLimit: limit, SynRecv: synRecv,
	}
}

// counterHistory returns a History of n one-second Snapshots with
// passive_opens set to value(i).
func counterHistory(n int, value func(i int) float64) *collector.History {
	h := collector.NewHistory(n)
	for i := range n {
		h.Add(snap(i, func(s *collector.Snapshot) { s.TCP.PassiveOpens = value(i) }))
	}
	return h
}

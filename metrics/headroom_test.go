package metrics

import (
	"bytes"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/headroom"
	"github.com/stormwatch/stormwatch/internal/golden"
	"github.com/stormwatch/stormwatch/internal/promtooltest"
)

// headroomReport is the headroom of a host whose accept queue on
// 0.0.0.0:6379 holds 109 of 128, judged at.
func headroomReport(at time.Time, listenersFailed bool) *headroom.Report {
	b := collector.NewBuilder(collector.DefaultSchema(), at)
	b.Set("conntrack_entries", 4100).Set("conntrack_limit", 262144)
	for _, src := range []string{"sysctl", "tcpstat", "conntrack", "conntrack_stats", "listeners"} {
		b.Source(collector.SourceResult{Name: src, Success: !listenersFailed || src != "listeners"})
	}
	if !listenersFailed {
		l := collector.Listener{Addr: netip.MustParseAddr("0.0.0.0"), Port: 6379, Sockets: 1, AcceptQueue: 109, AcceptLimit: 128}
		b.Entity(collector.KindListener, l.Addr.String(), strconv.Itoa(int(l.Port))).
			Set("accept_queue", 109).Set("accept_queue_limit", 128).Set("accept_queue_fill", l.Fill()).
			Set("syn_recv", 0).Set("syn_queue_limit", 128).Set("sockets", 1)
	}
	return headroom.Compute(headroom.Input{Now: at, Latest: b.Snapshot()}, headroom.DefaultOptions())
}

func TestHeadroomExporter(t *testing.T) {
	at := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	r := headroomReport(at, false)
	e := NewHeadroomExporter(func() *headroom.Report { return r }, 5*time.Second)
	e.now = func() time.Time { return at.Add(time.Second) }
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	var b bytes.Buffer
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	golden.Check(t, "headroom.prom", b.Bytes())
	promtooltest.CheckMetrics(t, b.Bytes())

	// Stale, missing data, no report yet: nothing exported.
	e.now = func() time.Time { return at.Add(6 * time.Second) }
	if n := testutil.CollectAndCount(e); n != 0 {
		t.Errorf("stale report: %d series", n)
	}
	e.now = func() time.Time { return at }
	r = headroomReport(at, true)
	if n := testutil.CollectAndCount(e); n != 0 {
		t.Errorf("listeners failed: %d series, want none (no data is not a headroom)", n)
	}
	r = nil
	if n := testutil.CollectAndCount(e); n != 0 {
		t.Errorf("no report: %d series", n)
	}
}

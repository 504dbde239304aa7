package metrics

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/golden"
	"github.com/stormwatch/stormwatch/internal/promtooltest"
)

// fixtureSnapshot samples the file-backed sources over a fixture tree and
// adds a fixed set of listeners, so the exposition is deterministic.
func fixtureSnapshot(t *testing.T, tree string) *collector.Snapshot {
	t.Helper()
	sources, err := collector.NewSources(collector.Config{Root: filepath.Join("..", "testdata", tree)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { collector.CloseSources(sources) })
	var files []collector.Source
	for _, s := range sources {
		if s.Name() != "listeners" {
			files = append(files, s)
		}
	}
	at := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	snap := collector.NewSampler(files, collector.NewHistory(2)).Sample(context.Background(), at)
	for i := range snap.Sources {
		snap.Sources[i].Duration = 1500 * time.Microsecond
	}
	snap.Sources = append(snap.Sources, collector.SourceResult{Name: "listeners", Success: true, Duration: 250 * time.Microsecond})
	snap.Listeners = []collector.Listener{
		{Addr: netip.MustParseAddr("0.0.0.0"), Port: 6379, Sockets: 1, AcceptQueue: 129, AcceptLimit: 128, MaxFill: 129.0 / 128, SynRecv: 256},
		{Addr: netip.MustParseAddr("::"), Port: 6379, Sockets: 1, AcceptQueue: 3, AcceptLimit: 128, MaxFill: 3.0 / 128, SynRecv: 12},
		{Addr: netip.MustParseAddr("127.0.0.1"), Port: 16379, Sockets: 4, AcceptQueue: 0, AcceptLimit: 2048, SynRecv: 0},
	}
	snap.SynRecv = collector.SynRecvInfo{Time: at.Add(-time.Second), Ran: false, Reason: "signal", Dumps: 42, Retries: 1}
	return snap
}

func render(t *testing.T, snap *collector.Snapshot) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewExporter(func() *collector.Snapshot { return snap }, BuildInfo{Version: "1.2.3", Revision: "abc"}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if mf.GetName() == "stormwatch_build_info" {
			// goversion changes with the toolchain.
			mf.Metric[0].Label[0].Value = new("goX")
		}
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	for _, tree := range []string{"linux-6.18", "linux-2.6.32", "no-conntrack"} {
		t.Run(tree, func(t *testing.T) {
			got := render(t, fixtureSnapshot(t, tree))
			golden.Check(t, tree+".prom", got)
			promtooltest.CheckMetrics(t, got)
		})
	}
}

func TestNoSnapshotYet(t *testing.T) {
	got := render(t, nil)
	if !bytes.Contains(got, []byte("stormwatch_build_info")) || bytes.Contains(got, []byte("stormwatch_conntrack")) {
		t.Errorf("before the first sample only build_info is exported, got:\n%s", got)
	}
}

func TestFailedListenersSource(t *testing.T) {
	// The LISTEN dump failed: no listener is known, so no listener series,
	// and no claim that none were dropped.
	snap := collector.NewSnapshot(time.Unix(0, 0))
	snap.Sources = []collector.SourceResult{{Name: "listeners", Err: errors.New("boom")}}
	got := render(t, snap)
	if bytes.Contains(got, []byte("stormwatch_listener_")) || bytes.Contains(got, []byte("stormwatch_listeners_dropped")) {
		t.Errorf("listener series exported for a failed LISTEN dump:\n%s", got)
	}
	if !bytes.Contains(got, []byte(`stormwatch_collector_success{collector="listeners"} 0`)) {
		t.Errorf("collector_success 0 missing:\n%s", got)
	}

	// Only the SYN_RECV dump failed: the listeners the LISTEN dump found
	// are still exported, with the carried SYN_RECV counts.
	snap.Listeners = []collector.Listener{{Addr: netip.MustParseAddr("0.0.0.0"), Port: 6379, Sockets: 1, AcceptQueue: 3, AcceptLimit: 511, SynRecv: 2}}
	snap.SynRecv = collector.SynRecvInfo{Time: time.Unix(0, 0), Reason: "interval", Dumps: 1}
	got = render(t, snap)
	for _, want := range []string{
		`stormwatch_listener_accept_queue_length{addr="0.0.0.0",port="6379"} 3`,
		`stormwatch_listener_syn_recv{addr="0.0.0.0",port="6379"} 2`,
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("missing %s after a failed SYN_RECV dump:\n%s", want, got)
		}
	}
}

package metrics

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/golden"
	"github.com/stormwatch/stormwatch/internal/netdev"
	"github.com/stormwatch/stormwatch/internal/netdev/netdevtest"
	"github.com/stormwatch/stormwatch/internal/promtooltest"
)

// fixtureHost is the interfaces of the exposition's host, read through the
// nic source from driver statistics recorded in the ethtool ioctl's format:
// an ENA device of each generation (with and without
// conntrack_allowance_available) and a veth (no allowances).
func fixtureHost() *netdevtest.Kernel {
	return &netdevtest.Kernel{
		Dump: []netdev.Link{
			{Name: "lo", Index: 1, Loopback: true, HasCounters: true},
			{Name: "ens5", Index: 2, HasCounters: true, Counters: netdev.Counters{RxPackets: 1e6, RxDropped: 17, RxMissedErrors: 4}},
			{Name: "ens6", Index: 3, HasCounters: true, Counters: netdev.Counters{RxPackets: 2e5}},
			{Name: "veth0", Index: 4, Kind: "veth", HasCounters: true, Counters: netdev.Counters{RxPackets: 300}},
		},
		Stats: map[string]netdevtest.Recording{
			"ens5":  netdevtest.MustLoad("ena-2.8.1"),
			"ens6":  netdevtest.MustLoad("ena-2.7.4"),
			"veth0": netdevtest.MustLoad("veth-6.18"),
		},
	}
}

// fixtureSnapshot samples the file-backed sources over a fixture tree and
// the nic source over fixtureHost, and adds a fixed set of listeners, so
// the exposition is deterministic.
func fixtureSnapshot(t *testing.T, tree string) *collector.Snapshot {
	t.Helper()
	sources, err := collector.NewSources(collector.Config{Root: filepath.Join("..", "testdata", tree), NIC: collector.NICConfig{Kernel: fixtureHost()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := collector.CloseSources(sources); err != nil {
			t.Error(err)
		}
	})
	var files []collector.Source
	for _, s := range sources {
		if s.Declaration().Name != "listeners" {
			files = append(files, s)
		}
	}
	at := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	sampler, err := collector.NewSampler(collector.DefaultSchema(), files, nil, collector.NewHistory(collector.Retention{}))
	if err != nil {
		t.Fatal(err)
	}
	read := sampler.Sample(context.Background(), at)
	// The same values, with fixed durations and a fixed set of listeners.
	b := collector.NewBuilder(collector.DefaultSchema(), at)
	for _, ref := range collector.DefaultSchema().Values(collector.HostKind) {
		if v := read.Host(ref.Slot); collector.Present(v) {
			b.Set(ref.Name, v)
		}
	}
	for _, r := range read.Sources {
		r.Duration = 1500 * time.Microsecond
		b.Source(r)
	}
	if nics := read.TableOf(collector.KindInterface); nics != nil {
		for row := range nics.Len() {
			e := b.Entity(collector.KindInterface, nics.Labels(row)...)
			for _, ref := range collector.DefaultSchema().Values(collector.KindInterface) {
				if v := nics.Value(row, ref.Slot); collector.Present(v) {
					e.Set(ref.Name, v)
				}
			}
		}
	}
	b.Source(collector.SourceResult{Name: "listeners", Success: true, Duration: 250 * time.Microsecond})
	for _, l := range []struct {
		addr, port                     string
		sockets, queue, limit, synRecv float64
	}{
		{"0.0.0.0", "6379", 1, 129, 128, 256},
		{"::", "6379", 1, 3, 128, 12},
		{"127.0.0.1", "16379", 4, 0, 2048, 0},
	} {
		b.Entity(collector.KindListener, l.addr, l.port).Set("sockets", l.sockets).
			Set("accept_queue", l.queue).Set("accept_queue_limit", l.limit).Set("syn_recv", l.synRecv)
	}
	b.Entity(collector.KindListener, "0.0.0.0", "6379").Set("owner_known", 1).
		SetAttr("process", "redis-server").SetAttr("pid", "812").SetAttr("state", "sleeping")
	b.Entity(collector.KindValkey, "127.0.0.1:6379").Set("up", 1).Set("connected_clients", 812).Set("maxclients", 10000).
		Set("blocked_clients", 2).Set("rejected_connections", 0).Set("connections_received", 91234).Set("evicted_clients", 0).
		Set("tcp_backlog", 511).Set("server_info", 1).SetAttr("server", "redis").SetAttr("version", "7.0.15")
	b.Set("listeners", 3).Set("listeners_dropped", 0).
		Set("syn_recv_last_dump", float64(at.Add(-time.Second).UnixNano())/1e9).SetHostAttr("syn_recv_reason", "signal").
		Set("syn_recv_dumps", 42).Set("syn_recv_dump_retries", 1).Set("syn_recv_dump_nobufs", 0).
		Set("syn_recv_dump_timeouts", 2).Set("syn_recv_dump_cpu", 0.125)
	return b.Snapshot()
}

func render(t *testing.T, snap *collector.Snapshot) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewExporter(collector.DefaultSchema(), func() *collector.Snapshot { return snap }, BuildInfo{Version: "1.2.3", Revision: "abc"}))
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
	// and no claim that none were dropped. Sampled through the real
	// sources, the listeners one unable to reach sock_diag.
	sources, err := collector.NewSources(collector.Config{
		Root:      filepath.Join("..", "testdata", "linux-6.18"),
		Listeners: collector.ListenerConfig{Dial: func() (*netlink.Conn, error) { return nil, errors.New("boom") }},
		NIC:       collector.NICConfig{Kernel: fixtureHost()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := collector.CloseSources(sources); err != nil {
			t.Error(err)
		}
	})
	sampler, err := collector.NewSampler(collector.DefaultSchema(), sources, nil, collector.NewHistory(collector.Retention{}))
	if err != nil {
		t.Fatal(err)
	}
	got := render(t, sampler.Sample(context.Background(), time.Unix(0, 0)))
	if bytes.Contains(got, []byte("stormwatch_listener_")) || bytes.Contains(got, []byte("stormwatch_listeners_dropped")) {
		t.Errorf("listener series exported for a failed LISTEN dump:\n%s", got)
	}
	if !bytes.Contains(got, []byte(`stormwatch_collector_success{collector="listeners"} 0`)) {
		t.Errorf("collector_success 0 missing:\n%s", got)
	}

	// Only the SYN_RECV dump failed: the listeners the LISTEN dump found
	// are exported, without a SYN_RECV count (no data, not an old one).
	b := collector.NewBuilder(collector.DefaultSchema(), time.Unix(0, 0)).
		Source(collector.SourceResult{Name: "listeners", Err: errors.New("SYN_RECV dump: boom")})
	b.Entity(collector.KindListener, "0.0.0.0", "6379").Set("sockets", 1).Set("accept_queue", 3).Set("accept_queue_limit", 511)
	got = render(t, b.Snapshot())
	if want := `stormwatch_listener_accept_queue_length{addr="0.0.0.0",port="6379"} 3`; !bytes.Contains(got, []byte(want)) {
		t.Errorf("missing %s after a failed SYN_RECV dump:\n%s", want, got)
	}
	if bytes.Contains(got, []byte("stormwatch_listener_syn_recv")) {
		t.Errorf("a SYN_RECV count exported after a failed dump:\n%s", got)
	}
}

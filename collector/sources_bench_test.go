//go:build linux

package collector_test

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/stormlab"
	"github.com/stormwatch/stormwatch/internal/testenv"
	"github.com/stormwatch/stormwatch/metrics"
)

// benchSockets is the socket population of the sampler benchmarks. The
// larger populations are measured by "stormlab bench" (scripts/bench.sh).
const benchSockets = 10000

// labWorkerBinary builds cmd/stormlab, whose binary serves as the lab's
// worker process (this test binary cannot: it has no TestMain hook).
func labWorkerBinary(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "stormlab")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/stormwatch/stormwatch/cmd/stormlab").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// populated returns a namespace holding benchSockets TCP sockets (see
// stormlab.PopulationFor) and the population.
func populated(b *testing.B) (*netnstest.NS, *stormlab.Population) {
	b.Helper()
	testenv.Tool(b, "nft") // to hold handshakes half-open
	ns := netnstest.New(b)
	lab, err := stormlab.New(ns, stormlab.Options{WorkerExe: labWorkerBinary(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lab.Close() })
	pop, err := lab.Populate(context.Background(), stormlab.PopulationFor(benchSockets))
	if err != nil {
		b.Fatal(err)
	}
	return ns, pop
}

// nsDialer opens the sock_diag connection inside ns, configured as the
// collector's own.
func nsDialer(ns *netnstest.NS) collector.DialFunc {
	return func() (*netlink.Conn, error) {
		var c *netlink.Conn
		err := ns.Do(func() error {
			var err error
			c, err = netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{MessageBufferSize: 32 << 10})
			if err == nil {
				if err = c.SetReadBuffer(1 << 20); err != nil {
					c.Close()
				}
			}
			return err
		})
		return c, err
	}
}

// ssTime is the best wall time of a few runs of ss with args started from
// a thread inside ns.
func ssTime(b *testing.B, ns *netnstest.NS, args ...string) time.Duration {
	b.Helper()
	var runs []time.Duration
	for range 7 {
		if err := ns.Do(func() error {
			start := time.Now()
			err := exec.Command("ss", args...).Run()
			runs = append(runs, time.Since(start))
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	return slices.Min(runs)
}

// BenchmarkSamplerCycle measures one full Sampler cycle (every source, in
// table order) with the listeners source dumping a namespace that holds
// benchSockets sockets: 8 listeners with full accept queues, 50 idle ones,
// 1% half-open handshakes. Needs root.
//
//   - listen+counters: the listeners source keeps only the idle
//     listeners and its SYN_RECV cadence is an hour, so the cycle is the
//     LISTEN dump plus the procfs sources.
//   - full: every listener, and the SYN_RECV dump on every cycle.
//
// The procfs sources read this process's namespace (same files, same cost:
// only the listeners source's reads depend on the socket population).
// ss-ratio divides the time per cycle by ss's own wall time for the same
// facts, measured in the same run.
func BenchmarkSamplerCycle(b *testing.B) {
	ns, pop := populated(b)
	ssListen := ssTime(b, ns, "-Hltn")
	ssSynRecv := ssTime(b, ns, "-Htn", "state", "syn-recv")
	var idle []collector.PortRange
	for _, p := range pop.IdlePorts {
		idle = append(idle, collector.PortRange{Lo: uint16(p), Hi: uint16(p)})
	}
	bench := func(b *testing.B, cfg collector.ListenerConfig, wantSynRecv bool, ss time.Duration) {
		cfg.Dial = nsDialer(ns)
		sources, err := collector.NewSources(collector.Config{Listeners: cfg})
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			if err := collector.CloseSources(sources); err != nil {
				b.Error(err)
			}
		}()
		s, err := collector.NewSampler(collector.DefaultSchema(), sources, nil, collector.NewHistory(collector.Retention{}))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		s.Sample(ctx, time.Now()) // dial, first SYN_RECV dump
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			snap := s.Sample(ctx, time.Now())
			if r, _ := snap.Source("listeners"); !r.Success {
				b.Fatalf("listeners source: %v", r.Err)
			}
			if ran := collector.SynRecvRan(snap); ran != wantSynRecv {
				b.Fatalf("SYN_RECV dump ran: %v, want %v", ran, wantSynRecv)
			}
		}
		b.StopTimer()
		perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(perOp/float64(ss.Nanoseconds()), "ss-ratio")
		b.ReportMetric(float64(pop.Sockets), "sockets")
	}
	b.Run("listen+counters", func(b *testing.B) {
		bench(b, collector.ListenerConfig{Include: idle, SynRecvInterval: time.Hour}, false, ssListen)
	})
	b.Run("full", func(b *testing.B) {
		bench(b, collector.ListenerConfig{}, true, ssSynRecv)
	})
}

// BenchmarkMetricsScrape measures one /metrics request of a registry like
// the daemon's (stormwatch's exporter, process and Go collectors) serving
// a Snapshot of the populated namespace: a scrape reads only memory, so
// its cost follows the listeners exported, not the sockets.
func BenchmarkMetricsScrape(b *testing.B) {
	ns, _ := populated(b)
	sources, err := collector.NewSources(collector.Config{Listeners: collector.ListenerConfig{Dial: nsDialer(ns)}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := collector.CloseSources(sources); err != nil {
			b.Error(err)
		}
	}()
	s, err := collector.NewSampler(collector.DefaultSchema(), sources, nil, collector.NewHistory(collector.Retention{}))
	if err != nil {
		b.Fatal(err)
	}
	snap := s.Sample(context.Background(), time.Now())
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.NewExporter(collector.DefaultSchema(), s.Latest, metrics.BuildInfo{Version: "bench", Revision: "bench"}),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "stormwatch"}),
		collectors.NewGoCollector(),
	)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
	req := httptest.NewRequest("GET", "/metrics", nil)
	var size int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
	b.ReportMetric(float64(len(collector.Listeners(snap))), "listeners")
}

//go:build linux

package stormlab

import (
	"context"
	"math"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

func TestMain(m *testing.M) {
	RunWorkerIfRequested()
	os.Exit(m.Run())
}

func TestParseNetstat(t *testing.T) {
	in := "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 17\nIpExt: InOctets\nIpExt: 99\n" +
		"Tcp: RtoAlgorithm PassiveOpens CurrEstab\nTcp: 1 42 -1\nbroken: a b\nbroken: 1\n"
	got := map[string]float64{}
	parseNetstat([]byte(in), got)
	want := map[string]float64{
		"TcpExt.SyncookiesSent": 3, "TcpExt.ListenOverflows": 17, "IpExt.InOctets": 99,
		"Tcp.RtoAlgorithm": 1, "Tcp.PassiveOpens": 42, "Tcp.CurrEstab": -1,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("parseNetstat (-want +got):\n%s", d)
	}
}

func TestSourceAddr(t *testing.T) {
	seen := map[[4]byte]int{}
	for i := range 20000 {
		a := sourceAddr(3, i)
		if a[0] != 127 || a[1] != 19 || a[3] == 0 || a[3] == 255 {
			t.Fatalf("connection %d: source %v outside 127.19.0.0/16 or a .0/.255 address", i, netip.AddrFrom4(a))
		}
		seen[a]++
	}
	for a, n := range seen {
		if n > 500 {
			t.Errorf("%v carries %d connections, want at most 500", netip.AddrFrom4(a), n)
		}
	}
	if sourceAddr(0, 0) == sourceAddr(1, 0) {
		t.Error("two workers share a source address")
	}
}

func TestPopulationFor(t *testing.T) {
	for _, n := range []int{10000, 100000, 200000} {
		p := PopulationFor(n)
		if got := p.Sockets(); got > n || n-got > 2 {
			t.Errorf("PopulationFor(%d) makes %d sockets", n, got)
		}
		if p.HalfOpen == 0 || p.IdleListeners == 0 || p.Established == 0 {
			t.Errorf("PopulationFor(%d) = %+v: want every kind of socket", n, p)
		}
	}
}

func TestSummarise(t *testing.T) {
	t0 := time.Unix(1000, 0)
	sample := func(ms int, queue uint32, opens, overflows float64) ProbeSample {
		return ProbeSample{
			Time:      t0.Add(time.Duration(ms) * time.Millisecond),
			Listeners: []collector.Listener{{Port: 6379, AcceptQueue: queue, AcceptLimit: 128}},
			TCP:       TCPCounters{PassiveOpens: opens, ListenOverflows: overflows},
		}
	}
	// 100 opens/s for a second, then 1000 in the next half second: the
	// busiest second, 0.5 s to 1.5 s, saw 1050.
	var s []ProbeSample
	for ms := 0; ms <= 1000; ms += 100 {
		s = append(s, sample(ms, 0, float64(ms/10), 5))
	}
	s = append(s, sample(1200, 129, 500, 5), sample(1500, 129, 1100, 7), sample(2000, 3, 1100, 9))
	got := Summarise(s, 6379, time.Second)
	want := QueueStats{PeakQueue: 129, Limit: 128, PeakRate: 1050, RateWindow: time.Second, Overflows: 4, FirstOverflow: t0.Add(1500 * time.Millisecond)}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Summarise (-want +got):\n%s", d)
	}
	if got := Summarise(nil, 6379, time.Second); got.PeakQueue != 0 || !got.FirstOverflow.IsZero() {
		t.Errorf("Summarise(nil) = %+v", got)
	}
}

func TestExposition(t *testing.T) {
	x, err := ParseExposition([]byte(`# TYPE a gauge
a{port="1",addr="x"} 3
a{port="2",addr="x"} 4
# TYPE b_total counter
b_total 7
`))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := x.Value("a", "port", "2"); !ok || v != 4 {
		t.Errorf(`Value(a, port=2) = %v, %v`, v, ok)
	}
	if _, ok := x.Value("a", "addr", "x"); ok {
		t.Error("Value matched two series")
	}
	if v, ok := x.Value("b_total"); !ok || v != 7 {
		t.Errorf("Value(b_total) = %v, %v", v, ok)
	}
	if n := len(x.Find("a", nil)); n != 2 {
		t.Errorf("Find(a) = %d series", n)
	}
}

func newTestLab(t *testing.T, opts Options) *Lab {
	t.Helper()
	testbin.RequireTools(t, "ss", "nft")
	ns := netnstest.New(t)
	opts.Logf = t.Logf
	l, err := New(ns, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return l
}

// TestPopulate spreads a small population over several workers (capped at
// 1500 sockets each) and checks ss and the probe count the same sockets.
func TestPopulate(t *testing.T) {
	l := newTestLab(t, Options{MaxSocketsPerWorker: 1500})
	ctx := context.Background()
	spec := PopulationSpec{Established: 4000, BusyListeners: 3, IdleListeners: 5, DualStack: 1, HalfOpen: 300}
	pop, err := l.Populate(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Listener worker plus ceil(4300/1500) client workers.
	if pop.Workers != 4 {
		t.Errorf("%d workers, want 4", pop.Workers)
	}
	if pop.Sockets != spec.Sockets() {
		t.Errorf("ss shows %d sockets, spec says %d", pop.Sockets, spec.Sockets())
	}
	half, err := l.SSSynRecv(ctx, pop.HalfOpenPort)
	if err != nil {
		t.Fatal(err)
	}
	if half != spec.HalfOpen {
		t.Errorf("ss shows %d half-open, want %d", half, spec.HalfOpen)
	}
	probe, err := l.StartProbe(10*time.Millisecond, pop.BusyPorts...)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	samples, err := probe.Stop()
	if err != nil {
		t.Fatal(err)
	}
	last := samples[len(samples)-1]
	var queued int
	for _, p := range pop.BusyPorts {
		ln, ok := last.Listener(p)
		if !ok {
			t.Fatalf("probe has no listener on busy port %d", p)
		}
		q, lim, err := l.SSListen(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if int(ln.AcceptQueue) != q || int(ln.AcceptLimit) != lim {
			t.Errorf("port %d: probe says %d/%d, ss %d/%d", p, ln.AcceptQueue, ln.AcceptLimit, q, lim)
		}
		queued += q
	}
	if queued != spec.Established {
		t.Errorf("%d connections queued, want %d", queued, spec.Established)
	}
	if math.IsNaN(last.TCP.PassiveOpens) || last.TCP.PassiveOpens < float64(spec.Established) {
		t.Errorf("PassiveOpens = %v, want at least %d", last.TCP.PassiveOpens, spec.Established)
	}
}

// TestSysctlPerNamespace checks Lab.Sysctl changes the namespace's copy
// only, as sysctl(8) run inside sees it.
func TestSysctlPerNamespace(t *testing.T) {
	testbin.RequireTools(t, "sysctl")
	l := newTestLab(t, Options{})
	host, err := ReadGlobalSysctl("net.core.somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.FormatInt(host+123, 10)
	if err := l.Sysctl("net.core.somaxconn", want); err != nil {
		t.Fatal(err)
	}
	out, err := l.Exec(context.Background(), "sysctl", "-n", "net.core.somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out[:len(out)-1]); got != want {
		t.Errorf("sysctl inside the namespace says %s, want %s", got, want)
	}
	if after, _ := ReadGlobalSysctl("net.core.somaxconn"); after != host {
		t.Errorf("host somaxconn changed from %d to %d", host, after)
	}
}

// TestWorkerExitsWithLab checks Close ends the lab's processes.
func TestWorkerExitsWithLab(t *testing.T) {
	testbin.RequireTools(t, "ss", "nft")
	ns := netnstest.New(t)
	l, err := New(ns, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	w, err := l.StartWorker(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Listen(context.Background(), "127.0.0.1:0", 16); err != nil {
		t.Fatal(err)
	}
	pid := w.cmd.Process.Pid
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !os.IsNotExist(err) {
		t.Errorf("worker %d still exists after Close: %v", pid, err)
	}
	if _, err := os.Stat(l.Dir); !os.IsNotExist(err) {
		t.Errorf("lab directory %s still exists after Close", l.Dir)
	}
}

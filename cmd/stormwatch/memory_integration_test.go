package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

var soak = flag.Duration("soak", 16*time.Minute, "how long BenchmarkDaemonMemory runs its daemons (the host history keeps 15 minutes)")

// memoryHost is a namespace with a number of listening ports (the
// daemon's own included) and a daemon watching it.
type memoryHost struct {
	ports int
	d     *testDaemon
	rss   []int64 // kB, as sampled
	peak  int64   // kB, VmHWM at the last sample
}

// startMemoryHost makes a namespace with ports listening ports on
// 127.0.0.1 (20000 and up, and the daemon's own 9955) and starts a daemon
// in it with args.
func startMemoryHost(t testing.TB, ports int, args ...string) *memoryHost {
	t.Helper()
	ns := netnstest.New(t)
	var fds []int
	if err := ns.Do(func() error {
		for i := range ports - 1 {
			fd, err := listen(unix.AF_INET, []byte{127, 0, 0, 1}, 20000+i, 128)
			if err != nil {
				return fmt.Errorf("listener %d of %d: %w", i+1, ports-1, err)
			}
			fds = append(fds, fd)
		}
		return nil
	}); err != nil {
		closeAll(fds)
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(fds) })
	return &memoryHost{ports: ports, d: startDaemon(t, ns, "", args...)}
}

// sample records the daemon's resident memory.
func (h *memoryHost) sample() error {
	rss, peak, err := memoryOf(h.d.cmd.Process.Pid)
	if err != nil {
		return err
	}
	h.rss, h.peak = append(h.rss, rss), peak
	return nil
}

func (h *memoryHost) last() int64 { return h.rss[len(h.rss)-1] }

// TestMemoryBoundedByListenerCap: two daemons on default flags but a
// 100 ms interval, one in a namespace with 5,000 listening ports and one
// with 500, side by side for two minutes. The listener cap (500 by
// default) bounds what the daemon keeps, so the first daemon's resident
// memory stays within 10% of the second's: what it reads beyond the cap
// each cycle is not retained.
func TestMemoryBoundedByListenerCap(t *testing.T) {
	testbin.RequireTools(t)
	const run = 2 * time.Minute
	args := []string{"--collect.interval=100ms", "--collect.syn-recv-interval=5s"}
	small, large := startMemoryHost(t, 500, args...), startMemoryHost(t, 5000, args...)
	hosts := []*memoryHost{small, large}

	start := time.Now()
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			for time.Since(start) < run {
				time.Sleep(10 * time.Second)
				if time.Since(start) <= run/2 {
					continue
				}
				if err := h.sample(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, h := range hosts {
		x, err := h.d.scrape()
		if err != nil {
			t.Fatal(err)
		}
		// The cap is 500: the larger host has the rest dropped.
		if got, want := value(x, "stormwatch_listeners_dropped"), float64(h.ports-500); got != want {
			t.Errorf("daemon with %d ports drops %v listeners, want %v: the test did not make its listeners", h.ports, got, want)
		}
	}
	t.Logf("resident memory after %s at 100 ms: %d ports %d kB (peak %d kB), %d ports %d kB (peak %d kB); samples %v and %v kB",
		run, small.ports, small.last(), small.peak, large.ports, large.last(), large.peak, small.rss, large.rss)
	if float64(large.last()) > 1.10*float64(small.last()) {
		t.Errorf("with %d listening ports the daemon holds %d kB, more than 10%% above the %d kB it holds with %d",
			large.ports, large.last(), small.last(), small.ports)
	}
}

// BenchmarkDaemonMemory runs three daemons on default flags but a
// listener cap raised to keep every listener, at 500, 2,000 and 5,000
// listening ports, side by side for -soak (by default past the host
// history's 15 minutes), and reports each one's live heap at its last
// garbage collection and its resident memory:
//
//	go test ./cmd/stormwatch -run '^$' -bench DaemonMemory -benchtime 1x -timeout 30m [-soak 16m]
func BenchmarkDaemonMemory(b *testing.B) {
	testbin.RequireTools(b)
	var hosts []*memoryHost
	for _, n := range []int{500, 2000, 5000} {
		hosts = append(hosts, startMemoryHost(b, n, "--collect.listeners.max="+strconv.Itoa(n), "--collect.interval=1s", "--collect.syn-recv-interval=5s"))
	}
	for b.Loop() {
		time.Sleep(*soak)
	}
	for _, h := range hosts {
		if err := h.sample(); err != nil {
			b.Fatal(err)
		}
		x, err := h.d.scrape()
		if err != nil {
			b.Fatal(err)
		}
		if got := value(x, "stormwatch_listeners_dropped"); got != 0 {
			b.Fatalf("daemon with %d ports dropped %v listeners", h.ports, got)
		}
		// The collector aims the next collection at twice what was live
		// after the last one (GOGC=100, above its 4 MiB floor).
		live := value(x, "go_memstats_next_gc_bytes") / 2
		b.ReportMetric(live/(1<<20), fmt.Sprintf("heap-MiB@%d", h.ports))
		b.ReportMetric(float64(h.last())/1024, fmt.Sprintf("RSS-MiB@%d", h.ports))
		b.ReportMetric(float64(h.peak)/1024, fmt.Sprintf("peak-RSS-MiB@%d", h.ports))
	}
}

// memoryOf reads a process's resident set and its peak (VmRSS, VmHWM)
// in kB from /proc/<pid>/status.
func memoryOf(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		var dst *int64
		switch string(f[0]) {
		case "VmRSS:":
			dst = &rss
		case "VmHWM:":
			dst = &peak
		default:
			continue
		}
		if *dst, err = strconv.ParseInt(string(f[1]), 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, f[0], err)
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return rss, peak, nil
}

//go:build linux

package collector

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

// Benchmark population: client sockets whose connections wait, never
// accepted, in the accept queues of listeners with big backlogs. Each costs
// one fd (the client) and puts two established sockets in the kernel's
// established hash (client and server side).
const (
	benchListeners = 8
	benchMaxConns  = 15000 // established pairs, if the fd limit allows
	benchMinConns  = 10000 // below this, skip: too small to mean anything
	benchHalfOpen  = 200   // SYN_RECV request sockets on one more listener
	benchFDReserve = 1000  // fds kept free for everything else
)

// raiseNoFile lifts the soft RLIMIT_NOFILE to the hard limit for the rest of
// tb and returns the new limit.
func raiseNoFile(tb testing.TB) int {
	tb.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		tb.Fatal(err)
	}
	raised := unix.Rlimit{Cur: old.Max, Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			tb.Errorf("restoring RLIMIT_NOFILE: %v", err)
		}
	})
	return int(min(raised.Cur, 1<<30))
}

// timeSS returns the best wall time of a few runs of ss with args, started
// from a thread inside ns (so the time is ss's own, not ip netns exec's).
func timeSS(tb testing.TB, ns *netnstest.NS, args ...string) time.Duration {
	tb.Helper()
	var runs []time.Duration
	for range 7 {
		err := ns.Do(func() error {
			start := time.Now()
			out, err := exec.Command("ss", args...).Output()
			runs = append(runs, time.Since(start))
			if err != nil {
				return fmt.Errorf("ss %v: %w: %s", args, err, out)
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return slices.Min(runs)
}

// BenchmarkListenersCollect measures one cycle of the listeners source in a
// namespace holding 20k-30k established sockets (client and server ends of
// connections left in accept queues), benchListeners busy listeners, an idle
// IPv4 and an idle dual-stack listener, and benchHalfOpen half-open
// handshakes. Needs root.
//
//   - listen: a LISTEN-only cycle. The source keeps only the idle listeners
//     (port filter), so no accept-queue signal forces the SYN_RECV dump; the
//     LISTEN dumps still return and parse every listener.
//   - listen+syn-recv: every listener kept and the SYN_RECV dump on every
//     cycle (both families in one walk of the established hash).
//   - …/per-family: the same with one dump per address family, as on a
//     kernel refusing the one-walk request (two walks for SYN_RECV).
//
// The ss-ratio metric is ns/op divided by the wall time of the ss(8) run
// giving the same facts, measured in the same namespace in the same run:
// "ss -Hltn", plus "ss -Htn state syn-recv" for the second case.
func BenchmarkListenersCollect(b *testing.B) {
	ns := netnstest.New(b)
	nofile := raiseNoFile(b)
	conns := min(benchMaxConns, nofile-benchFDReserve-benchHalfOpen)
	if conns < benchMinConns {
		testenv.Require(b, "an RLIMIT_NOFILE hard limit for the benchmark's connections",
			fmt.Errorf("RLIMIT_NOFILE hard limit %d leaves room for %d connections, want at least %d", nofile, conns, benchMinConns))
	}
	ctx := context.Background()
	for _, kv := range []string{"net.core.somaxconn=65535", "net.ipv4.tcp_synack_retries=20"} {
		if _, err := ns.Exec(ctx, "sysctl", "-qw", kv); err != nil {
			b.Fatal(err)
		}
	}

	backlog := conns/benchListeners + 64
	var busy []uint16
	for range benchListeners {
		busy = append(busy, listenIn(b, ns, netip.AddrPortFrom(loopback4, 0), backlog, false))
	}
	idle4 := listenIn(b, ns, netip.AddrPortFrom(loopback4, 0), 128, false)
	idle6 := listenIn(b, ns, netip.AddrPortFrom(netip.IPv6Unspecified(), 0), 128, false)
	half := listenIn(b, ns, netip.AddrPortFrom(loopback4, 0), 4096, false)
	dropFinalACK(b, ns, half, half)
	for i, p := range busy {
		n := conns / benchListeners
		if i < conns%benchListeners {
			n++
		}
		connectIn(b, ns, netip.AddrPortFrom(loopback4, p), n)
	}
	connectIn(b, ns, netip.AddrPortFrom(loopback4, half), benchHalfOpen)

	// Wait for the population to settle.
	all := newNSSource(b, ns, ListenerConfig{})
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := collectOnce(b, all, time.Now(), quietTCP())
		var queued, halfOpen int
		for _, l := range Listeners(s) {
			queued += int(l.AcceptQueue)
			halfOpen += int(l.SynRecv)
		}
		if queued == conns && halfOpen == benchHalfOpen {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("population did not settle: %d queued of %d, %d half-open of %d", queued, conns, halfOpen, benchHalfOpen)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ssListen := timeSS(b, ns, "-Hltn")
	ssSynRecv := timeSS(b, ns, "-Htn", "state", "syn-recv")

	bench := func(b *testing.B, cfg ListenerConfig, perFamily, wantSynRecv bool, ss time.Duration) {
		src := newNSSource(b, ns, cfg)
		src.legacy = !perFamily
		collectOnce(b, src, time.Now(), quietTCP()) // dial, first SYN_RECV dump
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			s, err := collectCtx(ctx, src, time.Now(), quietTCP())
			if err != nil {
				b.Fatal(err)
			}
			if SynRecvRan(s) != wantSynRecv {
				b.Fatalf("SYN_RECV dump ran: %v, want %v (%+v)", SynRecvRan(s), wantSynRecv, synInfoOf(s))
			}
		}
		b.StopTimer()
		perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(perOp/float64(ss.Nanoseconds()), "ss-ratio")
		b.ReportMetric(float64(ss.Nanoseconds()), "ss-ns")
		b.ReportMetric(float64(2*conns+2*benchHalfOpen), "sockets") // both ends
	}
	for _, path := range []struct {
		suffix    string
		perFamily bool
	}{{"", false}, {"/per-family", true}} {
		b.Run("listen"+path.suffix, func(b *testing.B) {
			cfg := ListenerConfig{
				Include:         []PortRange{{idle4, idle4}, {idle6, idle6}},
				SynRecvInterval: time.Hour,
			}
			bench(b, cfg, path.perFamily, false, ssListen)
		})
		b.Run("listen+syn-recv"+path.suffix, func(b *testing.B) {
			bench(b, ListenerConfig{}, path.perFamily, true, ssListen+ssSynRecv)
		})
	}
}

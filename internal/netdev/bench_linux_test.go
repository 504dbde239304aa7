package netdev_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/safchain/ethtool"

	"github.com/stormwatch/stormwatch/internal/netdev"
	"github.com/stormwatch/stormwatch/internal/netnstest"
)

// benchVeths is the number of veth interfaces of the benchmark namespace
// (benchVeths/2 pairs, both ends inside).
const benchVeths = 50

// vethNamespace returns a namespace holding benchVeths veth interfaces,
// up, and their names.
func vethNamespace(b *testing.B) (*netnstest.NS, []string) {
	b.Helper()
	ns := newNS(b)
	var batch strings.Builder
	var names []string
	for i := range benchVeths / 2 {
		fmt.Fprintf(&batch, "link add vx%d type veth peer name vy%d\n", i, i)
		names = append(names, fmt.Sprintf("vx%d", i), fmt.Sprintf("vy%d", i))
	}
	for _, n := range names {
		fmt.Fprintf(&batch, "link set %s up\n", n)
	}
	cmd := ns.Command(b.Context(), "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ip -batch: %v\n%s", err, out)
	}
	return ns, names
}

// toolTime is the best wall time, of a few rounds, of running each of
// cmds in turn from a thread inside ns.
func toolTime(b *testing.B, ns *netnstest.NS, cmds [][]string) time.Duration {
	b.Helper()
	var rounds []time.Duration
	for range 5 {
		if err := ns.Do(func() error {
			start := time.Now()
			for _, c := range cmds {
				if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
					return fmt.Errorf("%s: %w\n%s", strings.Join(c, " "), err, out)
				}
			}
			rounds = append(rounds, time.Since(start))
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	return slices.Min(rounds)
}

// cachedLinks is a Kernel whose link dump returns the same links without
// asking the kernel, to measure the ethtool requests alone.
type cachedLinks struct {
	netdev.Kernel
	links []netdev.Link
}

func (c *cachedLinks) Links(_ context.Context, dst []netdev.Link) ([]netdev.Link, error) {
	return append(dst, c.links...), nil
}

// BenchmarkRead measures one Read of a namespace holding benchVeths veth
// interfaces (plus loopback, dropped), needs root, and compares it with
// the tools giving the same facts, timed in the same run from inside the
// namespace (process start included: that is what a script pays):
//
//   - counters: the link dump only (SkipDriverStats). ip-ratio divides its
//     time by that of "ip -s link show".
//   - counters+driver: the dump and the driver statistics of every
//     interface (what the collector source runs). tools-ratio divides its
//     time by that of "ip -s link show" plus "ethtool -S" per interface.
//   - driver: the ethtool requests alone (links cached). ethtool-ratio
//     divides its time by that of "ethtool -S" per interface.
//   - safchain: the same statistics through safchain/ethtool's
//     StatsWithBuffer with buffers reused, for its allocations.
func BenchmarkRead(b *testing.B) {
	ns, names := vethNamespace(b)
	ipCmd := [][]string{{"ip", "-s", "link", "show"}}
	var ethtoolCmds [][]string
	for _, n := range names {
		ethtoolCmds = append(ethtoolCmds, []string{"ethtool", "-S", n})
	}
	ipTime := toolTime(b, ns, ipCmd)
	ethtoolTime := toolTime(b, ns, ethtoolCmds)
	b.Logf("ip -s link show: %v; ethtool -S × %d: %v", ipTime, len(names), ethtoolTime)

	loop := func(b *testing.B, r *netdev.Reader, wantDriver bool) {
		ctx := context.Background()
		if _, err := r.Read(ctx); err != nil { // first sight of each device
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			devs, err := r.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(devs) != benchVeths || devs[0].HasDriverStats != wantDriver {
				b.Fatalf("%d devices, driver statistics %v", len(devs), devs[0].HasDriverStats)
			}
		}
		b.ReportMetric(benchVeths, "devices")
	}
	perOp := func(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(b.N) }

	b.Run("counters", func(b *testing.B) {
		loop(b, openIn(b, ns, netdev.Options{SkipDriverStats: true}), false)
		b.ReportMetric(perOp(b)/float64(ipTime.Nanoseconds()), "ip-ratio")
	})
	b.Run("counters+driver", func(b *testing.B) {
		loop(b, openIn(b, ns, netdev.Options{}), true)
		b.ReportMetric(perOp(b)/float64((ipTime+ethtoolTime).Nanoseconds()), "tools-ratio")
	})
	b.Run("driver", func(b *testing.B) {
		var k netdev.Kernel
		var links []netdev.Link
		if err := ns.Do(func() error {
			var err error
			if k, err = netdev.OpenKernel(true); err != nil {
				return err
			}
			links, err = k.Links(context.Background(), nil)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		loop(b, openIn(b, ns, netdev.Options{Kernel: &cachedLinks{Kernel: k, links: links}}), true)
		b.ReportMetric(perOp(b)/float64(ethtoolTime.Nanoseconds()), "ethtool-ratio")
	})
	b.Run("safchain", func(b *testing.B) {
		var e *ethtool.Ethtool
		if err := ns.Do(func() error {
			var err error
			e, err = ethtool.NewEthtool()
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		gstrings, stats := new(ethtool.EthtoolGStrings), new(ethtool.EthtoolStats)
		b.ReportAllocs()
		for b.Loop() {
			for _, n := range names {
				if _, err := e.StatsWithBuffer(n, gstrings, stats); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(benchVeths, "devices")
		b.ReportMetric(perOp(b)/float64(ethtoolTime.Nanoseconds()), "ethtool-ratio")
	})
}

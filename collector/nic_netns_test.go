//go:build linux

package collector_test

// The nic source against the running kernel, in network namespaces of its
// own (netnstest), with ip(8) and ethtool(8) run in the same namespace as
// ground truth. These tests need root, ip and ethtool; they skip without
// them, and fail instead under CI.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testbin"
	"github.com/stormwatch/stormwatch/metrics"
)

// nicNS returns a fresh network namespace with IPv6 off (no router
// solicitations or DAD moving counters behind the test's back).
func nicNS(tb testing.TB) *netnstest.NS {
	tb.Helper()
	testbin.RequireTools(tb, "ip", "ethtool", "sysctl")
	return netnstest.NewIPv4Only(tb)
}

// nicSourceIn makes the built-in sources inside ns and returns the nic
// source, whose kernel handles stay in ns; the others are closed.
func nicSourceIn(tb testing.TB, ns *netnstest.NS, cfg collector.NICConfig) collector.Source {
	tb.Helper()
	var nic collector.Source
	err := ns.Do(func() error {
		all, err := collector.NewSources(collector.Config{NIC: cfg})
		if err != nil {
			return err
		}
		var rest []collector.Source
		for _, s := range all {
			if s.Declaration().Name == "nic" {
				nic = s
			} else {
				rest = append(rest, s)
			}
		}
		return collector.CloseSources(rest)
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := collector.CloseSources([]collector.Source{nic}); err != nil {
			tb.Error(err)
		}
	})
	return nic
}

// ipRX is the receive side of "ip -s -j link show".
type ipRX struct {
	IfName  string `json:"ifname"`
	Stats64 struct {
		RX struct {
			Packets      uint64 `json:"packets"`
			Dropped      uint64 `json:"dropped"`
			MissedErrors uint64 `json:"missed_errors"`
		} `json:"rx"`
	} `json:"stats64"`
}

func ipLinks(tb testing.TB, ns *netnstest.NS) map[string]ipRX {
	tb.Helper()
	var links []ipRX
	if err := json.Unmarshal(ns.Run(tb, "ip", "-s", "-s", "-j", "link", "show"), &links); err != nil {
		tb.Fatalf("ip -s -s -j link show: %v", err)
	}
	out := map[string]ipRX{}
	for _, l := range links {
		out[l.IfName] = l
	}
	return out
}

// sendUnknownEtherType sends n Ethernet frames of an EtherType no protocol
// handles (0x88b5, IEEE local experimental) out of ifname in ns: the
// receiving end counts each in rx_dropped.
func sendUnknownEtherType(tb testing.TB, ns *netnstest.NS, ifname string, n int) {
	tb.Helper()
	const etherType = 0x88b5
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		frame := make([]byte, 60)
		copy(frame[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(frame[6:12], ifi.HardwareAddr)
		binary.BigEndian.PutUint16(frame[12:], etherType)
		to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		for range n {
			if err := unix.Sendto(fd, frame, 0, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// exposition samples src once and returns the series /metrics shows for
// it: name{labels} → value.
func exposition(tb testing.TB, src collector.Source) map[string]float64 {
	tb.Helper()
	h := collector.NewHistory(collector.Retention{})
	s, err := collector.NewSampler(collector.DefaultSchema(), []collector.Source{src}, nil, h)
	if err != nil {
		tb.Fatal(err)
	}
	snap := s.Sample(context.Background(), time.Now())
	if r, _ := snap.Source("nic"); !r.Success {
		tb.Fatalf("nic source: %+v", r)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewExporter(collector.DefaultSchema(), s.Latest, metrics.BuildInfo{Version: "test"}))
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "stormwatch_nic_") {
			continue
		}
		for _, m := range mf.Metric {
			out[seriesName(mf.GetName(), m)] = value(mf.GetType(), m)
		}
	}
	return out
}

func seriesName(name string, m *dto.Metric) string {
	var ls []string
	for _, l := range m.Label {
		ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	return name + "{" + strings.Join(ls, ",") + "}"
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	if t == dto.MetricType_COUNTER {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// TestNICSourceSeriesMatchIP reads a veth in a namespace through the nic
// source and checks its /metrics series against ip(8) and ethtool(8) in
// that namespace: the receive drops (made with frames no protocol takes)
// between two reads of ip, no allowance series for a driver that has no
// such statistic, nothing for loopback.
func TestNICSourceSeriesMatchIP(t *testing.T) {
	a, b := nicNS(t), nicNS(t)
	a.Run(t, "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b.Name())
	a.Run(t, "ip", "link", "set", "va", "up")
	b.Run(t, "ip", "link", "set", "vb", "up")
	const frames = 40
	sendUnknownEtherType(t, a, "va", frames)

	src := nicSourceIn(t, b, collector.NICConfig{})
	before := ipLinks(t, b)
	got := exposition(t, src)
	after := ipLinks(t, b)

	dropped, missed := `stormwatch_nic_receive_dropped_total{device="vb"}`, `stormwatch_nic_receive_missed_total{device="vb"}`
	lo, hi := before["vb"].Stats64.RX.Dropped, after["vb"].Stats64.RX.Dropped
	if v, ok := got[dropped]; !ok || v < float64(lo) || v > float64(hi) || v < frames {
		t.Errorf("%s = %v (%v); ip -s link says %d before and %d after, and %d frames were sent", dropped, v, ok, lo, hi, frames)
	}
	lo, hi = before["vb"].Stats64.RX.MissedErrors, after["vb"].Stats64.RX.MissedErrors
	if v, ok := got[missed]; !ok || v < float64(lo) || v > float64(hi) {
		t.Errorf("%s = %v (%v); ip -s link says %d before and %d after", missed, v, ok, lo, hi)
	}
	// The namespace holds vb and loopback: only vb is reported, and veth
	// has no allowance statistic, so it has no allowance series.
	ethtool := string(b.Run(t, "ethtool", "-S", "vb"))
	if !strings.Contains(ethtool, "NIC statistics:") || strings.Contains(ethtool, "allowance") {
		t.Fatalf("ethtool -S vb: want driver statistics without allowances:\n%s", ethtool)
	}
	if len(got) != 2 {
		t.Errorf("series %v, want only %s and %s", got, dropped, missed)
	}

	// Excluded by name: no series.
	if got := exposition(t, nicSourceIn(t, b, collector.NICConfig{Exclude: []string{"v*"}})); len(got) != 0 {
		t.Errorf("vb excluded, yet %v", got)
	}
}

// benchVeths is the number of veth interfaces of the benchmark namespace.
const benchVeths = 50

// BenchmarkNICSource measures the nic source's cost per cycle on a
// namespace holding benchVeths veth interfaces (benchVeths/2 pairs, both
// ends inside, up): "sample" is Sampler.Sample with the nic source alone
// (the link dump, two ethtool requests per interface, the table and the
// host sums, the Snapshot and its History entry), "scrape" the /metrics
// Gather of the resulting series. Needs root.
func BenchmarkNICSource(b *testing.B) {
	ns := nicNS(b)
	var batch strings.Builder
	for i := range benchVeths / 2 {
		fmt.Fprintf(&batch, "link add vx%d type veth peer name vy%d\nlink set vx%d up\nlink set vy%d up\n", i, i, i, i)
	}
	cmd := ns.Command(b.Context(), "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ip -batch: %v\n%s", err, out)
	}
	src := nicSourceIn(b, ns, collector.NICConfig{})
	s, err := collector.NewSampler(collector.DefaultSchema(), []collector.Source{src}, nil, collector.NewHistory(collector.Retention{}))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	ctx := context.Background()
	check := func(snap *collector.Snapshot) {
		if r, _ := snap.Source("nic"); !r.Success || snap.TableOf(collector.KindInterface).Len() != benchVeths {
			b.Fatalf("nic source: %+v, %d interfaces", r, snap.TableOf(collector.KindInterface).Len())
		}
	}
	check(s.Sample(ctx, now)) // first sight of each device: names read
	b.Run("sample", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(time.Second)
			s.Sample(ctx, now)
		}
		check(s.Latest())
		b.ReportMetric(benchVeths, "devices")
	})
	b.Run("scrape", func(b *testing.B) {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(metrics.NewExporter(collector.DefaultSchema(), s.Latest, metrics.BuildInfo{Version: "test"}))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

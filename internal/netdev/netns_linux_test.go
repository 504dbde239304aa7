package netdev_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/safchain/ethtool"

	"github.com/stormwatch/stormwatch/internal/netdev"
	"github.com/stormwatch/stormwatch/internal/netnstest"
)

const sent = 300

// vethWithTraffic returns two namespaces joined by a veth pair (va in a,
// vb in b) after sent UDP datagrams went from a to b. GRO and UDP GRO
// forwarding on vb make veth take its NAPI path, which counts packets in
// its driver statistics (rx_queue_0_xdp_packets).
func vethWithTraffic(t *testing.T) (a, b *netnstest.NS) {
	t.Helper()
	a, b = newNS(t), newNS(t)
	vethPair(t, a, b, "va", "vb", "10.213.0.1/24", "10.213.0.2/24")
	b.Run(t, "ethtool", "-K", "vb", "gro", "on", "rx-udp-gro-forwarding", "on")
	sendUDP(t, a, "10.213.0.2:9", sent)
	return a, b
}

// TestVethDriverStatsMatchEthtool reads a veth's driver statistics through
// the ioctl and checks them against ethtool(8) and safchain/ethtool run in
// the same namespace, each between two reads of ours.
func TestVethDriverStatsMatchEthtool(t *testing.T) {
	_, b := vethWithTraffic(t)
	r := openIn(t, b, netdev.Options{Loopback: true})

	devs, err := r.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(devs)
	tool := ethtoolS(t, b, "vb")
	var lib map[string]uint64
	if err := b.Do(func() error {
		e, err := ethtool.NewEthtool()
		if err != nil {
			return err
		}
		defer e.Close()
		lib, err = e.Stats("vb")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	devs, err = r.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d0, d1 := find(t, before, "vb"), find(t, devs, "vb")

	if d1.Driver != "veth" || d1.Kind != "veth" || !d1.HasDriverStats || d1.DriverErr != nil {
		t.Fatalf("vb: driver %q, kind %q, HasDriverStats %v, DriverErr %v", d1.Driver, d1.Kind, d1.HasDriverStats, d1.DriverErr)
	}
	if len(tool) != len(d1.DriverStats.Names) {
		t.Fatalf("%d statistics, ethtool -S shows %d", len(d1.DriverStats.Names), len(tool))
	}
	if len(lib) != len(tool) {
		t.Errorf("safchain/ethtool: %d statistics, ethtool -S %d", len(lib), len(tool))
	}
	for i, s := range tool {
		if n := d1.DriverStats.Names[i]; n != s.name {
			t.Errorf("statistic %d: %q, ethtool -S says %q", i, n, s.name)
			continue
		}
		lo, hi := d0.DriverStats.Values[i], d1.DriverStats.Values[i]
		if err := within(lo, s.value, hi); err != nil {
			t.Errorf("%s: ethtool -S %v", s.name, err)
		}
		if v, ok := lib[s.name]; !ok {
			t.Errorf("%s: missing from safchain/ethtool", s.name)
		} else if err := within(lo, v, hi); err != nil {
			t.Errorf("%s: safchain/ethtool %v", s.name, err)
		}
	}

	// The traffic shows, and veth is no ENA.
	xdp := value(t, d1, "rx_queue_0_xdp_packets")
	if xdp < sent || xdp > d1.Counters.RxPackets {
		t.Errorf("rx_queue_0_xdp_packets %d after %d datagrams, rx_packets %d", xdp, sent, d1.Counters.RxPackets)
	}
	if peer := value(t, d1, "peer_ifindex"); peer == 0 {
		t.Error("peer_ifindex 0")
	}
	for a, s := range d1.AllowanceExceeded {
		if s.Present {
			t.Errorf("veth reports the %v allowance", netdev.Allowance(a))
		}
	}
	if d1.ConntrackAllowanceAvailable.Present {
		t.Error("veth reports conntrack_allowance_available")
	}

	// Loopback has no driver statistics: not an error.
	if l := find(t, devs, "lo"); l.HasDriverStats || l.DriverErr != nil || l.Driver != "" || !l.Loopback || l.Kind != "" {
		t.Errorf("lo: %+v", l)
	}
}

// value returns d's named driver statistic.
func value(t *testing.T, d netdev.Device, name string) uint64 {
	t.Helper()
	for i, n := range d.DriverStats.Names {
		if n == name {
			return d.DriverStats.Values[i]
		}
	}
	t.Fatalf("%s has no statistic %s", d.Name, name)
	return 0
}

// ipLink is the part of "ip -s -s -j link show" compared.
type ipLink struct {
	IfIndex int    `json:"ifindex"`
	IfName  string `json:"ifname"`
	Stats64 struct {
		RX struct {
			Bytes        uint64 `json:"bytes"`
			Packets      uint64 `json:"packets"`
			Errors       uint64 `json:"errors"`
			Dropped      uint64 `json:"dropped"`
			FifoErrors   uint64 `json:"fifo_errors"`
			MissedErrors uint64 `json:"missed_errors"`
		} `json:"rx"`
		TX struct {
			Bytes   uint64 `json:"bytes"`
			Packets uint64 `json:"packets"`
			Errors  uint64 `json:"errors"`
			Dropped uint64 `json:"dropped"`
		} `json:"tx"`
	} `json:"stats64"`
}

// TestLinkCountersMatchIP checks the link dump's counters of every
// interface against ip(8) in the same namespace, between two reads.
func TestLinkCountersMatchIP(t *testing.T) {
	a, _ := vethWithTraffic(t)
	r := openIn(t, a, netdev.Options{Loopback: true, SkipDriverStats: true})
	devs, err := r.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(devs)
	var links []ipLink
	if err := json.Unmarshal(a.Run(t, "ip", "-s", "-s", "-j", "link", "show"), &links); err != nil {
		t.Fatal(err)
	}
	if devs, err = r.Read(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(links) != len(devs) {
		t.Fatalf("%d links, ip shows %d", len(devs), len(links))
	}
	for _, l := range links {
		d0, d1 := find(t, before, l.IfName), find(t, devs, l.IfName)
		if d1.Index != l.IfIndex || !d1.HasCounters {
			t.Errorf("%s: index %d (ip %d), HasCounters %v", l.IfName, d1.Index, l.IfIndex, d1.HasCounters)
		}
		for _, c := range []struct {
			name   string
			lo, hi uint64
			ip     uint64
		}{
			{"rx packets", d0.Counters.RxPackets, d1.Counters.RxPackets, l.Stats64.RX.Packets},
			{"rx bytes", d0.Counters.RxBytes, d1.Counters.RxBytes, l.Stats64.RX.Bytes},
			{"rx errors", d0.Counters.RxErrors, d1.Counters.RxErrors, l.Stats64.RX.Errors},
			{"rx dropped", d0.Counters.RxDropped, d1.Counters.RxDropped, l.Stats64.RX.Dropped},
			{"rx fifo", d0.Counters.RxFifoErrors, d1.Counters.RxFifoErrors, l.Stats64.RX.FifoErrors},
			{"rx missed", d0.Counters.RxMissedErrors, d1.Counters.RxMissedErrors, l.Stats64.RX.MissedErrors},
			{"tx packets", d0.Counters.TxPackets, d1.Counters.TxPackets, l.Stats64.TX.Packets},
			{"tx bytes", d0.Counters.TxBytes, d1.Counters.TxBytes, l.Stats64.TX.Bytes},
			{"tx errors", d0.Counters.TxErrors, d1.Counters.TxErrors, l.Stats64.TX.Errors},
			{"tx dropped", d0.Counters.TxDropped, d1.Counters.TxDropped, l.Stats64.TX.Dropped},
		} {
			if err := within(c.lo, c.ip, c.hi); err != nil {
				t.Errorf("%s %s: ip %v", l.IfName, c.name, err)
			}
		}
	}
	if va := find(t, devs, "va"); va.Counters.TxPackets < sent {
		t.Errorf("va sent %d packets, want at least the %d datagrams", va.Counters.TxPackets, sent)
	}
}

// The sockets Open makes stay in the namespace they were opened in: Read,
// here from a thread of the host's namespace, reads that namespace (dump
// and ioctl alike).
func TestReaderKeepsItsNamespace(t *testing.T) {
	_, b := vethWithTraffic(t)
	rb := openIn(t, b, netdev.Options{})
	// A deadline sets the dump's socket timeout; a later context without
	// one must not inherit it.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := rb.Read(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	devs, err := rb.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		names = append(names, d.Name)
		if !d.HasDriverStats || d.Driver != "veth" {
			t.Errorf("%s: driver %q, HasDriverStats %v, error %v", d.Name, d.Driver, d.HasDriverStats, d.DriverErr)
		}
	}
	if fmt.Sprint(names) != "[vb]" {
		t.Errorf("reader opened in the namespace sees %v, want [vb]", names)
	}
}

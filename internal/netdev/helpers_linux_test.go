package netdev_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/stormwatch/stormwatch/internal/netdev"
	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

// newNS returns a fresh network namespace with IPv6 off (no router
// solicitations, DAD or MLD reports moving counters behind a test's back)
// for a kernel test. It skips without root or the tools, in -short mode,
// and fails instead under CI (package testenv).
func newNS(tb testing.TB) *netnstest.NS {
	tb.Helper()
	testbin.RequireTools(tb, "ip", "ethtool", "sysctl")
	return netnstest.NewIPv4Only(tb)
}

// vethPair links aName in a to bName in b (a == b for both ends in one
// namespace), gives them the addresses (CIDR, may be empty) and brings
// them up. With addresses, a knows b's hardware address without asking
// (a permanent neighbour entry), so that every datagram a sends leaves at
// once rather than waiting in the ARP queue, which may drop some.
func vethPair(tb testing.TB, a, b *netnstest.NS, aName, bName, aAddr, bAddr string) {
	tb.Helper()
	a.Run(tb, "ip", "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.Name())
	for _, end := range []struct {
		ns         *netnstest.NS
		name, addr string
	}{{a, aName, aAddr}, {b, bName, bAddr}} {
		if end.addr != "" {
			end.ns.Run(tb, "ip", "addr", "add", end.addr, "dev", end.name)
		}
		end.ns.Run(tb, "ip", "link", "set", end.name, "up")
	}
	if bAddr != "" {
		var link []struct {
			Address string `json:"address"`
		}
		if err := json.Unmarshal(b.Run(tb, "ip", "-j", "link", "show", bName), &link); err != nil || len(link) != 1 {
			tb.Fatalf("ip -j link show %s: %v", bName, err)
		}
		ip, _, _ := strings.Cut(bAddr, "/")
		a.Run(tb, "ip", "neigh", "replace", ip, "lladdr", link[0].Address, "dev", aName, "nud", "permanent")
	}
}

// sendUDP sends n datagrams from inside ns to dst, from an unconnected
// socket (a connected one would fail a send after each ICMP port
// unreachable, and not send it).
func sendUDP(tb testing.TB, ns *netnstest.NS, dst string, n int) {
	tb.Helper()
	err := ns.Do(func() error {
		to, err := net.ResolveUDPAddr("udp4", dst)
		if err != nil {
			return err
		}
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		payload := bytes.Repeat([]byte("storm"), 40)
		for range n {
			if _, err := c.WriteToUDP(payload, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// openIn opens a netdev Reader inside ns.
func openIn(tb testing.TB, ns *netnstest.NS, opts netdev.Options) *netdev.Reader {
	tb.Helper()
	var r *netdev.Reader
	if err := ns.Do(func() error {
		var err error
		r, err = netdev.Open(opts)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// ethtoolStat is one line of "ethtool -S".
type ethtoolStat struct {
	name  string
	value uint64
}

// ethtoolS runs "ethtool -S dev" inside ns and parses its lines
// ("     name: value", after a "NIC statistics:" header).
func ethtoolS(tb testing.TB, ns *netnstest.NS, dev string) []ethtoolStat {
	tb.Helper()
	out := ns.Run(tb, "ethtool", "-S", dev)
	var stats []ethtoolStat
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "NIC statistics:" {
			continue
		}
		i := strings.LastIndex(line, ": ")
		if i < 0 {
			tb.Fatalf("ethtool -S %s: unexpected line %q", dev, line)
		}
		v, err := strconv.ParseUint(line[i+2:], 10, 64)
		if err != nil {
			tb.Fatalf("ethtool -S %s: line %q: %v", dev, line, err)
		}
		stats = append(stats, ethtoolStat{strings.TrimLeft(line[:i], " "), v})
	}
	return stats
}

// find returns the device named name.
func find(tb testing.TB, devs []netdev.Device, name string) netdev.Device {
	tb.Helper()
	for _, d := range devs {
		if d.Name == name {
			return d
		}
	}
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	tb.Fatalf("no device %s among %v", name, names)
	return netdev.Device{}
}

// snapshot copies what a Read returned, whose slices the next Read reuses.
func snapshot(devs []netdev.Device) []netdev.Device {
	out := make([]netdev.Device, len(devs))
	for i, d := range devs {
		d.DriverStats.Values = append([]uint64(nil), d.DriverStats.Values...)
		out[i] = d
	}
	return out
}

// within reports whether got lies between two reads of a counter.
func within(lo, got, hi uint64) error {
	if got < lo || got > hi {
		return fmt.Errorf("%d, outside [%d, %d] read around it", got, lo, hi)
	}
	return nil
}

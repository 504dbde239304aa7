package collector

import (
	"errors"
	"math"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stormwatch/stormwatch/internal/netdev"
	"github.com/stormwatch/stormwatch/internal/netdev/netdevtest"
)

var (
	nicLo    = netdev.Link{Name: "lo", Index: 1, Loopback: true, HasCounters: true, Counters: netdev.Counters{RxPackets: 99, RxDropped: 99}}
	nicEns5  = netdev.Link{Name: "ens5", Index: 2, HasCounters: true, Counters: netdev.Counters{RxPackets: 1e6, TxPackets: 9e5, RxDropped: 17, RxMissedErrors: 4}}
	nicEns6  = netdev.Link{Name: "ens6", Index: 3, HasCounters: true, Counters: netdev.Counters{RxPackets: 2e5, RxDropped: 3}}
	nicVeth  = netdev.Link{Name: "veth0", Index: 4, Kind: "veth", HasCounters: true, Counters: netdev.Counters{RxPackets: 300}}
	nicVirt  = netdev.Link{Name: "eth0", Index: 5, HasCounters: true, Counters: netdev.Counters{RxPackets: 5000, RxMissedErrors: 1}}
	nicBare  = netdev.Link{Name: "dummy0", Index: 6, Kind: "dummy", HasCounters: true} // no driver statistics at all
	nicNoCnt = netdev.Link{Name: "tun0", Index: 7, Kind: "tun"}                        // the dump carried no statistics
)

// nicFakeHost is a host with an ENA device of each generation, a veth, a
// virtio_net device, a device without driver statistics and loopback.
func nicFakeHost() *netdevtest.Kernel {
	return &netdevtest.Kernel{
		Dump: []netdev.Link{nicLo, nicEns5, nicEns6, nicVeth, nicVirt, nicBare, nicNoCnt},
		Stats: map[string]netdevtest.Recording{
			"ens5":  netdevtest.MustLoad("ena-2.8.1"),
			"ens6":  netdevtest.MustLoad("ena-2.7.4"),
			"veth0": netdevtest.MustLoad("veth-6.18"),
			"eth0":  netdevtest.MustLoad("virtio_net-6.18"),
		},
	}
}

func newTestNICSource(t testing.TB, cfg NICConfig) *nicSource {
	t.Helper()
	src, err := newNICSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// interfaceValues returns every value of every interface of s, by device
// and value name; NaN for no data.
func interfaceValues(s *Snapshot) map[string]map[string]float64 {
	t := s.TableOf(KindInterface)
	if t == nil {
		return nil
	}
	out := map[string]map[string]float64{}
	for row := range t.Len() {
		m := map[string]float64{}
		for _, ref := range s.Schema().Values(KindInterface) {
			m[ref.Name] = t.Value(row, ref.Slot)
		}
		out[t.Labels(row)[0]] = m
	}
	return out
}

// TestNICSource reads a fake host's interfaces through the source: the
// ENA allowances by meaning where the driver has them, no data (never
// zero) where it does not, loopback left out.
func TestNICSource(t *testing.T) {
	src := newTestNICSource(t, NICConfig{Kernel: nicFakeHost()})
	snap := sampleOnce(t, time.Unix(1, 0), src)
	r, _ := snap.Source("nic")
	if !r.Success {
		t.Fatalf("nic source: %+v", r)
	}
	nan := math.NaN()
	std := func(c netdev.Counters) map[string]float64 {
		return map[string]float64{
			"receive_packets": float64(c.RxPackets), "transmit_packets": float64(c.TxPackets),
			"receive_dropped": float64(c.RxDropped), "receive_missed": float64(c.RxMissedErrors),
			"bw_in_allowance_exceeded": nan, "bw_out_allowance_exceeded": nan, "pps_allowance_exceeded": nan,
			"conntrack_allowance_exceeded": nan, "linklocal_allowance_exceeded": nan,
			"conntrack_allowance_available": nan, "conntrack_allowance_excess": nan,
		}
	}
	with := func(m map[string]float64, kv ...any) map[string]float64 {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(float64)
		}
		return m
	}
	want := map[string]map[string]float64{
		// ENA 2.8.1: all five allowances and the conntrack headroom.
		"ens5": with(std(nicEns5.Counters),
			"bw_in_allowance_exceeded", 0.0, "bw_out_allowance_exceeded", 0.0, "pps_allowance_exceeded", 1893.0,
			"conntrack_allowance_exceeded", 4410.0, "linklocal_allowance_exceeded", 0.0,
			"conntrack_allowance_available", 231.0, "conntrack_allowance_excess", -231.0),
		// ENA 2.7.4: the allowances, no headroom gauge.
		"ens6": with(std(nicEns6.Counters),
			"bw_in_allowance_exceeded", 0.0, "bw_out_allowance_exceeded", 12.0, "pps_allowance_exceeded", 3571.0,
			"conntrack_allowance_exceeded", 0.0, "linklocal_allowance_exceeded", 0.0),
		// Drivers without the allowances: the standard counters only.
		"veth0":  std(nicVeth.Counters),
		"eth0":   std(nicVirt.Counters),
		"dummy0": std(nicBare.Counters),
		// A link dumped without statistics: in the table, with no data.
		"tun0": with(std(nicNoCnt.Counters), "receive_packets", nan, "transmit_packets", nan, "receive_dropped", nan, "receive_missed", nan),
	}
	if diff := cmp.Diff(want, interfaceValues(snap), cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("interfaces (-want +got):\n%s", diff)
	}
	// The host sums start at the kernel's on the first read.
	if diff := cmp.Diff(map[string]float64{"nic_receive_dropped": 17 + 3, "nic_receive_missed": 4 + 1},
		values(snap, "nic_receive_dropped", "nic_receive_missed")); diff != "" {
		t.Errorf("host sums (-want +got):\n%s", diff)
	}
}

// TestNICSourceFilters: include and exclude patterns pick interfaces by
// name, exclude winning; loopback stays out whatever they say; a bad
// pattern is refused when the sources are made, naming it.
func TestNICSourceFilters(t *testing.T) {
	tests := []struct {
		include, exclude []string
		want             []string
	}{
		{nil, nil, []string{"dummy0", "ens5", "ens6", "eth0", "tun0", "veth0"}},
		{[]string{"ens*", "eth[0-9]"}, nil, []string{"ens5", "ens6", "eth0"}},
		{[]string{"ens*"}, []string{"ens6"}, []string{"ens5"}},
		{nil, []string{"veth*", "tun*", "dummy*"}, []string{"ens5", "ens6", "eth0"}},
		{[]string{"lo"}, nil, nil},
	}
	for _, tt := range tests {
		src := newTestNICSource(t, NICConfig{Include: tt.include, Exclude: tt.exclude, Kernel: nicFakeHost()})
		snap := sampleOnce(t, time.Unix(1, 0), src)
		var got []string
		tab := snap.TableOf(KindInterface)
		if tab == nil {
			t.Fatalf("include %q exclude %q: no interface table", tt.include, tt.exclude)
		}
		for row := range tab.Len() {
			got = append(got, tab.Labels(row)[0])
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("include %q exclude %q (-want +got):\n%s", tt.include, tt.exclude, diff)
		}
	}

	_, err := NewSources(Config{Root: "../testdata/linux-6.18", NIC: NICConfig{Exclude: []string{"veth*", "eth[0-"}, Kernel: nicFakeHost()}})
	if !errors.Is(err, netdev.ErrBadOption) || !strings.Contains(err.Error(), `nic: netdev: invalid option: Exclude: interface name pattern "eth[0-"`) {
		t.Errorf("bad pattern: %v", err)
	}
}

// TestNICSourceTotals: the host sums only grow, whatever the interfaces
// do.
func TestNICSourceTotals(t *testing.T) {
	k := &netdevtest.Kernel{Dump: []netdev.Link{nicEns5, nicEns6}}
	src := newTestNICSource(t, NICConfig{Kernel: k})
	link := func(l netdev.Link, dropped, missed uint64) netdev.Link {
		l.Counters.RxDropped, l.Counters.RxMissedErrors = dropped, missed
		return l
	}
	eth9 := netdev.Link{Name: "eth9", Index: 9, HasCounters: true}
	steps := []struct {
		what            string
		dump            []netdev.Link
		dropped, missed float64
	}{
		{"first read: the kernel's sums", []netdev.Link{link(nicEns5, 10, 1), link(nicEns6, 5, 0)}, 15, 1},
		{"both rise", []netdev.Link{link(nicEns5, 12, 1), link(nicEns6, 8, 2)}, 20, 3},
		{"an interface appears with old drops: baseline only", []netdev.Link{link(nicEns5, 12, 1), link(nicEns6, 8, 2), link(eth9, 1000, 50)}, 20, 3},
		{"it rises", []netdev.Link{link(nicEns5, 12, 1), link(nicEns6, 8, 2), link(eth9, 1001, 50)}, 21, 3},
		{"ens6 vanishes: nothing taken back", []netdev.Link{link(nicEns5, 13, 1), link(eth9, 1001, 50)}, 22, 3},
		{"eth9's counters restart: the new value is the rise", []netdev.Link{link(nicEns5, 13, 1), link(eth9, 4, 0)}, 26, 3},
		{"ens6 comes back under its index: a new baseline", []netdev.Link{link(nicEns5, 13, 1), link(eth9, 4, 0), link(nicEns6, 700, 7)}, 26, 3},
		{"eth9's index now names another device: a new baseline", []netdev.Link{link(nicEns5, 13, 1), link(nicEns6, 700, 9), {Name: "eth10", Index: 9, HasCounters: true, Counters: netdev.Counters{RxDropped: 77}}}, 26, 5},
	}
	for i, st := range steps {
		k.Set(func(k *netdevtest.Kernel) { k.Dump = st.dump })
		snap := sampleOnce(t, time.Unix(int64(i), 0), src)
		got := values(snap, "nic_receive_dropped", "nic_receive_missed")
		if diff := cmp.Diff(map[string]float64{"nic_receive_dropped": st.dropped, "nic_receive_missed": st.missed}, got); diff != "" {
			t.Errorf("step %d (%s) (-want +got):\n%s", i, st.what, diff)
		}
	}
}

// TestNICSourceFailures: a failed link dump is no data at all and fails
// the source; a device whose driver statistics fail keeps its standard
// counters, and the source says which device failed.
func TestNICSourceFailures(t *testing.T) {
	k := nicFakeHost()
	src := newTestNICSource(t, NICConfig{Kernel: k})

	k.Set(func(k *netdevtest.Kernel) { k.DumpErr = syscall.ENOBUFS })
	snap := sampleOnce(t, time.Unix(1, 0), src)
	if r, _ := snap.Source("nic"); r.Success || !errors.Is(r.Err, syscall.ENOBUFS) {
		t.Errorf("failed dump: %+v", r)
	}
	if tab := snap.TableOf(KindInterface); tab != nil {
		t.Errorf("failed dump: %d interfaces delivered, want no table", tab.Len())
	}
	if v := snap.Get("nic_receive_dropped"); !math.IsNaN(v) {
		t.Errorf("failed dump: nic_receive_dropped %v, want no data", v)
	}

	k.Set(func(k *netdevtest.Kernel) {
		k.DumpErr = nil
		k.Errs = map[string]error{"ens5": syscall.EIO}
	})
	snap = sampleOnce(t, time.Unix(2, 0), src)
	r, _ := snap.Source("nic")
	if r.Success || !errors.Is(r.Err, netdev.ErrDriverStats) || !strings.Contains(r.Err.Error(), "ens5") {
		t.Errorf("driver statistics failing on ens5: %+v", r)
	}
	got := interfaceValues(snap)
	if ens5 := got["ens5"]; ens5["receive_dropped"] != 17 || !math.IsNaN(ens5["pps_allowance_exceeded"]) {
		t.Errorf("ens5 after its driver statistics failed: %v, want its standard counters and no allowances", ens5)
	}
	if ens6 := got["ens6"]; ens6["pps_allowance_exceeded"] != 3571 {
		t.Errorf("ens6 beside a failing ens5: %v", ens6)
	}

	if err := src.Close(); err != nil || !k.Closed {
		t.Errorf("Close: %v, kernel closed %v", err, k.Closed)
	}
}

// TestNICSourceAllowanceCycle follows one device from cycle to cycle: an
// allowance counter that grows is read anew each cycle, by position after
// the first read.
func TestNICSourceAllowanceCycle(t *testing.T) {
	rec := netdevtest.MustLoad("ena-2.8.1")
	k := &netdevtest.Kernel{Dump: []netdev.Link{nicEns5}, Stats: map[string]netdevtest.Recording{"ens5": rec}}
	src := newTestNICSource(t, NICConfig{Kernel: k})
	for i, v := range []uint64{1893, 2100, 2100, 9000} {
		k.Set(func(k *netdevtest.Kernel) {
			k.Stats["ens5"] = rec.With("pps_allowance_exceeded", v).With("conntrack_allowance_available", 231-uint64(i))
		})
		got := interfaceValues(sampleOnce(t, time.Unix(int64(i), 0), src))["ens5"]
		if got["pps_allowance_exceeded"] != float64(v) || got["conntrack_allowance_available"] != float64(231-i) {
			t.Errorf("cycle %d: pps %v available %v, want %d and %d", i, got["pps_allowance_exceeded"], got["conntrack_allowance_available"], v, 231-i)
		}
	}
	if k.NamesCalls != 1 {
		t.Errorf("statistic names read %d times in 4 cycles, want once", k.NamesCalls)
	}
}

// TestNICDeclaration: the allowances are one metric family, labelled by
// the allowance's name in netdev.
func TestNICDeclaration(t *testing.T) {
	for a := range netdev.NumAllowances {
		v := nicDecl.Values[nicExceeded+int(a)]
		if v.Name != a.StatName() || v.Metric != "nic_allowance_exceeded_total" ||
			!cmp.Equal(v.MetricLabels, []string{"allowance", a.String()}) || v.Kind != Counter || v.Entity != KindInterface {
			t.Errorf("allowance %v: %+v", a, v)
		}
	}
	for i, v := range nicDecl.Values {
		if v.Name == "" {
			t.Errorf("value %d not declared", i)
		}
	}
}

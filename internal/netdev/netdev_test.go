package netdev_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/internal/netdev"
	"github.com/stormwatch/stormwatch/internal/netdev/netdevtest"
)

var (
	lo    = netdev.Link{Name: "lo", Index: 1, Loopback: true, HasCounters: true}
	ens5  = netdev.Link{Name: "ens5", Index: 2, HasCounters: true, Counters: netdev.Counters{RxPackets: 1e6, RxDropped: 17, RxMissedErrors: 4}}
	ens6  = netdev.Link{Name: "ens6", Index: 3, HasCounters: true}
	veth0 = netdev.Link{Name: "veth0", Index: 4, Kind: "veth", HasCounters: true}
)

// fakeHost is a host with an ENA device of each generation, a veth and
// loopback.
func fakeHost() *netdevtest.Kernel {
	return &netdevtest.Kernel{
		Dump: []netdev.Link{lo, ens5, ens6, veth0},
		Stats: map[string]netdevtest.Recording{
			"ens5":  netdevtest.MustLoad("ena-2.8.1"),
			"ens6":  netdevtest.MustLoad("ena-2.7.4"),
			"veth0": netdevtest.MustLoad("veth-6.18"),
		},
	}
}

func open(t *testing.T, opts netdev.Options) *netdev.Reader {
	t.Helper()
	r, err := netdev.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func read(t *testing.T, r *netdev.Reader) []netdev.Device {
	t.Helper()
	devs, err := r.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return devs
}

func present(v uint64) netdev.Stat { return netdev.Stat{Value: v, Present: true} }

// TestENARecordings reads the ENA driver's statistics, recorded in the
// ioctl's format, through the same parsing and mapping as a live read.
func TestENARecordings(t *testing.T) {
	r := open(t, netdev.Options{Kernel: fakeHost()})
	devs := read(t, r)

	type ena struct {
		Driver    string
		Exceeded  [netdev.NumAllowances]netdev.Stat
		Available netdev.Stat
		Stats     int
	}
	got := map[string]ena{}
	for _, d := range devs {
		if !d.HasDriverStats || d.DriverErr != nil {
			t.Fatalf("%s: HasDriverStats %v, DriverErr %v", d.Name, d.HasDriverStats, d.DriverErr)
		}
		got[d.Name] = ena{d.Driver, d.AllowanceExceeded, d.ConntrackAllowanceAvailable, len(d.DriverStats.Values)}
	}
	want := map[string]ena{
		// 2.8.1 on Nitro: all six.
		"ens5": {"ena", [netdev.NumAllowances]netdev.Stat{
			netdev.BWIn: present(0), netdev.BWOut: present(0), netdev.PPS: present(1893),
			netdev.Conntrack: present(4410), netdev.Linklocal: present(0),
		}, present(231), 101},
		// 2.7.4: no conntrack_allowance_available.
		"ens6": {"ena", [netdev.NumAllowances]netdev.Stat{
			netdev.BWIn: present(0), netdev.BWOut: present(12), netdev.PPS: present(3571),
			netdev.Conntrack: present(0), netdev.Linklocal: present(0),
		}, netdev.Stat{}, 99},
		// veth: driver statistics, none of ENA's.
		"veth0": {"veth", [netdev.NumAllowances]netdev.Stat{}, netdev.Stat{}, 10},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if d := find(t, devs, "ens5"); d.Counters != ens5.Counters || d.Kind != "" || d.Index != 2 {
		t.Errorf("ens5 link data: %+v", d.Link)
	}
}

// TestENASequence follows one device over cycles: counters move, the names
// are parsed once, and a driver upgrade (another string set) is noticed.
func TestENASequence(t *testing.T) {
	k := &netdevtest.Kernel{Dump: []netdev.Link{ens5}, Stats: map[string]netdevtest.Recording{"ens5": netdevtest.MustLoad("ena-2.7.4")}}
	r := open(t, netdev.Options{Kernel: k})

	first := find(t, read(t, r), "ens5")
	names := first.DriverStats.Names
	if first.AllowanceExceeded[netdev.PPS] != present(3571) || first.ConntrackAllowanceAvailable.Present {
		t.Fatalf("cycle 1: pps %+v, available %+v", first.AllowanceExceeded[netdev.PPS], first.ConntrackAllowanceAvailable)
	}

	k.Set(func(k *netdevtest.Kernel) {
		k.Stats["ens5"] = k.Stats["ens5"].With("pps_allowance_exceeded", 3700).With("bw_in_allowance_exceeded", 2)
	})
	second := find(t, read(t, r), "ens5")
	if second.AllowanceExceeded[netdev.PPS] != present(3700) || second.AllowanceExceeded[netdev.BWIn] != present(2) {
		t.Errorf("cycle 2: pps %+v, bw_in %+v; want 3700, 2", second.AllowanceExceeded[netdev.PPS], second.AllowanceExceeded[netdev.BWIn])
	}
	if &second.DriverStats.Names[0] != &names[0] {
		t.Error("cycle 2: names parsed again although the driver's set did not change")
	}

	// The driver is upgraded: conntrack_allowance_available appears.
	k.Set(func(k *netdevtest.Kernel) { k.Stats["ens5"] = netdevtest.MustLoad("ena-2.8.1") })
	third := find(t, read(t, r), "ens5")
	if third.ConntrackAllowanceAvailable != present(231) || third.AllowanceExceeded[netdev.Conntrack] != present(4410) {
		t.Errorf("cycle 3 (2.8.1): available %+v, conntrack %+v", third.ConntrackAllowanceAvailable, third.AllowanceExceeded[netdev.Conntrack])
	}
	if len(names) != 99 || names[11] != "linklocal_allowance_exceeded" {
		t.Errorf("the names a previous Read returned changed: %d names, [11] %q", len(names), names[11])
	}
}

// TestNamesRead: names are read on first sight, when the count of
// statistics changes, and every NamesMaxAge Reads; a rename in place is
// noticed then.
func TestNamesRead(t *testing.T) {
	rec, err := netdevtest.New("x", []string{"a", "b"}, []uint64{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	k := &netdevtest.Kernel{Dump: []netdev.Link{ens5}, Stats: map[string]netdevtest.Recording{"ens5": rec}}
	r := open(t, netdev.Options{Kernel: k})
	for range 10 {
		read(t, r)
	}
	if k.DriverStatsCalls != 10 || k.NamesCalls != 1 {
		t.Fatalf("10 Reads: %d requests, %d for names; want 10, 1", k.DriverStatsCalls, k.NamesCalls)
	}

	// A count change: the names are read in the same Read.
	grown, err := netdevtest.New("x", []string{"a", "b", "pps_allowance_exceeded"}, []uint64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	k.Set(func(k *netdevtest.Kernel) { k.Stats["ens5"] = grown })
	if d := read(t, r)[0]; d.AllowanceExceeded[netdev.PPS] != present(3) || len(d.DriverStats.Names) != 3 {
		t.Fatalf("after the count changed: %v, pps %+v", d.DriverStats.Names, d.AllowanceExceeded[netdev.PPS])
	}
	if k.NamesCalls != 2 {
		t.Fatalf("names read %d times, want 2", k.NamesCalls)
	}

	// A rename in place (same count) shows within NamesMaxAge Reads.
	renamed, err := netdevtest.New("x", []string{"a", "pps_allowance_exceeded", "b"}, []uint64{1, 3, 2})
	if err != nil {
		t.Fatal(err)
	}
	k.Set(func(k *netdevtest.Kernel) { k.Stats["ens5"] = renamed })
	var reads int
	for reads = 1; reads <= netdev.NamesMaxAge; reads++ {
		if d := read(t, r)[0]; d.DriverStats.Names[1] == "pps_allowance_exceeded" {
			if d.AllowanceExceeded[netdev.PPS] != present(3) {
				t.Fatalf("renamed set read, pps %+v", d.AllowanceExceeded[netdev.PPS])
			}
			break
		}
	}
	if reads > netdev.NamesMaxAge {
		t.Fatalf("a rename in place not noticed within %d Reads", netdev.NamesMaxAge)
	}
}

// TestReadSteadyStateAllocs: once a device's names are known, a Read
// allocates nothing, whatever the number of statistics.
func TestReadSteadyStateAllocs(t *testing.T) {
	r := open(t, netdev.Options{Kernel: fakeHost()})
	read(t, r)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := r.Read(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Read of 3 devices with 210 driver statistics, want 0", allocs)
	}
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name string
		opts netdev.Options
		want []string
	}{
		{"default: all but loopback", netdev.Options{}, []string{"ens5", "ens6", "veth0"}},
		{"loopback kept", netdev.Options{Loopback: true}, []string{"lo", "ens5", "ens6", "veth0"}},
		{"include", netdev.Options{Include: []string{"ens*"}}, []string{"ens5", "ens6"}},
		{"include does not bring loopback back", netdev.Options{Include: []string{"lo", "veth?"}}, []string{"veth0"}},
		{"exclude", netdev.Options{Exclude: []string{"veth*"}}, []string{"ens5", "ens6"}},
		{"exclude wins", netdev.Options{Include: []string{"ens[0-9]"}, Exclude: []string{"ens6"}}, []string{"ens5"}},
		{"nothing", netdev.Options{Include: []string{"eth*"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Kernel = fakeHost()
			var got []string
			for _, d := range read(t, open(t, tt.opts)) {
				got = append(got, d.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenBadOptions(t *testing.T) {
	tests := []struct {
		opts netdev.Options
		want string
	}{
		{netdev.Options{Include: []string{"eth["}}, `Include: interface name pattern "eth[": syntax error in pattern`},
		{netdev.Options{Exclude: []string{"ok*", "a\\"}}, `Exclude: interface name pattern "a\\"`},
		{netdev.Options{Exclude: []string{""}}, "Exclude: empty interface name pattern"},
	}
	for _, tt := range tests {
		tt.opts.Kernel = fakeHost()
		_, err := netdev.Open(tt.opts)
		if !errors.Is(err, netdev.ErrBadOption) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%+v) = %v, want ErrBadOption saying %q", tt.opts, err, tt.want)
		}
	}
}

func TestDriverStatsErrors(t *testing.T) {
	k := fakeHost()
	k.Errs = map[string]error{
		"ens5":  syscall.EIO,
		"veth0": netdev.ErrNoDevice, // gone since the dump: no data, no error
	}
	r := open(t, netdev.Options{Kernel: k, Loopback: true})
	devs, err := r.Read(t.Context())
	if !errors.Is(err, netdev.ErrDriverStats) || !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "ens5") {
		t.Fatalf("Read error = %v, want one naming ens5 and wrapping ErrDriverStats and EIO", err)
	}
	if len(devs) != 4 {
		t.Fatalf("%d devices, want all 4 despite the error", len(devs))
	}
	for _, d := range devs {
		wantErr := d.Name == "ens5"
		wantStats := d.Name == "ens6"
		if (d.DriverErr != nil) != wantErr || d.HasDriverStats != wantStats {
			t.Errorf("%s: DriverErr %v, HasDriverStats %v", d.Name, d.DriverErr, d.HasDriverStats)
		}
		if !d.HasCounters {
			t.Errorf("%s: standard counters lost", d.Name)
		}
	}
	if d := find(t, devs, "lo"); d.Driver != "" || d.DriverErr != nil {
		t.Errorf("loopback: driver %q, error %v; want none, no error", d.Driver, d.DriverErr)
	}
}

// statsChanged fails DriverStats with ErrStatsChanged a number of times.
type statsChanged struct {
	*netdevtest.Kernel
	left int
}

func (s *statsChanged) DriverStats(ifname string, withNames bool) ([]byte, []uint64, error) {
	if s.left > 0 {
		s.left--
		return nil, nil, netdev.ErrStatsChanged
	}
	return s.Kernel.DriverStats(ifname, withNames)
}

func TestStatsChangedRetried(t *testing.T) {
	k := &statsChanged{Kernel: &netdevtest.Kernel{Dump: []netdev.Link{ens5}, Stats: map[string]netdevtest.Recording{"ens5": netdevtest.MustLoad("ena-2.8.1")}}, left: 1}
	r := open(t, netdev.Options{Kernel: k})
	if d := read(t, r)[0]; !d.HasDriverStats {
		t.Error("a set that changed once was not read again")
	}
	k.left = 2
	devs, err := r.Read(t.Context())
	if !errors.Is(err, netdev.ErrStatsChanged) || devs[0].HasDriverStats {
		t.Errorf("a set changing twice: error %v, HasDriverStats %v", err, devs[0].HasDriverStats)
	}
}

func TestMismatchedStats(t *testing.T) {
	rec := netdevtest.MustLoad("veth-6.18")
	rec.Values = rec.Values[:9]
	k := &netdevtest.Kernel{Dump: []netdev.Link{veth0}, Stats: map[string]netdevtest.Recording{"veth0": rec}}
	_, err := open(t, netdev.Options{Kernel: k}).Read(t.Context())
	if !errors.Is(err, netdev.ErrDriverStats) || !strings.Contains(err.Error(), "320 bytes of names for 9 values") {
		t.Errorf("error = %v", err)
	}
}

func TestSkipDriverStats(t *testing.T) {
	k := fakeHost()
	for _, d := range read(t, open(t, netdev.Options{Kernel: k, SkipDriverStats: true})) {
		if d.HasDriverStats || d.Driver != "" {
			t.Errorf("%s: driver %q, HasDriverStats %v with SkipDriverStats", d.Name, d.Driver, d.HasDriverStats)
		}
	}
	if k.DriverStatsCalls != 0 {
		t.Errorf("%d ethtool requests with SkipDriverStats", k.DriverStatsCalls)
	}
}

func TestDumpErrorAndClose(t *testing.T) {
	k := fakeHost()
	k.DumpErr = syscall.ENOBUFS
	r, err := netdev.Open(netdev.Options{Kernel: k})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := r.Read(t.Context())
	if devs != nil || !errors.Is(err, syscall.ENOBUFS) || !strings.Contains(err.Error(), "rtnetlink link dump") {
		t.Errorf("Read = %d devices, %v; want none and the dump's error", len(devs), err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := r.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Read with a cancelled context = %v", err)
	}
	if err := r.Close(); err != nil || !k.Closed {
		t.Errorf("Close = %v, kernel closed %v", err, k.Closed)
	}
	if _, err := r.Read(t.Context()); !errors.Is(err, netdev.ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// A new device under an index seen before gets its own driver name.
func TestIndexReused(t *testing.T) {
	k := fakeHost()
	r := open(t, netdev.Options{Kernel: k})
	if d := find(t, read(t, r), "veth0"); d.Driver != "veth" {
		t.Fatalf("driver %q", d.Driver)
	}
	k.Set(func(k *netdevtest.Kernel) {
		k.Dump = []netdev.Link{{Name: "ens9", Index: veth0.Index, HasCounters: true}}
		k.Stats = map[string]netdevtest.Recording{"ens9": netdevtest.MustLoad("ena-2.8.1")}
	})
	if d := find(t, read(t, r), "ens9"); d.Driver != "ena" || !d.ConntrackAllowanceAvailable.Present {
		t.Errorf("ens9 under index %d: driver %q, available %+v", veth0.Index, d.Driver, d.ConntrackAllowanceAvailable)
	}
}

func TestAllowanceNames(t *testing.T) {
	// The label values are a contract (DESIGN.md, metric
	// stormwatch_nic_allowance_exceeded_total).
	var labels, stats []string
	for a := range netdev.NumAllowances {
		labels = append(labels, a.String())
		stats = append(stats, a.StatName())
		if a.Describe() == "" {
			t.Errorf("%v: no description", a)
		}
	}
	if diff := cmp.Diff([]string{"bw_in", "bw_out", "pps", "conntrack", "linklocal"}, labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	want := []string{"bw_in_allowance_exceeded", "bw_out_allowance_exceeded", "pps_allowance_exceeded",
		"conntrack_allowance_exceeded", "linklocal_allowance_exceeded"}
	if diff := cmp.Diff(want, stats); diff != "" {
		t.Errorf("statistic names (-want +got):\n%s", diff)
	}
	if s := netdev.Allowance(99).String(); s != "unknown" {
		t.Errorf("Allowance(99) = %q", s)
	}
}

package netdevtest_test

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/internal/netdev"
	"github.com/stormwatch/stormwatch/internal/netdev/netdevtest"
)

var recordings = []struct {
	name, driver string
	stats        int
}{
	{"veth-6.18", "veth", 10},
	{"virtio_net-6.18", "virtio_net", 20},
	{"ena-2.7.4", "ena", 99},
	{"ena-2.8.1", "ena", 101},
}

// Each recording decodes to what its .txt shows, which is "ethtool -S".
func TestRecordings(t *testing.T) {
	for _, r := range recordings {
		t.Run(r.name, func(t *testing.T) {
			rec, err := netdevtest.Load(r.name)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Driver != r.driver || len(rec.Values) != r.stats {
				t.Errorf("driver %q, %d statistics; want %q, %d", rec.Driver, len(rec.Values), r.driver, r.stats)
			}
			txt, err := os.ReadFile("ethtool/" + r.name + ".txt")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(txt), rec.String()); diff != "" {
				t.Errorf("(-%s.txt +decoded):\n%s", r.name, diff)
			}
			s, v := rec.Encode()
			again, err := netdevtest.Decode(rec.Driver, s, v)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(rec, again); diff != "" {
				t.Errorf("Encode/Decode round trip (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := netdevtest.Load("no-such-driver-1.0"); err == nil {
		t.Error("Load of a missing recording: no error")
	}
}

func TestNewWithValue(t *testing.T) {
	rec, err := netdevtest.New("ena", []string{"pps_allowance_exceeded", "queue_0_tx_cnt"}, []uint64{7, 9})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Names) != 2*netdev.GStringLen {
		t.Errorf("%d bytes of names, want %d", len(rec.Names), 2*netdev.GStringLen)
	}
	next := rec.With("pps_allowance_exceeded", 8)
	if v, _ := rec.Value("pps_allowance_exceeded"); v != 7 {
		t.Errorf("With changed the original: %d", v)
	}
	if v, ok := next.Value("pps_allowance_exceeded"); !ok || v != 8 {
		t.Errorf("With: %d %v, want 8 true", v, ok)
	}
	if _, ok := next.Value("bw_in_allowance_exceeded"); ok {
		t.Error("Value of an absent statistic reported present")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("With of an absent statistic did not panic")
			}
		}()
		rec.With("conntrack_allowance_available", 1)
	}()
	if _, err := netdevtest.New("x", []string{"a"}, nil); err == nil {
		t.Error("New with more names than values: no error")
	}
	if _, err := netdevtest.New("x", []string{"this_name_is_far_too_long_for_the_set"}, []uint64{1}); err == nil {
		t.Error("New with a 37-byte name: no error")
	}
	if _, err := netdevtest.Decode("x", make([]byte, 33), make([]byte, 8)); err == nil {
		t.Error("Decode of a partial name: no error")
	}
}

func TestKernel(t *testing.T) {
	k := &netdevtest.Kernel{Stats: map[string]netdevtest.Recording{"eth0": netdevtest.MustLoad("ena-2.8.1")}}
	if _, _, err := k.DriverStats("lo", true); !errors.Is(err, netdev.ErrNoDriverStats) {
		t.Errorf("DriverStats of a device without a recording = %v, want ErrNoDriverStats", err)
	}
	if d, err := k.DriverName("eth0"); err != nil || d != "ena" {
		t.Errorf("DriverName = %q, %v", d, err)
	}
	names, values, err := k.DriverStats("eth0", true)
	if err != nil || len(names) != 101*netdev.GStringLen || len(values) != 101 {
		t.Errorf("DriverStats: %d bytes, %d values, %v", len(names), len(values), err)
	}
	names, values, err = k.DriverStats("eth0", false)
	if err != nil || names != nil || len(values) != 101 || k.NamesCalls != 2 || k.DriverStatsCalls != 3 { // lo counts too
		t.Errorf("DriverStats without names: %d bytes, %d values, %v; %d calls, %d for names", len(names), len(values), err, k.DriverStatsCalls, k.NamesCalls)
	}
}

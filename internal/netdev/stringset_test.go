package netdev

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseStringSet(t *testing.T) {
	set := make([]byte, 3*GStringLen)
	copy(set, "peer_ifindex")
	copy(set[GStringLen:], strings.Repeat("x", GStringLen)) // fills its slot: no NUL
	// The third slot is empty.
	got, err := parseStringSet(set)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"peer_ifindex", strings.Repeat("x", GStringLen), ""}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := parseStringSet(make([]byte, GStringLen+1)); err == nil {
		t.Error("a partial name: no error")
	}
	if got, err := parseStringSet(nil); err != nil || len(got) != 0 {
		t.Errorf("empty set: %v, %v", got, err)
	}
}

func TestIndexENA(t *testing.T) {
	x := indexENA([]string{"tx_timeout", "pps_allowance_exceeded", "conntrack_allowance_available",
		"pps_allowance_exceeded", "queue_0_tx_cnt", "bw_in_allowance_exceeded"})
	want := enaIndex{exceeded: [NumAllowances]int{BWIn: 5, BWOut: -1, PPS: 1, Conntrack: -1, Linklocal: -1}, available: 2}
	if diff := cmp.Diff(want, x, cmp.AllowUnexported(enaIndex{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// FuzzStringSet feeds arbitrary string sets through the parsing and ENA
// mapping Read uses.
func FuzzStringSet(f *testing.F) {
	for _, name := range []string{"veth-6.18", "virtio_net-6.18", "ena-2.7.4", "ena-2.8.1"} {
		b, err := os.ReadFile("netdevtest/ethtool/" + name + ".strings")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("pps_allowance_exceeded\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return // over the fuzz size cap: larger inputs only slow the fuzzer
		}
		names, err := parseStringSet(b)
		if err != nil {
			if len(b)%GStringLen == 0 {
				t.Fatalf("whole names refused: %v", err)
			}
			return
		}
		if len(names) != len(b)/GStringLen {
			t.Fatalf("%d names from %d bytes", len(names), len(b))
		}
		for i, n := range names {
			if len(n) > GStringLen || strings.IndexByte(n, 0) >= 0 || !bytes.HasPrefix(b[i*GStringLen:], []byte(n)) {
				t.Fatalf("name %d %q does not come from its slot", i, n)
			}
		}
		x := indexENA(names)
		for a, i := range x.exceeded {
			if i >= 0 && names[i] != Allowance(a).StatName() {
				t.Fatalf("%v mapped to %q", Allowance(a), names[i])
			}
			if i < 0 && slices.Contains(names, Allowance(a).StatName()) {
				t.Fatalf("%v present but not mapped", Allowance(a))
			}
		}
		if i := x.available; (i >= 0 && names[i] != ConntrackAvailableStatName) || (i < 0 && slices.Contains(names, ConntrackAvailableStatName)) {
			t.Fatalf("conntrack_allowance_available mapped to %d", i)
		}
	})
}

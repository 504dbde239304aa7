package clients

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var equatePrefix = cmpopts.EquateComparable(netip.Prefix{})

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// exactTop is the top n of counts, by count then prefix.
func exactTop(counts map[netip.Prefix]int, n int) []Count {
	var all []Count
	for p, c := range counts {
		all = append(all, Count{Prefix: p, Count: c})
	}
	slices.SortFunc(all, func(a, b Count) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), comparePrefix(a.Prefix, b.Prefix))
	})
	return all[:min(n, len(all))]
}

func TestCounterExact(t *testing.T) {
	c := newCounter(8)
	seq := []string{"10.0.1.0/24", "10.0.2.0/24", "10.0.1.0/24", "2001:db8::/64", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"}
	for _, s := range seq {
		c.add(pfx(s))
	}
	want := Counts{Total: 7, Prefixes: 4, Top: []Count{
		{Prefix: pfx("10.0.1.0/24"), Count: 3},
		{Prefix: pfx("10.0.2.0/24"), Count: 2},
		{Prefix: pfx("10.0.3.0/24"), Count: 1},
	}}
	got := c.counts(3)
	if diff := gocmp.Diff(want, got, equatePrefix); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if got.Other() != 1 {
		t.Errorf("Other %d, want 1", got.Other())
	}
	c.reset()
	if diff := gocmp.Diff(Counts{Top: []Count{}}, c.counts(3), equatePrefix, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("after reset (-want +got):\n%s", diff)
	}
}

// TestCounterBounded: past its capacity the counter keeps its bound, the
// heavy prefixes are found with their counts bounded as Space-Saving
// promises, and the result says it is approximate.
func TestCounterBounded(t *testing.T) {
	const capacity, n = 64, 20000
	rng := rand.New(rand.NewPCG(1, 2))
	truth := map[netip.Prefix]int{}
	c := newCounter(capacity)
	heavy := []netip.Prefix{pfx("198.51.100.0/24"), pfx("203.0.113.0/24"), pfx("2001:db8:1::/64")}
	for i := range n {
		var p netip.Prefix
		switch {
		case i%5 == 0:
			p = heavy[0]
		case i%11 == 0:
			p = heavy[1]
		case i%17 == 0:
			p = heavy[2]
		default: // a long tail of 5000 prefixes
			a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(20)), byte(rng.IntN(250)), 0})
			p = netip.PrefixFrom(a, 24)
		}
		truth[p]++
		c.add(p)
	}
	if len(c.heap) != capacity || len(c.pos) != capacity {
		t.Fatalf("tracks %d (%d indexed), want the capacity %d", len(c.heap), len(c.pos), capacity)
	}
	got := c.counts(3)
	if !got.Approximate || got.Total != n {
		t.Errorf("Approximate %v Total %d, want true %d", got.Approximate, got.Total, n)
	}
	for i, want := range heavy {
		if got.Top[i].Prefix != want {
			t.Errorf("top %d is %v, want %v (%+v)", i, got.Top[i].Prefix, want, got.Top)
		}
	}
	checkBounds(t, c, truth)
}

// checkBounds checks the Space-Saving guarantees of c against the true
// counts: every tracked count is an upper bound off by at most its
// Overcount; every prefix above total/capacity is tracked; exact counts
// while nothing was evicted.
func checkBounds(t *testing.T, c *counter, truth map[netip.Prefix]int) {
	t.Helper()
	sum := 0
	for p, i := range c.pos {
		e := c.heap[i]
		if e.Prefix != p {
			t.Fatalf("index of %v points at %v", p, e.Prefix)
		}
		sum += e.Count
		if real := truth[p]; e.Count < real || e.Count-e.Overcount > real {
			t.Fatalf("%v counted %d (overcount %d), true %d", p, e.Count, e.Overcount, real)
		}
		if !c.evicted && e.Overcount != 0 {
			t.Fatalf("%v: overcount %d without eviction", p, e.Overcount)
		}
	}
	if sum != c.total {
		t.Fatalf("tracked counts sum to %d, total %d", sum, c.total)
	}
	for p, real := range truth {
		if _, ok := c.pos[p]; !ok && real > c.total/c.max {
			t.Fatalf("%v (%d of %d) not tracked with capacity %d", p, real, c.total, c.max)
		}
	}
	if !c.evicted {
		if len(c.heap) != len(truth) {
			t.Fatalf("exact counter tracks %d prefixes, %d seen", len(c.heap), len(truth))
		}
		if diff := gocmp.Diff(exactTop(truth, 5), c.counts(5).Top, equatePrefix, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("exact top (-want +got):\n%s", diff)
		}
	}
}

func TestCounterNoAllocs(t *testing.T) {
	c := newCounter(16)
	ps := []netip.Prefix{pfx("10.0.0.0/24"), pfx("10.0.1.0/24"), pfx("2001:db8::/64")}
	for i := range 40 { // past the capacity: evictions too
		c.add(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24))
	}
	if n := testing.AllocsPerRun(1000, func() {
		for _, p := range ps {
			c.add(p)
		}
	}); n != 0 {
		t.Errorf("add allocates %v times, want 0", n)
	}
}

// FuzzCounter feeds prefixes drawn from the input to counters of several
// capacities and checks the Space-Saving bounds against exact counts.
func FuzzCounter(f *testing.F) {
	f.Add([]byte{1, 2, 3, 1, 1, 2, 200, 201, 1}, uint8(2))
	f.Add([]byte{}, uint8(1))
	f.Add([]byte("the quick brown fox jumps over the lazy dog"), uint8(4))
	f.Fuzz(func(t *testing.T, b []byte, capacity uint8) {
		if len(b) > 4096 {
			return
		}
		max := int(capacity%32) + 1
		c := newCounter(max)
		truth := map[netip.Prefix]int{}
		for i, x := range b {
			var p netip.Prefix
			if i%3 == 2 { // some IPv6
				var a [16]byte
				a[0], a[1], a[7] = 0x20, 0x01, x
				p = netip.PrefixFrom(netip.AddrFrom16(a), 64)
			} else {
				p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, x >> 4, x & 15, 0}), 24)
			}
			c.add(p)
			truth[p]++
		}
		if len(c.heap) > max {
			t.Fatalf("tracks %d, capacity %d", len(c.heap), max)
		}
		checkBounds(t, c, truth)
		got := c.counts(3)
		if got.Total != len(b) || len(got.Top) > 3 || got.Other() < 0 {
			t.Fatalf("counts %+v of %d", got, len(b))
		}
		for i := 1; i < len(got.Top); i++ {
			if got.Top[i].Count > got.Top[i-1].Count {
				t.Fatalf("top not sorted: %+v", got.Top)
			}
		}
	})
}

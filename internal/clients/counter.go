package clients

import (
	"cmp"
	"net/netip"
	"slices"
)

// Counts are the client prefixes of one listener in one state.
type Counts struct {
	// Total is the number of sockets counted.
	Total int
	// Prefixes is the number of distinct prefixes; when Approximate, the
	// number tracked (there were more).
	Prefixes int
	// Approximate is true when there were more distinct prefixes than
	// Config.MaxTracked: counts are then upper bounds (see Count).
	Approximate bool
	// Top are the most counted prefixes, most first (ties by prefix),
	// at most Config.Top.
	Top []Count
}

// Other is the number of sockets not in Top (at least 0).
func (c Counts) Other() int {
	n := c.Total
	for _, t := range c.Top {
		n -= t.Count
	}
	return max(n, 0)
}

// Count is one prefix's count.
type Count struct {
	Prefix netip.Prefix
	// Count is the number of sockets from Prefix, or an upper bound of it
	// when Overcount > 0.
	Count int
	// Overcount is the most Count may exceed the true count: the count
	// the prefix inherited when it took a tracked place (0 while exact).
	Overcount int
}

// counter counts prefixes with the Space-Saving algorithm: at most max
// are tracked, in a min-heap by count; a new prefix past max replaces
// the least counted and inherits its count plus one.
type counter struct {
	max   int
	pos   map[netip.Prefix]int // index in heap
	heap  []Count
	total int
	// evicted is true once a prefix has been replaced.
	evicted bool
}

func newCounter(max int) *counter {
	return &counter{max: max, pos: make(map[netip.Prefix]int, min(max, 64))}
}

func (c *counter) reset() {
	clear(c.pos)
	c.heap = c.heap[:0]
	c.total = 0
	c.evicted = false
}

func (c *counter) add(p netip.Prefix) {
	c.total++
	if i, ok := c.pos[p]; ok {
		c.heap[i].Count++
		c.down(i)
		return
	}
	if len(c.heap) < c.max {
		c.heap = append(c.heap, Count{Prefix: p, Count: 1})
		c.pos[p] = len(c.heap) - 1
		c.up(len(c.heap) - 1)
		return
	}
	c.evicted = true
	least := c.heap[0]
	delete(c.pos, least.Prefix)
	c.heap[0] = Count{Prefix: p, Count: least.Count + 1, Overcount: least.Count}
	c.pos[p] = 0
	c.down(0)
}

func (c *counter) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if c.heap[parent].Count <= c.heap[i].Count {
			return
		}
		c.swap(i, parent)
		i = parent
	}
}

func (c *counter) down(i int) {
	n := len(c.heap)
	for {
		least, l, r := i, 2*i+1, 2*i+2
		if l < n && c.heap[l].Count < c.heap[least].Count {
			least = l
		}
		if r < n && c.heap[r].Count < c.heap[least].Count {
			least = r
		}
		if least == i {
			return
		}
		c.swap(i, least)
		i = least
	}
}

func (c *counter) swap(i, j int) {
	c.heap[i], c.heap[j] = c.heap[j], c.heap[i]
	c.pos[c.heap[i].Prefix] = i
	c.pos[c.heap[j].Prefix] = j
}

// counts returns the top n.
func (c *counter) counts(n int) Counts {
	out := Counts{Total: c.total, Prefixes: len(c.heap), Approximate: c.evicted}
	all := slices.Clone(c.heap)
	slices.SortFunc(all, func(a, b Count) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Overcount, b.Overcount), comparePrefix(a.Prefix, b.Prefix))
	})
	if len(all) > n {
		all = all[:n]
	}
	out.Top = all
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

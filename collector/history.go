package collector

import (
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// Retention says how long a History keeps what. Host values are small and
// kept for the longest host window the rules read (the 15-minute
// baseline); the entities of a kind (up to thousands of listeners a
// sample) only for the longest window any rule over that kind reads.
type Retention struct {
	// Host is how long Snapshots (their host values) are kept, at least
	// as long as any kind's entities.
	Host time.Duration
	// Kinds is how long the entities of each kind are kept; a kind not
	// named keeps its entities in the newest Snapshot only.
	Kinds map[string]time.Duration
	// Values, when not nil, names the values of each kind (HostKind for
	// the host's) that a Snapshot keeps once a newer one is added: the
	// series the rules read over windows. The newest Snapshot keeps
	// everything; an older one only these (the others read NaN), no
	// attributes, no source results, and no table of a kind with none
	// named. Nil keeps every value of every Snapshot. A Retention set
	// later (rules reloaded) applies from then on: a value newly named
	// has no data in the Snapshots thinned before, so a new rule's window
	// over it fills as samples come.
	Values map[string][]string
}

// minSnapshots is how many Snapshots a History keeps whatever the
// retention: a rate needs two.
const minSnapshots = 2

// History holds the recent Snapshots, oldest first, dropping what its
// Retention no longer needs. It is safe for concurrent use; the Snapshots
// it holds are never modified (dropping a kind's entities from an old
// Snapshot replaces it with a copy).
type History struct {
	mu    sync.RWMutex
	ret   Retention
	buf   []*Snapshot // buf[head:] are held
	head  int
	kinds map[*Schema][]time.Duration // per kind index, resolved from ret
	plans map[*Schema][]thinKind      // per kind index, resolved from ret.Values
	// base is the number of Snapshots compacted out of buf; trimmed[k]
	// counts the Snapshots (since the first) whose table k is dropped.
	base    int
	trimmed []int
}

// NewHistory returns a History keeping what r says.
func NewHistory(r Retention) *History {
	h := &History{}
	h.SetRetention(r)
	return h
}

// SetRetention changes what the History keeps. Entities already dropped
// do not come back.
func (h *History) SetRetention(r Retention) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.Kinds = maps.Clone(r.Kinds)
	r.Values = cloneValues(r.Values)
	h.ret = r
	h.kinds = map[*Schema][]time.Duration{}
	h.plans = map[*Schema][]thinKind{}
	h.trimmed = nil // a longer retention must not skip what is held
	h.trim()
}

// Retention returns what the History keeps.
func (h *History) Retention() Retention {
	h.mu.RLock()
	defer h.mu.RUnlock()
	r := h.ret
	r.Kinds = maps.Clone(r.Kinds)
	r.Values = cloneValues(r.Values)
	return r
}

func cloneValues(v map[string][]string) map[string][]string {
	if v == nil {
		return nil
	}
	out := make(map[string][]string, len(v))
	for k, names := range v {
		out[k] = slices.Clone(names)
	}
	return out
}

// plan resolves Retention.Values for sc; nil when every value is kept.
func (h *History) plan(sc *Schema) []thinKind {
	if h.ret.Values == nil {
		return nil
	}
	if p, ok := h.plans[sc]; ok {
		return p
	}
	p := make([]thinKind, len(sc.kinds))
	for i, k := range sc.kinds {
		slots := make([]int, len(k.values))
		for s := range slots {
			slots[s] = -1
		}
		var keep []int
		for _, name := range h.ret.Values[k.Name] {
			if v, ok := sc.lookup(k.Name, name); ok && v.kind == i && slots[v.slot] < 0 {
				slots[v.slot] = 0
				keep = append(keep, v.slot)
			}
		}
		slices.Sort(keep)
		for j, sl := range keep {
			slots[sl] = j
		}
		p[i] = thinKind{all: len(keep) == len(k.values) && len(keep) > 0, keep: keep, slots: slots}
	}
	h.plans[sc] = p
	return p
}

func (h *History) kindRetention(sc *Schema) []time.Duration {
	if d, ok := h.kinds[sc]; ok {
		return d
	}
	d := make([]time.Duration, len(sc.kinds))
	for i, k := range sc.kinds {
		if i > 0 {
			d[i] = h.ret.Kinds[k.Name]
		}
	}
	h.kinds[sc] = d
	return d
}

// Add appends s, which must not be older than the newest Snapshot held,
// and drops what the retention no longer needs.
func (h *History) Add(s *Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf = append(h.buf, s)
	// The Snapshot s replaces as the newest keeps what the windows read.
	if n := len(h.buf); n-h.head >= 2 {
		if prev := h.buf[n-2]; prev.schema != nil {
			if p := h.plan(prev.schema); p != nil {
				var before *Snapshot
				if n-h.head >= 3 {
					before = h.buf[n-3]
				}
				h.buf[n-2] = prev.thin(p, before)
			}
		}
	}
	h.trim()
}

// trim drops Snapshots older than the host retention and, from older
// Snapshots, the entities of kinds kept for less.
func (h *History) trim() {
	held := h.buf[h.head:]
	if len(held) == 0 {
		return
	}
	newest := held[len(held)-1]
	// A Snapshot is kept as long as any of its parts is.
	keep := h.ret.Host
	for _, d := range h.ret.Kinds {
		keep = max(keep, d)
	}
	drop := sort.Search(len(held), func(i int) bool { return newest.Time.Sub(held[i].Time) <= keep })
	drop = min(drop, max(len(held)-minSnapshots, 0))
	clear(held[:drop])
	h.head += drop
	// Compact once the dropped prefix is as long as what is held.
	if h.head > 64 && h.head >= len(h.buf)-h.head {
		n := copy(h.buf, h.buf[h.head:])
		clear(h.buf[n:])
		h.buf = h.buf[:n]
		h.base += h.head
		h.head = 0
	}
	held = h.buf[h.head:]
	// Entities: every kind has a cursor below which its tables are gone.
	ret := h.kindRetention(newest.schema)
	if len(h.trimmed) != len(ret) {
		h.trimmed = make([]int, len(ret))
	}
	for k := 1; k < len(ret); k++ {
		cut := sort.Search(len(held), func(i int) bool { return newest.Time.Sub(held[i].Time) <= ret[k] })
		cut = min(cut, len(held)-1) // the newest keeps everything
		from := max(h.trimmed[k]-h.base-h.head, 0)
		for i := from; i < cut; i++ {
			if s := held[i]; k < len(s.tables) && s.tables[k] != nil {
				held[i] = s.without(k)
			}
		}
		h.trimmed[k] = max(h.trimmed[k], h.base+h.head+cut)
	}
}

// Len returns the number of Snapshots held.
func (h *History) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.buf) - h.head
}

// Latest returns the newest Snapshot, or nil when empty.
func (h *History) Latest() *Snapshot {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.buf) == h.head {
		return nil
	}
	return h.buf[len(h.buf)-1]
}

// Since returns the Snapshots taken at or after t, oldest first. The slice
// is the caller's; the Snapshots are shared and must not be modified.
func (h *History) Since(t time.Time) []*Snapshot {
	h.mu.RLock()
	defer h.mu.RUnlock()
	held := h.buf[h.head:]
	i := sort.Search(len(held), func(i int) bool { return !held[i].Time.Before(t) })
	out := make([]*Snapshot, len(held)-i)
	copy(out, held[i:])
	return out
}

// All returns every Snapshot held, oldest first.
func (h *History) All() []*Snapshot { return h.Since(time.Time{}) }

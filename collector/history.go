package collector

import (
	"sync"
	"time"
)

// History is a bounded ring of recent Snapshots, oldest first. It is safe
// for concurrent use; the Snapshots it holds are never modified.
type History struct {
	mu   sync.RWMutex
	buf  []*Snapshot
	head int // index of the oldest entry
	n    int
}

// NewHistory returns a History that keeps the last capacity Snapshots
// (at least one).
func NewHistory(capacity int) *History {
	if capacity < 1 {
		capacity = 1
	}
	return &History{buf: make([]*Snapshot, capacity)}
}

// Add appends s, evicting the oldest Snapshot when full.
func (h *History) Add(s *Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n < len(h.buf) {
		h.buf[(h.head+h.n)%len(h.buf)] = s
		h.n++
		return
	}
	h.buf[h.head] = s
	h.head = (h.head + 1) % len(h.buf)
}

// Len returns the number of Snapshots held.
func (h *History) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.n
}

// Cap returns the most Snapshots the History holds.
func (h *History) Cap() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.buf)
}

// Latest returns the newest Snapshot, or nil when empty.
func (h *History) Latest() *Snapshot {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.n == 0 {
		return nil
	}
	return h.buf[(h.head+h.n-1)%len(h.buf)]
}

// Since returns the Snapshots taken at or after t, oldest first. The slice is
// the caller's; the Snapshots are shared and must not be modified.
func (h *History) Since(t time.Time) []*Snapshot {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*Snapshot, 0, h.n)
	for i := 0; i < h.n; i++ {
		s := h.buf[(h.head+i)%len(h.buf)]
		if !s.Time.Before(t) {
			out = append(out, s)
		}
	}
	return out
}

// All returns every Snapshot held, oldest first.
func (h *History) All() []*Snapshot { return h.Since(time.Time{}) }

// Resize changes the most Snapshots the History holds (at least one),
// keeping the newest.
func (h *History) Resize(capacity int) {
	capacity = max(capacity, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if capacity == len(h.buf) {
		return
	}
	keep := min(h.n, capacity)
	buf := make([]*Snapshot, capacity)
	for i := 0; i < keep; i++ {
		buf[i] = h.buf[(h.head+h.n-keep+i)%len(h.buf)]
	}
	h.buf, h.head, h.n = buf, 0, keep
}

package collector

import (
	"context"
	"sync/atomic"
	"time"
)

// DefaultSourceTimeout bounds one source's Collect call.
const DefaultSourceTimeout = 5 * time.Second

// Sampler runs the sources into Snapshots, keeps them in a History and
// publishes the newest for readers (the /metrics handler) that must never
// touch the kernel.
type Sampler struct {
	sources []Source
	history *History
	latest  atomic.Pointer[Snapshot]
	// Timeout bounds each source's Collect call.
	Timeout time.Duration
}

// NewSampler returns a Sampler over sources that records into h.
func NewSampler(sources []Source, h *History) *Sampler {
	return &Sampler{sources: sources, history: h, Timeout: DefaultSourceTimeout}
}

// History returns the Sampler's History.
func (s *Sampler) History() *History { return s.history }

// Latest returns the newest Snapshot, or nil before the first Sample.
func (s *Sampler) Latest() *Snapshot { return s.latest.Load() }

// Sample runs every source once, in order, stamps the Snapshot with now,
// adds it to the History and publishes it. A failing source never stops
// the others: its error is kept in the Snapshot's Sources.
func (s *Sampler) Sample(ctx context.Context, now time.Time) *Snapshot {
	snap := NewSnapshot(now)
	snap.Sources = make([]SourceResult, 0, len(s.sources))
	for _, src := range s.sources {
		snap.Sources = append(snap.Sources, s.collect(ctx, src, snap))
	}
	s.history.Add(snap)
	s.latest.Store(snap)
	return snap
}

func (s *Sampler) collect(ctx context.Context, src Source, snap *Snapshot) SourceResult {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	start := time.Now()
	err := src.Collect(ctx, snap)
	r := SourceResult{Name: src.Name(), Duration: time.Since(start)}
	switch {
	case err == nil:
		r.Success = true
	case IsNoData(err):
		r.NoData = true
	default:
		r.Err = err
	}
	return r
}

package collector

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// DefaultSourceTimeout bounds one kernel source's Collect call.
const DefaultSourceTimeout = 5 * time.Second

// Sampler runs the kernel sources on each tick into a Snapshot, adds the
// latest results of the target sources (which poll on goroutines of their
// own, see Targets), keeps the Snapshots in a History and publishes the
// newest for readers (the /metrics handler) that must never touch the
// kernel.
type Sampler struct {
	schema  *Schema
	sources []Source
	index   []int // schema source index of sources[i]
	targets *Targets
	history *History
	latest  atomic.Pointer[Snapshot]
	// Timeout bounds each kernel source's Collect call, from its start.
	// (The listeners source bounds its wait for a SYN_RECV dump itself:
	// ListenerConfig.SynRecvWait.)
	Timeout time.Duration
}

// NewSampler returns a Sampler over sources, laid out by sc, recording
// into h. Every source's declaration must be in sc; targets (may be nil)
// runs the target sources, whose declarations must be in sc too.
func NewSampler(sc *Schema, sources []Source, targets *Targets, h *History) (*Sampler, error) {
	s := &Sampler{schema: sc, sources: sources, targets: targets, history: h, Timeout: DefaultSourceTimeout}
	for _, src := range sources {
		i, ok := sc.indexOf(src.Declaration())
		if !ok {
			return nil, fmt.Errorf("source %s is not in the schema", src.Declaration().Name)
		}
		s.index = append(s.index, i)
	}
	if targets != nil && targets.schema != sc {
		return nil, fmt.Errorf("the target sources were made for another schema")
	}
	return s, nil
}

// indexOf finds the declaration d.
func (sc *Schema) indexOf(d *Declaration) (int, bool) {
	for i, x := range sc.decls {
		if x == d {
			return i, true
		}
	}
	return 0, false
}

// Schema returns the Sampler's Schema.
func (s *Sampler) Schema() *Schema { return s.schema }

// History returns the Sampler's History.
func (s *Sampler) History() *History { return s.history }

// Latest returns the newest Snapshot, or nil before the first Sample.
func (s *Sampler) Latest() *Snapshot { return s.latest.Load() }

// Sample runs every kernel source once, in order, adds the target
// sources' latest results, stamps the Snapshot with now, adds it to the
// History and publishes it. A failing source never stops the others: its
// error is kept in the Snapshot's Sources. A target never delays it.
func (s *Sampler) Sample(ctx context.Context, now time.Time) *Snapshot {
	snap := newSnapshot(s.schema, now)
	snap.Sources = make([]SourceResult, 0, len(s.sources)+1)
	for i, src := range s.sources {
		snap.Sources = append(snap.Sources, s.collect(ctx, src, snap.writer(s.index[i])))
	}
	if s.targets != nil {
		s.targets.fill(snap)
	}
	snap.finish()
	s.history.Add(snap)
	s.latest.Store(snap)
	return snap
}

func (s *Sampler) collect(ctx context.Context, src Source, w *Writer) SourceResult {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	start := time.Now()
	err := src.Collect(ctx, w)
	w.finish()
	r := SourceResult{Name: w.decl.Name, Duration: time.Since(start), Time: w.s.Time}
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

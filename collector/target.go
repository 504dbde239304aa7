package collector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A TargetSource reads things that can hang, such as a server over TCP.
// Each target is polled on a goroutine of its own, at its own interval and
// under its own timeout, and publishes its latest result with the time it
// was read; the sampling tick takes the latest result and never waits for
// a target. A result older than its staleness bound is no data.
//
// The source owns exactly one entity kind: each target is one entity of it.
type TargetSource interface {
	// Declaration returns what the source measures: one entity kind and
	// values of that kind only.
	Declaration() *Declaration
	// Options returns the polling defaults.
	Options() TargetOptions
	// Targets returns the targets to poll now, given the kernel sources'
	// results of this cycle (so that targets can be discovered). It is
	// called on every tick and must be cheap.
	Targets(s *Snapshot) []Target
	// Poll reads one target into w. It must return once ctx is done.
	Poll(ctx context.Context, t Target, w *RowWriter) error
}

// Target is one thing a TargetSource polls.
type Target struct {
	// Labels are the entity's label values.
	Labels []string
	// Name names the target in results and logs.
	Name string
	// Interval and Timeout override the source's Options when set.
	Interval, Timeout time.Duration
	// Config is the source's own description of the target.
	Config any
}

func (t Target) key() string { return strings.Join(t.Labels, "\xff") }

// TargetOptions are a target source's polling defaults.
type TargetOptions struct {
	// Interval is how often a target is polled (default 5s).
	Interval time.Duration
	// Timeout bounds one poll (default 2s).
	Timeout time.Duration
	// StaleAfter is how old a result may be before its values are no data
	// (default 2×Interval+Timeout).
	StaleAfter time.Duration
	// Up names a value of the source set to 1 when the target's latest
	// result is fresh and succeeded, 0 otherwise (never no data); "" for
	// none.
	Up string
}

func (o TargetOptions) withDefaults(t Target) TargetOptions {
	if t.Interval > 0 {
		o.Interval = t.Interval
	}
	if t.Timeout > 0 {
		o.Timeout = t.Timeout
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 2*o.Interval + o.Timeout
	}
	return o
}

// Errors of target polls.
var (
	// ErrPollTimeout is a poll that did not return within its timeout.
	ErrPollTimeout = errors.New("poll timed out")
	// ErrStale is a target whose latest result is older than its
	// staleness bound.
	ErrStale = errors.New("latest result too old")
	// errFirstPoll is a target not polled yet.
	errFirstPoll = errors.New("first poll under way")
)

// RowWriter fills the values of one target, by their index in the
// source's Declaration.Values.
type RowWriter struct {
	set    *targetSet
	values []float64
	attrs  []string
}

// Set sets value i of the source's declaration.
func (w *RowWriter) Set(i int, v float64) { w.values[w.set.slots[i]] = v }

// SetAttr sets the entity's attribute name.
func (w *RowWriter) SetAttr(name, value string) {
	if i := slices.Index(w.set.kind.attrs, name); i >= 0 {
		w.attrs[i] = value
	}
}

// Targets runs the target sources' pollers.
type Targets struct {
	schema *Schema
	sets   []*targetSet

	mu      sync.Mutex
	ctx     context.Context // nil before Start
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped bool
}

type targetSet struct {
	src   TargetSource
	index int
	kind  *kindInfo
	slots []int
	opts  TargetOptions
	up    int // kind slot of Options.Up, -1 for none
	run   map[string]*poller
}

type poller struct {
	set    *targetSet
	target Target
	opts   TargetOptions
	cancel context.CancelFunc
	latest atomic.Pointer[pollResult]
	polls  chan struct{} // one token per completed poll, for Wait
}

type pollResult struct {
	time   time.Time
	dur    time.Duration
	values []float64 // kind slots
	attrs  []string
	err    error
}

// NewTargets returns the pollers of sources, whose declarations must be in
// sc. They start polling at Start.
func NewTargets(sc *Schema, sources ...TargetSource) (*Targets, error) {
	t := &Targets{schema: sc}
	for _, src := range sources {
		d := src.Declaration()
		si, ok := sc.indexOf(d)
		if !ok {
			return nil, fmt.Errorf("target source %s is not in the schema", d.Name)
		}
		if len(d.Kinds) != 1 {
			return nil, fmt.Errorf("target source %s must own exactly one entity kind", d.Name)
		}
		kind := sc.kinds[sc.kindByN[d.Kinds[0].Name]]
		for _, v := range d.Values {
			if v.Entity != kind.Name {
				return nil, fmt.Errorf("target source %s: value %s is not of kind %s", d.Name, v.Name, kind.Name)
			}
		}
		set := &targetSet{src: src, index: si, kind: kind, slots: sc.srcSlots[si], opts: src.Options(), up: -1, run: map[string]*poller{}}
		if set.opts.Up != "" {
			v, ok := sc.lookup(kind.Name, set.opts.Up)
			if !ok || v.kind != kind.index {
				return nil, fmt.Errorf("target source %s: Up value %q is not declared", d.Name, set.opts.Up)
			}
			set.up = v.slot
		}
		t.sets = append(t.sets, set)
	}
	return t, nil
}

// Start starts polling, until ctx is done or Stop.
func (t *Targets) Start(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx != nil || t.stopped {
		return
	}
	t.ctx, t.cancel = context.WithCancel(ctx)
	for _, set := range t.sets {
		for _, p := range set.run {
			t.startLocked(p)
		}
	}
}

// Stop stops every poller and waits for them (a poll stuck past its
// timeout is abandoned, not waited for).
func (t *Targets) Stop() {
	t.mu.Lock()
	t.stopped = true
	if t.cancel != nil {
		t.cancel()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// Wait waits until every current target has completed a poll, or ctx is
// done: for one-shot runs that sample once the targets answered.
func (t *Targets) Wait(ctx context.Context) {
	t.mu.Lock()
	var ps []*poller
	for _, set := range t.sets {
		for _, p := range set.run {
			ps = append(ps, p)
		}
	}
	t.mu.Unlock()
	for _, p := range ps {
		if p.latest.Load() != nil {
			continue
		}
		select {
		case <-p.polls:
		case <-ctx.Done():
			return
		}
	}
}

func (t *Targets) startLocked(p *poller) {
	ctx, cancel := context.WithCancel(t.ctx)
	p.cancel = cancel
	t.wg.Go(func() { p.loop(ctx) })
}

// fill reconciles the targets with this cycle's and puts each target's
// latest result into s.
func (t *Targets) fill(s *Snapshot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, set := range t.sets {
		t.reconcile(set, s)
		set.fill(s)
	}
}

func (t *Targets) reconcile(set *targetSet, s *Snapshot) {
	want := set.src.Targets(s)
	seen := make(map[string]bool, len(want))
	for _, tg := range want {
		k := tg.key()
		if len(tg.Labels) != len(set.kind.Labels) || seen[k] {
			continue
		}
		seen[k] = true
		if p, ok := set.run[k]; ok {
			if p.target.Name == tg.Name && p.target.Interval == tg.Interval && p.target.Timeout == tg.Timeout {
				continue
			}
			// Changed: start over.
			if p.cancel != nil {
				p.cancel()
			}
		}
		p := &poller{set: set, target: tg, opts: set.opts.withDefaults(tg), polls: make(chan struct{}, 1)}
		set.run[k] = p
		if t.ctx != nil && !t.stopped {
			t.startLocked(p)
		}
	}
	for k, p := range set.run {
		if !seen[k] {
			if p.cancel != nil {
				p.cancel()
			}
			delete(set.run, k)
		}
	}
}

func (set *targetSet) fill(s *Snapshot) {
	name := set.src.Declaration().Name
	sum := SourceResult{Name: name, Success: true, Time: s.Time}
	if len(set.run) == 0 {
		sum.Success, sum.NoData = false, true
	}
	w := s.writer(set.index)
	tw := w.Table(set.kind.Name, len(set.run))
	keys := make([]string, 0, len(set.run))
	for k := range set.run {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var errs []error
	for _, k := range keys {
		p := set.run[k]
		row := tw.Add(p.target.Labels...)
		r := SourceResult{Name: name, Target: p.target.Name}
		res := p.latest.Load()
		switch {
		case res == nil:
			r.NoData, r.Err = true, errFirstPoll
		case res.err != nil:
			r.Err, r.Time, r.Duration = res.err, res.time, res.dur
		case s.Time.Sub(res.time) > p.opts.StaleAfter:
			r.Err = fmt.Errorf("%w: read at %s, more than %s ago", ErrStale, res.time.Format(time.RFC3339), p.opts.StaleAfter)
			r.Time, r.Duration = res.time, res.dur
		default:
			r.Success, r.Time, r.Duration = true, res.time, res.dur
			nv := len(set.kind.values)
			copy(tw.t.values[row*nv:(row+1)*nv], res.values)
			if na := len(set.kind.attrs); na > 0 {
				copy(tw.t.attrs[row*na:(row+1)*na], res.attrs)
			}
		}
		if set.up >= 0 {
			up := 0.0
			if r.Success {
				up = 1
			}
			tw.t.values[row*len(set.kind.values)+set.up] = up
		}
		if !r.Success {
			sum.Success = false
			if r.Err != nil && !r.NoData {
				errs = append(errs, fmt.Errorf("%s: %w", p.target.Name, r.Err))
			}
		}
		s.Sources = append(s.Sources, r)
	}
	w.finish()
	sum.Err = errors.Join(errs...)
	if !sum.Success && sum.Err == nil && len(set.run) > 0 {
		sum.NoData = true // only first polls under way
	}
	s.Sources = append(s.Sources, sum)
}

// loop polls the target every interval until ctx is done.
func (p *poller) loop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var busy chan struct{} // closed when an abandoned poll returns
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		if busy != nil {
			select {
			case <-busy: // returned at last: poll again
			default:
				// The last poll is still stuck: do not pile up another.
				p.publish(&pollResult{time: start, err: fmt.Errorf("%w: the previous poll has not returned", ErrPollTimeout)})
				timer.Reset(p.opts.Interval)
				continue
			}
		}
		res, stuck := p.poll(ctx, start)
		busy = stuck
		p.publish(res)
		timer.Reset(max(p.opts.Interval-time.Since(start), 0))
	}
}

func (p *poller) publish(r *pollResult) {
	p.latest.Store(r)
	select {
	case p.polls <- struct{}{}:
	default:
	}
}

// poll runs one Poll under the timeout. A Poll that does not return in
// time is abandoned (stuck is closed when it finally does).
func (p *poller) poll(ctx context.Context, start time.Time) (*pollResult, chan struct{}) {
	set := p.set
	w := &RowWriter{set: set, values: nanSlice(len(set.kind.values)), attrs: make([]string, len(set.kind.attrs))}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	done := make(chan error, 1)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		done <- set.src.Poll(ctx, p.target, w)
	}()
	result := func(err error) *pollResult {
		// A Poll that gave up at its deadline says so in its own words
		// (an i/o timeout); say it was the timeout.
		if dl, _ := ctx.Deadline(); err != nil && !time.Now().Before(dl) && !errors.Is(err, ErrPollTimeout) {
			err = fmt.Errorf("%w after %s: %w", ErrPollTimeout, p.opts.Timeout, err)
		}
		return &pollResult{time: start, dur: time.Since(start), values: w.values, attrs: w.attrs, err: err}
	}
	select {
	case err := <-done:
		return result(err), nil
	case <-ctx.Done():
		select {
		case err := <-done: // it returned just in time
			return result(err), nil
		case <-time.After(50 * time.Millisecond):
		}
		return &pollResult{time: start, dur: time.Since(start), err: fmt.Errorf("%w after %s", ErrPollTimeout, p.opts.Timeout)}, returned
	}
}

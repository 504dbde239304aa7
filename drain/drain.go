package drain

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Config is one drain.
type Config struct {
	// Source lists the connections; Method closes them.
	Source Source
	Method Method
	// Pacer, when set, holds each batch back until the receivers can
	// take it and sizes it (the closed loop); nil: the timed Funnel.
	Pacer Pacer

	// Batch sizes each batch, every Every. With Duration set instead,
	// the connections there at the start are spread evenly over
	// Duration: ceil(Duration/Every) batches of equal size.
	Batch    Batch
	Every    time.Duration
	Duration time.Duration
	// Max stops the drain once this many connections are closed (0: no
	// limit).
	Max int
	// Order of closing.
	Order Order
	// OnlyInitial drains only the connections there at the start;
	// otherwise connections arriving during the drain are drained too.
	OnlyInitial bool

	// OnEvent, when set, receives the start, each wait and each batch.
	OnEvent func(Event)
	// Rand shuffles for Random order (nil: the global source).
	Rand *rand.Rand
	// BatchTimeout bounds one batch's Disconnect (0: DefaultBatchTimeout).
	// A batch is never cut short by the context: stopping waits for it.
	BatchTimeout time.Duration
}

// DefaultBatchTimeout bounds one batch.
const DefaultBatchTimeout = time.Minute

func (c *Config) validate() error {
	switch {
	case c.Source == nil:
		return errors.New("drain: no Source")
	case c.Every <= 0:
		return fmt.Errorf("drain: interval %v: must be positive", c.Every)
	case c.Duration < 0:
		return fmt.Errorf("drain: duration %v: must not be negative", c.Duration)
	case c.Duration == 0 && c.Batch.Count <= 0 && c.Batch.Percent <= 0:
		return errors.New("drain: neither a batch size nor a duration")
	case c.Max < 0:
		return fmt.Errorf("drain: max %d: must not be negative", c.Max)
	}
	return nil
}

// EventKind says what an Event reports.
type EventKind string

// Event kinds.
const (
	EventStart EventKind = "start"
	EventWait  EventKind = "wait"
	EventBatch EventKind = "batch"
)

// Event is one step of a drain, for progress displays.
type Event struct {
	Kind    EventKind
	Time    time.Time
	Elapsed time.Duration // since the start
	// Listeners drained (start).
	Listeners []Listener
	// Reason the batch is held back (wait).
	Reason string
	// Batch is the batch's number, from 1 (wait, batch).
	Batch int
	// Planned is the size the schedule planned, Size the number handed
	// to the method after pacing (batch), besides the connections an
	// Orderer said it skips (counted in Skipped).
	Planned, Size int
	// What became of them (batch).
	Closed, Gone, Skipped, Unknown, Failed int
	// Took is the method's time for the batch.
	Took time.Duration
	// Note is the pacer's word on the batch size, if any.
	Note string
	// Err is the method's error (batch).
	Err error
	Progress
}

// Progress is the state of the drain so far.
type Progress struct {
	// Total is every connection the drain deals with: Closed + Gone +
	// Skipped + Left. It grows when connections arrive during the drain
	// (unless OnlyInitial).
	Total int
	// Closed by the method.
	Closed int
	// Gone: closed by themselves (or by the server) before the method
	// got to them.
	Gone int
	// Skipped: the method never closes them.
	Skipped int
	// Left to close.
	Left int
	// New counts connections that arrived after the start.
	New int
	// Unaccepted counts, in the latest listing, established connections
	// not accepted by the server (or orphaned), which are left alone.
	Unaccepted int
	Batches    int
	// Waited is the time the pacer held batches back.
	Waited time.Duration
	// Rate is connections closed per second since the start.
	Rate float64
	// Remaining estimates the time until the last batch, -1 when unknown.
	Remaining time.Duration
}

// Ending says how a drain ended.
type Ending string

// Endings.
const (
	// EndDrained: nothing is left to close.
	EndDrained Ending = "drained"
	// EndMax: Max connections were closed.
	EndMax Ending = "max"
	// EndStopped: the context ended (a signal) between batches.
	EndStopped Ending = "stopped"
	// EndPacingTimeout: the receivers refused beyond the pacer's budget.
	EndPacingTimeout Ending = "pacing_timeout"
	// EndFailed: listing or closing failed after the drain began.
	EndFailed Ending = "failed"
)

// Summary is how a drain went.
type Summary struct {
	End Ending
	// Err is the failure, for EndFailed and EndPacingTimeout.
	Err       error
	Listeners []Listener
	Elapsed   time.Duration
	Progress
}

// Run drains: it lists the connections, checks the method can run, then
// closes batch after batch — re-listing before each, so connections that
// closed by themselves are counted gone and new ones are seen — until
// none is left, Max is reached, the pacer gives up or ctx ends. A batch
// in progress always completes; ctx ending stops the drain before the
// next one and leaves the rest untouched.
//
// It returns an error, and no drain happened, when it could not start: no
// listener, the method cannot run here, the first listing failed, or the
// first batch was refused outright. Anything later is in Summary.End and
// Summary.Err.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.validate(); err != nil {
		return Summary{}, err
	}
	if cfg.Method == nil {
		return Summary{}, errors.New("drain: no Method")
	}
	r := &runner{cfg: cfg, start: time.Now(),
		initial: make(map[uint64]struct{}), handled: make(map[uint64]struct{}),
		known: make(map[uint64]struct{}), seenNew: make(map[uint64]struct{})}
	return r.run(ctx)
}

type runner struct {
	cfg   Config
	start time.Time
	prog  Progress
	// perBatch is the batch size of a Duration drain.
	perBatch  int
	listeners []Listener

	initial map[uint64]struct{} // cookies there at the start
	handled map[uint64]struct{} // closed, gone or skipped
	known   map[uint64]struct{} // eligible at the last listing, not handled
	seenNew map[uint64]struct{} // arrived after the start
	scratch []Conn
}

func (r *runner) run(ctx context.Context) (Summary, error) {
	listing, err := r.cfg.Source.List(ctx)
	if err != nil {
		return Summary{}, err
	}
	r.listeners = listing.Listeners
	sm, toServer := r.cfg.Method.(ServerMethod)
	if toServer {
		sm.UseListeners(listing.Listeners)
	}
	if err := r.cfg.Method.Check(ctx); err != nil {
		return r.summary(""), fmt.Errorf("--method %s: %w", r.cfg.Method.Name(), err)
	}
	if toServer {
		// Again, with the method's own connection to the server.
		if listing, err = r.cfg.Source.List(ctx); err != nil {
			return Summary{}, err
		}
		r.listeners = listing.Listeners
	}
	for _, c := range listing.Conns {
		r.initial[c.Cookie] = struct{}{}
	}
	eligible := r.eligible(listing, true)
	if r.cfg.Duration > 0 {
		n := max(1, int(math.Ceil(float64(r.cfg.Duration)/float64(r.cfg.Every))))
		r.perBatch = max(1, int(math.Ceil(float64(r.prog.Total)/float64(n))))
	}
	r.prog.Remaining = r.remaining(1)
	r.emit(Event{Kind: EventStart, Listeners: r.listeners})
	if len(eligible) == 0 {
		return r.summary(EndDrained), nil
	}

	next := r.start
	for k := 0; ; k++ {
		if !sleepUntil(ctx, next) {
			return r.summary(EndStopped), nil
		}
		share, note := 1.0, ""
		fresh := k == 0
		if r.cfg.Pacer != nil {
			adm, err := r.cfg.Pacer.Admit(ctx, func(reason string) {
				r.emit(Event{Kind: EventWait, Batch: k + 1, Reason: reason})
			})
			r.prog.Waited += adm.Waited
			switch {
			case ctx.Err() != nil:
				return r.summary(EndStopped), nil
			case errors.Is(err, ErrPacingTimeout):
				s := r.summary(EndPacingTimeout)
				s.Err = err
				return s, nil
			case err != nil:
				s := r.summary(EndFailed)
				s.Err = err
				return s, nil
			}
			share, note = adm.Share, adm.Note
			fresh = fresh && adm.Waited == 0
		}
		batchStart := time.Now()
		if !fresh {
			if listing, err = r.cfg.Source.List(ctx); err != nil {
				if ctx.Err() != nil {
					return r.summary(EndStopped), nil
				}
				s := r.summary(EndFailed)
				s.Err = err
				return s, nil
			}
			eligible = r.eligible(listing, false)
		}
		if len(eligible) == 0 {
			return r.summary(EndDrained), nil
		}

		// A failed Orderer leaves the inode order; the method's own call
		// for the batch reports the trouble (the server is the same).
		skip, _ := r.order(ctx, eligible)
		planned, size := 0, 0
		if closable := len(eligible) - skip; closable > 0 {
			planned = r.size(closable)
			size = min(planned, max(1, int(math.Ceil(float64(planned)*share))))
		}
		batch := eligible[:skip+size]
		fates := make([]Fate, len(batch))
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmpOr(r.cfg.BatchTimeout, DefaultBatchTimeout))
		err := r.cfg.Method.Disconnect(bctx, batch, fates)
		cancel()
		took := time.Since(batchStart)

		ev := Event{Kind: EventBatch, Batch: k + 1, Planned: planned, Size: size, Took: took, Note: note, Err: err}
		for i, f := range fates {
			c := batch[i].Cookie
			switch f {
			case Closed:
				ev.Closed++
			case Gone:
				ev.Gone++
			case Skipped:
				ev.Skipped++
			case Failed:
				ev.Failed++
			default:
				ev.Unknown++
			}
			if f == Closed || f == Gone || f == Skipped {
				r.handled[c] = struct{}{}
				delete(r.known, c)
			}
		}
		r.prog.Closed += ev.Closed
		r.prog.Gone += ev.Gone
		r.prog.Skipped += ev.Skipped
		r.prog.Left -= ev.Closed + ev.Gone + ev.Skipped
		r.prog.Batches++
		r.prog.Remaining = r.remaining(share)
		r.emit(ev)

		if err != nil {
			if r.prog.Closed == 0 && k == 0 {
				return r.summary(""), fmt.Errorf("--method %s: %w", r.cfg.Method.Name(), err)
			}
			s := r.summary(EndFailed)
			s.Err = err
			return s, nil
		}
		if r.prog.Left <= 0 {
			return r.summary(EndDrained), nil
		}
		if r.cfg.Max > 0 && r.prog.Closed >= r.cfg.Max {
			return r.summary(EndMax), nil
		}
		next = batchStart.Add(r.cfg.Every)
	}
}

// eligible picks, from a listing, the connections to close and updates
// the counts: connections eligible at the last listing and missing now are
// gone; connections never seen before are new. The first listing (first)
// makes the initial set.
func (r *runner) eligible(l Listing, first bool) []Conn {
	out := r.scratch[:0]
	seen := make(map[uint64]struct{}, len(l.Conns))
	for _, c := range l.Conns {
		if _, ok := r.handled[c.Cookie]; ok {
			continue
		}
		if _, ok := r.initial[c.Cookie]; !ok && !first {
			if _, ok := r.seenNew[c.Cookie]; !ok {
				r.seenNew[c.Cookie] = struct{}{}
				r.prog.New++
				if !r.cfg.OnlyInitial {
					r.prog.Total++
				}
			}
			if r.cfg.OnlyInitial {
				continue
			}
		}
		if first {
			r.prog.Total++
		}
		seen[c.Cookie] = struct{}{}
		out = append(out, c)
	}
	for c := range r.known {
		if _, ok := seen[c]; !ok {
			r.prog.Gone++
			r.handled[c] = struct{}{}
		}
	}
	r.known = seen
	r.prog.Left = len(out)
	r.prog.Unaccepted = l.Unaccepted
	r.scratch = out
	return out
}

// size plans the next batch for left connections.
func (r *runner) size(left int) int {
	n := r.perBatch
	if n == 0 {
		n = r.cfg.Batch.Size(left)
	}
	n = min(n, left)
	if r.cfg.Max > 0 {
		n = min(n, r.cfg.Max-r.prog.Closed)
	}
	return max(n, 1)
}

// remaining estimates the time until the last batch, batches of the
// current share each Every apart.
func (r *runner) remaining(share float64) time.Duration {
	left := r.prog.Left
	if r.cfg.Max > 0 {
		left = min(left, r.cfg.Max-r.prog.Closed)
	}
	if left <= 0 {
		return 0
	}
	batches := 0
	for n := left; n > 0; batches++ {
		if batches > 1_000_000 {
			return -1
		}
		s := r.perBatch
		if s == 0 {
			s = r.cfg.Batch.Size(n)
		}
		n -= max(1, int(math.Ceil(float64(s)*share)))
	}
	if r.prog.Batches == 0 {
		batches-- // the first batch goes at once
	}
	return time.Duration(batches) * r.cfg.Every
}

// order orders conns for picking a batch from the front, and returns how
// many at the front the method will skip (an Orderer's). When the Orderer
// fails, conns are ordered by inode and its error is returned.
func (r *runner) order(ctx context.Context, conns []Conn) (int, error) {
	if r.cfg.Order == Random {
		shuffle := rand.Shuffle
		if r.cfg.Rand != nil {
			shuffle = r.cfg.Rand.Shuffle
		}
		shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
		return 0, nil
	}
	var err error
	if o, ok := r.cfg.Method.(Orderer); ok {
		var skip int
		skip, err = o.Order(ctx, conns)
		if err == nil && skip >= 0 && skip <= len(conns) {
			return skip, nil
		}
		if err == nil {
			err = fmt.Errorf("%w: skip %d of %d connections", ErrOrder, skip, len(conns))
		}
	}
	sortOldest(conns)
	return 0, err
}

func (r *runner) emit(ev Event) {
	if r.cfg.OnEvent == nil {
		return
	}
	ev.Time = time.Now()
	ev.Elapsed = ev.Time.Sub(r.start)
	if ev.Kind != EventStart {
		ev.Progress = r.progress(ev.Elapsed)
	} else {
		ev.Progress = r.prog
	}
	r.cfg.OnEvent(ev)
}

func (r *runner) progress(elapsed time.Duration) Progress {
	p := r.prog
	if elapsed > 0 {
		p.Rate = float64(p.Closed) / elapsed.Seconds()
	}
	return p
}

func (r *runner) summary(end Ending) Summary {
	el := time.Since(r.start)
	return Summary{End: end, Listeners: r.listeners, Elapsed: el, Progress: r.progress(el)}
}

// sleepUntil waits until t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	if ctx.Err() != nil {
		return false
	}
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// PlannedBatch is one batch of a dry run.
type PlannedBatch struct {
	// At is when it would start, after the first (pacing aside).
	At    time.Duration
	Conns []Conn
}

// DryRun is what a drain would do now.
type DryRun struct {
	Listing Listing
	Batches []PlannedBatch
	// Skipped are the connections the method says it would never close
	// (an Orderer's: a Valkey method's own connection, replicas).
	Skipped []Conn
}

// Plan lists the connections once and splits them into the batches Run
// would close, without pacing and without closing anything.
func Plan(ctx context.Context, cfg Config) (DryRun, error) {
	if err := cfg.validate(); err != nil {
		return DryRun{}, err
	}
	l, err := cfg.Source.List(ctx)
	if err != nil {
		return DryRun{}, err
	}
	if sm, ok := cfg.Method.(ServerMethod); ok {
		sm.UseListeners(l.Listeners)
	}
	r := &runner{cfg: cfg}
	all := append([]Conn(nil), l.Conns...)
	skip, err := r.order(ctx, all)
	if err != nil {
		// The plan would not be what a drain does: say why instead.
		return DryRun{}, fmt.Errorf("ordering the connections: %w", err)
	}
	conns := all[skip:]
	if cfg.Duration > 0 {
		n := max(1, int(math.Ceil(float64(cfg.Duration)/float64(cfg.Every))))
		r.perBatch = max(1, int(math.Ceil(float64(len(conns))/float64(n))))
	}
	out := DryRun{Listing: l}
	if skip > 0 {
		out.Skipped = all[:skip:skip]
	}
	for len(conns) > 0 && (cfg.Max == 0 || r.prog.Closed < cfg.Max) {
		n := r.size(len(conns))
		out.Batches = append(out.Batches, PlannedBatch{At: time.Duration(len(out.Batches)) * cfg.Every, Conns: conns[:n:n]})
		conns = conns[n:]
		r.prog.Closed += n
	}
	return out, nil
}

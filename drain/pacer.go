package drain

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// Pacer holds each batch back until the hosts receiving the clients can
// take it, and says how much of the planned batch they can take. Run asks
// it before every batch (the first one included). Without a Pacer the
// drain is the plain timed Funnel.
type Pacer interface {
	// Admit returns when the next batch may go. While it holds the batch
	// back it calls wait with the reason, each time the reason changes.
	// It returns ErrPacingTimeout (wrapped, with the last reason) when the
	// receivers refuse beyond its budget, and ctx's error when ctx ends
	// first.
	Admit(ctx context.Context, wait func(reason string)) (Admission, error)
}

// Admission is a Pacer's go-ahead for one batch.
type Admission struct {
	// Share is the part of the planned batch to close, in (0, 1]; the
	// batch is never smaller than one connection.
	Share float64
	// Note says why the share changed ("" when it did not).
	Note string
	// Waited is how long Admit held the batch back (0 when the receivers
	// were ready at the first question).
	Waited time.Duration
	// Headroom is the tightest headroom the receivers reported, NaN if
	// none did.
	Headroom float64
}

// Headroom is a receiver's answer: the fields of the /api/v1/headroom
// JSON the drain uses.
type Headroom struct {
	// OK is the receiver's own verdict.
	OK bool
	// Headroom is the tightest remaining share (0..1) of the queues a
	// wave of new connections fills.
	Headroom float64
	// NoData: the receiver has no figure (its data is missing); Headroom
	// is then 0 and OK false.
	NoData bool
	// Limiting names the queue and entity setting Headroom, in words.
	Limiting string
	// Reasons say, in words, why the receiver is not OK.
	Reasons []string
}

// Receiver is a host that takes the drained clients.
type Receiver interface {
	// Name names it in reasons ("10.0.0.7:9955", "local").
	Name() string
	// Headroom asks it once. An error counts as not ready.
	Headroom(ctx context.Context) (Headroom, error)
}

// ReceiverFunc makes a Receiver of a function, for this host's own
// headroom (--pace-by local).
func ReceiverFunc(name string, fn func(ctx context.Context) (Headroom, error)) Receiver {
	return funcReceiver{name, fn}
}

type funcReceiver struct {
	name string
	fn   func(context.Context) (Headroom, error)
}

func (r funcReceiver) Name() string                                   { return r.name }
func (r funcReceiver) Headroom(ctx context.Context) (Headroom, error) { return r.fn(ctx) }

// Defaults of ClosedLoop.
const (
	DefaultPoll     = time.Second
	DefaultFall     = 0.05
	DefaultMinShare = 1.0 / 16
	// askTimeout bounds one round of questions to the receivers.
	askTimeout = 10 * time.Second
)

// ClosedLoop is the Pacer of --pace-by: before each batch it asks every
// receiver (concurrently) and waits, asking again every Poll, while any
// answers with an error, not OK, or a headroom below MinHeadroom. Then it
// sizes the batch: halved (down to MinShare) when it had to wait or when
// the tightest headroom fell by more than Fall since the previous batch —
// the receivers' queues rose after it —, doubled back (up to the whole
// planned batch) otherwise.
type ClosedLoop struct {
	Receivers []Receiver
	// MinHeadroom is the least headroom (0..1) a receiver must report.
	MinHeadroom float64
	// Timeout bounds the total time batches are held back over the whole
	// drain; 0: no bound.
	Timeout time.Duration
	// Poll is the time between questions while waiting (0: DefaultPoll).
	Poll time.Duration
	// Fall is the fall of headroom between two batches that shrinks the
	// next one (0: DefaultFall).
	Fall float64
	// MinShare is the smallest share of a planned batch (0:
	// DefaultMinShare).
	MinShare float64

	share  float64
	last   float64
	waited time.Duration
}

// Reading is one receiver's answer to one question.
type Reading struct {
	Receiver string
	Headroom Headroom
	Err      error
}

// Ask asks every receiver once, concurrently, and returns their answers
// in the receivers' order.
func (p *ClosedLoop) Ask(ctx context.Context) []Reading {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	out := make([]Reading, len(p.Receivers))
	var wg sync.WaitGroup
	for i, r := range p.Receivers {
		wg.Go(func() {
			h, err := r.Headroom(ctx)
			out[i] = Reading{Receiver: r.Name(), Headroom: h, Err: err}
		})
	}
	wg.Wait()
	return out
}

// Judge says whether readings let a batch go, why not (one reason per
// receiver that is not ready, joined with "; "), and the tightest
// headroom reported (NaN if none).
func Judge(readings []Reading, minHeadroom float64) (ready bool, reason string, tightest float64) {
	tightest = math.NaN()
	var why []string
	for _, r := range readings {
		if r.Err != nil {
			why = append(why, fmt.Sprintf("receiver %s: %v", r.Receiver, r.Err))
			continue
		}
		h := r.Headroom
		if !h.NoData && (math.IsNaN(tightest) || h.Headroom < tightest) {
			tightest = h.Headroom
		}
		if h.OK && !h.NoData && h.Headroom >= minHeadroom {
			continue
		}
		what := ""
		switch {
		case h.NoData && len(h.Reasons) == 0:
			what = "no data"
		case len(h.Reasons) > 0:
			what = strings.Join(h.Reasons, ", ")
		case h.Limiting != "":
			what = fmt.Sprintf("headroom %.2f (limiting: %s)", h.Headroom, h.Limiting)
		default:
			what = fmt.Sprintf("headroom %.2f", h.Headroom)
		}
		if h.OK && !h.NoData {
			what += fmt.Sprintf(", below --min-headroom %.2f", minHeadroom)
		}
		why = append(why, fmt.Sprintf("receiver %s: %s", r.Receiver, what))
	}
	return len(why) == 0, strings.Join(why, "; "), tightest
}

// Admit implements Pacer.
func (p *ClosedLoop) Admit(ctx context.Context, wait func(string)) (Admission, error) {
	if p.share == 0 {
		p.share, p.last = 1, math.NaN()
	}
	poll := cmpOr(p.Poll, DefaultPoll)
	began := time.Now()
	held, lastReason := false, ""
	var tightest float64
	for {
		ready, reason, h := Judge(p.Ask(ctx), p.MinHeadroom)
		if err := ctx.Err(); err != nil {
			p.waited += time.Since(began)
			return Admission{}, err
		}
		if ready {
			tightest = h
			break
		}
		held = true
		if reason != lastReason {
			wait(reason)
			lastReason = reason
		}
		sleep := poll
		if p.Timeout > 0 {
			left := p.Timeout - p.waited - time.Since(began)
			if left <= 0 {
				p.waited += time.Since(began)
				return Admission{}, fmt.Errorf("%w (%v): %s", ErrPacingTimeout, p.Timeout, reason)
			}
			sleep = min(sleep, left)
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			p.waited += time.Since(began)
			return Admission{}, ctx.Err()
		case <-t.C:
		}
	}
	var took time.Duration // time held back; asking alone is not waiting
	if held {
		took = time.Since(began)
		p.waited += took
	}

	minShare := p.MinShare
	if minShare <= 0 {
		minShare = DefaultMinShare
	}
	fall := p.Fall
	if fall <= 0 {
		fall = DefaultFall
	}
	note := ""
	switch {
	case held:
		if p.share > minShare {
			p.share = max(minShare, p.share/2)
			note = "batch halved: the receivers were not ready"
		}
	case !math.IsNaN(p.last) && !math.IsNaN(tightest) && tightest < p.last-fall:
		if p.share > minShare {
			p.share = max(minShare, p.share/2)
			note = fmt.Sprintf("batch halved: the receivers' headroom fell from %.2f to %.2f", p.last, tightest)
		}
	case p.share < 1:
		p.share = min(1, p.share*2)
		note = "batch grown back: the receivers' headroom held"
	}
	p.last = tightest
	return Admission{Share: p.share, Note: note, Waited: took, Headroom: tightest}, nil
}

// Waited is the time batches were held back so far.
func (p *ClosedLoop) Waited() time.Duration { return p.waited }

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

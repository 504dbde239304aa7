package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"
	promconfig "github.com/prometheus/common/config"
)

// Notifier defaults.
const (
	DefaultResendDelay    = time.Minute
	DefaultNotifyTimeout  = 10 * time.Second
	DefaultQueueCapacity  = 10000
	DefaultMaxBatch       = 64
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = 10 * time.Second
	DefaultRetryFor       = 10 * time.Minute
	DefaultErrorInterval  = time.Minute
)

// MaxHTTPConfigFileSize is the largest HTTP client configuration file
// HTTPClientFromFile reads (1 MiB: room for inline CA bundles).
const MaxHTTPConfigFileSize = 1 << 20

// backoffJitter is the share by which each retry wait is randomised, up or
// down, so that hosts whose Alertmanager failed at once do not retry in
// step.
const backoffJitter = 0.2

// maxErrorBody is how much of an error answer's body goes into the error.
const maxErrorBody = 256

// ErrNotDelivered is matched (errors.Is) by Flush's error when alerts were
// left undelivered.
var ErrNotDelivered = errors.New("alerts not delivered")

// ErrHTTPConfig is matched (errors.Is) by every error HTTPClientFromFile
// returns.
var ErrHTTPConfig = errors.New("invalid HTTP client configuration")

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	// URLs are the Alertmanagers' base URLs, e.g. "http://127.0.0.1:9093"
	// (a path prefix is kept). Every alert goes to each of them; each has
	// its own queue and retries, so one that is down does not hold up the
	// others.
	URLs []string
	// ResendDelay is how often a firing or resolved alert is sent again
	// while the Engine still holds it (default 1m). Firing alerts are sent
	// with an endsAt of four resend delays ahead, so that Alertmanager
	// resolves them by itself if stormwatch stops.
	ResendDelay time.Duration
	// Timeout bounds each POST (default 10s), and Stop's flush in all.
	Timeout time.Duration
	// QueueCapacity is how many alerts wait to be sent to one
	// Alertmanager at most (default 10000); beyond it the oldest are
	// dropped and counted.
	QueueCapacity int
	// MaxBatch is the most alerts in one POST (default 64).
	MaxBatch int
	// InitialBackoff is the wait before the first retry of a failed POST
	// (default 1s). Each further failure doubles it, up to MaxBackoff;
	// every wait is jittered by ±20% and never longer than MaxBackoff.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between two tries to one Alertmanager
	// (default 10s, at least InitialBackoff): what is queued reaches an
	// Alertmanager at most MaxBackoff after it is back, at the cost of
	// one POST per MaxBackoff while it is down.
	MaxBackoff time.Duration
	// RetryFor bounds how long an undelivered alert is retried (default
	// 10m). A firing alert is given up sooner, at its endsAt: sent later,
	// Alertmanager would take it as resolved. While the Engine holds an
	// alert, Send queues a fresh copy every ResendDelay, which replaces
	// the one waiting, so the bound matters only for alerts the Engine no
	// longer holds. Alerts given up are counted as dropped.
	RetryFor time.Duration
	// OnError, when set, is told about failed POSTs: at the first failure
	// to an Alertmanager, then at most once per ErrorInterval while
	// failures go on, with the Alertmanager's base URL (password
	// redacted), the latest error and the number of POSTs to it that
	// failed since the previous call (or since the Notifier was made).
	// It runs on that Alertmanager's sending goroutine: keep it short (a
	// log line); calls for different Alertmanagers may run at once.
	OnError func(url string, err error, failures uint64)
	// OnRecover, when set, is called when a POST succeeds after a run of
	// failures that OnError reported, with the number of POSTs that failed
	// in that run and the time since its first failure. Like OnError, it
	// runs on the sending goroutine, at most once per ErrorInterval.
	OnRecover func(url string, failures uint64, down time.Duration)
	// ErrorInterval is the least time between two OnError calls for one
	// Alertmanager (default 1m).
	ErrorInterval time.Duration
	// Instance is the instance label of every alert that has none; it
	// takes precedence over ExternalLabels["instance"]. Set it to the
	// instance label Prometheus gives the daemon's scrape (see
	// DefaultInstance), so that Alertmanager can group, inhibit and
	// silence the host's own alerts together with the fleet rules'.
	Instance string
	// ExternalLabels are added to every alert that lacks them; set one
	// that names the host (Instance), or the alerts of a fleet merge in
	// Alertmanager.
	ExternalLabels map[string]string
	// GeneratorURL is sent as every alert's generatorURL, e.g. the
	// daemon's /api/v1/alerts; empty leaves it out.
	GeneratorURL string
	// Client sends the requests (default: a new http.Client). Use
	// HTTPClientFromFile for TLS and authentication.
	Client *http.Client
}

// NotifierStats are a Notifier's counters since it was made. The counts
// are per Alertmanager: an alert sent to two counts twice.
type NotifierStats struct {
	// Queued is how many alerts wait to be sent.
	Queued int
	// Sent counts alerts an Alertmanager accepted.
	Sent uint64
	// Failed counts alerts in POSTs that failed (each try counts).
	Failed uint64
	// Dropped counts alerts given up undelivered: pushed out of a full
	// queue, or past their retry bound (NotifierOptions.RetryFor).
	Dropped uint64
	// LastError is the latest failed POST's error, nil if none failed.
	LastError error
	// Alertmanagers holds the same per Alertmanager, in the order of
	// NotifierOptions.URLs.
	Alertmanagers []AlertmanagerStats
}

// AlertmanagerStats are the counters and state of one Alertmanager.
type AlertmanagerStats struct {
	// URL is the Alertmanager's base URL, password redacted.
	URL string
	// Queued, Sent, Failed and Dropped are as in NotifierStats.
	Queued                int
	Sent, Failed, Dropped uint64
	// LastError is the latest failed POST's error, and LastErrorAt when
	// it failed; nil and zero if none failed.
	LastError   error
	LastErrorAt time.Time
	// LastSuccessAt is when a POST last succeeded; zero if none did.
	LastSuccessAt time.Time
	// FailingSince is when the current run of failed POSTs started; zero
	// while POSTs succeed.
	FailingSince time.Time
}

// postableAlert is one alert of Alertmanager's v2 API (POST
// /api/v2/alerts).
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// sent is what was last queued for one alert.
type sent struct {
	state    State
	activeAt time.Time
	at       time.Time
	alert    postableAlert
}

// notice is one alert waiting for one Alertmanager.
type notice struct {
	alert   postableAlert
	version uint64        // a newer notice of the same alert has a higher one
	queued  time.Time     // wall clock (monotonic) when this version was queued
	ttl     time.Duration // how long after queued it may still be sent
}

// taken is a notice in a POST under way.
type taken struct {
	fp      string
	version uint64
}

// amQueue is one Alertmanager: its queue (guarded by Notifier.mu) and its
// retry state (owned by its sending goroutine).
type amQueue struct {
	post string // POST URL
	name string // base URL, password redacted
	wake chan struct{}

	// Guarded by Notifier.mu.
	items                 map[string]*notice // by fingerprint
	order                 []string           // fingerprints in queue order, each once
	sent, failed, dropped uint64
	lastErr               error
	lastErrAt, lastOK     time.Time
	failingSince          time.Time

	// Owned by the sending goroutine.
	bo          *backoff.ExponentialBackOff
	retryAt     time.Time // zero: no wait
	streak      uint64    // POSTs failed in a row
	streakStart time.Time // when the first of them failed
	unreported  uint64    // failed POSTs not yet given to OnError
	reported    bool      // OnError was called during this streak
	lastReport  time.Time
}

// Notifier sends alerts to Alertmanager. Send decides what needs sending
// and queues it without blocking; Run posts the queues, one goroutine per
// Alertmanager, retrying failed POSTs with backoff. Pending alerts are
// never sent.
//
// Shutdown contract, in this order: Freeze as the shutdown begins, so
// that an evaluation cut short by it (which may see no data) cannot queue
// a resolution; stop sampling and wait for the loop to end; then Flush
// (or Stop). Flush and Stop only post what Send had queued, as it was
// queued: they never decide anything themselves, so no alert is sent
// resolved because the daemon is stopping, and a firing alert whose
// endsAt has passed is dropped rather than sent (Alertmanager would take
// it as resolved). If the daemon stays down, its firing alerts reach
// their endsAt, four resend delays after their last send, and
// Alertmanager resolves them by itself, as it does for Prometheus.
type Notifier struct {
	opts NotifierOptions
	ams  []*amQueue

	mu     sync.Mutex
	last   map[string]*sent // by fingerprint
	seq    uint64           // notice versions
	frozen bool

	flushOnce   sync.Once
	flushReq    chan struct{} // closed when a flush starts
	flushCtx    context.Context
	flushCancel context.CancelFunc // Stop's bound, released when Run returns
	started     atomic.Bool
	done        chan struct{} // closed when Run returns
}

// NewNotifier returns a Notifier posting to opts.URLs. Call Run to start
// sending.
func NewNotifier(opts NotifierOptions) (*Notifier, error) {
	if len(opts.URLs) == 0 {
		return nil, fmt.Errorf("alertmanager notifier: no URL")
	}
	if opts.ResendDelay <= 0 {
		opts.ResendDelay = DefaultResendDelay
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultNotifyTimeout
	}
	if opts.QueueCapacity <= 0 {
		opts.QueueCapacity = DefaultQueueCapacity
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = DefaultInitialBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.InitialBackoff)
	if opts.RetryFor <= 0 {
		opts.RetryFor = DefaultRetryFor
	}
	if opts.ErrorInterval <= 0 {
		opts.ErrorInterval = DefaultErrorInterval
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	n := &Notifier{
		opts:     opts,
		last:     map[string]*sent{},
		flushReq: make(chan struct{}),
		done:     make(chan struct{}),
	}
	for _, raw := range opts.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("alertmanager URL %q: %w", redactURL(raw), err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("alertmanager URL %q: want http(s)://host:port", u.Redacted())
		}
		name := u.Redacted()
		u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v2/alerts"
		n.ams = append(n.ams, &amQueue{
			post:  u.String(),
			name:  name,
			wake:  make(chan struct{}, 1),
			items: map[string]*notice{},
			bo: &backoff.ExponentialBackOff{
				InitialInterval:     opts.InitialBackoff,
				RandomizationFactor: backoffJitter,
				Multiplier:          2,
				// The jitter goes up to 20% above the interval: cap the
				// interval so that the wait stays within MaxBackoff.
				MaxInterval: time.Duration(float64(opts.MaxBackoff) / (1 + backoffJitter)),
			},
		})
	}
	return n, nil
}

// redactURL hides the password of a URL that does not parse.
func redactURL(raw string) string {
	if i := strings.LastIndex(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "://"); j >= 0 && j < i {
			return raw[:j+3] + "xxxxx" + raw[i:]
		}
		return "xxxxx" + raw[i:]
	}
	return raw
}

// Send takes every alert the Engine holds (Engine.Alerts) at now and queues
// those Alertmanager must hear about: an alert that started firing or was
// resolved since it was last sent, and any firing or resolved alert last
// sent ResendDelay ago. An alert that was sent firing and is no longer
// given (its rule was removed) is sent resolved. A notice still waiting
// for an Alertmanager is replaced by the newer one of the same alert.
// Send never blocks; after Freeze, Flush or Stop it does nothing.
func (n *Notifier) Send(now time.Time, alerts []Alert) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.frozen {
		return
	}
	seen := make(map[string]bool, len(alerts))
	wall := time.Now()
	queued := false
	for i := range alerts {
		a := &alerts[i]
		if a.State != StateFiring && a.State != StateResolved {
			continue
		}
		fp := a.Fingerprint()
		seen[fp] = true
		if l := n.last[fp]; l != nil && l.state == a.State && l.activeAt.Equal(a.ActiveAt) && now.Sub(l.at) < n.opts.ResendDelay {
			continue
		}
		pa := n.postable(now, a)
		n.last[fp] = &sent{state: a.State, activeAt: a.ActiveAt, at: now, alert: pa}
		n.enqueue(fp, pa, n.ttl(now, pa), wall)
		queued = true
	}
	for fp, l := range n.last {
		if seen[fp] {
			continue
		}
		if l.state == StateFiring {
			pa := l.alert
			pa.EndsAt = now
			n.enqueue(fp, pa, n.opts.RetryFor, wall)
			queued = true
		}
		delete(n.last, fp)
	}
	if !queued {
		return
	}
	for _, q := range n.ams {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// ttl is how long the notice pa, made at now, may be retried: RetryFor,
// and for a firing alert no later than its endsAt.
func (n *Notifier) ttl(now time.Time, pa postableAlert) time.Duration {
	if pa.EndsAt.After(now) {
		return min(n.opts.RetryFor, pa.EndsAt.Sub(now))
	}
	return n.opts.RetryFor
}

// enqueue puts pa in every queue, in place of a notice of the same alert
// still waiting. Call with n.mu held.
func (n *Notifier) enqueue(fp string, pa postableAlert, ttl time.Duration, wall time.Time) {
	n.seq++
	for _, q := range n.ams {
		nt := &notice{alert: pa, version: n.seq, queued: wall, ttl: ttl}
		if _, ok := q.items[fp]; !ok {
			q.order = append(q.order, fp)
		}
		q.items[fp] = nt // a replaced notice keeps its place in the queue
		if over := len(q.order) - n.opts.QueueCapacity; over > 0 {
			for _, old := range q.order[:over] {
				delete(q.items, old)
			}
			q.order = append(q.order[:0], q.order[over:]...)
			q.dropped += uint64(over)
		}
	}
}

func (n *Notifier) postable(now time.Time, a *Alert) postableAlert {
	labels := make(map[string]string, len(a.Labels)+len(n.opts.ExternalLabels)+1)
	for k, v := range n.opts.ExternalLabels {
		if v != "" {
			labels[k] = v
		}
	}
	if n.opts.Instance != "" {
		labels["instance"] = n.opts.Instance
	}
	for k, v := range a.Labels {
		if v != "" {
			labels[k] = v
		}
	}
	pa := postableAlert{
		Labels:       labels,
		Annotations:  maps.Clone(a.Annotations),
		StartsAt:     a.FiredAt,
		GeneratorURL: n.opts.GeneratorURL,
	}
	if pa.StartsAt.IsZero() {
		pa.StartsAt = a.ActiveAt
	}
	if a.State == StateResolved {
		pa.EndsAt = a.ResolvedAt
	} else {
		pa.EndsAt = now.Add(4 * n.opts.ResendDelay)
	}
	return pa
}

// Run posts the queues until ctx is done (at once, leaving what is
// queued) or a flush (Flush, Stop) has posted them or run out of time.
// Call it once.
func (n *Notifier) Run(ctx context.Context) {
	n.started.Store(true)
	defer close(n.done)
	defer func() {
		n.mu.Lock()
		if n.flushCancel != nil {
			n.flushCancel()
		}
		n.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Once a flush starts, its bound ends everything: the waits, and the
	// POSTs under way too, whenever they started.
	go func() {
		select {
		case <-n.flushReq:
			n.mu.Lock()
			fctx := n.flushCtx
			n.mu.Unlock()
			stop := context.AfterFunc(fctx, cancel)
			<-ctx.Done()
			stop()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for _, q := range n.ams {
		wg.Go(func() { n.deliver(ctx, q) })
	}
	wg.Wait()
}

// Freeze makes every later Send do nothing: what is queued stays queued
// and is still posted, nothing new is queued. The daemon calls it when it
// starts shutting down, before it stops sampling, so that an evaluation
// cut short by the shutdown cannot queue anything.
func (n *Notifier) Freeze() {
	n.mu.Lock()
	n.frozen = true
	n.mu.Unlock()
}

// Flush freezes the Notifier (see Freeze), has Run post what is queued,
// retrying failed POSTs with backoff (the first retry at once), until
// every queue is empty or ctx is done, and waits for Run to return. It
// sends nothing Send had not queued. It returns nil when everything was
// delivered, else an error matching ErrNotDelivered that says, per
// Alertmanager, how many alerts were left and the last error. Call it
// once, while Run runs; after Stop it only waits.
func (n *Notifier) Flush(ctx context.Context) error {
	n.startFlush(ctx, nil)
	select {
	case <-n.done:
	case <-ctx.Done():
		if n.started.Load() {
			<-n.done // its POSTs are cancelled with ctx
		}
	}
	return n.undelivered()
}

// Stop is Flush bounded by the Notifier's Timeout, without waiting: Run
// returns once the queues are empty or the Timeout has passed.
func (n *Notifier) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.Timeout)
	if !n.startFlush(ctx, cancel) {
		cancel()
	}
}

// startFlush freezes the Notifier and starts the flush bounded by ctx,
// unless one started already; it reports whether it started it.
func (n *Notifier) startFlush(ctx context.Context, cancel context.CancelFunc) bool {
	started := false
	n.flushOnce.Do(func() {
		n.mu.Lock()
		n.frozen = true
		n.flushCtx = ctx
		n.flushCancel = cancel
		n.mu.Unlock()
		close(n.flushReq)
		started = true
	})
	return started
}

// undelivered returns an error for what is still queued, nil if nothing.
func (n *Notifier) undelivered() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for _, q := range n.ams {
		if len(q.order) == 0 {
			continue
		}
		err := fmt.Errorf("alertmanager %s: %d %w", q.name, len(q.order), ErrNotDelivered)
		if q.lastErr != nil {
			err = fmt.Errorf("%w (last error: %w)", err, q.lastErr)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Stats returns the Notifier's counters.
func (n *Notifier) Stats() NotifierStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	var s NotifierStats
	var lastAt time.Time
	for _, q := range n.ams {
		as := AlertmanagerStats{
			URL: q.name, Queued: len(q.order),
			Sent: q.sent, Failed: q.failed, Dropped: q.dropped,
			LastError: q.lastErr, LastErrorAt: q.lastErrAt,
			LastSuccessAt: q.lastOK, FailingSince: q.failingSince,
		}
		s.Alertmanagers = append(s.Alertmanagers, as)
		s.Queued += as.Queued
		s.Sent += as.Sent
		s.Failed += as.Failed
		s.Dropped += as.Dropped
		if as.LastError != nil && !as.LastErrorAt.Before(lastAt) {
			s.LastError, lastAt = as.LastError, as.LastErrorAt
		}
	}
	return s
}

// deliver posts q's queue until ctx is done or, once a flush started,
// the queue is empty. Run cancels ctx when the flush's context ends.
func (n *Notifier) deliver(ctx context.Context, q *amQueue) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	flushReq := n.flushReq
	flushing := false
	startFlush := func() {
		flushReq, flushing = nil, true
		q.retryAt = time.Time{} // one more try at once
	}
	for ctx.Err() == nil {
		if !flushing {
			select {
			case <-flushReq:
				startFlush()
				continue
			default:
			}
		}
		n.mu.Lock()
		empty := len(q.order) == 0
		n.mu.Unlock()
		if empty {
			if flushing {
				return
			}
			select {
			case <-ctx.Done():
			case <-q.wake:
			case <-flushReq:
			}
			continue
		}
		if wait := time.Until(q.retryAt); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
			case <-timer.C:
			case <-flushReq:
				timer.Stop()
			}
			continue
		}
		n.attempt(ctx, q)
	}
}

// attempt posts one batch of q's queue and updates the retry state.
func (n *Notifier) attempt(ctx context.Context, q *amQueue) {
	batch, alerts := n.take(q)
	if len(batch) == 0 {
		return
	}
	body, err := json.Marshal(alerts)
	if err == nil {
		err = n.post(ctx, q.post, body)
	}
	now := time.Now()
	n.complete(q, batch, err, now)
	if err == nil {
		q.bo.Reset()
		q.retryAt = time.Time{}
		if q.reported && n.opts.OnRecover != nil {
			n.opts.OnRecover(q.name, q.streak, now.Sub(q.streakStart))
		}
		q.streak, q.reported = 0, false
		return
	}
	q.retryAt = now.Add(n.nextWait(q))
	if q.streak == 0 {
		q.streakStart = now
	}
	q.streak++
	q.unreported++
	if n.opts.OnError != nil && (q.lastReport.IsZero() || now.Sub(q.lastReport) >= n.opts.ErrorInterval) {
		n.opts.OnError(q.name, err, q.unreported)
		q.unreported, q.reported, q.lastReport = 0, true, now
	}
}

// nextWait is the wait before the next try to q after a failure: about
// InitialBackoff, doubling at each failure in a row up to MaxBackoff,
// jittered by ±20% and never above MaxBackoff.
func (n *Notifier) nextWait(q *amQueue) time.Duration {
	return min(q.bo.NextBackOff(), n.opts.MaxBackoff)
}

// take drops q's notices past their bound and returns the first MaxBatch
// others.
func (n *Notifier) take(q *amQueue) ([]taken, []postableAlert) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	expired := false
	for fp, nt := range q.items {
		if now.Sub(nt.queued) >= nt.ttl {
			delete(q.items, fp)
			q.dropped++
			expired = true
		}
	}
	if expired {
		q.order = slices.DeleteFunc(q.order, func(fp string) bool { return q.items[fp] == nil })
	}
	k := min(len(q.order), n.opts.MaxBatch)
	batch := make([]taken, k)
	alerts := make([]postableAlert, k)
	for i, fp := range q.order[:k] {
		nt := q.items[fp]
		batch[i] = taken{fp: fp, version: nt.version}
		alerts[i] = nt.alert
	}
	return batch, alerts
}

// complete records a POST's outcome: on success the notices posted leave
// the queue, unless a newer one of the same alert replaced them meanwhile.
func (n *Notifier) complete(q *amQueue, batch []taken, err error, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		q.failed += uint64(len(batch))
		q.lastErr, q.lastErrAt = err, now
		if q.failingSince.IsZero() {
			q.failingSince = now
		}
		return
	}
	q.sent += uint64(len(batch))
	q.lastOK, q.failingSince = now, time.Time{}
	for _, t := range batch {
		if nt := q.items[t.fp]; nt != nil && nt.version == t.version {
			delete(q.items, t.fp)
		}
	}
	q.order = slices.DeleteFunc(q.order, func(fp string) bool { return q.items[fp] == nil })
}

func (n *Notifier) post(ctx context.Context, u string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("alertmanager answered %s: %s", resp.Status, errorBody(msg))
	}
	return nil
}

// errorBody makes an error answer's body fit for a log line: valid UTF-8,
// one line, at most maxErrorBody bytes.
func errorBody(b []byte) string {
	cut := len(b) > maxErrorBody
	if cut {
		b = b[:maxErrorBody]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1] // a rune cut in half
		}
	}
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
	if cut {
		s += " …"
	}
	return s
}

// HTTPClientFromFile reads an HTTP client configuration file in the format
// of Prometheus's alerting and scrape configs (github.com/prometheus/
// common/config HTTPClientConfig: tls_config, basic_auth, authorization,
// oauth2, proxy_url, follow_redirects, enable_http2, http_headers) and
// returns the client for NotifierOptions.Client. Relative paths in the
// file are relative to its directory. The file must be a regular file of
// at most MaxHTTPConfigFileSize bytes with no unknown field; every file
// it names (CA, client certificate and key, password, credentials) must
// be a regular file readable now. Secret files are read again at every
// request and certificate files when they change, so they can be rotated
// without a restart. Errors match ErrHTTPConfig and name the file and
// the field.
func HTTPClientFromFile(path string) (*http.Client, error) {
	b, err := readRegularFile(path, MaxHTTPConfigFileSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHTTPConfig, err)
	}
	cfg, err := promconfig.LoadHTTPConfig(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrHTTPConfig, path, err)
	}
	cfg.SetDirectory(filepath.Dir(path))
	for _, f := range httpConfigFiles(cfg) {
		if f.path == "" {
			continue
		}
		if _, err := readRegularFile(f.path, MaxHTTPConfigFileSize); err != nil {
			return nil, fmt.Errorf("%w: %s: %s: %w", ErrHTTPConfig, path, f.field, err)
		}
	}
	client, err := promconfig.NewClientFromConfig(*cfg, "alertmanager")
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrHTTPConfig, path, err)
	}
	return client, nil
}

type configFile struct{ field, path string }

// httpConfigFiles lists the files cfg names, with the field naming each.
func httpConfigFiles(cfg *promconfig.HTTPClientConfig) []configFile {
	tls := func(prefix string, t *promconfig.TLSConfig) []configFile {
		return []configFile{
			{prefix + "tls_config.ca_file", t.CAFile},
			{prefix + "tls_config.cert_file", t.CertFile},
			{prefix + "tls_config.key_file", t.KeyFile},
		}
	}
	files := tls("", &cfg.TLSConfig)
	if a := cfg.BasicAuth; a != nil {
		files = append(files,
			configFile{"basic_auth.username_file", a.UsernameFile},
			configFile{"basic_auth.password_file", a.PasswordFile})
	}
	if a := cfg.Authorization; a != nil {
		files = append(files, configFile{"authorization.credentials_file", a.CredentialsFile})
	}
	if o := cfg.OAuth2; o != nil {
		files = append(files,
			configFile{"oauth2.client_secret_file", o.ClientSecretFile},
			configFile{"oauth2.client_certificate_key_file", o.ClientCertificateKeyFile})
		files = append(files, tls("oauth2.", &o.TLSConfig)...)
	}
	return files
}

// readRegularFile reads path, which must be a regular file of at most
// limit bytes. It opens without blocking, so a FIFO is an error, not a
// hang.
func readRegularFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fileType(fi.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than the %d bytes accepted", path, limit)
	}
	return b, nil
}

func fileType(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return m.Type().String()
}

// DefaultInstance returns the instance label Prometheus most likely gives
// its scrape of a daemon listening on listenAddress (the first
// --web.listen-address, host:port): a scrape target is host:port, and
// Prometheus labels it so. An empty or wildcard host (":9955",
// "0.0.0.0:9955", "[::]:9955") becomes the machine's hostname, as a static
// or DNS target would name it; any other host is kept. Service discovery
// that names targets by IP needs the flag set explicitly.
func DefaultInstance(listenAddress string) (string, error) {
	host, _ := os.Hostname()
	return defaultInstance(listenAddress, host)
}

func defaultInstance(listenAddress, hostname string) (string, error) {
	host, port, err := net.SplitHostPort(listenAddress)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", listenAddress, err)
	}
	if port == "" {
		return "", fmt.Errorf("listen address %q: no port", listenAddress)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if hostname == "" {
			return "", fmt.Errorf("listen address %q: no host, and the hostname is unknown", listenAddress)
		}
		host = hostname
	}
	return net.JoinHostPort(host, port), nil
}

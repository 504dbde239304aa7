package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Notifier defaults.
const (
	DefaultResendDelay   = time.Minute
	DefaultNotifyTimeout = 10 * time.Second
	DefaultQueueCapacity = 10000
	DefaultMaxBatch      = 64
)

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	// URLs are the Alertmanagers' base URLs, e.g. "http://127.0.0.1:9093"
	// (a path prefix is kept). Every batch goes to each of them.
	URLs []string
	// ResendDelay is how often a firing or resolved alert is sent again
	// while the Engine still holds it (default 1m). Firing alerts are sent
	// with an endsAt of four resend delays ahead, so that Alertmanager
	// resolves them by itself if stormwatch stops.
	ResendDelay time.Duration
	// Timeout bounds each POST (default 10s).
	Timeout time.Duration
	// QueueCapacity is how many alerts wait to be sent at most (default
	// 10000); beyond it the oldest are dropped and counted.
	QueueCapacity int
	// MaxBatch is the most alerts in one POST (default 64).
	MaxBatch int
	// ExternalLabels are added to every alert that lacks them; set one
	// that names the host (e.g. instance), or the alerts of a fleet
	// merge in Alertmanager.
	ExternalLabels map[string]string
	// GeneratorURL is sent as every alert's generatorURL, e.g. the
	// daemon's /api/v1/alerts; empty leaves it out.
	GeneratorURL string
	// Client sends the requests (default: a new http.Client).
	Client *http.Client
}

// NotifierStats are a Notifier's counters since it was made.
type NotifierStats struct {
	// Queued is how many alerts wait to be sent.
	Queued int
	// Sent counts alerts an Alertmanager accepted (once per Alertmanager).
	Sent uint64
	// Failed counts alerts whose POST failed (once per Alertmanager).
	Failed uint64
	// Dropped counts alerts dropped from a full queue.
	Dropped uint64
	// LastError is the latest failed POST's error, nil if none failed.
	LastError error
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

// Notifier sends alerts to Alertmanager. Send decides what needs sending
// and queues it without blocking; Run posts the queue in its own
// goroutine. Pending alerts are never sent.
type Notifier struct {
	opts NotifierOptions
	urls []string

	mu    sync.Mutex
	last  map[string]*sent // by fingerprint
	queue []postableAlert
	err   error

	more     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once

	sentN, failedN, droppedN atomic.Uint64
}

// NewNotifier returns a Notifier posting to opts.URLs. Call Run to start
// sending.
func NewNotifier(opts NotifierOptions) (*Notifier, error) {
	if len(opts.URLs) == 0 {
		return nil, fmt.Errorf("alertmanager notifier: no URL")
	}
	n := &Notifier{
		opts: opts,
		last: map[string]*sent{},
		more: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
	for _, raw := range opts.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("alertmanager URL %q: %w", raw, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("alertmanager URL %q: want http(s)://host:port", raw)
		}
		u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v2/alerts"
		n.urls = append(n.urls, u.String())
	}
	if n.opts.ResendDelay <= 0 {
		n.opts.ResendDelay = DefaultResendDelay
	}
	if n.opts.Timeout <= 0 {
		n.opts.Timeout = DefaultNotifyTimeout
	}
	if n.opts.QueueCapacity <= 0 {
		n.opts.QueueCapacity = DefaultQueueCapacity
	}
	if n.opts.MaxBatch <= 0 {
		n.opts.MaxBatch = DefaultMaxBatch
	}
	if n.opts.Client == nil {
		n.opts.Client = &http.Client{}
	}
	return n, nil
}

// Send takes every alert the Engine holds (Engine.Alerts) at now and queues
// those Alertmanager must hear about: an alert that started firing or was
// resolved since it was last sent, and any firing or resolved alert last
// sent ResendDelay ago. An alert that was sent firing and is no longer
// given (its rule was removed) is sent resolved. Send never blocks.
func (n *Notifier) Send(now time.Time, alerts []Alert) {
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := make(map[string]bool, len(alerts))
	var batch []postableAlert
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
		batch = append(batch, pa)
	}
	for fp, l := range n.last {
		if seen[fp] {
			continue
		}
		if l.state == StateFiring {
			pa := l.alert
			pa.EndsAt = now
			batch = append(batch, pa)
		}
		delete(n.last, fp)
	}
	if len(batch) == 0 {
		return
	}
	n.queue = append(n.queue, batch...)
	if over := len(n.queue) - n.opts.QueueCapacity; over > 0 {
		n.queue = append(n.queue[:0], n.queue[over:]...)
		n.droppedN.Add(uint64(over))
	}
	select {
	case n.more <- struct{}{}:
	default:
	}
}

func (n *Notifier) postable(now time.Time, a *Alert) postableAlert {
	labels := make(map[string]string, len(a.Labels)+len(n.opts.ExternalLabels))
	for k, v := range n.opts.ExternalLabels {
		if v != "" {
			labels[k] = v
		}
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

// Run posts queued alerts until ctx is done or Stop is called; after Stop
// it posts what is still queued, within one Timeout in all (a hung
// Alertmanager cannot hold up shutdown batch after batch), then returns.
func (n *Notifier) Run(ctx context.Context) {
	postCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			time.AfterFunc(n.opts.Timeout, cancel)
		case <-postCtx.Done():
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.stop:
			n.drain(postCtx)
			return
		case <-n.more:
			n.drain(postCtx)
		}
	}
}

// Stop makes Run post what is queued and return. It does not wait.
func (n *Notifier) Stop() { n.stopOnce.Do(func() { close(n.stop) }) }

// Stats returns the Notifier's counters.
func (n *Notifier) Stats() NotifierStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return NotifierStats{
		Queued:    len(n.queue),
		Sent:      n.sentN.Load(),
		Failed:    n.failedN.Load(),
		Dropped:   n.droppedN.Load(),
		LastError: n.err,
	}
}

// drain posts the queue in batches until it is empty.
func (n *Notifier) drain(ctx context.Context) {
	for ctx.Err() == nil {
		n.mu.Lock()
		k := min(len(n.queue), n.opts.MaxBatch)
		batch := make([]postableAlert, k)
		copy(batch, n.queue)
		n.queue = append(n.queue[:0], n.queue[k:]...)
		n.mu.Unlock()
		if k == 0 {
			return
		}
		body, err := json.Marshal(batch)
		if err != nil {
			n.fail(uint64(k*len(n.urls)), err)
			continue
		}
		var wg sync.WaitGroup
		for _, u := range n.urls {
			wg.Go(func() {
				if err := n.post(ctx, u, body); err != nil {
					n.fail(uint64(k), err)
					return
				}
				n.sentN.Add(uint64(k))
			})
		}
		wg.Wait()
	}
}

func (n *Notifier) fail(count uint64, err error) {
	n.failedN.Add(count)
	n.mu.Lock()
	n.err = err
	n.mu.Unlock()
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
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", u, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

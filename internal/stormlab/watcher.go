//go:build linux

package stormlab

import (
	"strconv"
	"sync"
	"time"
)

// Watcher scrapes a daemon in the background and remembers, per sample
// the daemon took, what it said about one listener, and when each alert
// was first seen in each state.
type Watcher struct {
	d    *Daemon
	port string

	mu      sync.Mutex
	samples []WatchedSample
	alerts  map[[2]string]time.Time // {alertname, alertstate} → first scrape showing it
	errs    int
	stop    chan struct{}
	done    chan struct{}
}

// WatchedSample is one daemon sample as a scrape showed it.
type WatchedSample struct {
	// Time is the sample's start (stormwatch_last_sample_timestamp_seconds).
	Time time.Time
	// Queue and Limit are the watched listener's accept queue length and
	// limit; SynRecv its half-open handshakes.
	Queue, Limit, SynRecv float64
	// Overflows is stormwatch_tcp_listen_overflows_total.
	Overflows float64
	// Interval is the sampling interval in force after the sample
	// (stormwatch_sample_interval_seconds), 0 when not exported.
	Interval time.Duration
	// Seq is stormwatch_samples_total as of the sample: consecutive
	// samples differ by one (0 when not exported).
	Seq float64
}

// NewWatcher watches d's figures for the listener on port.
func NewWatcher(d *Daemon, port int) *Watcher {
	return &Watcher{d: d, port: strconv.Itoa(port), alerts: map[[2]string]time.Time{}}
}

// Start scrapes every interval until Stop.
func (w *Watcher) Start(interval time.Duration) {
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			w.scrapeOnce()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends the scraping; it may be called more than once.
func (w *Watcher) Stop() {
	if w.stop == nil {
		return
	}
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *Watcher) scrapeOnce() {
	now := time.Now()
	e, err := w.d.Scrape()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.errs++
		return
	}
	ts, ok := e.Value("stormwatch_last_sample_timestamp_seconds")
	if !ok {
		return
	}
	t := time.Unix(0, int64(ts*1e9))
	if n := len(w.samples); n == 0 || !w.samples[n-1].Time.Equal(t) {
		s := WatchedSample{Time: t}
		s.Queue, _ = e.Value("stormwatch_listener_accept_queue_length", "port", w.port)
		s.Limit, _ = e.Value("stormwatch_listener_accept_queue_limit", "port", w.port)
		s.SynRecv, _ = e.Value("stormwatch_listener_syn_recv", "port", w.port)
		s.Overflows, _ = e.Value("stormwatch_tcp_listen_overflows_total")
		if v, ok := e.Value("stormwatch_sample_interval_seconds"); ok {
			s.Interval = time.Duration(v * float64(time.Second))
		}
		s.Seq, _ = e.Value("stormwatch_samples_total")
		w.samples = append(w.samples, s)
	}
	for _, a := range e["stormwatch_alerts"] {
		k := [2]string{a.Labels["alertname"], a.Labels["alertstate"]}
		if _, seen := w.alerts[k]; !seen {
			w.alerts[k] = now
		}
	}
}

// Samples returns the daemon samples seen so far.
func (w *Watcher) Samples() []WatchedSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WatchedSample(nil), w.samples...)
}

// FirstFill returns the start of the first sample whose accept queue was
// at least fill of its limit, zero if none.
func (w *Watcher) FirstFill(fill float64) time.Time {
	for _, s := range w.Samples() {
		if s.Limit > 0 && s.Queue/s.Limit >= fill {
			return s.Time
		}
	}
	return time.Time{}
}

// FirstAlert returns when a scrape first showed the alert in state, zero
// if none did.
func (w *Watcher) FirstAlert(name, state string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.alerts[[2]string{name, state}]
}

// Gaps returns the time between each pair of consecutive daemon samples
// the watcher saw both of (their stormwatch_samples_total differ by one),
// from is to to; and, of the samples seen in that span, the time from the
// first to the last and how many cycles the daemon ran in it.
func (w *Watcher) Gaps(from, to time.Time) (gaps []time.Duration, span time.Duration, cycles int) {
	var first, last *WatchedSample
	ss := w.Samples()
	for i := range ss {
		s := &ss[i]
		if s.Time.Before(from) || s.Time.After(to) {
			continue
		}
		if first == nil {
			first = s
		}
		last = s
		if i > 0 && s.Seq == ss[i-1].Seq+1 && !ss[i-1].Time.Before(from) {
			gaps = append(gaps, s.Time.Sub(ss[i-1].Time))
		}
	}
	if first == nil {
		return nil, 0, 0
	}
	return gaps, last.Time.Sub(first.Time), int(last.Seq - first.Seq)
}

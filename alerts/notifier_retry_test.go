package alerts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// waitFor polls cond until it holds, failing after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// backoffInterval is the centre of the k-th wait (k from 0) of a Notifier
// with the given options: InitialBackoff doubled k times, capped so that
// the jitter (±20%) stays within MaxBackoff.
func backoffInterval(opts NotifierOptions, k int) time.Duration {
	capped := time.Duration(float64(opts.MaxBackoff) / 1.2)
	d := opts.InitialBackoff
	for range k {
		if d >= capped {
			break
		}
		d *= 2
	}
	return min(d, capped)
}

// TestNotifierBackoffWaits draws the waits between retries: each within
// ±20% of InitialBackoff doubled per failure, never above MaxBackoff, the
// cap reached, and spread there by the jitter.
func TestNotifierBackoffWaits(t *testing.T) {
	for _, tc := range []struct {
		name             string
		initial, maxWait time.Duration
		wantMax          time.Duration
	}{
		{"defaults", 0, 0, 10 * time.Second},
		{"short", 50 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond},
		{"initial above max", time.Second, 500 * time.Millisecond, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := NewNotifier(NotifierOptions{URLs: []string{"http://127.0.0.1:9093"}, InitialBackoff: tc.initial, MaxBackoff: tc.maxWait})
			if err != nil {
				t.Fatal(err)
			}
			if n.opts.MaxBackoff != tc.wantMax {
				t.Errorf("MaxBackoff %s, want %s", n.opts.MaxBackoff, tc.wantMax)
			}
			q := n.ams[0]
			var atCap []time.Duration
			for range 200 {
				q.bo.Reset()
				for k := range 16 {
					w := n.nextWait(q)
					centre := backoffInterval(n.opts, k)
					lo, hi := time.Duration(0.8*float64(centre)), min(time.Duration(1.2*float64(centre))+1, n.opts.MaxBackoff)
					if w < lo || w > hi {
						t.Fatalf("wait %d = %s, want within [%s, %s]", k, w, lo, hi)
					}
					if k == 15 {
						atCap = append(atCap, w)
					}
				}
			}
			lo, hi := slices.Min(atCap), slices.Max(atCap)
			if hi < time.Duration(0.9*float64(n.opts.MaxBackoff)) {
				t.Errorf("longest wait %s, want near MaxBackoff %s", hi, n.opts.MaxBackoff)
			}
			if hi-lo < n.opts.MaxBackoff/10 {
				t.Errorf("waits at the cap within [%s, %s]: not jittered", lo, hi)
			}
		})
	}
}

// TestNotifierRetriesUntilRecovery: an Alertmanager failing for 1.5s gets
// the alert within MaxBackoff of its recovery, with no further Send (no
// resend is due for an hour), and the failed tries follow the backoff.
func TestNotifierRetriesUntilRecovery(t *testing.T) {
	am := newFakeAM(t)
	am.status.Store(http.StatusServiceUnavailable)
	opts := NotifierOptions{
		URLs: []string{am.URL + "/prefix"}, ResendDelay: time.Hour,
		InitialBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond,
	}
	n := startNotifier(t, opts)
	n.Send(at(0), []Alert{firing("A", 0, 0)})
	time.Sleep(1500 * time.Millisecond)
	am.status.Store(0)
	back := time.Now()
	got := am.wait(t)
	delay := time.Since(back)
	if len(got) != 1 || got[0].Labels["alertname"] != "A" {
		t.Fatalf("got %+v, want A", got)
	}
	// MaxBackoff, plus a margin for a loaded machine; without retries the
	// alert would wait for the next Send.
	if delay > opts.MaxBackoff+1500*time.Millisecond {
		t.Errorf("delivered %s after Alertmanager recovered, want within MaxBackoff %s", delay, opts.MaxBackoff)
	}
	tries := am.triesSince(0)
	if len(tries) < 3 {
		t.Fatalf("%d tries (the last one delivered) over 1.5s of failures, want retries", len(tries))
	}
	// The server sees a try at least the wait after the previous one was
	// answered, so a gap is never below the wait's lower bound.
	for k := 1; k < len(tries); k++ {
		gap := tries[k].Sub(tries[k-1])
		if lo := time.Duration(0.8 * float64(backoffInterval(n.opts, k-1))); gap < lo {
			t.Errorf("try %d came %s after the previous one, want at least %s", k, gap, lo)
		}
	}
	t.Logf("%d tries, delivered %s after recovery", len(tries), delay)
	waitFor(t, "sent counted", func() bool { return n.Stats().Sent == 1 })
	if s := n.Stats(); s.Failed != uint64(len(tries)-1) || s.Queued != 0 || s.Alertmanagers[0].FailingSince != (time.Time{}) {
		t.Errorf("stats %+v, want %d failed, none queued, not failing", s, len(tries)-1)
	}
}

// TestNotifierReplacesQueued: while Alertmanager fails, a newer notice of
// an alert replaces the one waiting (a resend, then its resolution), and
// only the latest is delivered.
func TestNotifierReplacesQueued(t *testing.T) {
	am := newFakeAM(t)
	am.status.Store(http.StatusServiceUnavailable)
	n := startNotifier(t, NotifierOptions{
		URLs: []string{am.URL + "/prefix"}, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	a, b := firing("A", 0, 0), firing("B", 62, 62)
	n.Send(at(0), []Alert{a})
	waitFor(t, "a failed try", func() bool { return n.Stats().Failed > 0 })
	n.Send(at(61), []Alert{a})    // resend of A
	n.Send(at(62), []Alert{a, b}) // B fires
	if s := n.Stats(); s.Queued != 2 {
		t.Errorf("%d queued after a resend, want 2 (A replaced, B)", s.Queued)
	}
	a.State, a.ResolvedAt = StateResolved, at(70)
	n.Send(at(70), []Alert{a, b})
	am.status.Store(0)

	want := []postableAlert{
		{Labels: a.Labels, Annotations: a.Annotations, StartsAt: at(0), EndsAt: at(70)},
		{Labels: b.Labels, Annotations: b.Annotations, StartsAt: at(62), EndsAt: at(62).Add(4 * time.Minute)},
	}
	if diff := cmp.Diff(want, am.wait(t)); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	am.none(t)
	waitFor(t, "sent counted", func() bool { return n.Stats().Sent == 2 })
	if s := n.Stats(); s.Queued != 0 || s.Dropped != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestNotifierAlertmanagersIndependent: one Alertmanager down does not
// hold up the other.
func TestNotifierAlertmanagersIndependent(t *testing.T) {
	up, down := newFakeAM(t), newFakeAM(t)
	down.status.Store(http.StatusBadGateway)
	n := startNotifier(t, NotifierOptions{
		URLs: []string{down.URL + "/prefix", up.URL + "/prefix"}, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	n.Send(at(0), []Alert{firing("A", 0, 0)})
	up.wait(t)
	n.Send(at(1), []Alert{firing("A", 0, 0), firing("B", 1, 1)})
	if got := up.wait(t); len(got) != 1 || got[0].Labels["alertname"] != "B" {
		t.Errorf("second batch %+v, want B", got)
	}
	waitFor(t, "failures counted", func() bool { return n.Stats().Alertmanagers[0].Failed >= 2 })
	s := n.Stats()
	if d, u := s.Alertmanagers[0], s.Alertmanagers[1]; d.URL != down.URL+"/prefix" || d.Queued != 2 || d.Sent != 0 || d.LastError == nil ||
		u.URL != up.URL+"/prefix" || u.Queued != 0 || u.Sent != 2 || u.LastError != nil {
		t.Errorf("per-Alertmanager stats %+v", s.Alertmanagers)
	}
}

// TestNotifierOnErrorRateLimited: with Alertmanager failing every few
// milliseconds, OnError is called at the first failure, then at most once
// per ErrorInterval with the count since the previous call; the URL and
// error never show the password; OnRecover closes the run with its full
// count. The test runs until three calls were made, however long the
// machine takes; without the limit, calls would come one POST apart.
func TestNotifierOnErrorRateLimited(t *testing.T) {
	am := newFakeAM(t)
	am.status.Store(http.StatusServiceUnavailable)
	u, err := url.Parse(am.URL + "/prefix")
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("stormwatch", "s3cret")
	type call struct {
		at       time.Time
		url      string
		err      error
		failures uint64
		down     time.Duration
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	recovered := make(chan call, 10)
	const interval = 500 * time.Millisecond
	n := startNotifier(t, NotifierOptions{
		URLs:           []string{u.String()},
		InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		ErrorInterval: interval,
		OnError: func(url string, err error, failures uint64) {
			mu.Lock()
			calls = append(calls, call{at: time.Now(), url: url, err: err, failures: failures})
			mu.Unlock()
		},
		OnRecover: func(url string, failures uint64, down time.Duration) {
			recovered <- call{url: url, failures: failures, down: down}
		},
	})
	start := time.Now()
	n.Send(at(0), []Alert{firing("A", 0, 0)})
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		k := len(calls)
		mu.Unlock()
		if k >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d OnError calls in 30s of failures, want one per %s", k, interval)
		}
		time.Sleep(10 * time.Millisecond)
	}
	am.status.Store(0)
	am.wait(t)
	var rec call
	select {
	case rec = <-recovered:
	case <-time.After(5 * time.Second):
		t.Fatal("OnRecover not called")
	}
	elapsed := time.Since(start)
	mu.Lock()
	cs := slices.Clone(calls)
	mu.Unlock()
	failedPOSTs := n.Stats().Failed // one alert per POST

	redacted := strings.Replace(u.String(), "s3cret", "xxxxx", 1)
	if cs[0].failures != 1 {
		t.Errorf("first call reports %d failures, want 1 (the first failure, at once)", cs[0].failures)
	}
	var reported uint64
	for i, c := range cs {
		reported += c.failures
		if c.url != redacted || strings.Contains(c.err.Error(), "s3cret") {
			t.Errorf("call %d: url %q, err %q: want %q and no password", i, c.url, c.err, redacted)
		}
		if want := "alertmanager answered 503 Service Unavailable: maintenance window"; c.err.Error() != want {
			t.Errorf("call %d: err %q, want %q", i, c.err, want)
		}
		// The limiter reads the clock just before the call: allow for the
		// goroutine being descheduled in between.
		if i > 0 && c.at.Sub(cs[i-1].at) < interval-50*time.Millisecond {
			t.Errorf("calls %d and %d %s apart, want at least %s", i-1, i, c.at.Sub(cs[i-1].at), interval)
		}
	}
	if maxCalls := 1 + int(elapsed/interval); len(cs) > maxCalls {
		t.Errorf("%d calls in %s, want at most %d", len(cs), elapsed, maxCalls)
	}
	if reported > failedPOSTs || reported < uint64(len(cs)) {
		t.Errorf("calls report %d failures in all, want between %d (one per call) and the %d failed POSTs", reported, len(cs), failedPOSTs)
	}
	if rec.url != redacted || rec.failures != failedPOSTs || rec.down < 2*interval {
		t.Errorf("OnRecover(%q, %d, %s), want (%q, %d, at least %s)", rec.url, rec.failures, rec.down, redacted, failedPOSTs, 2*interval)
	}
	t.Logf("%d failed POSTs, %d OnError calls, down %s", failedPOSTs, len(cs), rec.down)
}

// TestNotifierFlush: Flush retries until Alertmanager takes what is
// queued, then Send does nothing.
func TestNotifierFlush(t *testing.T) {
	am := newFakeAM(t)
	am.status.Store(http.StatusServiceUnavailable)
	n, err := NewNotifier(NotifierOptions{URLs: []string{am.URL + "/prefix"}, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go n.Run(context.Background())
	n.Send(at(0), []Alert{firing("A", 0, 0)})
	waitFor(t, "a failed try", func() bool { return n.Stats().Failed > 0 })
	time.AfterFunc(300*time.Millisecond, func() { am.status.Store(0) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Flush(ctx); err != nil {
		t.Errorf("Flush: %v", err)
	}
	if got := am.wait(t); len(got) != 1 || got[0].Labels["alertname"] != "A" {
		t.Errorf("flushed %+v, want A", got)
	}
	n.Send(at(1), []Alert{firing("B", 1, 1)})
	if s := n.Stats(); s.Queued != 0 {
		t.Errorf("Send after Flush queued %d", s.Queued)
	}
	am.none(t)
}

// TestNotifierFlushBounded: with Alertmanager down, Flush gives up when
// its context ends and says what was left.
func TestNotifierFlushBounded(t *testing.T) {
	am := newFakeAM(t)
	am.status.Store(http.StatusServiceUnavailable)
	n, err := NewNotifier(NotifierOptions{URLs: []string{am.URL + "/prefix"}, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go n.Run(context.Background())
	n.Send(at(0), []Alert{firing("A", 0, 0), firing("B", 0, 0)})
	waitFor(t, "a failed try", func() bool { return n.Stats().Failed > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err = n.Flush(ctx) // tries again at once, then backs off
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Flush took %s with a 1s bound", d)
	}
	want := fmt.Sprintf("alertmanager %s/prefix: 2 alerts not delivered (last error: alertmanager answered 503 Service Unavailable: maintenance window)", am.URL)
	if err == nil || err.Error() != want || !errors.Is(err, ErrNotDelivered) {
		t.Errorf("Flush: %v, want %q matching ErrNotDelivered", err, want)
	}
	if len(am.triesSince(0)) < 2 {
		t.Errorf("%d tries during the flush, want retries", len(am.triesSince(0)))
	}
}

// TestNotifierFlushSendsNoResolution: a flush posts only what Send queued.
// A firing alert delivered before is not resolved by it; one whose endsAt
// passed while Alertmanager was down is dropped, not sent (Alertmanager
// would take it as resolved).
func TestNotifierFlushSendsNoResolution(t *testing.T) {
	am := newFakeAM(t)
	n, err := NewNotifier(NotifierOptions{
		URLs: []string{am.URL + "/prefix"}, ResendDelay: 25 * time.Millisecond, // endsAt 100ms ahead
		InitialBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	go n.Run(context.Background())
	n.Send(at(0), []Alert{firing("A", 0, 0)})
	am.wait(t)
	am.status.Store(http.StatusServiceUnavailable)
	n.Send(at(0), []Alert{firing("A", 0, 0), firing("B", 0, 0)}) // B new; A not due
	waitFor(t, "a failed try", func() bool { return n.Stats().Failed > 0 })
	time.Sleep(150 * time.Millisecond) // past B's endsAt
	am.status.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Flush(ctx); err != nil {
		t.Errorf("Flush: %v", err)
	}
	am.none(t)
	if s := n.Stats(); s.Sent != 1 || s.Dropped != 1 || s.Queued != 0 {
		t.Errorf("stats %+v, want 1 sent (A firing), 1 dropped (B past its endsAt)", s)
	}
}

// TestNotifierFreeze: after Freeze, Send queues nothing while Run goes on
// delivering what was queued.
func TestNotifierFreeze(t *testing.T) {
	am := newFakeAM(t)
	am.status.Store(http.StatusServiceUnavailable)
	n := startNotifier(t, NotifierOptions{URLs: []string{am.URL + "/prefix"}, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	n.Send(at(0), []Alert{firing("A", 0, 0)})
	n.Freeze()
	n.Send(at(1), nil) // would resolve A
	n.Send(at(2), []Alert{firing("B", 2, 2)})
	am.status.Store(0)
	got := am.wait(t)
	if len(got) != 1 || got[0].Labels["alertname"] != "A" || !got[0].EndsAt.After(at(2)) {
		t.Errorf("delivered %+v, want A firing only", got)
	}
	am.none(t)
}

// TestNotifierInstance: Instance labels every alert, over
// ExternalLabels["instance"], and under the alert's own label.
func TestNotifierInstance(t *testing.T) {
	am := newFakeAM(t)
	n := startNotifier(t, NotifierOptions{
		URLs: []string{am.URL + "/prefix"}, Instance: "cache-1:9955",
		ExternalLabels: map[string]string{"instance": "cache-1", "dc": "eu1"},
	})
	own := firing("B", 0, 0)
	own.Labels = map[string]string{"alertname": "B", "instance": "valkey-7"}
	n.Send(at(0), []Alert{firing("A", 0, 0), own})
	var got []map[string]string
	for _, a := range am.wait(t) {
		got = append(got, a.Labels)
	}
	want := []map[string]string{
		{"alertname": "A", "severity": "warning", "instance": "cache-1:9955", "dc": "eu1"},
		{"alertname": "B", "instance": "valkey-7", "dc": "eu1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
}

func TestDefaultInstance(t *testing.T) {
	for _, tc := range []struct{ addr, hostname, want, err string }{
		{":9955", "cache-1", "cache-1:9955", ""},
		{"0.0.0.0:9955", "cache-1", "cache-1:9955", ""},
		{"[::]:9955", "cache-1", "cache-1:9955", ""},
		{"10.0.0.5:9955", "cache-1", "10.0.0.5:9955", ""},
		{"[2001:db8::5]:9955", "cache-1", "[2001:db8::5]:9955", ""},
		{"cache-1.example.com:9955", "cache-1", "cache-1.example.com:9955", ""},
		{":9955", "", "", `listen address ":9955": no host, and the hostname is unknown`},
		{"9955", "cache-1", "", `listen address "9955": address 9955: missing port in address`},
		{"cache-1:", "cache-1", "", `listen address "cache-1:": no port`},
	} {
		got, err := defaultInstance(tc.addr, tc.hostname)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("defaultInstance(%q, %q) = %q, %v; want %q, %q", tc.addr, tc.hostname, got, err, tc.want, tc.err)
		}
	}
	host, err := DefaultInstance(":9955")
	if err != nil || !strings.HasSuffix(host, ":9955") || strings.HasPrefix(host, ":") {
		t.Errorf("DefaultInstance(:9955) = %q, %v; want hostname:9955", host, err)
	}
}

// TestNotifierFlushCancelsPOSTUnderWay: a POST that started before the
// flush, to an Alertmanager that hangs, ends with the flush's bound, not
// with its own (long) Timeout.
func TestNotifierFlushCancelsPOSTUnderWay(t *testing.T) {
	am := newFakeAM(t)
	am.block = make(chan struct{})
	defer close(am.block)
	n, err := NewNotifier(NotifierOptions{URLs: []string{am.URL + "/prefix"}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	go n.Run(context.Background())
	n.Send(at(0), []Alert{firing("A", 0, 0)})
	waitFor(t, "the POST under way", func() bool { return len(am.triesSince(0)) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = n.Flush(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Flush took %s with a 200ms bound and a POST hung under way", d)
	}
	if !errors.Is(err, ErrNotDelivered) {
		t.Errorf("Flush: %v, want ErrNotDelivered", err)
	}
}

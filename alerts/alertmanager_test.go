package alerts

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/amtest"
)

// TestAlertmanagerEndToEnd fires a listener alert through the Engine and
// the Notifier into a real Alertmanager, then resolves it.
func TestAlertmanagerEndToEnd(t *testing.T) {
	am := amtest.New(t, amtest.Options{})
	am.Start()
	url := am.URL()

	rules := mustLoad(t, `
rules:
  - name: AcceptQueueNearFull
    scope: listener
    condition: accept_queue_fill >= 0.8
    labels: {team: cache}
    summary: "accept queue of {{ .addr }}:{{ .port }} at {{ .value | pct }}"
`)
	e := NewEngine(rules, Options{})
	n, err := NewNotifier(NotifierOptions{
		URLs:           []string{url},
		ExternalLabels: map[string]string{"instance": "cache-1"},
		GeneratorURL:   "http://cache-1:9799/api/v1/alerts",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	h := history()
	eval := func(queue uint32) time.Time {
		now := time.Now().Truncate(time.Millisecond)
		fx := &fixture{vals: map[string]float64{}, Listeners: []collector.Listener{listener("0.0.0.0", 6379, queue, 100, 0)}}
		h.Add(fx.build(now))
		if _, err := e.Eval(now, h); err != nil {
			t.Fatal(err)
		}
		n.Send(now, e.Alerts())
		return now
	}
	wait := func(what string, ok func([]amtest.Alert) bool) []amtest.Alert {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			alerts := am.Alerts()
			if ok(alerts) {
				return alerts
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Alertmanager has %+v (notifier %+v)", what, alerts, n.Stats())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	fired := eval(90)
	alerts := wait("firing alert", func(a []amtest.Alert) bool { return len(a) == 1 })
	want := amtest.Alert{
		Labels: map[string]string{
			"alertname": "AcceptQueueNearFull", "severity": "warning", "team": "cache",
			"addr": "0.0.0.0", "port": "6379", "instance": "cache-1",
		},
		Annotations: map[string]string{"summary": "accept queue of 0.0.0.0:6379 at 90.0%"},
		StartsAt:    fired,
	}
	want.Status.State = "active"
	got := alerts[0]
	got.EndsAt = time.Time{} // four resend delays ahead, by Alertmanager's clock
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("firing alert (-want +got):\n%s", diff)
	}
	if !alerts[0].StartsAt.Equal(fired) || !alerts[0].EndsAt.After(time.Now()) {
		t.Errorf("startsAt %s endsAt %s, want %s and in the future", alerts[0].StartsAt, alerts[0].EndsAt, fired)
	}

	resolved := eval(10)
	// A resolved alert leaves Alertmanager's list of alerts once its endsAt
	// has passed.
	wait("resolved alert", func(a []amtest.Alert) bool {
		return len(a) == 0 || (len(a) == 1 && !a[0].EndsAt.After(resolved))
	})
	// Alertmanager may list the change before the POST's answer reaches
	// the notifier, which counts it then.
	deadline := time.Now().Add(5 * time.Second)
	for n.Stats().Sent < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := n.Stats(); s.Sent != 2 || s.Failed != 0 {
		t.Errorf("notifier stats %+v, want 2 sent", s)
	}
}

// TestAlertmanagerOutage: Alertmanager is down for 30s while an alert
// fires. When it is back, the alert arrives as firing within seconds (the
// retry, not the resend a minute after it fired), then its resolution;
// the failures were reported with their reason. Flushing at shutdown
// leaves a firing alert firing.
func TestAlertmanagerOutage(t *testing.T) {
	am := amtest.New(t, amtest.Options{})
	am.Start()
	var (
		mu        sync.Mutex
		errs      []error
		failures  uint64
		recovered = make(chan time.Duration, 1)
	)
	const maxBackoff = 2 * time.Second
	n, err := NewNotifier(NotifierOptions{
		URLs:           []string{am.URL()},
		Instance:       "cache-1:9955",
		InitialBackoff: 200 * time.Millisecond, MaxBackoff: maxBackoff, // ResendDelay stays 1m
		ErrorInterval: 10 * time.Second,
		OnError: func(_ string, err error, n uint64) {
			mu.Lock()
			errs, failures = append(errs, err), failures+n
			mu.Unlock()
		},
		OnRecover: func(_ string, _ uint64, down time.Duration) { recovered <- down },
	})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan struct{})
	go func() { n.Run(context.Background()); close(runDone) }()
	defer func() {
		n.Stop()
		<-runDone
	}()

	newAlert := func(name string) Alert {
		now := time.Now().Truncate(time.Millisecond)
		return Alert{
			Labels:      map[string]string{"alertname": name, "severity": "critical"},
			Annotations: map[string]string{"summary": name},
			State:       StateFiring, Value: 1, ActiveAt: now, FiredAt: now,
		}
	}
	// tick hands the alerts to Send, as the daemon does every second.
	tick := func(alerts ...Alert) { n.Send(time.Now(), alerts) }
	wait := func(what string, alerts []Alert, ok func() bool) time.Time {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20s; Alertmanager has %+v (notifier %+v)", what, am.Alerts(), n.Stats())
			}
			time.Sleep(100 * time.Millisecond)
			tick(alerts...)
		}
		return time.Now()
	}

	am.Stop()
	down := time.Now()
	storm := newAlert("SynQueueNearFull")
	for time.Since(down) < 30*time.Second {
		tick(storm)
		time.Sleep(time.Second)
	}
	mu.Lock()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), "connection refused") {
		t.Errorf("errors reported while down: %v, want connection refused", errs)
	}
	mu.Unlock()

	am.Start()
	up := time.Now()
	arrived := wait("firing alert after the outage", []Alert{storm}, func() bool {
		a := am.Find("SynQueueNearFull")
		return a != nil && a.Status.State == "active"
	})
	delay := arrived.Sub(up)
	// A resend would come a minute after the alert fired, 30s from here;
	// the retries come within MaxBackoff, and the poll every 100ms.
	if delay > 10*time.Second {
		t.Errorf("alert arrived %s after Alertmanager was back, want within seconds (MaxBackoff %s)", delay, maxBackoff)
	}
	if got := am.Find("SynQueueNearFull"); got.Labels["instance"] != "cache-1:9955" || !got.StartsAt.Equal(storm.FiredAt) {
		t.Errorf("alert %+v, want instance cache-1:9955 and startsAt %s", got, storm.FiredAt)
	}
	select {
	case d := <-recovered:
		if d < 25*time.Second {
			t.Errorf("OnRecover says down for %s, want about 30s", d)
		}
	case <-time.After(5 * time.Second):
		t.Error("OnRecover not called")
	}
	mu.Lock()
	t.Logf("down %s: %d failed POSTs in %d reports; firing alert arrived %s after Alertmanager was ready", up.Sub(down).Round(time.Second), failures, len(errs), delay.Round(time.Millisecond))
	mu.Unlock()

	// The storm ends: the resolution arrives, and the alert leaves
	// Alertmanager's list once its endsAt has passed.
	storm.State, storm.ResolvedAt = StateResolved, time.Now().Truncate(time.Millisecond)
	wait("resolved alert", []Alert{storm}, func() bool { return am.Find("SynQueueNearFull") == nil })

	// Shutdown mid-storm: a flush sends no resolution.
	other := newAlert("AcceptQueueNearFull")
	tick(storm, other)
	wait("second firing alert", []Alert{storm, other}, func() bool { return am.Find("AcceptQueueNearFull") != nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Flush(ctx); err != nil {
		t.Errorf("Flush: %v", err)
	}
	tick(storm) // after Flush: ignored, would have resolved AcceptQueueNearFull
	time.Sleep(2 * time.Second)
	if a := am.Find("AcceptQueueNearFull"); a == nil || a.Status.State != "active" || !a.EndsAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("after the flush Alertmanager has %+v, want AcceptQueueNearFull still active", a)
	}
}

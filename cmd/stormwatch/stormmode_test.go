package main

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
)

// TestStormMode steps the loop's storm mode through time: a storm signal
// or an active alert switches to the storm interval at once, and it holds
// until stormCalm passed without either. An alert on settings alone
// (syncookies off, firing throughout) does not hold it.
func TestStormMode(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	rules, err := alerts.Load([]byte(`rules:
  - name: Busy
    condition: established > 100
    for: 1m
    severity: warning
  - name: Unhardened
    condition: syncookies == 0
    severity: warning
`))
	if err != nil {
		t.Fatal(err)
	}
	engine := alerts.NewEngine(rules, alerts.Options{})
	h := collector.NewHistory(collector.Retention{Host: time.Hour})
	var log bytes.Buffer
	l := &sampleLoop{engine: engine, interval: time.Second, stormInterval: 250 * time.Millisecond,
		logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))}

	type step struct {
		at          time.Duration
		signal      float64 // storm_signal (NaN: not read)
		established float64 // > 100: the Busy alert is pending
		want        time.Duration
	}
	nan := collector.NaN
	steps := []step{
		{at: 0, signal: 0, want: time.Second},
		{at: time.Second, signal: 1, want: 250 * time.Millisecond},
		{at: 1250 * time.Millisecond, signal: 0, want: 250 * time.Millisecond},
		{at: 10750 * time.Millisecond, signal: 0, want: 250 * time.Millisecond},             // under 10 s since the signal
		{at: 11 * time.Second, signal: 0, want: time.Second},                                // 10 s: calm
		{at: 12 * time.Second, signal: nan, established: 500, want: 250 * time.Millisecond}, // an alert pending
		{at: 20 * time.Second, signal: nan, established: 500, want: 250 * time.Millisecond},
		{at: 25 * time.Second, signal: nan, established: 10, want: 250 * time.Millisecond}, // resolved: calm from here
		{at: 35 * time.Second, signal: 0, want: time.Second},
	}
	var got, want []time.Duration
	for _, st := range steps {
		now := t0.Add(st.at)
		snap := collector.NewBuilder(collector.DefaultSchema(), now).
			Set("storm_signal", st.signal).Set("established", st.established).Set("syncookies", 0).Snapshot()
		h.Add(snap)
		if _, err := engine.Eval(now, h); err != nil {
			t.Fatal(err)
		}
		l.observeStorm(now, snap)
		got = append(got, l.intervalNow())
		want = append(want, st.want)
		if !slices.ContainsFunc(engine.Active(), func(a alerts.Alert) bool { return a.Name() == "Unhardened" }) {
			t.Fatalf("at %v: Unhardened is not active: the test does not test what it says", st.at)
		}
		if gauge := time.Duration(l.current.Load()); gauge != l.intervalNow() {
			t.Errorf("at %v: the gauge says %v, the loop %v", st.at, gauge, l.intervalNow())
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("interval after each step (-want +got):\n%s", diff)
	}
	for _, line := range []string{
		`msg="storm mode: sampling faster" interval=250ms because="storm signal"`,
		`msg="calm again: sampling at the usual interval" interval=1s calm_for=10s`,
		`msg="storm mode: sampling faster" interval=250ms because="alert Busy"`,
	} {
		if !strings.Contains(log.String(), line) {
			t.Errorf("log lacks %s:\n%s", line, log.String())
		}
	}
	if n := strings.Count(log.String(), "storm mode:"); n != 2 {
		t.Errorf("storm mode entered %d times, want 2:\n%s", n, log.String())
	}
}

// TestStormModeOff: a storm interval no shorter than the interval means
// no storm mode.
func TestStormModeOff(t *testing.T) {
	l := &sampleLoop{engine: alerts.NewEngine(nil, alerts.Options{}), interval: time.Second, stormInterval: time.Second,
		logger: slog.New(slog.DiscardHandler)}
	now := time.Now()
	l.observeStorm(now, collector.NewBuilder(collector.DefaultSchema(), now).Set("storm_signal", 1).Snapshot())
	if l.intervalNow() != time.Second || l.inStorm {
		t.Errorf("interval %v, storm %v; want 1s and no storm mode", l.intervalNow(), l.inStorm)
	}
}

func TestStormIntervalFlag(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		storm, wait time.Duration
	}{
		{nil, 250 * time.Millisecond, 125 * time.Millisecond},
		{[]string{"--collect.storm-interval=100ms"}, 100 * time.Millisecond, 50 * time.Millisecond},
		// Never slower than the interval.
		{[]string{"--collect.interval=200ms"}, 200 * time.Millisecond, 100 * time.Millisecond},
		{[]string{"--collect.interval=2s", "--collect.storm-interval=5s"}, 2 * time.Second, time.Second},
	} {
		c := newCLI(&bytes.Buffer{}, &bytes.Buffer{})
		if _, err := c.parse(append([]string{"run"}, tc.args...)); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		f := &c.daemon.collect
		if got := f.storm(); got != tc.storm {
			t.Errorf("%v: storm interval %v, want %v", tc.args, got, tc.storm)
		}
		cfg, err := f.config()
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := cfg.Listeners.SynRecvWait; got != tc.wait {
			t.Errorf("%v: SYN_RECV wait %v, want %v", tc.args, got, tc.wait)
		}
	}
	c := newCLI(&bytes.Buffer{}, &bytes.Buffer{})
	_, err := c.parse([]string{"run", "--collect.storm-interval=1ms"})
	if want := `--collect.storm-interval: "1ms" is not a duration ≥ 10ms (e.g. 250ms)`; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

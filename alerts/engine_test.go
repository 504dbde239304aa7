package alerts

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stormwatch/stormwatch/collector"
)

var cmpAlerts = cmpopts.EquateNaNs()

// trs renders transitions as "alertname{addr:port} from->to" for
// compact comparison.
func trs(ts []Transition) []string {
	var out []string
	for _, t := range ts {
		id := t.Alert.Name()
		if addr, ok := t.Alert.Labels["addr"]; ok {
			id += "{" + addr + ":" + t.Alert.Labels["port"] + "}"
		}
		out = append(out, fmt.Sprintf("%s %s->%s", id, t.From, t.To))
	}
	return out
}

// TestEvalKeepFiringFor steps one host rule through pending, firing,
// keep_firing_for, resolution and a new activation, as Prometheus's
// TestKeepFiringFor does.
func TestEvalKeepFiringFor(t *testing.T) {
	rules := mustLoad(t, `
rules:
  - name: ConntrackHigh
    condition: conntrack_entries >= 80
    for: 2s
    keep_firing_for: 3s
    labels: {team: net}
    summary: "at {{ .value }}"
`)
	e := NewEngine(rules, Options{})
	h := history()
	labels := map[string]string{"alertname": "ConntrackHigh", "severity": "warning", "team": "net"}
	ann := func(v string) map[string]string { return map[string]string{"summary": "at " + v} }

	steps := []struct {
		sec     int
		entries float64
		want    []Alert
		trs     []string
	}{
		{0, 90, []Alert{{Labels: labels, Annotations: ann("90"), State: StatePending, Value: 90, ActiveAt: at(0)}},
			[]string{"ConntrackHigh inactive->pending"}},
		{1, 90, []Alert{{Labels: labels, Annotations: ann("90"), State: StatePending, Value: 90, ActiveAt: at(0)}}, nil},
		{2, 95, []Alert{{Labels: labels, Annotations: ann("95"), State: StateFiring, Value: 95, ActiveAt: at(0), FiredAt: at(2)}},
			[]string{"ConntrackHigh pending->firing"}},
		// The condition stops: keep_firing_for holds the alert.
		{3, 10, []Alert{{Labels: labels, Annotations: ann("95"), State: StateFiring, Value: 95, ActiveAt: at(0), FiredAt: at(2), KeepFiringSince: at(3)}}, nil},
		{4, 10, []Alert{{Labels: labels, Annotations: ann("95"), State: StateFiring, Value: 95, ActiveAt: at(0), FiredAt: at(2), KeepFiringSince: at(3)}}, nil},
		// It holds again: the keep-firing clock resets.
		{5, 85, []Alert{{Labels: labels, Annotations: ann("85"), State: StateFiring, Value: 85, ActiveAt: at(0), FiredAt: at(2)}}, nil},
		{6, 10, []Alert{{Labels: labels, Annotations: ann("85"), State: StateFiring, Value: 85, ActiveAt: at(0), FiredAt: at(2), KeepFiringSince: at(6)}}, nil},
		{8, 10, []Alert{{Labels: labels, Annotations: ann("85"), State: StateFiring, Value: 85, ActiveAt: at(0), FiredAt: at(2), KeepFiringSince: at(6)}}, nil},
		// keep_firing_for has run out.
		{9, 10, []Alert{{Labels: labels, Annotations: ann("85"), State: StateResolved, Value: 85, ActiveAt: at(0), FiredAt: at(2), ResolvedAt: at(9)}},
			[]string{"ConntrackHigh firing->resolved"}},
		// Holding again starts a new alert.
		{10, 90, []Alert{{Labels: labels, Annotations: ann("90"), State: StatePending, Value: 90, ActiveAt: at(10)}},
			[]string{"ConntrackHigh inactive->pending"}},
		// A pending alert that stops holding is forgotten.
		{11, 10, []Alert{}, []string{"ConntrackHigh pending->inactive"}},
	}
	for _, s := range steps {
		h.Add(snap(s.sec, func(sn *fixture) { sn.Set("conntrack_entries", s.entries) }))
		got, err := e.Eval(at(s.sec), h)
		if err != nil {
			t.Fatalf("t=%d: Eval: %v", s.sec, err)
		}
		if diff := cmp.Diff(s.trs, trs(got)); diff != "" {
			t.Errorf("t=%d: transitions (-want +got):\n%s", s.sec, diff)
		}
		if diff := cmp.Diff(s.want, e.Alerts(), cmpAlerts, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("t=%d: alerts (-want +got):\n%s", s.sec, diff)
		}
	}
}

func TestEvalForZeroFiresAtOnce(t *testing.T) {
	rules := mustLoad(t, `
rules:
  - name: Full
    condition: conntrack_entries >= conntrack_limit
`)
	e := NewEngine(rules, Options{})
	h := history()
	h.Add(snap(0, func(s *fixture) { s.Set("conntrack_entries", 100); s.Set("conntrack_limit", 100) }))
	got, err := e.Eval(at(0), h)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Full inactive->firing"}, trs(got)); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
	want := []Alert{{
		Labels: map[string]string{"alertname": "Full", "severity": "warning"},
		State:  StateFiring, Value: 100, ActiveAt: at(0), FiredAt: at(0),
	}}
	if diff := cmp.Diff(want, e.Active(), cmpAlerts); diff != "" {
		t.Errorf("Active (-want +got):\n%s", diff)
	}
}

func TestEvalResolvedRetention(t *testing.T) {
	rules := mustLoad(t, "rules: [{name: R, condition: conntrack_entries > 0}]")
	e := NewEngine(rules, Options{ResolvedRetention: 5 * time.Second})
	h := history()
	for sec, entries := range []float64{1, 0, 0, 0, 0, 0, 0, 0} {
		h.Add(snap(sec, func(s *fixture) { s.Set("conntrack_entries", entries) }))
		if _, err := e.Eval(at(sec), h); err != nil {
			t.Fatal(err)
		}
		var states []State
		for _, a := range e.Alerts() {
			states = append(states, a.State)
		}
		var want []State
		switch {
		case sec == 0:
			want = []State{StateFiring}
		case sec <= 6: // resolved at 1, kept while now-1s <= 5s
			want = []State{StateResolved}
		}
		if diff := cmp.Diff(want, states); diff != "" {
			t.Errorf("t=%d: states (-want +got):\n%s", sec, diff)
		}
		if len(e.Active()) != 0 && sec > 0 {
			t.Errorf("t=%d: Active lists a resolved alert", sec)
		}
	}
}

// TestSetRules checks that a reloaded rule keeps its alerts when its name
// and labels persist (condition and for may change) and loses them when
// its labels or severity change.
func TestSetRules(t *testing.T) {
	v1 := mustLoad(t, `
rules:
  - name: A
    condition: conntrack_entries >= 80
    for: 3s
    labels: {team: net}
`)
	v2 := mustLoad(t, `
rules:
  - name: A
    condition: conntrack_entries >= 50
    for: 3s
    labels: {team: net}
`)
	v3 := mustLoad(t, `
rules:
  - name: A
    condition: conntrack_entries >= 50
    for: 3s
    labels: {team: db}
`)
	v4 := mustLoad(t, `
rules:
  - name: A
    condition: conntrack_entries >= 50
    for: 3s
    severity: critical
    labels: {team: db}
`)
	e := NewEngine(v1, Options{})
	h := history()
	type state struct {
		Team     string
		Severity string
		State    State
		ActiveAt time.Time
	}
	steps := []struct {
		sec     int
		rules   []*Rule // set before evaluating
		entries float64
		want    []state
	}{
		{0, nil, 90, []state{{"net", "warning", StatePending, at(0)}}},
		{1, nil, 90, []state{{"net", "warning", StatePending, at(0)}}},
		// Same name and labels: the alert and its ActiveAt are kept, and
		// the new condition applies.
		{2, v2, 60, []state{{"net", "warning", StatePending, at(0)}}},
		{3, nil, 60, []state{{"net", "warning", StateFiring, at(0)}}},
		// New labels: a new rule, a new alert.
		{4, v3, 60, []state{{"db", "warning", StatePending, at(4)}}},
		{5, nil, 60, []state{{"db", "warning", StatePending, at(4)}}},
		// A new severity is a new label set too.
		{6, v4, 60, []state{{"db", "critical", StatePending, at(6)}}},
	}
	for _, s := range steps {
		if s.rules != nil {
			e.SetRules(s.rules)
		}
		h.Add(snap(s.sec, func(sn *fixture) { sn.Set("conntrack_entries", s.entries) }))
		if _, err := e.Eval(at(s.sec), h); err != nil {
			t.Fatal(err)
		}
		var got []state
		for _, a := range e.Alerts() {
			got = append(got, state{a.Labels["team"], a.Labels["severity"], a.State, a.ActiveAt})
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("t=%d: (-want +got):\n%s", s.sec, diff)
		}
	}
}

// TestEvalListeners checks one alert per listener, and listeners appearing
// and disappearing.
func TestEvalListeners(t *testing.T) {
	rules := mustLoad(t, `
rules:
  - name: AcceptQueueNearFull
    scope: listener
    condition: accept_queue_fill >= 0.8
    for: 1s
    summary: "{{ .addr }}:{{ .port }} {{ .value | pct }}"
`)
	e := NewEngine(rules, Options{})
	h := history()
	a6379 := listener("0.0.0.0", 6379, 90, 100, 0)
	a6380 := listener("0.0.0.0", 6380, 128, 128, 0)
	ssh := listener("::1", 22, 0, 128, 0)
	steps := []struct {
		listeners []collector.Listener
		trs       []string
		active    []string
	}{
		{
			[]collector.Listener{ssh, a6379},
			[]string{"AcceptQueueNearFull{0.0.0.0:6379} inactive->pending"},
			[]string{"0.0.0.0:6379 90.0% pending"},
		},
		{
			[]collector.Listener{ssh, a6379, a6380},
			[]string{
				"AcceptQueueNearFull{0.0.0.0:6379} pending->firing",
				"AcceptQueueNearFull{0.0.0.0:6380} inactive->pending",
			},
			[]string{"0.0.0.0:6379 90.0% firing", "0.0.0.0:6380 100.0% pending"},
		},
		{
			// 6379 stops listening.
			[]collector.Listener{ssh, a6380},
			[]string{
				"AcceptQueueNearFull{0.0.0.0:6379} firing->resolved",
				"AcceptQueueNearFull{0.0.0.0:6380} pending->firing",
			},
			[]string{"0.0.0.0:6380 100.0% firing"},
		},
	}
	for sec, s := range steps {
		h.Add(snap(sec, func(sn *fixture) { sn.Listeners = s.listeners }))
		got, err := e.Eval(at(sec), h)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s.trs, trs(got)); diff != "" {
			t.Errorf("t=%d: transitions (-want +got):\n%s", sec, diff)
		}
		var active []string
		for _, a := range e.Active() {
			active = append(active, a.Annotations["summary"]+" "+a.State.String())
		}
		if diff := cmp.Diff(s.active, active); diff != "" {
			t.Errorf("t=%d: active (-want +got):\n%s", sec, diff)
		}
	}
	want := map[string]string{"alertname": "AcceptQueueNearFull", "severity": "warning", "addr": "0.0.0.0", "port": "6380"}
	if diff := cmp.Diff(want, e.Active()[0].Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
}

// TestEvalNoData checks that values not read never alert, whatever the
// operators.
func TestEvalNoData(t *testing.T) {
	rules := mustLoad(t, `
rules:
  - name: CookiesNotOn
    condition: syncookies != 1
  - name: NotLow
    condition: not (conntrack_entries < 10)
  - name: Fill
    condition: conntrack_entries / conntrack_limit >= 0.8
  - name: Rising
    condition: increase("passive_opens", "10s") >= 0
  - name: Sysctl
    condition: sysctl("net.core.rmem_max") != 1
  - name: HalfOpen
    scope: listener
    condition: syn_recv >= 0
`)
	e := NewEngine(rules, Options{})
	h := history()
	h.Add(snap(0, func(s *fixture) {
		s.Listeners = []collector.Listener{listener("0.0.0.0", 6379, 0, 128, 5)} // SYN_RECV never dumped
	}))
	got, err := e.Eval(at(0), h)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("transitions on unread values: %v", trs(got))
	}
	findings, err := e.Check(at(0), h)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		if f.Status != CheckNoData {
			t.Errorf("%s: status %s, want no data", f.Rule.Name, f.Status)
		}
	}
	if len(findings) != len(rules) {
		t.Errorf("got %d findings, want %d", len(findings), len(rules))
	}
}

// TestEvalStale: a sampler that stalls leaves the latest Snapshot stale,
// which is no data: the alert keeps firing (a stalled watcher must not
// resolve a storm) until NoDataHold passes.
func TestEvalStale(t *testing.T) {
	rules := mustLoad(t, "rules: [{name: R, condition: conntrack_entries > 0}]")
	e := NewEngine(rules, Options{StaleAfter: 5 * time.Second, NoDataHold: time.Minute})
	h := history()
	h.Add(snap(0, func(s *fixture) { s.Set("conntrack_entries", 1) }))
	for _, c := range []struct {
		sec  int
		want []string
	}{
		{0, []string{"R inactive->firing"}},
		{5, nil},
		{6, nil},  // stale: no data, still firing
		{65, nil}, // held for NoDataHold from t=6
		{66, []string{"R firing->resolved"}},
	} {
		got, err := e.Eval(at(c.sec), h)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.want, trs(got)); diff != "" {
			t.Errorf("t=%d: (-want +got):\n%s", c.sec, diff)
		}
	}
}

// TestEvalIgnoresFuture checks that Eval sees only Snapshots taken at or
// before now.
func TestEvalIgnoresFuture(t *testing.T) {
	rules := mustLoad(t, "rules: [{name: R, condition: conntrack_entries > 0}]")
	e := NewEngine(rules, Options{})
	h := history()
	h.Add(snap(0, func(s *fixture) { s.Set("conntrack_entries", 0) }))
	h.Add(snap(1, func(s *fixture) { s.Set("conntrack_entries", 5) }))
	if got, _ := e.Eval(at(0), h); len(got) != 0 {
		t.Errorf("Eval at 0 used a later Snapshot: %v", trs(got))
	}
}

func TestCheck(t *testing.T) {
	rules := mustLoad(t, `
rules:
  - name: Fill
    condition: conntrack_entries / conntrack_limit >= 0.8
    for: 1h
    summary: "{{ .value | pct }}"
  - name: Queue
    scope: listener
    condition: accept_queue >= accept_queue_limit
`)
	e := NewEngine(rules, Options{})
	h := history()
	h.Add(snap(0, func(s *fixture) {
		s.Set("conntrack_entries", 90)
		s.Set("conntrack_limit", 100)
		s.Listeners = []collector.Listener{listener("0.0.0.0", 6379, 129, 128, 0), listener("0.0.0.0", 6380, 0, 128, 0)}
	}))
	got, err := e.Check(at(0), h)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Rule, Port string
		Status     CheckStatus
		Value      float64
		Summary    string
	}
	var rows []row
	for _, f := range got {
		rows = append(rows, row{f.Rule.Name, f.Labels["port"], f.Status, f.Value, f.Annotations["summary"]})
	}
	want := []row{
		{"Fill", "", CheckAlert, 0.9, "90.0%"},
		{"Queue", "6379", CheckAlert, 129, ""},
		{"Queue", "6380", CheckOK, math.NaN(), ""},
	}
	if diff := cmp.Diff(want, rows, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if len(e.Alerts()) != 0 {
		t.Errorf("Check changed the alerts: %v", e.Alerts())
	}
}

func TestAlertJSON(t *testing.T) {
	a := Alert{
		Labels: map[string]string{"alertname": "A"}, State: StateFiring,
		Value: math.NaN(), ActiveAt: at(0), FiredAt: at(1),
	}
	got, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"labels":{"alertname":"A"},"annotations":null,"state":"firing","activeAt":"2025-06-01T12:00:00Z","firedAt":"2025-06-01T12:00:01Z","value":"NaN"}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// BenchmarkEval evaluates the built-in rules over 15 minutes of 1 Hz
// history with 300 listeners, a few of them filling up.
func BenchmarkEval(b *testing.B) {
	const n, listeners = 901, 300
	h := history()
	for i := range n {
		h.Add(snap(i, func(s *fixture) {
			s.Set("conntrack_entries", 1000+float64(i))
			s.Set("conntrack_limit", 262144)
			s.Set("conntrack_drop", 0)
			s.Set("conntrack_early_drop", 0)
			s.Set("conntrack_insert_failed", 0)
			s.Set("passive_opens", 200*float64(i))
			s.Set("listen_overflows", 0)
			s.Set("syncookies_sent", 0)
			s.Set("syn_queue_drops", 0)
			s.Sysctl("net.core.somaxconn", 4096)
			s.Sysctl("net.ipv4.tcp_syncookies", 1)
			s.Sysctl("net.ipv4.tcp_max_syn_backlog", 4096)
			s.SynRecv = synRan
			s.Listeners = make([]collector.Listener, listeners)
			for p := range listeners {
				q := uint32(0)
				if p%50 == 0 {
					q = uint32(i % 512)
				}
				s.Listeners[p] = listener("0.0.0.0", uint16(6000+p), q, 511, 0)
			}
		}))
	}
	e := NewEngine(DefaultRules(), Options{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := e.Eval(at(n-1), h); err != nil {
			b.Fatal(err)
		}
	}
}

package alerts

import (
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/stormwatch/stormwatch/collector"
)

// State is where an alert is in its life.
type State int

const (
	// StateInactive is an alert whose condition does not hold. The Engine
	// keeps no inactive alerts; the state appears in Transitions only.
	StateInactive State = iota
	// StatePending is an alert whose condition holds for less than the
	// rule's For. Pending alerts are never notified.
	StatePending
	// StateFiring is an alert whose condition held for the rule's For (or
	// that keeps firing for the rule's KeepFiringFor).
	StateFiring
	// StateResolved is an alert that fired and stopped. It is kept for
	// ResolvedRetention so that notifiers can report the resolution; its
	// condition holding again starts a new alert. Prometheus calls it
	// inactive, with ResolvedAt set.
	StateResolved
)

var stateNames = [...]string{"inactive", "pending", "firing", "resolved"}

// String returns the state's lower-case name, as in the alertstate label.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Alert is one instance of a rule: the host for a host rule, one listener
// for a listener rule. The Engine hands out copies; the maps are shared and
// must not be modified.
type Alert struct {
	// Labels identify the alert: alertname, severity, the rule's labels,
	// and addr and port for a listener rule.
	Labels map[string]string
	// Annotations hold the rendered summary and description, as of the
	// latest evaluation at which the condition held.
	Annotations map[string]string
	// State is pending, firing or resolved.
	State State
	// Value is the number the condition judged, as of the latest
	// evaluation at which it held (NaN when the rule has none).
	Value float64
	// ActiveAt is when the condition started holding.
	ActiveAt time.Time
	// FiredAt is when the alert fired; zero while pending.
	FiredAt time.Time
	// ResolvedAt is when the alert was resolved; zero until then.
	ResolvedAt time.Time
	// KeepFiringSince is when the condition stopped holding while the
	// alert keeps firing for the rule's KeepFiringFor; zero otherwise.
	KeepFiringSince time.Time
}

// Name returns the alert's alertname label.
func (a Alert) Name() string { return a.Labels[model.AlertNameLabel] }

// Fingerprint returns a string that identifies the alert's label set.
func (a Alert) Fingerprint() string { return ruleKey("", a.Labels) }

// MarshalJSON writes the alert in the shape of Prometheus's /api/v1/alerts:
// value as a string (it may be NaN), times in RFC 3339, zero times left out.
func (a Alert) MarshalJSON() ([]byte, error) {
	type out struct {
		Labels          map[string]string `json:"labels"`
		Annotations     map[string]string `json:"annotations"`
		State           State             `json:"state"`
		ActiveAt        *time.Time        `json:"activeAt,omitempty"`
		FiredAt         *time.Time        `json:"firedAt,omitempty"`
		ResolvedAt      *time.Time        `json:"resolvedAt,omitempty"`
		KeepFiringSince *time.Time        `json:"keepFiringSince,omitempty"`
		Value           string            `json:"value"`
	}
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return json.Marshal(out{
		Labels: a.Labels, Annotations: a.Annotations, State: a.State,
		ActiveAt: opt(a.ActiveAt), FiredAt: opt(a.FiredAt),
		ResolvedAt: opt(a.ResolvedAt), KeepFiringSince: opt(a.KeepFiringSince),
		Value: strconv.FormatFloat(a.Value, 'e', -1, 64),
	})
}

// Transition is an alert changing state during an Eval.
type Transition struct {
	// From and To are the states before and after. A new alert comes from
	// StateInactive; a pending alert whose condition stopped holding goes
	// to StateInactive (and is forgotten); a firing one goes to
	// StateResolved.
	From, To State
	// Alert is the alert after the change.
	Alert Alert
}

// Options tune an Engine. The zero value is the defaults.
type Options struct {
	// StaleAfter is how old the newest Snapshot may be before every rule
	// has no data (default 1m): a stalled sampler must not keep alerts
	// firing on old figures.
	StaleAfter time.Duration
	// ResolvedRetention is how long a resolved alert is kept so notifiers
	// can resend its resolution (default 15m, as Prometheus).
	ResolvedRetention time.Duration
}

// Default option values.
const (
	DefaultStaleAfter        = time.Minute
	DefaultResolvedRetention = 15 * time.Minute
)

// ruleState is a rule and its alerts.
type ruleState struct {
	rule   *Rule
	alerts map[string]*Alert // by fingerprint
	// fp is the fingerprint of a host rule's alert (its labels never vary).
	fp string
}

// Engine evaluates rules against a History and keeps the state of their
// alerts, as Prometheus alerting rules do. It is safe for concurrent use:
// Eval is meant to be called from the sampling loop, the other methods from
// anywhere.
type Engine struct {
	mu     sync.Mutex
	opts   Options
	rules  []*ruleState
	ev     *evaluator
	active []Alert
}

// NewEngine returns an Engine evaluating rules.
func NewEngine(rules []*Rule, opts Options) *Engine {
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = DefaultStaleAfter
	}
	if opts.ResolvedRetention <= 0 {
		opts.ResolvedRetention = DefaultResolvedRetention
	}
	e := &Engine{opts: opts, ev: newEvaluator()}
	e.SetRules(rules)
	return e
}

func newRuleState(r *Rule) *ruleState {
	return &ruleState{rule: r, alerts: map[string]*Alert{}, fp: ruleKey("", r.baseLabels())}
}

// SetRules replaces the Engine's rules. A rule with the same name and
// labels as an old one keeps the old one's alerts and their timing (its
// condition or For may have changed); the alerts of other old rules are
// dropped, as Prometheus does on reload.
func (e *Engine) SetRules(rules []*Rule) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := map[string]*ruleState{}
	for _, rs := range e.rules {
		old[rs.rule.key] = rs
	}
	e.rules = make([]*ruleState, 0, len(rules))
	for _, r := range rules {
		rs := newRuleState(r)
		if prev, ok := old[r.key]; ok {
			rs.alerts = prev.alerts
			delete(old, r.key) // a key is taken over once
		}
		e.rules = append(e.rules, rs)
	}
	e.snapshot()
}

// Rules returns the Engine's rules.
func (e *Engine) Rules() []*Rule {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*Rule, len(e.rules))
	for i, rs := range e.rules {
		out[i] = rs.rule
	}
	return out
}

// result is one instance whose condition holds.
type result struct {
	fp          string
	labels      map[string]string
	value       float64
	annotations map[string]string
}

// Eval evaluates every rule at now over the Snapshots of h taken at or
// before now, advances the alerts' states and returns the changes, sorted
// by alert name and labels. A rule that fails to evaluate keeps its alerts
// as they were; the failures are joined in the error.
func (e *Engine) Eval(now time.Time, h *collector.History) ([]Transition, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ev.reset(now, h, e.opts.StaleAfter)
	var trs []Transition
	var errs []error
	for _, rs := range e.rules {
		results, err := e.results(rs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		trs = rs.advance(now, results, e.opts.ResolvedRetention, trs)
	}
	slices.SortFunc(trs, func(a, b Transition) int {
		return cmp.Or(
			strings.Compare(a.Alert.Name(), b.Alert.Name()),
			strings.Compare(a.Alert.Fingerprint(), b.Alert.Fingerprint()),
		)
	})
	e.snapshot()
	return trs, errors.Join(errs...)
}

// results evaluates one rule for each of its instances.
func (e *Engine) results(rs *ruleState) ([]result, error) {
	ev, r := e.ev, rs.rule
	if ev.latest == nil {
		return nil, nil
	}
	if r.Scope != ScopeListener {
		ev.cur, ev.curIdx = nil, -1
		holds, _, err := ev.cond(r)
		if err != nil || !holds {
			return nil, err
		}
		labels := r.baseLabels()
		if a, ok := rs.alerts[rs.fp]; ok {
			labels = a.Labels
		}
		return []result{e.result(rs, rs.fp, labels)}, nil
	}
	var out []result
	for i := range ev.latest.Listeners {
		ev.setListener(i)
		holds, _, err := ev.cond(r)
		if err != nil {
			return nil, err
		}
		if !holds {
			continue
		}
		addr, port := ev.cur.LabelValues()
		fp := rs.fp + "\xffaddr=" + addr + "\xffport=" + port
		// Labels are built once, for a new alert.
		var labels map[string]string
		if a, ok := rs.alerts[fp]; ok {
			labels = a.Labels
		} else {
			labels = r.baseLabels()
			labels["addr"], labels["port"] = addr, port
		}
		out = append(out, e.result(rs, fp, labels))
	}
	return out, nil
}

func (e *Engine) result(rs *ruleState, fp string, labels map[string]string) result {
	r := rs.rule
	v := e.ev.value(r)
	res := result{fp: fp, labels: labels, value: v}
	if r.summary != nil || r.description != nil || r.advice != nil {
		res.annotations = r.annotate(e.ev.data(r, v, labels))
	}
	return res
}

// advance moves the rule's alerts on by one evaluation at now, in the
// manner of Prometheus's AlertingRule.Eval, and appends the changes to trs.
func (rs *ruleState) advance(now time.Time, results []result, retention time.Duration, trs []Transition) []Transition {
	r := rs.rule
	from := map[string]State{}
	holding := make(map[string]bool, len(results))
	for _, res := range results {
		holding[res.fp] = true
		if a, ok := rs.alerts[res.fp]; ok && a.State != StateResolved {
			from[res.fp] = a.State
			a.Value, a.Annotations = res.value, res.annotations
			a.KeepFiringSince = time.Time{}
			continue
		}
		from[res.fp] = StateInactive
		rs.alerts[res.fp] = &Alert{
			Labels:      res.labels,
			Annotations: res.annotations,
			State:       StatePending,
			Value:       res.value,
			ActiveAt:    now,
		}
	}
	for fp, a := range rs.alerts {
		if _, ok := from[fp]; !ok {
			from[fp] = a.State
		}
		if !holding[fp] {
			keep := false
			if a.State == StateFiring && r.KeepFiringFor > 0 {
				if a.KeepFiringSince.IsZero() {
					a.KeepFiringSince = now
				}
				keep = now.Sub(a.KeepFiringSince) < r.KeepFiringFor
			}
			switch {
			case keep:
			case a.State == StatePending:
				delete(rs.alerts, fp)
				trs = append(trs, Transition{From: StatePending, To: StateInactive, Alert: *a})
				continue
			case a.State == StateFiring:
				a.State, a.ResolvedAt, a.KeepFiringSince = StateResolved, now, time.Time{}
			case a.State == StateResolved && now.Sub(a.ResolvedAt) > retention:
				delete(rs.alerts, fp)
				continue
			}
		}
		if a.State == StatePending && now.Sub(a.ActiveAt) >= r.For {
			a.State, a.FiredAt = StateFiring, now
		}
		if from[fp] != a.State {
			trs = append(trs, Transition{From: from[fp], To: a.State, Alert: *a})
		}
	}
	return trs
}

// snapshot refreshes the sorted copy of the alerts Active and Alerts hand
// out.
func (e *Engine) snapshot() {
	e.active = e.active[:0:0]
	for _, rs := range e.rules {
		for _, a := range rs.alerts {
			e.active = append(e.active, *a)
		}
	}
	slices.SortFunc(e.active, func(a, b Alert) int {
		return cmp.Or(
			strings.Compare(a.Name(), b.Name()),
			strings.Compare(a.Fingerprint(), b.Fingerprint()),
		)
	})
}

// Active returns the pending and firing alerts, sorted by name then
// labels: what the stormwatch_alerts metric and /api/v1/alerts show.
func (e *Engine) Active() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Alert, 0, len(e.active))
	for _, a := range e.active {
		if a.State == StatePending || a.State == StateFiring {
			out = append(out, a)
		}
	}
	return out
}

// Alerts returns every alert the Engine holds, resolved ones included,
// sorted by name then labels: what a Notifier's Send takes.
func (e *Engine) Alerts() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.active)
}

// CheckStatus is the outcome of one rule instance in Check.
type CheckStatus int

const (
	// CheckOK means the condition does not hold.
	CheckOK CheckStatus = iota
	// CheckAlert means the condition holds.
	CheckAlert
	// CheckNoData means the condition could not be judged: a value it
	// reads was not read, or its functions had too few points.
	CheckNoData
)

var checkNames = [...]string{"ok", "alert", "no data"}

// String returns "ok", "alert" or "no data".
func (s CheckStatus) String() string {
	if int(s) < len(checkNames) {
		return checkNames[s]
	}
	return "CheckStatus(" + strconv.Itoa(int(s)) + ")"
}

// Finding is one rule instance judged by Check.
type Finding struct {
	// Rule is the rule judged.
	Rule *Rule
	// Labels are the labels an alert of the instance carries.
	Labels map[string]string
	// Status is whether the condition holds.
	Status CheckStatus
	// Value is the number the condition judged (NaN unless Status is
	// CheckAlert).
	Value float64
	// Annotations are the rendered summary and description when Status is
	// CheckAlert.
	Annotations map[string]string
}

// Check judges every rule's condition at now over h, ignoring For and the
// alerts' state, for one-shot diagnostics. It returns one Finding per rule
// and listener (a listener rule with no listeners yields none), in rule
// order, and does not change the Engine's alerts.
func (e *Engine) Check(now time.Time, h *collector.History) ([]Finding, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := e.ev
	ev.reset(now, h, e.opts.StaleAfter)
	var out []Finding
	var errs []error
	judge := func(r *Rule, labels map[string]string) {
		f := Finding{Rule: r, Labels: labels, Status: CheckNoData, Value: nanValue}
		if ev.latest != nil {
			holds, ok, err := ev.cond(r)
			switch {
			case err != nil:
				errs = append(errs, err)
			case ok && holds:
				f.Status, f.Value = CheckAlert, ev.value(r)
				f.Annotations = r.annotate(ev.data(r, f.Value, labels))
			case ok:
				f.Status = CheckOK
			}
		}
		out = append(out, f)
	}
	for _, rs := range e.rules {
		r := rs.rule
		if r.Scope != ScopeListener {
			ev.cur, ev.curIdx = nil, -1
			judge(r, r.baseLabels())
			continue
		}
		if ev.latest == nil {
			continue
		}
		for i := range ev.latest.Listeners {
			ev.setListener(i)
			l := r.baseLabels()
			l["addr"], l["port"] = ev.cur.LabelValues()
			judge(r, l)
		}
	}
	return out, errors.Join(errs...)
}

var nanValue = collector.NaN

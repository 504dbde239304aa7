package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
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
	// NoDataHold bounds how long an alert keeps its state while its data
	// is missing (default 5m): after that it is resolved.
	NoDataHold time.Duration
	// Vocabulary is what the rules were compiled against (default: the
	// first rule's, else DefaultVocabulary).
	Vocabulary *Vocabulary
}

// Default option values.
const (
	DefaultStaleAfter        = time.Minute
	DefaultResolvedRetention = 15 * time.Minute
	DefaultNoDataHold        = 5 * time.Minute
)

// ruleState is a rule and its alerts.
type ruleState struct {
	rule   *Rule
	alerts map[string]*Alert // by fingerprint
	// noData says since when an alert's data is missing.
	noData map[string]time.Time
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
	if opts.NoDataHold <= 0 {
		opts.NoDataHold = DefaultNoDataHold
	}
	if opts.Vocabulary == nil {
		opts.Vocabulary = DefaultVocabulary()
		if len(rules) > 0 && rules[0].vocab != nil {
			opts.Vocabulary = rules[0].vocab
		}
	}
	e := &Engine{opts: opts, ev: newEvaluator(opts.Vocabulary)}
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
			rs.alerts, rs.noData = prev.alerts, prev.noData
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

// outcome is what one evaluation of a rule found: the instances whose
// condition holds, those without data (their alerts keep their state),
// and whether the whole scope had no data.
type outcome struct {
	results []result
	noData  map[string]bool
	allGone bool // no data for any instance: every alert keeps its state
}

// Eval evaluates every rule at now over the Snapshots of h taken at or
// before now, advances the alerts' states and returns the changes, sorted
// by alert name and labels. A rule that fails to evaluate keeps its alerts
// as they were; the failures are joined in the error.
//
// Missing data is not a resolution: an alert whose instance has no data
// (a value it reads was not read, its entity's source did not deliver, the
// latest Snapshot is stale) keeps its state, neither firing anew nor
// resolving, for up to Options.NoDataHold; an entity that is gone from a
// table its source did deliver (a listener closed) resolves.
func (e *Engine) Eval(now time.Time, h *collector.History) ([]Transition, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ev.reset(now, h, e.opts.StaleAfter)
	var trs []Transition
	var errs []error
	for _, rs := range e.rules {
		out, err := e.results(rs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		trs = rs.advance(now, out, e.opts, trs)
	}
	slices.SortFunc(trs, func(a, b Transition) int { return compareAlerts(&a.Alert, &b.Alert) })
	e.snapshot()
	return trs, errors.Join(errs...)
}

// errOtherVocabulary is a rule compiled for other sources than the
// Engine's.
var errOtherVocabulary = errors.New("rule compiled for another vocabulary than the engine's")

// instance is one entity a rule is judged for: the rule's own labels and,
// for an entity, its label values. Its fingerprint and labels are built
// only when asked for (an alert or no data), not for every entity a rule
// finds quiet.
type instance struct {
	rule   *Rule
	baseFP string
	sv     *scopeVocab // nil for the host
	lv     []string
}

// fp is the alert's fingerprint: the rule's, and the entity's labels.
func (in instance) fp() string {
	if in.sv == nil {
		return in.baseFP
	}
	n := len(in.baseFP)
	for i, l := range in.sv.labels {
		n += len(l.name) + len(in.lv[i]) + 2
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(in.baseFP)
	for i, l := range in.sv.labels {
		b.WriteString("\xff")
		b.WriteString(l.name)
		b.WriteByte('=')
		b.WriteString(in.lv[i])
	}
	return b.String()
}

// labels are the labels of a new alert.
func (in instance) labels() map[string]string {
	labels := in.rule.baseLabels()
	if in.sv != nil {
		for i, l := range in.sv.labels {
			labels[l.name] = in.lv[i]
		}
	}
	return labels
}

// each calls f with every instance of r's scope in the latest Snapshot,
// the evaluator set on it. It reports false when the scope has no data at
// all (no fresh Snapshot, or the entities' table was not delivered).
func (e *Engine) each(r *Rule, baseFP string, f func(instance)) (bool, error) {
	ev := e.ev
	if r.vocab != nil && r.vocab != ev.vocab {
		return false, fmt.Errorf("rule %q: %w", r.Name, errOtherVocabulary)
	}
	if ev.latest == nil {
		return false, nil
	}
	sv := ev.vocab.scopes[r.Scope]
	if sv == nil {
		return false, fmt.Errorf("rule %q: %w: scope %q", r.Name, ErrNotCompiled, r.Scope)
	}
	if sv.kind == 0 {
		ev.setScope(sv)
		f(instance{rule: r, baseFP: baseFP})
		return true, nil
	}
	t := ev.latest.Table(sv.kind)
	if t == nil {
		return false, nil
	}
	for row := range t.Len() {
		ev.setEntity(sv, t, row)
		f(instance{rule: r, baseFP: baseFP, sv: sv, lv: t.Labels(row)})
	}
	return true, nil
}

// results evaluates one rule for each of its instances.
func (e *Engine) results(rs *ruleState) (outcome, error) {
	r := rs.rule
	var out outcome
	var err error
	present, eachErr := e.each(r, rs.fp, func(in instance) {
		if err != nil {
			return
		}
		holds, ok, cerr := e.ev.cond(r)
		switch {
		case cerr != nil:
			err = cerr
		case !ok:
			if out.noData == nil {
				out.noData = map[string]bool{}
			}
			out.noData[in.fp()] = true
		case holds:
			// Labels are built once, for a new alert.
			fp := in.fp()
			var labels map[string]string
			if a, ok := rs.alerts[fp]; ok {
				labels = a.Labels
			} else {
				labels = in.labels()
			}
			out.results = append(out.results, e.result(rs, fp, labels))
		}
	})
	if eachErr != nil {
		return outcome{}, eachErr
	}
	if err != nil {
		return outcome{}, err
	}
	out.allGone = !present
	return out, nil
}

func (e *Engine) result(rs *ruleState, fp string, labels map[string]string) result {
	r := rs.rule
	v := e.ev.value(r)
	res := result{fp: fp, labels: labels, value: v}
	if r.summary != nil || r.description != nil || r.advice != nil {
		res.annotations = r.annotate(e.ev.data(v, labels))
	}
	return res
}

// advance moves the rule's alerts on by one evaluation at now, in the
// manner of Prometheus's AlertingRule.Eval, and appends the changes to
// trs. An alert without data keeps its state for up to opts.NoDataHold.
func (rs *ruleState) advance(now time.Time, out outcome, opts Options, trs []Transition) []Transition {
	r := rs.rule
	from := map[string]State{}
	holding := make(map[string]bool, len(out.results))
	for _, res := range out.results {
		holding[res.fp] = true
		if a, ok := rs.alerts[res.fp]; ok && a.State != StateResolved {
			from[res.fp] = a.State
			a.Value, a.Annotations = res.value, res.annotations
			a.KeepFiringSince = time.Time{}
			delete(rs.noData, res.fp)
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
		if !holding[fp] && a.State != StateResolved && (out.allGone || out.noData[fp]) {
			// No data: keep the state, up to the bound.
			since, ok := rs.noData[fp]
			if !ok {
				if rs.noData == nil {
					rs.noData = map[string]time.Time{}
				}
				since = now
				rs.noData[fp] = now
			}
			if now.Sub(since) < opts.NoDataHold {
				continue
			}
		}
		delete(rs.noData, fp)
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
			case a.State == StateResolved && now.Sub(a.ResolvedAt) > opts.ResolvedRetention:
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
	slices.SortFunc(e.active, func(a, b Alert) int { return compareAlerts(&a, &b) })
}

// compareAlerts orders alerts by name, then by labels: the fingerprint,
// which sorts the labels, is built only for alerts of the same name.
func compareAlerts(a, b *Alert) int {
	if c := strings.Compare(a.Name(), b.Name()); c != 0 {
		return c
	}
	return strings.Compare(a.Fingerprint(), b.Fingerprint())
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

// ActiveMeasuring returns, sorted, the names of the rules that read a
// measurement (not only settings: see Rule.Standing) and have an alert
// pending or firing: a storm under way, as opposed to a standing
// configuration warning.
func (e *Engine) ActiveMeasuring() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var names []string
	for _, rs := range e.rules {
		if rs.rule.standing || slices.Contains(names, rs.rule.Name) {
			continue
		}
		for _, a := range rs.alerts {
			if a.State == StatePending || a.State == StateFiring {
				names = append(names, rs.rule.Name)
				break
			}
		}
	}
	slices.Sort(names)
	return names
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
// and instance (an entity rule with no entities yields none; a host rule
// with no fresh Snapshot yields one with CheckNoData), in rule order, and
// does not change the Engine's alerts.
func (e *Engine) Check(now time.Time, h *collector.History) ([]Finding, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := e.ev
	ev.reset(now, h, e.opts.StaleAfter)
	var out []Finding
	var errs []error
	for _, rs := range e.rules {
		r := rs.rule
		present, err := e.each(r, rs.fp, func(in instance) {
			labels := in.labels()
			f := Finding{Rule: r, Labels: labels, Status: CheckNoData, Value: nanValue}
			holds, ok, err := ev.cond(r)
			switch {
			case err != nil:
				errs = append(errs, err)
			case ok && holds:
				f.Status, f.Value = CheckAlert, ev.value(r)
				f.Annotations = r.annotate(ev.data(f.Value, labels))
			case ok:
				f.Status = CheckOK
			}
			out = append(out, f)
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !present && r.Scope == ScopeHost {
			out = append(out, Finding{Rule: r, Labels: r.baseLabels(), Status: CheckNoData, Value: nanValue})
		}
	}
	return out, errors.Join(errs...)
}

var nanValue = collector.NaN

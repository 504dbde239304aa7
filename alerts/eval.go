package alerts

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/common/model"

	"github.com/stormwatch/stormwatch/collector"
)

// fn names a series function, for the per-evaluation cache.
type fn uint8

const (
	fnIncrease fn = iota
	fnRate
	fnMaxOverTime
	fnMinOverTime
	fnTimeToLimit
	fnBaselineRate
)

// callResult is a function's result and the seconds its points span.
type callResult struct{ v, span float64 }

// callKey identifies one function call within one evaluation: host series
// are shared by every entity of a rule's scope (kind 0, row -1).
type callKey struct {
	fn     fn
	series string
	w1, w2 string
	limit  uint64
	kind   int
	row    int
}

// scopeEnv is the environment struct of one scope, reused.
type scopeEnv struct {
	val     reflect.Value // the struct (addressable)
	ptr     any           // a pointer to it, for vm.Run
	hostSet bool          // host fields set for this evaluation
}

// evaluator runs conditions against a History at one instant. It is
// reused from one Eval to the next and is not safe for concurrent use.
type evaluator struct {
	vocab  *Vocabulary
	now    time.Time
	snaps  []*collector.Snapshot // taken at or before now, oldest first
	latest *collector.Snapshot   // nil when there is no fresh Snapshot

	sv       *scopeVocab // the scope being evaluated
	row      int         // the entity's row in latest (-1: host)
	joinRows []int       // rows of its joined entities (-1: none)
	// joinMemo holds, per scope, the joined rows of every entity of the
	// latest Snapshot (len(joins) per row, -2 not yet looked up): every
	// rule of the scope looks them up once per evaluation, not each.
	joinMemo map[Scope][]int
	// taint is set when a function had no data during a run.
	taint bool

	envs  map[Scope]*scopeEnv
	fns   funcs
	cache map[callKey]callResult
	// span is the longest time, in seconds, the series read since it was
	// last reset cover: what a window actually held.
	span     float64
	windows  map[string]time.Duration
	ser      series
	buf      []rateSpan
	hostData map[Scope]map[string]any
	vm       vm.VM
}

func newEvaluator(vb *Vocabulary) *evaluator {
	e := &evaluator{
		vocab:    vb,
		envs:     map[Scope]*scopeEnv{},
		cache:    map[callKey]callResult{},
		windows:  map[string]time.Duration{},
		hostData: map[Scope]map[string]any{},
		joinMemo: map[Scope][]int{},
		row:      -1,
	}
	e.fns = funcs{
		Increase:     func(s, w string) float64 { return e.call(fnIncrease, s, w, "", 0) },
		Rate:         func(s, w string) float64 { return e.call(fnRate, s, w, "", 0) },
		MaxOverTime:  func(s, w string) float64 { return e.call(fnMaxOverTime, s, w, "", 0) },
		MinOverTime:  func(s, w string) float64 { return e.call(fnMinOverTime, s, w, "", 0) },
		TimeToLimit:  func(s string, l float64, w string) float64 { return e.call(fnTimeToLimit, s, w, "", l) },
		BaselineRate: func(s, w, x string) float64 { return e.call(fnBaselineRate, s, w, x, 0) },
		Sysctl:       e.sysctl,
		Present:      e.present,
	}
	return e
}

// env returns the environment of scope sv, made on first use.
func (e *evaluator) env(sv *scopeVocab) *scopeEnv {
	if env, ok := e.envs[sv.scope]; ok {
		return env
	}
	p := reflect.New(sv.env)
	env := &scopeEnv{val: p.Elem(), ptr: p.Interface()}
	fv := reflect.ValueOf(e.fns)
	for i := range fv.NumField() {
		env.val.Field(sv.funcs + i).Set(fv.Field(i))
	}
	e.envs[sv.scope] = env
	return env
}

// reset prepares an evaluation at now over h. A latest Snapshot older than
// staleAfter is no data.
func (e *evaluator) reset(now time.Time, h *collector.History, staleAfter time.Duration) {
	all := h.All()
	n := sort.Search(len(all), func(i int) bool { return all[i].Time.After(now) })
	e.now, e.snaps, e.latest = now, all[:n], nil
	if n > 0 && (staleAfter <= 0 || now.Sub(all[n-1].Time) <= staleAfter) {
		e.latest = all[n-1]
	}
	if e.latest != nil && e.latest.Schema() != e.vocab.schema {
		e.latest = nil // rules compiled for other sources see nothing
	}
	clear(e.cache)
	clear(e.hostData)
	for sc, m := range e.joinMemo {
		e.joinMemo[sc] = m[:0]
	}
	for _, env := range e.envs {
		env.hostSet = false
	}
	e.sv, e.row = nil, -1
}

// setScope makes sv the scope evaluated, at the host or (setEntity) one
// entity.
func (e *evaluator) setScope(sv *scopeVocab) *scopeEnv {
	e.sv, e.row = sv, -1
	e.joinRows = e.joinRows[:0]
	env := e.env(sv)
	if !env.hostSet && e.latest != nil {
		for _, v := range sv.host {
			env.val.Field(v.field[0]).SetFloat(e.latest.Host(v.ref.Slot))
		}
		env.hostSet = true
	}
	return env
}

// setEntity makes entity row of the latest Snapshot's table of sv's kind
// the one the rules look at, with its joined entities.
func (e *evaluator) setEntity(sv *scopeVocab, t *collector.Table, row int) {
	env := e.setScope(sv)
	e.row = row
	for _, v := range sv.own {
		env.val.Field(v.field[0]).SetFloat(t.Value(row, v.ref.Slot))
	}
	labels := t.Labels(row)
	for i, l := range sv.labels {
		f := env.val.Field(l.field)
		if l.isInt {
			n, _ := strconv.Atoi(labels[i])
			f.SetInt(int64(n))
		} else {
			f.SetString(labels[i])
		}
	}
	if len(sv.joins) == 0 {
		return
	}
	memo := e.joinMemo[sv.scope]
	if n := t.Len() * len(sv.joins); len(memo) != n {
		memo = slices.Grow(memo[:0], n)[:n]
		for i := range memo {
			memo[i] = -2
		}
		e.joinMemo[sv.scope] = memo
	}
	for ji, j := range sv.joins {
		jr := memo[row*len(sv.joins)+ji]
		if jr == -2 {
			jr = -1
			if jt := e.latest.Table(j.kind); jt != nil {
				for _, cand := range j.Candidates(labels) {
					if r, ok := jt.Find(cand); ok {
						jr = r
						break
					}
				}
			}
			memo[row*len(sv.joins)+ji] = jr
		}
		e.joinRows = append(e.joinRows, jr)
		jv := env.val.Field(j.field)
		for _, v := range j.vars {
			x := math.NaN()
			if jr >= 0 {
				x = e.latest.Table(j.kind).Value(jr, v.ref.Slot)
			}
			jv.Field(v.ref.Slot).SetFloat(x)
		}
	}
}

// valueOf returns variable v's current value for the scope and entity
// being evaluated.
func (e *evaluator) valueOf(v *variable) float64 {
	switch {
	case e.latest == nil:
		return math.NaN()
	case v.join >= 0:
		jr := e.joinRows[v.join]
		if jr < 0 {
			return math.NaN()
		}
		return e.latest.Table(e.sv.joins[v.join].kind).Value(jr, v.ref.Slot)
	case v.ref.KindIndex == 0:
		return e.latest.Host(v.ref.Slot)
	default:
		return e.latest.Table(v.ref.KindIndex).Value(e.row, v.ref.Slot)
	}
}

// cond runs r's condition for the current scope and entity. ok is false
// when it has no data: a value it reads was not read, or a function had
// too few points.
func (e *evaluator) cond(r *Rule) (holds, ok bool, err error) {
	if r.prog == nil {
		return false, false, fmt.Errorf("rule %q: %w", r.Name, ErrNotCompiled)
	}
	for _, v := range r.refs {
		if math.IsNaN(e.valueOf(v)) {
			return false, false, nil
		}
	}
	e.taint = false
	out, err := e.vm.Run(r.prog, e.envs[e.sv.scope].ptr)
	if err != nil {
		return false, false, fmt.Errorf("rule %q: %w", r.Name, err)
	}
	if e.taint {
		return false, false, nil
	}
	b, _ := out.(bool)
	return b, true, nil
}

// value runs r's value expression; NaN when it has none or it fails. The
// seconds its series span are left in e.span for the templates.
func (e *evaluator) value(r *Rule) float64 {
	e.span = 0
	if r.valueProg == nil {
		return math.NaN()
	}
	out, err := e.vm.Run(r.valueProg, e.envs[e.sv.scope].ptr)
	if err != nil {
		return math.NaN()
	}
	switch x := out.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	}
	return math.NaN()
}

// data returns the template data of the current scope and entity: every
// variable's current value, the entity's labels, its joined entities'
// values, the alert's value and labels.
func (e *evaluator) data(value float64, labels map[string]string) map[string]any {
	sv := e.sv
	hd, ok := e.hostData[sv.scope]
	if !ok {
		hd = make(map[string]any, len(sv.host))
		for _, v := range sv.host {
			hd[v.Name] = e.valueOf(v)
		}
		e.hostData[sv.scope] = hd
	}
	d := make(map[string]any, len(hd)+len(sv.own)+len(sv.labels)+len(sv.joins)+2)
	for k, v := range hd {
		d[k] = v
	}
	if e.row >= 0 {
		for _, v := range sv.own {
			d[v.Name] = e.valueOf(v)
		}
		env := e.envs[sv.scope].val
		for _, l := range sv.labels {
			d[l.name] = env.Field(l.field).Interface()
		}
		if t := e.latest.Table(sv.kind); t != nil {
			for i, a := range e.vocab.schema.Attrs(string(sv.scope)) {
				d[a] = t.Attr(e.row, i)
			}
		}
		for _, j := range sv.joins {
			jd := make(map[string]any, len(j.vars))
			for _, v := range j.vars {
				jd[v.ref.Name] = e.valueOf(v)
			}
			d[j.name] = jd
		}
	}
	d["value"] = value
	d["labels"] = labels
	d["span"] = e.span
	return d
}

func (e *evaluator) sysctl(name string) float64 {
	if e.latest != nil {
		if ref, ok := e.vocab.sysctls[name]; ok {
			if v := e.latest.Host(ref.Slot); !math.IsNaN(v) {
				return v
			}
		}
	}
	e.taint = true
	return math.NaN()
}

// present reports whether the named value (of the scope, the host or a
// joined entity) has a value now. It never taints: it is how a condition
// tells a known server from a guess.
func (e *evaluator) present(name string) bool {
	v := e.sv.byName[name]
	return v != nil && e.latest != nil && !math.IsNaN(e.valueOf(v))
}

func (e *evaluator) window(s string) (time.Duration, bool) {
	if d, ok := e.windows[s]; ok {
		return d, true
	}
	d, err := model.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, false
	}
	e.windows[s] = time.Duration(d)
	return time.Duration(d), true
}

// seriesEntity says whose points a variable's series holds: the host's
// (kind 0, no labels) or an entity's, by kind and labels.
func (e *evaluator) seriesEntity(v *variable) (kind, row int, labels []string) {
	switch {
	case v.join >= 0:
		kind, row = e.sv.joins[v.join].kind, e.joinRows[v.join]
	case v.ref.KindIndex == 0:
		return 0, -1, nil
	default:
		kind, row = v.ref.KindIndex, e.row
	}
	if row < 0 {
		return kind, -1, nil
	}
	return kind, row, e.latest.Table(kind).Labels(row)
}

// call evaluates a series function, once per evaluation for a given
// series, window and entity. NaN (no data) taints the run.
func (e *evaluator) call(f fn, name, w1, w2 string, limit float64) float64 {
	v := e.sv.byName[name]
	if v == nil || e.latest == nil {
		e.taint = true
		return math.NaN()
	}
	kind, row, labels := e.seriesEntity(v)
	if kind != 0 && row < 0 {
		e.taint = true
		return math.NaN()
	}
	key := callKey{fn: f, series: name, w1: w1, w2: w2, limit: math.Float64bits(limit), kind: kind, row: row}
	r, ok := e.cache[key]
	if !ok {
		r.v = e.compute(f, v, kind, row, labels, w1, w2, limit)
		if n := len(e.ser.t); n > 1 {
			r.span = e.ser.t[n-1] - e.ser.t[0]
		}
		e.cache[key] = r
	}
	e.span = max(e.span, r.span)
	if math.IsNaN(r.v) {
		e.taint = true
	}
	return r.v
}

func (e *evaluator) compute(f fn, v *variable, kind, row int, labels []string, w1, w2 string, limit float64) float64 {
	d1, ok := e.window(w1)
	if !ok {
		return math.NaN()
	}
	if f == fnBaselineRate {
		d2, ok := e.window(w2)
		if !ok || d2 >= d1 {
			return math.NaN()
		}
		e.fill(v, kind, row, labels, e.now.Add(-d1), e.now.Add(-d2))
		var r float64
		r, e.buf = e.ser.medianRate(e.buf)
		return r
	}
	e.fill(v, kind, row, labels, e.now.Add(-d1), e.now)
	switch f {
	case fnIncrease:
		inc, _ := e.ser.increase()
		return inc
	case fnRate:
		return e.ser.rate()
	case fnMaxOverTime:
		return e.ser.max()
	case fnMinOverTime:
		return e.ser.min()
	case fnTimeToLimit:
		return e.ser.timeToLimit(limit)
	}
	return math.NaN()
}

// fill loads the points of v between from and to (inclusive) into e.ser:
// the host's, or those of the entity with these labels (matched across
// Snapshots by its labels, in the Snapshots that still hold it). A point
// carried from an earlier read (its part was not read in that cycle) is
// left out.
func (e *evaluator) fill(v *variable, kind, row int, labels []string, from, to time.Time) {
	e.ser.reset()
	i := sort.Search(len(e.snaps), func(i int) bool { return !e.snaps[i].Time.Before(from) })
	for ; i < len(e.snaps) && !e.snaps[i].Time.After(to); i++ {
		s := e.snaps[i]
		if !s.PartTime(v.ref.Part).Equal(s.Time) {
			continue
		}
		t := s.Time.Sub(e.now).Seconds()
		if kind == 0 {
			e.ser.add(t, s.Host(v.ref.Slot))
			continue
		}
		tab := s.Table(kind)
		if tab == nil {
			continue
		}
		// Entities mostly keep their row from one Snapshot to the next.
		r := row
		if r >= tab.Len() || !slices.Equal(tab.Labels(r), labels) {
			var ok bool
			if r, ok = tab.Find(labels); !ok {
				continue
			}
		}
		e.ser.add(t, tab.Value(r, v.ref.Slot))
	}
}

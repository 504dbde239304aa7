package alerts

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"sort"
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
	fnTimeToLimit
	fnBaselineRate
)

// callKey identifies one function call within one evaluation. Host series
// are shared by every listener of a listener-scoped rule, so listener is -1
// for them.
type callKey struct {
	fn       fn
	series   string
	w1, w2   string
	limit    uint64
	listener int
}

// evaluator runs conditions against a History at one instant. It is
// reused from one Eval to the next and is not safe for concurrent use.
type evaluator struct {
	now    time.Time
	snaps  []*collector.Snapshot // taken at or before now, oldest first
	latest *collector.Snapshot   // nil when there is no fresh Snapshot
	scope  *scopeVocab
	cur    *collector.Listener // the listener being evaluated
	curIdx int
	// taint is set when a function had no data during a run.
	taint bool

	cache   map[callKey]float64
	windows map[string]time.Duration
	ser     series
	buf     []float64

	host     hostEnv
	lst      listenerEnv
	hostVal  reflect.Value
	lstVal   reflect.Value
	hostData map[string]any
	vm       vm.VM
}

func newEvaluator() *evaluator {
	e := &evaluator{
		cache:   map[callKey]float64{},
		windows: map[string]time.Duration{},
	}
	f := funcs{
		Increase:     func(s, w string) float64 { return e.call(fnIncrease, s, w, "", 0) },
		Rate:         func(s, w string) float64 { return e.call(fnRate, s, w, "", 0) },
		MaxOverTime:  func(s, w string) float64 { return e.call(fnMaxOverTime, s, w, "", 0) },
		TimeToLimit:  func(s string, l float64, w string) float64 { return e.call(fnTimeToLimit, s, w, "", l) },
		BaselineRate: func(s, w, x string) float64 { return e.call(fnBaselineRate, s, w, x, 0) },
		Sysctl:       e.sysctl,
	}
	e.host.funcs, e.lst.funcs = f, f
	e.hostVal = reflect.ValueOf(&e.host).Elem()
	e.lstVal = reflect.ValueOf(&e.lst).Elem()
	return e
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
	clear(e.cache)
	e.hostData = nil
	e.cur, e.curIdx = nil, -1
	if e.latest == nil {
		return
	}
	hv := vocab[ScopeHost]
	for _, v := range hv.vars {
		e.hostVal.FieldByIndex(hv.field[v]).SetFloat(v.host(e.latest))
	}
	e.lst.hostVars = e.host.hostVars
}

// setListener makes listener i of the latest Snapshot the one listener
// rules look at.
func (e *evaluator) setListener(i int) {
	l := &e.latest.Listeners[i]
	e.cur, e.curIdx = l, i
	lv := vocab[ScopeListener]
	for _, v := range listenerVariables {
		e.lstVal.FieldByIndex(lv.field[v]).SetFloat(v.listener(e.latest, l))
	}
	e.lst.Port = int(l.Port)
	e.lst.Addr = l.Addr.String()
}

// cond runs r's condition for the current scope and listener. ok is false
// when it has no data: a value it reads was not read, or a function had too
// few points.
func (e *evaluator) cond(r *Rule) (holds, ok bool, err error) {
	if r.prog == nil {
		return false, false, fmt.Errorf("rule %q: %w", r.Name, ErrNotCompiled)
	}
	for _, v := range r.refs {
		if math.IsNaN(v.value(e.latest, e.cur)) {
			return false, false, nil
		}
	}
	e.scope = vocab[r.Scope]
	e.taint = false
	out, err := e.vm.Run(r.prog, e.env(r.Scope))
	if err != nil {
		return false, false, fmt.Errorf("rule %q: %w", r.Name, err)
	}
	if e.taint {
		return false, false, nil
	}
	b, _ := out.(bool)
	return b, true, nil
}

// value runs r's value expression; NaN when it has none or it fails.
func (e *evaluator) value(r *Rule) float64 {
	if r.valueProg == nil {
		return math.NaN()
	}
	e.scope = vocab[r.Scope]
	out, err := e.vm.Run(r.valueProg, e.env(r.Scope))
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

func (e *evaluator) env(s Scope) any {
	if s == ScopeListener {
		return &e.lst
	}
	return &e.host
}

// data returns the template data of the current scope and listener: every
// variable's current value, the alert's value and labels.
func (e *evaluator) data(r *Rule, value float64, labels map[string]string) map[string]any {
	if e.hostData == nil {
		e.hostData = make(map[string]any, len(vocab[ScopeHost].vars))
		for _, v := range vocab[ScopeHost].vars {
			e.hostData[v.Name] = v.host(e.latest)
		}
	}
	d := maps.Clone(e.hostData)
	if r.Scope == ScopeListener && e.cur != nil {
		for _, v := range listenerVariables {
			d[v.Name] = v.listener(e.latest, e.cur)
		}
		d["addr"] = e.lst.Addr
		d["port"] = e.lst.Port
	}
	d["value"] = value
	d["labels"] = labels
	return d
}

func (e *evaluator) sysctl(name string) float64 {
	if e.latest != nil {
		if v, ok := e.latest.Sysctl(name); ok {
			return float64(v)
		}
	}
	e.taint = true
	return math.NaN()
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

// call evaluates a series function, once per evaluation for a given
// series, window and listener. NaN (no data) taints the run.
func (e *evaluator) call(f fn, name, w1, w2 string, limit float64) float64 {
	v := e.scope.byName[name]
	if v == nil {
		e.taint = true
		return math.NaN()
	}
	key := callKey{fn: f, series: name, w1: w1, w2: w2, limit: math.Float64bits(limit), listener: -1}
	if v.listener != nil {
		key.listener = e.curIdx
	}
	r, ok := e.cache[key]
	if !ok {
		r = e.compute(f, v, w1, w2, limit)
		e.cache[key] = r
	}
	if math.IsNaN(r) {
		e.taint = true
	}
	return r
}

func (e *evaluator) compute(f fn, v *variable, w1, w2 string, limit float64) float64 {
	d1, ok := e.window(w1)
	if !ok {
		return math.NaN()
	}
	if f == fnBaselineRate {
		d2, ok := e.window(w2)
		if !ok || d2 >= d1 {
			return math.NaN()
		}
		e.fill(v, e.now.Add(-d1), e.now.Add(-d2))
		var r float64
		r, e.buf = e.ser.medianRate(e.buf)
		return r
	}
	e.fill(v, e.now.Add(-d1), e.now)
	switch f {
	case fnIncrease:
		inc, _ := e.ser.increase()
		return inc
	case fnRate:
		return e.ser.rate()
	case fnMaxOverTime:
		return e.ser.max()
	case fnTimeToLimit:
		return e.ser.timeToLimit(limit)
	}
	return math.NaN()
}

// fill loads the points of v between from and to (inclusive) into e.ser:
// for a listener variable, the current listener's values, matched by
// address and port, in the Snapshots where it was listening.
func (e *evaluator) fill(v *variable, from, to time.Time) {
	e.ser.reset()
	i := sort.Search(len(e.snaps), func(i int) bool { return !e.snaps[i].Time.Before(from) })
	for ; i < len(e.snaps) && !e.snaps[i].Time.After(to); i++ {
		s := e.snaps[i]
		if v.fresh != nil && !v.fresh(s) {
			continue
		}
		t := s.Time.Sub(e.now).Seconds()
		if v.listener == nil {
			e.ser.add(t, v.host(s))
			continue
		}
		if e.cur == nil {
			continue
		}
		// Listeners mostly keep their place from one Snapshot to the next.
		var l *collector.Listener
		if e.curIdx < len(s.Listeners) && s.Listeners[e.curIdx].Port == e.cur.Port && s.Listeners[e.curIdx].Addr == e.cur.Addr {
			l = &s.Listeners[e.curIdx]
		} else {
			l = findListener(s, e.cur.Addr, e.cur.Port)
		}
		if l != nil {
			e.ser.add(t, v.listener(s, l))
		}
	}
}

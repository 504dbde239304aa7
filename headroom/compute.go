package headroom

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/errtext"
)

// Input is what Compute judges.
type Input struct {
	// Now is the time of the judgement: the latest sample's age is
	// measured from it.
	Now time.Time
	// Host names the host in the Report.
	Host string
	// History holds the recent samples, for trends; may be nil.
	History *collector.History
	// Latest is the sample judged; nil takes History's latest.
	Latest *collector.Snapshot
	// Alerts are the pending and firing alerts (FromEngine, FromFindings).
	Alerts []Alert
}

// maxQueueReasons bounds the reasons naming queues below the minimum,
// and those naming critical alerts; the rest are counted.
const maxQueueReasons = 5

// Compute judges the host's headroom from the latest sample: see the
// package documentation for what counts and what ok means. It reads
// memory only.
func Compute(in Input, o Options) *Report {
	o = o.withDefaults()
	r := &Report{Schema: SchemaVersion, Host: in.Host, Min: o.Min, Ports: o.Ports,
		Queues: []Queue{}, Alerts: filterAlerts(in.Alerts, o.Ports), Reasons: []string{}}
	// Missing data first, then the queues below the minimum, then the
	// critical alerts: the first reason is the one that explains most.
	defer func() {
		critical := 0
		for _, a := range r.Alerts {
			if a.State == alerts.StateFiring.String() && a.Severity == string(alerts.SeverityCritical) {
				if critical < maxQueueReasons {
					r.Reasons = append(r.Reasons, alertReason(a))
				}
				critical++
			}
		}
		if critical > maxQueueReasons {
			r.Reasons = append(r.Reasons, fmt.Sprintf("and %d more critical alerts firing", critical-maxQueueReasons))
		}
		r.OK = len(r.Reasons) == 0
	}()
	s := in.Latest
	if s == nil && in.History != nil {
		s = in.History.Latest()
	}
	if s == nil {
		r.NoData = true
		r.Reasons = append(r.Reasons, "no data: no sample taken yet")
		return r
	}
	r.Time = s.Time
	age := in.Now.Sub(s.Time)
	r.AgeSeconds = ptr(age.Seconds())
	if age > o.StaleAfter {
		r.NoData = true
		r.Reasons = append(r.Reasons, fmt.Sprintf("no data: the latest sample is %s old (stale after %s): sampling has stalled",
			age.Round(100*time.Millisecond), o.StaleAfter))
		return r
	}
	c := &computer{s: s, sc: s.Schema(), o: o, r: r, reported: map[string]bool{}}
	c.sources()
	c.queues()
	c.list(in.History)
	if r.NoData {
		// A figure from what could be read would read as a headroom
		// (a gate on {$.headroom}): there is none.
		r.Headroom, r.Limiting = nil, nil
	}
	return r
}

// instance is one queue of one entity, judged.
type instance struct {
	item                     int // index into computer.items
	row                      int // the entity's row; -1 for a host queue
	used, limit, ratio, head float64
	state                    state
}

type state uint8

const (
	hasFigure  state = iota
	noLimit          // read, but the limit is no data: unlimited
	noData           // its source failed: missing
	unmeasured       // its source succeeded without it: not for this entity
)

// queueItem is a declared Queue item and where its values are.
type queueItem struct {
	*collector.Item
	source                       *collector.Declaration
	result                       collector.SourceResult
	failed                       bool // its source failed (not absent)
	kind                         int  // entity kind index, 0 for the host
	value, limit, ratio          collector.ValueRef
	hasValue, hasLimit, hasRatio bool
	table                        *collector.Table
	ports                        func(labels []string) (string, bool)
	// noDataCount counts the entities whose values are missing;
	// noDataRow is the first.
	noDataCount, noDataRow int
}

type computer struct {
	s        *collector.Snapshot
	sc       *collector.Schema
	o        Options
	r        *Report
	items    []*queueItem
	figures  []instance
	others   []instance // host queues without a figure
	portSeen []bool     // by index in o.Ports
	reported map[string]bool
	ts, vs   []float64 // trend scratch
	slab     []float64 // backs the Report's figures
}

// sources reports the core sources that failed: without them nothing
// can be called ok.
func (c *computer) sources() {
	for _, d := range c.sc.Sources() {
		if !d.Core {
			continue
		}
		res, ran := c.s.Source(d.Name)
		switch {
		case !ran:
			c.reason(d.Name, fmt.Sprintf("no data: the %s source did not run", d.Name))
		case !res.Success && !res.NoData:
			c.reason(d.Name, fmt.Sprintf("no data: %s source failed: %s", d.Name, errText(res.Err)))
		}
	}
}

// reason adds a reason about source src, once.
func (c *computer) reason(src, text string) {
	if c.reported[src] {
		return
	}
	c.reported[src] = true
	c.r.NoData = true
	c.r.Reasons = append(c.r.Reasons, text)
}

func errText(err error) string {
	if err == nil {
		return "no result"
	}
	return errtext.OneLine(err, errtext.MaxErrorLen)
}

// queues judges every instance of every declared Queue item.
func (c *computer) queues() {
	c.portSeen = make([]bool, len(c.o.Ports))
	ports := make([]string, len(c.o.Ports))
	for i, p := range c.o.Ports {
		ports[i] = strconv.Itoa(int(p))
	}
	keep := func(qi *queueItem, labels []string) bool {
		if len(ports) == 0 || qi.ports == nil {
			return true
		}
		p, ok := qi.ports(labels)
		if !ok {
			return true
		}
		i := slices.Index(ports, p)
		if i < 0 {
			return false
		}
		c.portSeen[i] = true
		return true
	}
	portsUnknown := false // a kind with ports was not delivered
	for i, it := range c.sc.Items() {
		if !it.Queue {
			continue
		}
		qi := &queueItem{Item: it, source: c.sc.ItemSource(i)}
		res, ran := c.s.Source(qi.source.Name)
		if !ran || res.NoData {
			continue // the subsystem is absent, or not read here: nothing there to fill
		}
		qi.result, qi.failed = res, !res.Success
		kind := it.Entity
		if kind == "" {
			kind = collector.HostKind
		}
		qi.kind, _ = c.sc.KindIndex(kind)
		qi.value, qi.hasValue = c.sc.Lookup(kind, it.Value)
		qi.limit, qi.hasLimit = c.lookup(kind, it.Limit)
		qi.ratio, qi.hasRatio = c.lookup(kind, it.Ratio)
		qi.ports = portsOf(c.sc, kind)
		n := len(c.items)
		c.items = append(c.items, qi)
		if qi.kind == 0 {
			c.judge(n, -1)
			continue
		}
		qi.table = c.s.Table(qi.kind)
		if qi.table == nil {
			if qi.failed {
				c.reason(qi.source.Name+"\xff"+it.ID, fmt.Sprintf("no data: %s: %s", it.What, c.failure(qi)))
				portsUnknown = portsUnknown || qi.ports != nil
			}
			continue
		}
		c.figures = slices.Grow(c.figures, qi.table.Len())
		for row := range qi.table.Len() {
			if keep(qi, qi.table.Labels(row)) {
				c.judge(n, row)
			}
		}
		if qi.noDataCount > 0 {
			what := it.What + " of " + c.sc.DisplayName(kind, qi.table.Labels(qi.noDataRow))
			if qi.noDataCount > 1 {
				what = fmt.Sprintf("%s of %d %ss", it.What, qi.noDataCount, kind)
			}
			c.reason(qi.source.Name+"\xff"+it.ID, fmt.Sprintf("no data: %s: %s", what, c.failure(qi)))
		}
	}
	for i, seen := range c.portSeen {
		if !seen && !portsUnknown { // when the listeners are unknown, that reason says it
			c.r.NoData = true // the queues asked about are not there to measure
			c.r.Reasons = append(c.r.Reasons, fmt.Sprintf("nothing is reported listening on port %d", c.o.Ports[i]))
		}
	}
}

func (c *computer) lookup(kind, name string) (collector.ValueRef, bool) {
	if name == "" {
		return collector.ValueRef{}, false
	}
	return c.sc.Lookup(kind, name)
}

// failure says why an item's values are missing; the error itself only
// when no reason gave it yet.
func (c *computer) failure(qi *queueItem) string {
	switch {
	case !qi.failed:
		return "not read"
	case c.reported[qi.source.Name]:
		return qi.source.Name + " source failed"
	}
	return fmt.Sprintf("%s source failed: %s", qi.source.Name, errText(qi.result.Err))
}

// judge figures out the instance of item n at row and files it.
func (c *computer) judge(n, row int) {
	qi := c.items[n]
	in := instance{item: n, row: row, used: collector.NaN, limit: collector.NaN, ratio: collector.NaN, head: collector.NaN}
	if qi.hasValue {
		in.used = c.s.Value(qi.value, row)
	}
	if qi.hasLimit {
		in.limit = c.s.Value(qi.limit, row)
	}
	if qi.hasRatio {
		in.ratio = c.s.Value(qi.ratio, row)
	}
	switch {
	case collector.Present(in.limit) && in.limit <= 0:
		in.ratio = math.Inf(1) // a queue of no size has no room, whatever its ratio says
	case !collector.Present(in.ratio) && collector.Present(in.used) && collector.Present(in.limit):
		in.ratio = in.used / in.limit
	}
	c.r.QueuesTotal++
	switch {
	case collector.Present(in.ratio):
		in.head = min(max(1-in.ratio, 0), 1)
		in.state = hasFigure
		c.figures = append(c.figures, in)
		return
	case collector.Present(in.used) && qi.hasLimit && !qi.failed:
		in.state = noLimit
	case qi.failed:
		in.state = noData
	default:
		in.state = unmeasured // e.g. an interface the value is not read for
	}
	if in.state == noData {
		if row < 0 {
			c.reason(qi.source.Name+"\xff"+qi.ID, fmt.Sprintf("no data: %s: %s", qi.What, c.failure(qi)))
		} else {
			if qi.noDataCount == 0 {
				qi.noDataRow = row
			}
			qi.noDataCount++
		}
	}
	if row < 0 {
		c.others = append(c.others, in)
	}
}

// list ranks the queues, sets the headroom and its reasons, and lists
// the queues the Report shows.
func (c *computer) list(h *collector.History) {
	r := c.r
	slices.SortStableFunc(c.figures, func(a, b instance) int { return cmp.Compare(a.head, b.head) })
	if len(c.figures) == 0 {
		r.NoData = true
		r.Reasons = append(r.Reasons, "no data: no queue with a limit was measured")
	} else {
		lim := c.figures[0]
		r.Headroom = c.ptr(lim.head)
		var below int
		for _, in := range c.figures {
			if in.head >= c.o.Min {
				break
			}
			if below < maxQueueReasons {
				r.Reasons = append(r.Reasons, c.describe(in))
			}
			below++
		}
		if below > maxQueueReasons {
			r.Reasons = append(r.Reasons, fmt.Sprintf("and %d more queues with less than %s headroom", below-maxQueueReasons, pct(c.o.Min)))
		}
	}
	// The top queues, and the tightest of each item not among them.
	var shown []instance
	top := c.o.Top
	if top <= 0 || top > len(c.figures) {
		top = len(c.figures)
	}
	shown = append(shown, c.figures[:top]...)
	seen := make([]bool, len(c.items))
	for _, in := range shown {
		seen[in.item] = true
	}
	for _, in := range c.figures[top:] {
		if !seen[in.item] {
			seen[in.item] = true
			shown = append(shown, in)
		}
	}
	shown = append(shown, c.others...)
	var snaps []*collector.Snapshot
	if h != nil {
		snaps = h.Since(c.s.Time.Add(-c.o.TrendWindow))
	}
	for i, in := range shown {
		q := c.queue(in)
		if in.state == hasFigure {
			q.Trend = c.trend(in, snaps)
		}
		r.Queues = append(r.Queues, q)
		if i == 0 && in.state == hasFigure {
			l := q
			r.Limiting = &l
		}
	}
}

// queue renders an instance.
func (c *computer) queue(in instance) Queue {
	qi := c.items[in.item]
	q := Queue{ID: qi.ID, What: qi.What, Kind: c.sc.Kinds()[qi.kind].Name, Unit: qi.Unit, Name: qi.What}
	if in.row >= 0 {
		lv := qi.table.Labels(in.row)
		k := qi.table.Kind()
		q.Labels = make(map[string]string, len(lv))
		for i, l := range k.Labels {
			q.Labels[l.Name] = lv[i]
		}
		q.Entity = c.sc.DisplayName(k.Name, lv)
		q.Name += " " + q.Entity
	}
	q.Used, q.Limit = c.opt(in.used), c.opt(in.limit)
	if collector.Present(in.used) && collector.Present(in.limit) {
		q.Free = c.ptr(max(in.limit-in.used, 0))
	}
	if in.state == hasFigure {
		q.UsedRatio, q.Headroom = c.ptr(in.ratio), c.ptr(in.head)
		if math.IsInf(in.ratio, 1) {
			q.UsedRatio = nil
			q.Note = "limit 0: no room"
		}
	}
	switch in.state {
	case noLimit:
		q.Note = "no limit"
	case noData:
		q.Note = "no data: " + c.failure(qi)
	case unmeasured:
		q.Note = "not measured"
	}
	return q
}

// describe says how full a queue is: "accept queue of 0.0.0.0:6379 at
// 85% (limit 128)".
func (c *computer) describe(in instance) string {
	qi := c.items[in.item]
	var b strings.Builder
	b.WriteString(qi.What)
	if in.row >= 0 {
		b.WriteString(" of ")
		b.WriteString(c.sc.DisplayName(qi.table.Kind().Name, qi.table.Labels(in.row)))
	}
	switch {
	case math.IsInf(in.ratio, 1):
		b.WriteString(" has a limit of 0")
		return b.String()
	case in.ratio >= 1:
		b.WriteString(" is full")
	default:
		b.WriteString(" at ")
		b.WriteString(pct(in.ratio))
	}
	if collector.Present(in.limit) {
		b.WriteString(" (limit ")
		b.WriteString(num(in.limit))
		b.WriteString(")")
	}
	return b.String()
}

// trend fits a line through the queue's used figure in the recent
// samples (those whose part was read in their own cycle: a carried value
// is not a new point).
func (c *computer) trend(in instance, snaps []*collector.Snapshot) *Trend {
	qi := c.items[in.item]
	if !qi.hasValue || len(snaps) < 2 {
		return nil
	}
	var labels []string
	if in.row >= 0 {
		labels = qi.table.Labels(in.row)
	}
	ts, vs := c.ts[:0], c.vs[:0] // scratch: the fit keeps nothing
	defer func() { c.ts, c.vs = ts, vs }()
	for _, s := range snaps {
		if s.Time.After(c.s.Time) || !s.PartTime(qi.value.Part).Equal(s.Time) || s.Schema() != c.sc {
			continue
		}
		v := collector.NaN
		if in.row < 0 {
			v = s.Value(qi.value, -1)
		} else if t := s.Table(qi.kind); t != nil {
			row := in.row // the same row, most often: rows are sorted by labels
			if row >= t.Len() || !slices.Equal(t.Labels(row), labels) {
				var ok bool
				if row, ok = t.Find(labels); !ok {
					continue
				}
			}
			v = s.Value(qi.value, row)
		}
		if collector.Present(v) {
			ts = append(ts, s.Time.Sub(c.s.Time).Seconds())
			vs = append(vs, v)
		}
	}
	slope, _, ok := alerts.LinearFit(ts, vs)
	if !ok {
		return nil
	}
	tr := &Trend{WindowSeconds: ts[len(ts)-1] - ts[0], Points: len(ts), PerSecond: slope}
	if ttl := alerts.TimeToLimit(ts, vs, in.limit); !math.IsNaN(ttl) && !math.IsInf(ttl, 0) {
		tr.SecondsToFull = c.ptr(ttl)
	}
	return tr
}

// portsOf returns how to read the port of an entity of kind: its own
// "port" label, or that of the entity it joins (a Valkey target's
// listener); nil for the host and kinds without a port.
func portsOf(sc *collector.Schema, kind string) func([]string) (string, bool) {
	k, ok := sc.Kind(kind)
	if !ok || kind == collector.HostKind {
		return nil
	}
	if i := portLabel(k); i >= 0 {
		return func(l []string) (string, bool) { return l[i], true }
	}
	for _, j := range k.Joins {
		jk, ok := sc.Kind(j.Kind)
		if !ok || j.Candidates == nil {
			continue
		}
		if i := portLabel(jk); i >= 0 {
			cand := j.Candidates
			return func(l []string) (string, bool) {
				for _, c := range cand(l) {
					if i < len(c) {
						return c[i], true
					}
				}
				return "", false
			}
		}
	}
	return nil
}

func portLabel(k *collector.EntityKind) int {
	return slices.IndexFunc(k.Labels, func(l collector.Label) bool { return l.Name == "port" })
}

// filterAlerts keeps the alerts of the ports asked for (alerts without a
// port label always).
func filterAlerts(in []Alert, ports []uint16) []Alert {
	out := make([]Alert, 0, len(in))
	for _, a := range in {
		if p, ok := a.Labels["port"]; ok && len(ports) > 0 &&
			!slices.ContainsFunc(ports, func(q uint16) bool { return strconv.Itoa(int(q)) == p }) {
			continue
		}
		out = append(out, a)
	}
	return out
}

func alertReason(a Alert) string {
	s := "critical alert " + a.Name + " firing"
	if a.Summary != "" {
		s += ": " + a.Summary
	}
	return s
}

// pct renders a share as a whole percentage: "85%".
func pct(x float64) string { return strconv.FormatFloat(math.Floor(x*100+0.5), 'f', -1, 64) + "%" }

// num renders a count: "262144".
func num(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

func ptr(v float64) *float64 { return &v }

// ptr returns a pointer to a copy of v, from a slab: a Report listing a
// thousand queues holds five thousand figures.
func (c *computer) ptr(v float64) *float64 {
	if len(c.slab) == cap(c.slab) {
		c.slab = make([]float64, 0, 256)
	}
	c.slab = append(c.slab, v)
	return &c.slab[len(c.slab)-1]
}

// opt is a pointer to v, nil when v is no data.
func (c *computer) opt(v float64) *float64 {
	if !collector.Present(v) || math.IsInf(v, 0) {
		return nil
	}
	return c.ptr(v)
}

package diagnose

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
)

// Status is the verdict on one item, or on the whole host.
type Status int

// Statuses, from best to worst. Unknown ranks last among items (it says
// nothing about the host), but makes the report Unknown only when nothing
// at all could be read.
const (
	OK Status = iota
	Warning
	Critical
	Unknown
)

var statusNames = [...]string{"OK", "WARN", "CRIT", "UNKNOWN"}

// String returns OK, WARN, CRIT or UNKNOWN.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the status's name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ExitCode is the monitoring-plugin exit code of a report's status.
func (s Status) ExitCode() int { return int(s) }

// Report is the checklist of one `stormwatch check` run.
type Report struct {
	// Schema is the version of the JSON layout.
	Schema int `json:"schema"`
	// Host is the host's name.
	Host string `json:"host"`
	// Time is when the last sample was taken.
	Time time.Time `json:"time"`
	// WindowSeconds is the time between the two samples; 0 for an
	// instant check, which leaves counter items out.
	WindowSeconds float64 `json:"window_seconds"`
	// Status is the worst item status (Unknown only when nothing could be
	// read); ExitCode is its exit code.
	Status   Status `json:"status"`
	ExitCode int    `json:"exit_code"`
	// Sections are the checklist, in the order a connection travels.
	Sections []Section `json:"sections"`
	// Sources says how each source fared in the last sample.
	Sources []Source `json:"sources"`
}

// Section is one stage of a connection's path.
type Section struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	Items []Item `json:"items"`
}

// Item is one line of the checklist.
type Item struct {
	// ID is stable across runs (e.g. "accept_queue"); with Labels it
	// identifies the item.
	ID string `json:"id"`
	// What is the line's text.
	What string `json:"what"`
	// Labels are the listener's addr and port, for listener items.
	Labels map[string]string `json:"labels,omitempty"`
	// Status is the worst severity of the rules that alert on the item;
	// Unknown when its data could not be read.
	Status Status `json:"status"`
	// Value is the current value, Limit its limit and UsedRatio
	// Value/Limit, each absent when not applicable.
	Value     *float64 `json:"value,omitempty"`
	Limit     *float64 `json:"limit,omitempty"`
	UsedRatio *float64 `json:"used_ratio,omitempty"`
	// RatePerSecond is a counter's rate over the window.
	RatePerSecond *float64 `json:"rate_per_second,omitempty"`
	// Unit names what Value counts.
	Unit string `json:"unit,omitempty"`
	// Alerts are the rules whose condition holds for the item.
	Alerts []Alert `json:"alerts,omitempty"`
	// Advice are the distinct advice lines of those rules.
	Advice []string `json:"advice,omitempty"`
	// Reason says why the item is Unknown.
	Reason string `json:"reason,omitempty"`
	// NotJudged names the item's rules that had too little data to judge
	// (a rule over minutes of history, or counters in an instant check).
	NotJudged []string `json:"not_judged,omitempty"`
	// Attributes are what the source knows of the entity beyond its
	// labels (a listener's owning process: process, pid, state, or
	// owner_error), for an item that is not OK; Detail says it in words.
	Attributes map[string]string `json:"attributes,omitempty"`
	Detail     string            `json:"detail,omitempty"`
	// Clients are who connects to the listener, on the first item of a
	// listener not OK, when check read them (Report.SetClients).
	Clients *Clients `json:"clients,omitempty"`

	// kind is the entity kind of the item ("" for a host item).
	kind string
}

// Alert is a rule whose condition holds, as judged once.
type Alert struct {
	Name     string  `json:"alertname"`
	Severity string  `json:"severity"`
	Value    float64 `json:"value"`
	Summary  string  `json:"summary,omitempty"`
	Advice   string  `json:"advice,omitempty"`
}

// Source is a source's result in the last sample.
type Source struct {
	Name    string `json:"name"`
	Success bool   `json:"success"`
	NoData  bool   `json:"no_data"`
	Error   string `json:"error,omitempty"`
}

// Input is what Build judges.
type Input struct {
	// Host is the host's name.
	Host string
	// First and Last are the two samples, Window apart; First is nil for
	// an instant check.
	First, Last *collector.Snapshot
	// Findings are the rules judged on the samples (alerts.Engine.Check).
	Findings []alerts.Finding
	// Ports are the listener ports the check was asked about (--port): one
	// with no listener is a warning, and none found at all is Unknown.
	Ports []uint16
}

// otherSection holds the rules that attach to no declared item.
var otherSection = collector.Section{Name: "other", Title: "Other rules", Order: 1 << 20}

// Build turns samples and findings into the checklist. Its sections and
// items are those the sources declare (collector.Item); each finding
// attaches to the item of its rule's entity that covers the first value
// its condition mentions (in the rule's section, when it names one), else
// to an item of its own in the rule's section or "other".
func Build(in Input) *Report {
	s := in.Last
	sc := s.Schema()
	r := &Report{Schema: 1, Host: in.Host, Time: s.Time}
	window := 0.0
	if in.First != nil {
		window = s.Time.Sub(in.First.Time).Seconds()
	}
	r.WindowSeconds = window
	for _, src := range s.Sources {
		if src.Target != "" {
			continue
		}
		e := ""
		if src.Err != nil {
			e = src.Err.Error()
		}
		r.Sources = append(r.Sources, Source{Name: src.Name, Success: src.Success, NoData: src.NoData, Error: e})
	}
	b := &builder{in: in, s: s, sc: sc, window: window}
	b.place()

	sections := append(slices.Clone(sc.Sections()), otherSection)
	bySection := map[string]*Section{}
	for _, sec := range sections {
		bySection[sec.Name] = &Section{Name: sec.Name, Title: sec.Title}
	}
	for i, it := range sc.Items() {
		sec := bySection[it.Section]
		sec.Items = append(sec.Items, b.items(i, it)...)
	}
	for fi, f := range in.Findings {
		if b.target[fi] >= 0 || f.Status != alerts.CheckAlert {
			continue
		}
		name := f.Rule.Section
		if name == "" || bySection[name] == nil {
			name = otherSection.Name
		}
		it := Item{ID: "rule", What: f.Rule.Name}
		if kind := string(f.Rule.Scope); kind != collector.HostKind {
			if k, ok := sc.Kind(kind); ok {
				it.kind = kind
				it.Labels = map[string]string{}
				var lv []string
				for _, l := range k.Labels {
					it.Labels[l.Name] = f.Labels[l.Name]
					lv = append(lv, f.Labels[l.Name])
				}
				it.What += " " + sc.DisplayName(kind, lv)
			}
		}
		b.attach(&it, f)
		bySection[name].Items = append(bySection[name].Items, it)
	}
	missing := b.missingPorts()
	if acc := bySection["accept_queue"]; acc != nil {
		for _, p := range missing {
			acc.Items = append(acc.Items, Item{ID: "accept_queue", What: "port " + strconv.Itoa(int(p)), Status: Warning,
				Labels: map[string]string{"port": strconv.Itoa(int(p))},
				Reason: "no listener on port " + strconv.Itoa(int(p)) + ": nothing is listening (is the server down, or the port mistyped?)"})
		}
	}
	for _, sec := range sections {
		if out := bySection[sec.Name]; len(out.Items) > 0 {
			r.Sections = append(r.Sections, *out)
		}
	}
	r.Status = r.verdict(sc)
	if len(in.Ports) > 0 && len(missing) == len(in.Ports) {
		if res, _ := s.Source("listeners"); res.Success {
			r.Status = Unknown // none of the listeners asked about exists
		}
	}
	r.ExitCode = r.Status.ExitCode()
	return r
}

// missingPorts returns the ports asked about that no listener has (none
// when the listeners could not be read: that is said elsewhere).
func (b *builder) missingPorts() []uint16 {
	t := b.s.TableOf(collector.KindListener)
	if t == nil {
		return nil
	}
	found := map[string]bool{}
	for r := range t.Len() {
		found[t.Labels(r)[1]] = true
	}
	var out []uint16
	for _, p := range b.in.Ports {
		if !found[strconv.Itoa(int(p))] && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// verdict is the worst item status. With nothing worse than OK it is
// Unknown when a core source failed (a check that could not see the queues
// cannot call the host healthy); items Unknown for want of a lesser source
// (conntrack stats without CAP_NET_ADMIN) leave it OK.
func (r *Report) verdict(sc *collector.Schema) Status {
	worst := OK
	for _, sec := range r.Sections {
		for _, it := range sec.Items {
			if it.Status != Unknown && it.Status > worst {
				worst = it.Status
			}
		}
	}
	if worst != OK {
		return worst
	}
	for _, s := range r.Sources {
		if d, ok := sc.Source(s.Name); ok && d.Core && !s.Success && !s.NoData {
			return Unknown
		}
	}
	return OK
}

type builder struct {
	in     Input
	s      *collector.Snapshot
	sc     *collector.Schema
	window float64
	// target[i] is the item (index into Schema.Items) finding i attaches
	// to, -1 for none.
	target []int
	// unknownKinds are the entity kinds already said to be unreadable.
	unknownKinds map[string]bool
}

// place finds each finding's item: of the rule's scope, covering the
// first value the rule mentions that any such item covers.
func (b *builder) place() {
	items := b.sc.Items()
	b.target = make([]int, len(b.in.Findings))
	for fi, f := range b.in.Findings {
		b.target[fi] = -1
		kind := string(f.Rule.Scope)
		if kind == collector.HostKind {
			kind = ""
		}
	mentions:
		for _, m := range f.Rule.Mentions() {
			for i, it := range items {
				if it.Entity == kind && (f.Rule.Section == "" || it.Section == f.Rule.Section) && it.Covers(m) {
					b.target[fi] = i
					break mentions
				}
			}
		}
	}
}

// findings returns the findings placed on item i for an entity with these
// labels (nil for a host item).
func (b *builder) findings(i int, labels map[string]string) []int {
	var out []int
	for fi, f := range b.in.Findings {
		if b.target[fi] == i && sameEntity(f.Labels, labels) {
			out = append(out, fi)
		}
	}
	return out
}

func sameEntity(finding, labels map[string]string) bool {
	for k, v := range labels {
		if finding[k] != v {
			return false
		}
	}
	return true
}

// items returns the lines of item i: one for a host item, one per entity
// for an entity item.
func (b *builder) items(i int, it *collector.Item) []Item {
	src := b.sc.ItemSource(i).Name
	res, ran := b.s.Source(src)
	if ran && res.NoData {
		if it.Absent == "" {
			return nil
		}
		return []Item{{ID: it.ID, What: it.What, Status: OK, Reason: it.Absent}}
	}
	if it.Entity == "" {
		if len(it.Rate) > 0 {
			if b.window <= 0 {
				return nil // an instant check has no rates
			}
			return []Item{b.rateItem(i, it, src)}
		}
		out := Item{ID: it.ID, What: it.What, Unit: it.Unit}
		b.figures(&out, b.s.Get(it.Value), b.get(it.Limit), b.get(it.Ratio), src)
		b.judge(&out, i)
		return []Item{out}
	}
	t := b.s.TableOf(it.Entity)
	if t == nil {
		// One line says the source failed, for the kind's first item; a
		// source that did not run (a target source in a check) says
		// nothing.
		if it.Quiet || !ran || b.unknownKinds[it.Entity] {
			return nil
		}
		if b.unknownKinds == nil {
			b.unknownKinds = map[string]bool{}
		}
		b.unknownKinds[it.Entity] = true
		out := Item{ID: it.ID, What: it.Entity + "s", Status: Unknown, Reason: b.reason(src)}
		return []Item{out}
	}
	k, _ := b.sc.Kind(it.Entity)
	if len(it.Rate) > 0 && b.window <= 0 {
		return nil // an instant check has no rates
	}
	value, _ := b.sc.Lookup(it.Entity, it.Value)
	limit, hasLimit := b.sc.Lookup(it.Entity, it.Limit)
	ratio, hasRatio := b.sc.Lookup(it.Entity, it.Ratio)
	type line struct {
		row          int
		v, lim, frac float64
	}
	var lines []line
	for row := range t.Len() {
		l := line{row: row, v: b.s.Value(value, row), lim: math.NaN(), frac: math.NaN()}
		if len(it.Rate) > 0 {
			l.v = b.entityRate(it, t.Labels(row), row)
		}
		if hasLimit {
			l.lim = b.s.Value(limit, row)
		}
		switch {
		case hasRatio:
			l.frac = b.s.Value(ratio, row)
		case l.lim > 0:
			l.frac = l.v / l.lim
		}
		lines = append(lines, l)
	}
	// Fullest first.
	slices.SortStableFunc(lines, func(x, y line) int {
		return cmp.Or(cmp.Compare(nanLow(y.frac), nanLow(x.frac)), cmp.Compare(nanLow(y.v), nanLow(x.v)))
	})
	var out []Item
	for _, l := range lines {
		lv := t.Labels(l.row)
		labels := make(map[string]string, len(lv))
		for j, lab := range k.Labels {
			labels[lab.Name] = lv[j]
		}
		if it.Quiet && !(l.v > 0) && !b.alerting(i, labels) {
			continue // a quiet entity says nothing here
		}
		o := Item{ID: it.ID, What: it.What + " " + b.sc.DisplayName(it.Entity, lv), Unit: it.Unit, Labels: labels, kind: it.Entity}
		switch {
		case len(it.Rate) == 0:
			b.figures(&o, l.v, l.lim, l.frac, src)
		case collector.Present(l.v):
			o.RatePerSecond = ptr(l.v)
		default:
			o.Status, o.Reason = Unknown, b.reason(src)
		}
		if o.Status == Unknown {
			if r := b.targetReason(src, lv); r != "" {
				o.Reason = r
			}
		}
		b.judge(&o, i)
		if o.Status != OK {
			o.Attributes, o.Detail = describe(k, t, l.row)
		}
		out = append(out, o)
	}
	return out
}

// entityRate is the summed rate of the item's counters of one entity over
// the window, NaN when none was read in both samples.
func (b *builder) entityRate(it *collector.Item, labels []string, row int) float64 {
	first := b.in.First.TableOf(it.Entity)
	frow, ok := first.Find(labels)
	if !ok {
		return math.NaN()
	}
	sum, read := 0.0, false
	for _, name := range it.Rate {
		ref, _ := b.sc.Lookup(it.Entity, name)
		a, z := b.in.First.Value(ref, frow), b.s.Value(ref, row)
		if collector.Present(a) && collector.Present(z) {
			sum += alerts.CounterDelta(a, z)
			read = true
		}
	}
	if !read {
		return math.NaN()
	}
	return sum / b.window
}

// describe returns the attributes of entity row of t, and what its kind
// says of them.
func describe(k *collector.EntityKind, t *collector.Table, row int) (map[string]string, string) {
	var attrs map[string]string
	for i, name := range k.Attrs {
		if v := t.Attr(row, i); v != "" {
			if attrs == nil {
				attrs = map[string]string{}
			}
			attrs[name] = v
		}
	}
	if attrs == nil || k.Describe == nil {
		return attrs, ""
	}
	return attrs, k.Describe(attrs)
}

func (b *builder) get(name string) float64 {
	if name == "" {
		return math.NaN()
	}
	return b.s.Get(name)
}

func nanLow(v float64) float64 {
	if math.IsNaN(v) {
		return math.Inf(-1)
	}
	return v
}

// figures fills value, limit and used ratio, or marks the item Unknown
// with the source's error when the value was not read.
func (b *builder) figures(it *Item, value, limit, ratio float64, source string) {
	if !collector.Present(value) {
		it.Status, it.Reason = Unknown, b.reason(source)
		return
	}
	it.Value = ptr(value)
	if collector.Present(limit) {
		it.Limit = ptr(limit)
		if !collector.Present(ratio) && limit > 0 {
			ratio = value / limit
		}
	}
	if collector.Present(ratio) {
		it.UsedRatio = ptr(ratio)
	}
}

// rateItem is an item whose value is the summed rate of counters over
// the window.
func (b *builder) rateItem(i int, it *collector.Item, source string) Item {
	out := Item{ID: it.ID, What: it.What, Unit: it.Unit}
	if r, ok := b.rate(it.Rate); ok {
		out.RatePerSecond = ptr(r)
	} else {
		out.Status, out.Reason = Unknown, b.reason(source)
	}
	b.judge(&out, i)
	if c := it.Caveat; c != nil && out.Status != Unknown {
		if r, ok := b.rate(c.Rate); ok && r > 0 {
			out.Status = max(out.Status, Warning)
			out.Reason = fmt.Sprintf(c.Text, strconv.FormatFloat(r, 'f', 1, 64))
		}
	}
	return out
}

// rate is the summed rate of counters over the window: the rise of each
// from the first sample to the last (alerts.CounterDelta), those not read
// left out; false when none was read.
func (b *builder) rate(counters []string) (float64, bool) {
	sum, read := 0.0, false
	for _, name := range counters {
		a, z := b.in.First.Get(name), b.s.Get(name)
		if collector.Present(a) && collector.Present(z) {
			sum += alerts.CounterDelta(a, z)
			read = true
		}
	}
	return sum / b.window, read
}

// alerting reports whether a rule placed on item i alerts for labels.
func (b *builder) alerting(i int, labels map[string]string) bool {
	for _, fi := range b.findings(i, labels) {
		if b.in.Findings[fi].Status == alerts.CheckAlert {
			return true
		}
	}
	return false
}

// judge attaches the findings placed on item i for the item's entity:
// those that alert, and the names of those that could not be judged.
func (b *builder) judge(it *Item, i int) {
	for _, fi := range b.findings(i, it.Labels) {
		f := b.in.Findings[fi]
		switch f.Status {
		case alerts.CheckAlert:
			b.attach(it, f)
		case alerts.CheckNoData:
			if it.Status != Unknown && !slices.Contains(it.NotJudged, f.Rule.Name) {
				it.NotJudged = append(it.NotJudged, f.Rule.Name)
			}
		}
	}
}

func (b *builder) attach(it *Item, f alerts.Finding) {
	a := Alert{Name: f.Rule.Name, Severity: string(f.Rule.Severity), Value: f.Value,
		Summary: f.Annotations["summary"], Advice: f.Annotations["advice"]}
	if math.IsNaN(a.Value) || math.IsInf(a.Value, 0) {
		a.Value = 0
	}
	it.Alerts = append(it.Alerts, a)
	if a.Advice != "" && !slices.Contains(it.Advice, a.Advice) {
		it.Advice = append(it.Advice, a.Advice)
	}
	st := Warning // info and warning: worth a look
	if f.Rule.Severity == alerts.SeverityCritical {
		st = Critical
	}
	if it.Status == Unknown || st > it.Status {
		it.Status = st
	}
}

// reason explains why a source's data is missing.
func (b *builder) reason(source string) string {
	res, ok := b.s.Source(source)
	decl, _ := b.sc.Source(source)
	switch {
	case !ok:
		return source + " did not run"
	case res.NoData:
		return source + ": not present on this host"
	case errors.Is(res.Err, collector.ErrPermission) && decl != nil && decl.Privilege != "":
		return decl.Privilege
	case res.Err != nil:
		return res.Err.Error()
	}
	return "not provided by this kernel"
}

// targetReason is the failure of the target behind an entity of a target
// source (named by its labels), "" when there is none.
func (b *builder) targetReason(source string, labels []string) string {
	name := strings.Join(labels, " ")
	for _, r := range b.s.Sources {
		if r.Name == source && r.Target == name && r.Err != nil {
			return r.Err.Error()
		}
	}
	return ""
}

func ptr(v float64) *float64 { return &v }

// String is a one-line summary: "CRIT: 2 critical, 1 warning".
func (r *Report) String() string {
	var crit, warn, unknown int
	for _, sec := range r.Sections {
		for _, it := range sec.Items {
			switch it.Status {
			case Critical:
				crit++
			case Warning:
				warn++
			case Unknown:
				unknown++
			}
		}
	}
	return fmt.Sprintf("%s: %d critical, %d warning, %d unknown", r.Status, crit, warn, unknown)
}

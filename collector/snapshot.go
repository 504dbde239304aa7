package collector

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Snapshot is everything one sampling cycle learned about the host: the
// values its sources declare, host values and one Table per entity kind.
// Sources fill it through a Writer; once handed to History it is never
// modified, so it may be shared between goroutines without locks.
//
// Counters are cumulative counts as float64 (the precision loss past 2^53
// does not matter for rates). A value that was not read, whose source
// failed, or that is older than its staleness bound is NaN: see [Present].
type Snapshot struct {
	// Time is when the cycle started.
	Time time.Time
	// Sources holds one result per source (and per target of a target
	// source), in table order.
	Sources []SourceResult

	schema    *Schema
	host      []float64
	hostSlots []int // set on a thinned Snapshot: host slot → index in host, -1 dropped
	hostAttrs []string
	tables    []*Table    // by kind index; [0] (the host) unused; nil when absent
	partTime  []time.Time // by part index: when the part's values were read
}

// Table holds the entities of one kind in a Snapshot, sorted by their
// label values, with their values and attributes.
type Table struct {
	kind   *kindInfo
	n      int
	labels []string  // n × len(Labels)
	values []float64 // n × stride
	attrs  []string  // n × len(attrs); nil on a thinned Table
	// slots is set on a thinned Table: the kind's value slot → index in
	// a row of values, -1 for a value it does not keep.
	slots  []int
	stride int
}

// SourceResult is how one source (or one target of a target source) fared
// in one cycle.
type SourceResult struct {
	// Name is the source's name (the collector label of the metrics).
	Name string
	// Target names the target of a target source ("" otherwise).
	Target string
	// Success is true when the source read everything it is meant to.
	Success bool
	// NoData is true when the subsystem is absent from this host (e.g. no
	// conntrack module): not a failure, nothing to report.
	NoData bool
	// Duration is how long the source took.
	Duration time.Duration
	// Time is when the result was read: the cycle's time for a kernel
	// source, the last poll's for a target.
	Time time.Time
	// Err is the failure, nil on success and when NoData.
	Err error
}

// Present reports whether v carries a value (is not NaN).
func Present(v float64) bool { return !math.IsNaN(v) }

// NaN is the value of a counter or gauge that was not read.
var NaN = math.NaN()

// newSnapshot returns an empty Snapshot of sc at t, every value NaN.
func newSnapshot(sc *Schema, t time.Time) *Snapshot {
	s := &Snapshot{
		Time:      t,
		schema:    sc,
		host:      nanSlice(len(sc.kinds[0].values)),
		hostAttrs: make([]string, len(sc.kinds[0].attrs)),
		tables:    make([]*Table, len(sc.kinds)),
		partTime:  make([]time.Time, len(sc.parts)),
	}
	return s
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = NaN
	}
	return s
}

// Schema returns the Schema the Snapshot was built for.
func (s *Snapshot) Schema() *Schema { return s.schema }

// Get returns the host value named name; NaN when not read or not
// declared.
func (s *Snapshot) Get(name string) float64 {
	v, ok := s.schema.lookup(HostKind, name)
	if !ok || v.kind != 0 {
		return NaN
	}
	return s.Host(v.slot)
}

// Host returns the host value in slot.
func (s *Snapshot) Host(slot int) float64 {
	if s.hostSlots != nil {
		if slot = s.hostSlots[slot]; slot < 0 {
			return NaN
		}
	}
	return s.host[slot]
}

// HostAttr returns the host attribute named name ("" when unset).
func (s *Snapshot) HostAttr(name string) string {
	if i := slices.Index(s.schema.kinds[0].attrs, name); i >= 0 && i < len(s.hostAttrs) {
		return s.hostAttrs[i]
	}
	return ""
}

// Table returns the entities of kind (an index from Schema.KindIndex),
// or nil when there are none: the kind's source did not deliver, or the
// History no longer keeps them.
func (s *Snapshot) Table(kind int) *Table {
	if kind <= 0 || kind >= len(s.tables) {
		return nil
	}
	return s.tables[kind]
}

// TableOf is Table by kind name.
func (s *Snapshot) TableOf(kind string) *Table {
	i, ok := s.schema.kindByN[kind]
	if !ok {
		return nil
	}
	return s.Table(i)
}

// PartTime returns when the values of source part p (ValueRef.Part) were
// read: the Snapshot's Time when they were read in its cycle, earlier when
// they are carried from an earlier read, zero when never.
func (s *Snapshot) PartTime(p int) time.Time { return s.partTime[p] }

// Value returns ref's value: the host's, or that of row of ref's kind.
func (s *Snapshot) Value(ref ValueRef, row int) float64 {
	if ref.KindIndex == 0 {
		return s.Host(ref.Slot)
	}
	t := s.Table(ref.KindIndex)
	if t == nil || row < 0 || row >= t.n {
		return NaN
	}
	return t.Value(row, ref.Slot)
}

// Source returns the result of the named source, if it ran. For a target
// source it is the summary over its targets.
func (s *Snapshot) Source(name string) (SourceResult, bool) {
	for _, r := range s.Sources {
		if r.Name == name && r.Target == "" {
			return r, true
		}
	}
	return SourceResult{}, false
}

// Len returns the number of entities.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// Kind returns the table's entity kind.
func (t *Table) Kind() *EntityKind { return &t.kind.EntityKind }

// Labels returns the label values of entity row. The slice is shared.
func (t *Table) Labels(row int) []string {
	nl := len(t.kind.Labels)
	return t.labels[row*nl : (row+1)*nl : (row+1)*nl]
}

// Value returns the value in slot of entity row.
func (t *Table) Value(row, slot int) float64 {
	if t.slots != nil {
		if slot = t.slots[slot]; slot < 0 {
			return NaN
		}
		return t.values[row*t.stride+slot]
	}
	return t.values[row*len(t.kind.values)+slot]
}

// Attr returns the attribute in slot of entity row.
func (t *Table) Attr(row, slot int) string {
	na := len(t.kind.attrs)
	if na == 0 || t.attrs == nil {
		return ""
	}
	return t.attrs[row*na+slot]
}

// Find returns the row of the entity with these label values.
func (t *Table) Find(labels []string) (int, bool) {
	if t == nil {
		return 0, false
	}
	return sort.Find(t.n, func(i int) int { return compareLabels(labels, t.Labels(i)) })
}

func compareLabels(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// Writer is how a source fills its part of a Snapshot. Values are named by
// their index in the source's Declaration.Values.
type Writer struct {
	s     *Snapshot
	src   int
	decl  *Declaration
	slots []int
	parts []bool // parts whose time the source set
}

func (s *Snapshot) writer(src int) *Writer {
	return &Writer{s: s, src: src, decl: s.schema.decls[src], slots: s.schema.srcSlots[src]}
}

// Time returns the cycle's time.
func (w *Writer) Time() time.Time { return w.s.Time }

// Set sets host value i of the source's declaration.
func (w *Writer) Set(i int, v float64) {
	w.s.host[w.slots[i]] = v
}

// Get returns the host value named name as filled so far this cycle (by
// this source or one that ran before it); NaN when not.
func (w *Writer) Get(name string) float64 { return w.s.Get(name) }

// SetHostAttr sets a host attribute the source declares.
func (w *Writer) SetHostAttr(name, value string) {
	if i := slices.Index(w.s.schema.kinds[0].attrs, name); i >= 0 {
		w.s.hostAttrs[i] = value
	}
}

// SetPartTime says when the values of the source's part were read: t
// before the cycle's time means they are carried from an earlier read
// (rules' series functions skip carried points). By default every part is
// read in the cycle.
func (w *Writer) SetPartTime(part string, t time.Time) {
	p, ok := w.s.schema.partByK[partKey{w.src, part}]
	if !ok {
		panic(fmt.Sprintf("collector: source %s has no part %q", w.decl.Name, part))
	}
	w.s.partTime[p] = t
	if w.parts == nil {
		w.parts = make([]bool, len(w.s.schema.parts))
	}
	w.parts[p] = true
}

// finish stamps the parts the source did not stamp itself.
func (w *Writer) finish() {
	for p, info := range w.s.schema.parts {
		if info.source == w.src && (w.parts == nil || !w.parts[p]) {
			w.s.partTime[p] = w.s.Time
		}
	}
}

// TableWriter fills the Table of one entity kind.
type TableWriter struct {
	w *Writer
	t *Table
}

// Table starts the Table of kind, which the source owns, replacing any
// earlier one of this cycle. rows is a capacity hint.
func (w *Writer) Table(kind string, rows int) *TableWriter {
	ki, ok := w.s.schema.kindByN[kind]
	if !ok || w.s.schema.kinds[ki].source != w.src {
		panic(fmt.Sprintf("collector: source %s does not own entity kind %q", w.decl.Name, kind))
	}
	k := w.s.schema.kinds[ki]
	t := &Table{
		kind:   k,
		labels: make([]string, 0, rows*len(k.Labels)),
		values: make([]float64, 0, rows*len(k.values)),
	}
	if len(k.attrs) > 0 {
		t.attrs = make([]string, 0, rows*len(k.attrs))
	}
	w.s.tables[ki] = t
	return &TableWriter{w: w, t: t}
}

// Add appends an entity with these label values (one per label of the
// kind, kept as given: the caller must not change them afterwards, and may
// share them between Snapshots) and returns its row. Rows may be added in
// any order; the Snapshot sorts them.
func (tw *TableWriter) Add(labels ...string) int {
	t := tw.t
	if len(labels) != len(t.kind.Labels) {
		panic(fmt.Sprintf("collector: entity of kind %s with %d labels, want %d", t.kind.Name, len(labels), len(t.kind.Labels)))
	}
	t.labels = append(t.labels, labels...)
	for range t.kind.values {
		t.values = append(t.values, NaN)
	}
	for range t.kind.attrs {
		t.attrs = append(t.attrs, "")
	}
	t.n++
	return t.n - 1
}

// Set sets value i of the source's declaration (a value of the table's
// kind) for entity row.
func (tw *TableWriter) Set(row, i int, v float64) {
	tw.t.values[row*len(tw.t.kind.values)+tw.w.slots[i]] = v
}

// SetAttr sets the attribute name of entity row.
func (tw *TableWriter) SetAttr(row int, name, value string) {
	if i := slices.Index(tw.t.kind.attrs, name); i >= 0 {
		tw.t.attrs[row*len(tw.t.kind.attrs)+i] = value
	}
}

// sort orders the rows by label values, dropping a repeated entity (the
// first added wins).
func (t *Table) sort() {
	if t.n < 2 {
		return
	}
	order := make([]int, t.n)
	for i := range order {
		order[i] = i
	}
	sorted := sort.SliceIsSorted(order, func(a, b int) bool {
		return compareLabels(t.Labels(order[a]), t.Labels(order[b])) < 0
	})
	if sorted {
		return
	}
	slices.SortStableFunc(order, func(a, b int) int { return compareLabels(t.Labels(a), t.Labels(b)) })
	nl, nv, na := len(t.kind.Labels), len(t.kind.values), len(t.kind.attrs)
	labels := make([]string, 0, len(t.labels))
	values := make([]float64, 0, len(t.values))
	var attrs []string
	if na > 0 {
		attrs = make([]string, 0, len(t.attrs))
	}
	n := 0
	for i, r := range order {
		if i > 0 && compareLabels(t.Labels(r), t.Labels(order[i-1])) == 0 {
			continue
		}
		labels = append(labels, t.labels[r*nl:(r+1)*nl]...)
		values = append(values, t.values[r*nv:(r+1)*nv]...)
		if na > 0 {
			attrs = append(attrs, t.attrs[r*na:(r+1)*na]...)
		}
		n++
	}
	t.labels, t.values, t.attrs, t.n = labels, values, attrs, n
}

// finish sorts every table; the Snapshot is then complete.
func (s *Snapshot) finish() {
	for _, t := range s.tables {
		if t != nil {
			t.sort()
		}
	}
}

// without returns a copy of s that no longer holds the table of kind k.
func (s *Snapshot) without(k int) *Snapshot {
	c := *s
	c.tables = slices.Clone(s.tables)
	c.tables[k] = nil
	return &c
}

// thinKind says what an older Snapshot keeps of one kind's values.
type thinKind struct {
	all   bool  // every value
	keep  []int // else these slots, ascending (none: not the kind's table)
	slots []int // slot → index in keep, -1 when dropped
}

// thin returns a copy of s keeping, of each kind, the values plan says
// (by kind index), and no attributes and no source results: what an
// older Snapshot of a History needs for the rules' windows. A table whose
// entities are those of before's (the Snapshot preceding s, nil if none)
// shares its labels.
func (s *Snapshot) thin(plan []thinKind, before *Snapshot) *Snapshot {
	c := *s
	c.Sources, c.hostAttrs = nil, nil
	if p := plan[0]; !p.all && s.hostSlots == nil {
		c.hostSlots, c.host = p.slots, thinValues(p.keep, s.host, 1, len(s.host))
	}
	c.tables = slices.Clone(s.tables)
	for k, t := range c.tables {
		if t == nil || k == 0 || t.slots != nil {
			continue
		}
		p := plan[k]
		switch {
		case p.all:
			if t.attrs != nil {
				tc := *t
				tc.attrs = nil
				c.tables[k] = &tc
			}
		case len(p.keep) == 0:
			c.tables[k] = nil
		default:
			tc := *t
			tc.attrs = nil
			tc.slots, tc.stride = p.slots, len(p.keep)
			tc.values = thinValues(p.keep, t.values, t.n, len(t.kind.values))
			if before != nil && k < len(before.tables) {
				if bt := before.tables[k]; bt != nil && slices.Equal(bt.labels, t.labels) {
					tc.labels = bt.labels // most samples list the same entities
				}
			}
			c.tables[k] = &tc
		}
	}
	return &c
}

// thinValues copies the kept slots of n rows of stride values each.
func thinValues(keep []int, values []float64, n, stride int) []float64 {
	out := make([]float64, 0, n*len(keep))
	for r := range n {
		for _, sl := range keep {
			out = append(out, values[r*stride+sl])
		}
	}
	return out
}

// Builder makes Snapshots by value name: for fixtures, tests and
// tools. It panics on a name its Schema does not declare.
type Builder struct {
	s    *Snapshot
	set  []bool                 // parts given a time
	rows map[int]map[string]int // entity rows by kind and labels
}

// NewBuilder starts a Snapshot of sc at t, every value NaN.
func NewBuilder(sc *Schema, t time.Time) *Builder {
	return &Builder{s: newSnapshot(sc, t)}
}

func (b *Builder) ref(kind, name string) *valueInfo {
	v, ok := b.s.schema.lookup(kind, name)
	if !ok || (kind != HostKind && v.kind == 0) {
		panic(fmt.Sprintf("collector: no value %q of %s", name, kind))
	}
	return v
}

// Set sets the host value name.
func (b *Builder) Set(name string, v float64) *Builder {
	b.s.host[b.ref(HostKind, name).slot] = v
	return b
}

// SetHostAttr sets the host attribute name.
func (b *Builder) SetHostAttr(name, value string) *Builder {
	i := slices.Index(b.s.schema.kinds[0].attrs, name)
	if i < 0 {
		panic(fmt.Sprintf("collector: no host attribute %q", name))
	}
	b.s.hostAttrs[i] = value
	return b
}

// Entity adds (or finds) the entity of kind with these labels and
// returns a setter for its values.
func (b *Builder) Entity(kind string, labels ...string) *EntityBuilder {
	ki, ok := b.s.schema.kindByN[kind]
	if !ok || ki == 0 {
		panic(fmt.Sprintf("collector: no entity kind %q", kind))
	}
	t := b.s.tables[ki]
	if t == nil {
		k := b.s.schema.kinds[ki]
		t = &Table{kind: k}
		b.s.tables[ki] = t
	}
	if b.rows == nil {
		b.rows = map[int]map[string]int{}
	}
	if b.rows[ki] == nil {
		b.rows[ki] = map[string]int{}
	}
	key := strings.Join(labels, "\xff")
	if r, ok := b.rows[ki][key]; ok {
		return &EntityBuilder{b: b, t: t, row: r}
	}
	tw := &TableWriter{t: t}
	r := tw.Add(labels...)
	b.rows[ki][key] = r
	return &EntityBuilder{b: b, t: t, row: r}
}

// EmptyTable makes kind's table present with no entity (a source that
// ran and found none).
func (b *Builder) EmptyTable(kind string) *Builder {
	ki, ok := b.s.schema.kindByN[kind]
	if !ok || ki == 0 {
		panic(fmt.Sprintf("collector: no entity kind %q", kind))
	}
	if b.s.tables[ki] == nil {
		b.s.tables[ki] = &Table{kind: b.s.schema.kinds[ki]}
	}
	return b
}

// Source adds a source result.
func (b *Builder) Source(r SourceResult) *Builder {
	if r.Time.IsZero() {
		r.Time = b.s.Time
	}
	b.s.Sources = append(b.s.Sources, r)
	return b
}

// PartTime sets when the named source's part was read (default: the
// Snapshot's time).
func (b *Builder) PartTime(source, part string, t time.Time) *Builder {
	si, ok := b.s.schema.SourceIndex(source)
	if !ok {
		panic(fmt.Sprintf("collector: no source %q", source))
	}
	p, ok := b.s.schema.partByK[partKey{si, part}]
	if !ok {
		panic(fmt.Sprintf("collector: source %s has no part %q", source, part))
	}
	b.s.partTime[p] = t
	if b.set == nil {
		b.set = make([]bool, len(b.s.partTime))
	}
	b.set[p] = true
	return b
}

// Snapshot completes the Snapshot. The Builder must not be used after.
func (b *Builder) Snapshot() *Snapshot {
	for p := range b.s.partTime {
		if b.set == nil || !b.set[p] {
			b.s.partTime[p] = b.s.Time
		}
	}
	b.s.finish()
	return b.s
}

// EntityBuilder sets the values of one entity.
type EntityBuilder struct {
	b   *Builder
	t   *Table
	row int
}

// Set sets the entity's value name.
func (e *EntityBuilder) Set(name string, v float64) *EntityBuilder {
	ref := e.b.ref(e.t.kind.Name, name)
	if ref.kind == 0 {
		panic(fmt.Sprintf("collector: %q is a host value", name))
	}
	e.t.values[e.row*len(e.t.kind.values)+ref.slot] = v
	return e
}

// SetAttr sets the entity's attribute name.
func (e *EntityBuilder) SetAttr(name, value string) *EntityBuilder {
	i := slices.Index(e.t.kind.attrs, name)
	if i < 0 {
		panic(fmt.Sprintf("collector: no attribute %q of %s", name, e.t.kind.Name))
	}
	e.t.attrs[e.row*len(e.t.kind.attrs)+i] = value
	return e
}

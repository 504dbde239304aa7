package collector

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Kind says how a value behaves over time.
type Kind uint8

const (
	// Gauge is a value that goes up and down.
	Gauge Kind = iota
	// Counter is a cumulative count that only rises until it restarts
	// from zero. Rules may take its increase and rate.
	Counter
)

func (k Kind) String() string {
	if k == Counter {
		return "counter"
	}
	return "gauge"
}

// HostKind is the name of the entity kind every host value belongs to.
const HostKind = "host"

// Value declares one thing a source measures. It is the only place the
// value is named: the Snapshot stores it by its slot in the Schema, the
// exposition, the rule vocabulary and the checklist are derived from it.
type Value struct {
	// Name is how rule conditions, templates and check items refer to it.
	Name string
	// Entity is the entity kind the value belongs to ("" or HostKind: the
	// host).
	Entity string
	// Kind is Gauge or Counter.
	Kind Kind
	// Unit names what it counts, in base units ("connections", "packets",
	// "seconds", "ratio"…).
	Unit string
	// Help says what the value is.
	Help string
	// Part names the part of its source that reads it, when parts of a
	// source are read at different times (the listeners' SYN_RECV dump);
	// "" is the source as a whole.
	Part string

	// Metric is the exported series' name without the stormwatch_ prefix;
	// "" leaves the value out of /metrics.
	Metric string
	// MetricHelp is the HELP of Metric when several values share it (the
	// sysctl family); "" uses Help.
	MetricHelp string
	// MetricLabels are constant label pairs of the series: name, value, …
	MetricLabels []string
	// AttrLabels name attributes of the value's entity that become labels
	// of the series (label name, attribute name, …).
	AttrLabels []string
	// Setting marks a configured limit or switch (a sysctl, a listen
	// backlog, a server's maxclients), not a measurement of traffic: an
	// alert whose condition reads only settings describes a standing
	// configuration, not a storm, and does not hold storm mode.
	Setting bool
}

// Label is one identifying label of an entity kind.
type Label struct {
	// Name is the label's name in metrics, alerts and conditions.
	Name string
	// Int makes conditions see the label as an integer (a port).
	Int bool
	// Help says what the label holds.
	Help string
}

// Join links an entity to one of another kind, so that a condition over
// the first can read the second's values (valkey target → its listener).
type Join struct {
	// Kind is the entity kind joined to.
	Kind string
	// Candidates returns, best first, the label values of the entities of
	// Kind an entity with these labels may match; the first present wins.
	Candidates func(labels []string) [][]string
}

// KindJoin declares a join from an entity kind another source owns (From)
// to one this source knows (Join.Kind): a listener sees the Valkey server
// behind it.
type KindJoin struct {
	From string
	Join
}

// EntityKind declares a kind of thing values are measured per: a
// listener, a Valkey target, a network interface. Rules name it as their
// scope and are evaluated once per entity.
type EntityKind struct {
	// Name is the kind's name, a rule's scope.
	Name string
	// Help says what one entity is.
	Help string
	// Labels identify an entity, in order.
	Labels []Label
	// Attrs name string attributes an entity carries besides its labels
	// (not identifying: a process name, a version).
	Attrs []string
	// Display names one entity for people ("0.0.0.0:6379"); nil joins the
	// label values with a space.
	Display func(labels []string) string
	// Describe says in words what an entity's attributes tell, for the
	// checklist ("owner: redis-server (pid 812), stopped"); nil or "" for
	// nothing.
	Describe func(attrs map[string]string) string
	// Joins are the kinds an entity can be linked to.
	Joins []Join
}

// Section is a stage of a connection's path in the checklist.
type Section struct {
	// Name identifies the section (JSON); Title is what people read.
	Name, Title string
	// Order places it along the path: lower comes first.
	Order int
}

// Item declares a line of the checklist (`stormwatch check`). Rules whose
// condition mentions one of its values attach to it.
type Item struct {
	// ID is stable across runs; with an entity's labels it identifies the
	// line.
	ID string
	// Section is the Section's name.
	Section string
	// What is the line's text; an entity item adds the entity's display
	// name.
	What string
	// Entity is the entity kind, "" for a host item (one line).
	Entity string
	// Value is the gauge shown, Limit its limit and Ratio the value that
	// is its used share (default Value/Limit); "" when not applicable.
	Value, Limit, Ratio string
	// Rate lists counters whose summed rate over the check's window is
	// shown instead of Value; the item is left out of an instant check.
	Rate []string
	// Unit names what is shown.
	Unit string
	// Related are values whose rules attach to the item besides those
	// above.
	Related []string
	// Quiet shows an entity's line only when its Value is above zero or a
	// rule alerts on it.
	Quiet bool
	// Absent is the reason shown, with status OK, when the item's source
	// has no data on this host; "" leaves the item out then.
	Absent string
	// Queue marks a queue a wave of new connections fills: used/limit
	// headroom is computed from Value and Limit.
	Queue bool
	// Caveat is said under a rate item whose figure would mislead: when
	// the summed rate of its counters is above zero, the item is at least
	// a warning and says why.
	Caveat *Caveat
}

// Caveat qualifies a rate item (Item.Caveat).
type Caveat struct {
	// Rate lists the counters whose summed rate triggers it.
	Rate []string
	// Text explains, with %s standing for that rate ("12.5").
	Text string
}

// Covers reports whether a rule mentioning the value named name attaches
// to the item.
func (it *Item) Covers(name string) bool {
	return name != "" && (name == it.Value || name == it.Limit || name == it.Ratio ||
		slices.Contains(it.Rate, name) || slices.Contains(it.Related, name))
}

// Declaration is everything a source measures, declared once.
type Declaration struct {
	// Name is the source's name: the collector label of its metrics.
	Name string
	// Kinds are the entity kinds the source owns (creates entities of).
	Kinds []EntityKind
	// HostAttrs name string attributes of the host the source sets.
	HostAttrs []string
	// Joins are joins the source adds to entity kinds it does not own.
	Joins []KindJoin
	// Values are the values it measures.
	Values []Value
	// Items are its checklist lines; Sections the sections they need
	// that no other source declares.
	Items    []Item
	Sections []Section
	// Core marks a source the checklist cannot do without: when it fails,
	// a check with nothing worse than OK is Unknown.
	Core bool
	// Privilege is what a person should read when the source fails for
	// want of a privilege (an error wrapping ErrPermission).
	Privilege string
}

var nameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Schema is the declarations of a set of sources, laid out: every value
// has a slot in its entity kind. A Snapshot is built for one Schema.
type Schema struct {
	decls    []*Declaration
	kinds    []*kindInfo // kinds[0] is the host
	kindByN  map[string]int
	values   []*valueInfo
	valByN   map[string]int
	parts    []partInfo
	partByK  map[partKey]int
	sections []Section
	items    []*Item
	itemSrc  []int
	// srcSlots[source][i] is the slot of the source's value i.
	srcSlots [][]int
}

type kindInfo struct {
	EntityKind
	index  int
	source int      // the owning source, -1 for the host
	values []int    // value indexes (Schema.values), in slot order
	attrs  []string // attribute names, in slot order
}

type valueInfo struct {
	Value
	index  int
	kind   int
	slot   int // in its kind
	part   int // index into Schema.parts
	source int
}

type partKey struct {
	source int
	part   string
}

type partInfo struct {
	source int
	name   string
}

// NewSchema lays out the declarations, in the order their sources run. It
// checks them: names well formed and unique, every value's entity kind
// declared, every exported metric consistent.
func NewSchema(decls ...*Declaration) (*Schema, error) {
	sc := &Schema{
		kindByN: map[string]int{HostKind: 0},
		valByN:  map[string]int{},
		partByK: map[partKey]int{},
	}
	sc.kinds = []*kindInfo{{EntityKind: EntityKind{Name: HostKind, Help: "the host"}, source: -1}}
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	sources := map[string]bool{}
	for si, d := range decls {
		sc.decls = append(sc.decls, d)
		if !nameRE.MatchString(d.Name) || sources[d.Name] {
			bad("source %q: name must be unique and match %s", d.Name, nameRE)
		}
		sources[d.Name] = true
		for _, k := range d.Kinds {
			if !nameRE.MatchString(k.Name) {
				bad("source %s: entity kind %q must match %s", d.Name, k.Name, nameRE)
			}
			if _, dup := sc.kindByN[k.Name]; dup {
				bad("source %s: entity kind %q declared twice", d.Name, k.Name)
				continue
			}
			if len(k.Labels) == 0 {
				bad("entity kind %s: no identifying label", k.Name)
			}
			sc.kindByN[k.Name] = len(sc.kinds)
			sc.kinds = append(sc.kinds, &kindInfo{EntityKind: k, index: len(sc.kinds), source: si, attrs: slices.Clone(k.Attrs)})
		}
		sc.kinds[0].attrs = append(sc.kinds[0].attrs, d.HostAttrs...)
		slots := make([]int, len(d.Values))
		for i, v := range d.Values {
			if v.Entity == "" {
				v.Entity = HostKind
			}
			ki, ok := sc.kindByN[v.Entity]
			switch {
			case !nameRE.MatchString(v.Name):
				bad("source %s: value %q must match %s", d.Name, v.Name, nameRE)
				continue
			case !ok:
				bad("source %s: value %s: unknown entity kind %q", d.Name, v.Name, v.Entity)
				continue
			case ki != 0 && sc.kinds[ki].source != si:
				bad("source %s: value %s: entity kind %s belongs to another source", d.Name, v.Name, v.Entity)
				continue
			}
			key := v.Entity + "." + v.Name
			if _, dup := sc.valByN[key]; dup {
				bad("source %s: value %s of %s declared twice", d.Name, v.Name, v.Entity)
				continue
			}
			pk := partKey{si, v.Part}
			pi, ok := sc.partByK[pk]
			if !ok {
				pi = len(sc.parts)
				sc.partByK[pk] = pi
				sc.parts = append(sc.parts, partInfo{source: si, name: v.Part})
			}
			k := sc.kinds[ki]
			vi := &valueInfo{Value: v, index: len(sc.values), kind: ki, slot: len(k.values), part: pi, source: si}
			k.values = append(k.values, vi.index)
			sc.values = append(sc.values, vi)
			sc.valByN[key] = vi.index
			slots[i] = vi.slot
		}
		// Every source has its whole-source part, even with no value in it.
		if _, ok := sc.partByK[partKey{si, ""}]; !ok {
			sc.partByK[partKey{si, ""}] = len(sc.parts)
			sc.parts = append(sc.parts, partInfo{source: si})
		}
		sc.srcSlots = append(sc.srcSlots, slots)
		sc.sections = append(sc.sections, d.Sections...)
	}
	// Joins declared from other kinds, then every join refers to what is
	// declared.
	for _, d := range decls {
		for _, j := range d.Joins {
			ki, ok := sc.kindByN[j.From]
			if !ok {
				bad("source %s: join from unknown kind %q", d.Name, j.From)
				continue
			}
			sc.kinds[ki].Joins = append(slices.Clip(sc.kinds[ki].Joins), j.Join)
		}
	}
	for _, k := range sc.kinds {
		for _, j := range k.Joins {
			if _, ok := sc.kindByN[j.Kind]; !ok || j.Candidates == nil {
				bad("entity kind %s: join to unknown kind %q (or without Candidates)", k.Name, j.Kind)
			}
		}
	}
	metrics := map[string]*valueInfo{}
	for _, v := range sc.values {
		if v.Metric == "" {
			continue
		}
		if len(v.MetricLabels)%2 != 0 || len(v.AttrLabels)%2 != 0 {
			bad("value %s: MetricLabels and AttrLabels are name/value pairs", v.Name)
		}
		for i := 1; i < len(v.AttrLabels); i += 2 {
			if !slices.Contains(sc.kinds[v.kind].attrs, v.AttrLabels[i]) {
				bad("value %s: attribute %q is not declared for %s", v.Name, v.AttrLabels[i], v.Entity)
			}
		}
		if first, ok := metrics[v.Metric]; ok {
			if first.kind != v.kind || first.Kind != v.Kind || first.metricHelp() != v.metricHelp() ||
				!slices.Equal(labelNames(first.MetricLabels), labelNames(v.MetricLabels)) ||
				!slices.Equal(labelNames(first.AttrLabels), labelNames(v.AttrLabels)) {
				bad("metric %s: values %s and %s export it differently (kind, help or labels)", v.Metric, first.Name, v.Name)
			}
			continue
		}
		metrics[v.Metric] = v
	}
	sections := map[string]bool{}
	for _, s := range sc.sections {
		if sections[s.Name] {
			bad("section %q declared twice", s.Name)
		}
		sections[s.Name] = true
	}
	slices.SortStableFunc(sc.sections, func(a, b Section) int { return cmp.Compare(a.Order, b.Order) })
	for _, d := range decls {
		for i := range d.Items {
			it := &d.Items[i]
			if !sections[it.Section] {
				bad("item %s: unknown section %q", it.ID, it.Section)
			}
			kind := it.Entity
			if kind == "" {
				kind = HostKind
			}
			if _, ok := sc.kindByN[kind]; !ok {
				bad("item %s: unknown entity kind %q", it.ID, it.Entity)
			}
			var caveat []string
			if it.Caveat != nil {
				caveat = it.Caveat.Rate
			}
			for _, n := range slices.Concat([]string{it.Value, it.Limit, it.Ratio}, it.Rate, it.Related, caveat) {
				if n == "" {
					continue
				}
				if _, ok := sc.lookup(kind, n); !ok {
					bad("item %s: unknown value %q", it.ID, n)
				}
			}
			sc.items = append(sc.items, it)
			sc.itemSrc = append(sc.itemSrc, slices.Index(sc.decls, d))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("declarations: %s", strings.Join(errs, "; "))
	}
	return sc, nil
}

// MustSchema is NewSchema that panics on bad declarations: for the
// built-in table and tests.
func MustSchema(decls ...*Declaration) *Schema {
	sc, err := NewSchema(decls...)
	if err != nil {
		panic(err)
	}
	return sc
}

func labelNames(pairs []string) []string {
	var out []string
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, pairs[i])
	}
	return out
}

func (v *valueInfo) metricHelp() string {
	if v.MetricHelp != "" {
		return v.MetricHelp
	}
	return v.Help
}

// lookup finds the value name of entity kind kind (host values are found
// from any kind).
func (sc *Schema) lookup(kind, name string) (*valueInfo, bool) {
	if i, ok := sc.valByN[kind+"."+name]; ok {
		return sc.values[i], true
	}
	if i, ok := sc.valByN[HostKind+"."+name]; ok {
		return sc.values[i], true
	}
	return nil, false
}

// Sources returns the declarations, in the order their sources run.
func (sc *Schema) Sources() []*Declaration { return sc.decls }

// Kinds returns the entity kinds, the host first.
func (sc *Schema) Kinds() []*EntityKind {
	out := make([]*EntityKind, len(sc.kinds))
	for i, k := range sc.kinds {
		out[i] = &k.EntityKind
	}
	return out
}

// Kind returns the entity kind named name.
func (sc *Schema) Kind(name string) (*EntityKind, bool) {
	i, ok := sc.kindByN[name]
	if !ok {
		return nil, false
	}
	return &sc.kinds[i].EntityKind, true
}

// KindIndex returns the index of entity kind name (0 is the host).
func (sc *Schema) KindIndex(name string) (int, bool) {
	i, ok := sc.kindByN[name]
	return i, ok
}

// Attrs returns the attribute names of kind name, in slot order.
func (sc *Schema) Attrs(kind string) []string {
	i, ok := sc.kindByN[kind]
	if !ok {
		return nil
	}
	return sc.kinds[i].attrs
}

// ValueRef locates a declared value in Snapshots of the Schema.
type ValueRef struct {
	// Value is the declaration.
	*Value
	// KindIndex is the index of its entity kind (0: host); Slot its place
	// among the kind's values; Part the index of the source part reading
	// it; Source the index of the source.
	KindIndex, Slot, Part, Source int
}

func (v *valueInfo) ref() ValueRef {
	return ValueRef{Value: &v.Value, KindIndex: v.kind, Slot: v.slot, Part: v.part, Source: v.source}
}

// Lookup finds the value name as seen from entity kind kind: the kind's
// own values first, then the host's.
func (sc *Schema) Lookup(kind, name string) (ValueRef, bool) {
	v, ok := sc.lookup(kind, name)
	if !ok {
		return ValueRef{}, false
	}
	return v.ref(), true
}

// Values returns every value of entity kind kind, in slot order.
func (sc *Schema) Values(kind string) []ValueRef {
	i, ok := sc.kindByN[kind]
	if !ok {
		return nil
	}
	out := make([]ValueRef, 0, len(sc.kinds[i].values))
	for _, vi := range sc.kinds[i].values {
		out = append(out, sc.values[vi].ref())
	}
	return out
}

// AllValues returns every value, in declaration order.
func (sc *Schema) AllValues() []ValueRef {
	out := make([]ValueRef, len(sc.values))
	for i, v := range sc.values {
		out[i] = v.ref()
	}
	return out
}

// Sections returns the checklist's sections, in path order.
func (sc *Schema) Sections() []Section { return sc.sections }

// Items returns the checklist's items, in declaration order.
func (sc *Schema) Items() []*Item { return sc.items }

// ItemSource returns the declaration of the source that declares item i
// (an index into Items).
func (sc *Schema) ItemSource(i int) *Declaration { return sc.decls[sc.itemSrc[i]] }

// Source returns the declaration of the source named name.
func (sc *Schema) Source(name string) (*Declaration, bool) {
	i, ok := sc.SourceIndex(name)
	if !ok {
		return nil, false
	}
	return sc.decls[i], true
}

// SourceIndex returns the index of the source named name.
func (sc *Schema) SourceIndex(name string) (int, bool) {
	for i, d := range sc.decls {
		if d.Name == name {
			return i, true
		}
	}
	return 0, false
}

// DisplayName names one entity of kind for people.
func (sc *Schema) DisplayName(kind string, labels []string) string {
	if k, ok := sc.Kind(kind); ok && k.Display != nil {
		return k.Display(labels)
	}
	return strings.Join(labels, " ")
}

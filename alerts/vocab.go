package alerts

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/stormwatch/stormwatch/collector"
)

// Scope names the entity kind a rule is evaluated over: ScopeHost (once
// per sample) or a kind the sources declare (ScopeListener: once per
// listening address and port, …). Each evaluation of an entity yields its
// own alert, labelled by the entity's labels; host values are visible in
// every scope.
type Scope string

const (
	// ScopeHost evaluates the rule once per sample over host-wide values.
	ScopeHost Scope = collector.HostKind
	// ScopeListener evaluates the rule once per listening address and
	// port.
	ScopeListener Scope = collector.KindListener
)

// Variable describes one name a condition may use.
type Variable struct {
	// Name is how conditions and templates refer to the value; a joined
	// entity's values are named "kind.name" (listener.accept_queue).
	Name string
	// Kind is "counter", "gauge" or "label".
	Kind string
	// Scope is the entity kind the value belongs to.
	Scope Scope
	// Unit is what the value counts.
	Unit string
	// Help says what the value is.
	Help string
	// Setting marks a configured limit or switch rather than a
	// measurement (see collector.Value.Setting).
	Setting bool
}

// variable is one entry of a scope's vocabulary.
type variable struct {
	Variable
	ref   collector.ValueRef
	join  int   // -1: the host's or the scope's own; else index into scopeVocab.joins
	field []int // index path in the scope's environment
}

func (v *variable) counter() bool { return v.ref.Value != nil && v.ref.Kind == collector.Counter }

// labelVar is one identifying label of the scope's entity kind.
type labelVar struct {
	name  string
	isInt bool
	field int
}

// joinVocab is an entity kind joined to the scope's.
type joinVocab struct {
	collector.Join
	kind  int // kind index
	name  string
	field int // the struct field holding the joined values
	vars  []*variable
}

// scopeVocab is what one scope offers: its variables by name and where
// each lives in the scope's environment struct.
type scopeVocab struct {
	scope  Scope
	kind   int // kind index, 0 for the host
	host   []*variable
	own    []*variable
	labels []labelVar
	attrs  []string // the entity's attributes, for templates
	joins  []*joinVocab
	byName map[string]*variable
	env    reflect.Type // the environment struct
	funcs  int          // index of the first function field (funcs' fields, in order)
}

// Vocabulary is what rule conditions may name, derived from the
// declarations of the sources (a collector.Schema): one scope per entity
// kind.
type Vocabulary struct {
	schema  *collector.Schema
	scopes  map[Scope]*scopeVocab
	order   []Scope
	sysctls map[string]collector.ValueRef
}

var (
	defaultVocabOnce sync.Once
	defaultVocab     *Vocabulary
)

// DefaultVocabulary is the vocabulary of collector.DefaultSchema.
func DefaultVocabulary() *Vocabulary {
	defaultVocabOnce.Do(func() { defaultVocab = NewVocabulary(collector.DefaultSchema()) })
	return defaultVocab
}

// NewVocabulary derives the rule vocabulary of a Schema.
func NewVocabulary(sc *collector.Schema) *Vocabulary {
	vb := &Vocabulary{schema: sc, scopes: map[Scope]*scopeVocab{}, sysctls: map[string]collector.ValueRef{}}
	for _, ref := range sc.Values(collector.HostKind) {
		if ref.Metric == "sysctl" && len(ref.MetricLabels) == 2 && ref.MetricLabels[0] == "name" {
			vb.sysctls[ref.MetricLabels[1]] = ref
		}
	}
	for i, k := range sc.Kinds() {
		vb.scopes[Scope(k.Name)] = vb.newScope(i, k)
		vb.order = append(vb.order, Scope(k.Name))
	}
	return vb
}

// Schema returns the Schema the vocabulary was derived from.
func (vb *Vocabulary) Schema() *collector.Schema { return vb.schema }

// Scopes returns the scopes, the host first.
func (vb *Vocabulary) Scopes() []Scope { return slices.Clone(vb.order) }

func describe(ref collector.ValueRef, scope Scope) Variable {
	return Variable{Name: ref.Name, Kind: ref.Kind.String(), Scope: scope, Unit: ref.Unit, Help: ref.Help, Setting: ref.Setting}
}

func fieldName(prefix string, i int) string { return fmt.Sprintf("%s%d", prefix, i) }

// newScope lays out the environment of the scope of kind (index ki).
func (vb *Vocabulary) newScope(ki int, k *collector.EntityKind) *scopeVocab {
	sv := &scopeVocab{scope: Scope(k.Name), kind: ki, byName: map[string]*variable{}}
	var fields []reflect.StructField
	add := func(name, tag string, t reflect.Type) int {
		fields = append(fields, reflect.StructField{Name: name, Type: t, Tag: reflect.StructTag(`expr:"` + tag + `"`)})
		return len(fields) - 1
	}
	floatT := reflect.TypeFor[float64]()
	own := map[string]bool{}
	if ki != 0 {
		for _, ref := range vb.schema.Values(k.Name) {
			own[ref.Name] = true
		}
	}
	for _, ref := range vb.schema.Values(collector.HostKind) {
		if own[ref.Name] {
			continue // the scope's own value of that name shadows it
		}
		v := &variable{Variable: describe(ref, ScopeHost), ref: ref, join: -1}
		v.field = []int{add(fieldName("H", len(sv.host)), ref.Name, floatT)}
		sv.host = append(sv.host, v)
		sv.byName[ref.Name] = v
	}
	if ki != 0 {
		for _, ref := range vb.schema.Values(k.Name) {
			v := &variable{Variable: describe(ref, sv.scope), ref: ref, join: -1}
			v.field = []int{add(fieldName("V", len(sv.own)), ref.Name, floatT)}
			sv.own = append(sv.own, v)
			sv.byName[ref.Name] = v
		}
		sv.attrs = vb.schema.Attrs(k.Name)
		for i, l := range k.Labels {
			t := reflect.TypeFor[string]()
			if l.Int {
				t = reflect.TypeFor[int]()
			}
			sv.labels = append(sv.labels, labelVar{name: l.Name, isInt: l.Int, field: add(fieldName("L", i), l.Name, t)})
		}
		for _, j := range k.Joins {
			jk, _ := vb.schema.KindIndex(j.Kind)
			jv := &joinVocab{Join: j, kind: jk, name: j.Kind}
			var jf []reflect.StructField
			for _, ref := range vb.schema.Values(j.Kind) {
				v := &variable{Variable: describe(ref, Scope(j.Kind)), ref: ref, join: len(sv.joins)}
				v.Name = j.Kind + "." + ref.Name
				jf = append(jf, reflect.StructField{Name: fieldName("V", len(jv.vars)), Type: floatT, Tag: reflect.StructTag(`expr:"` + ref.Name + `"`)})
				jv.vars = append(jv.vars, v)
				sv.byName[v.Name] = v
			}
			jv.field = add(fieldName("J", len(sv.joins)), j.Kind, reflect.StructOf(jf))
			for _, v := range jv.vars {
				v.field = []int{jv.field, v.ref.Slot}
			}
			sv.joins = append(sv.joins, jv)
		}
	}
	sv.funcs = len(fields)
	ft := reflect.TypeFor[funcs]()
	for i := range ft.NumField() {
		f := ft.Field(i)
		add(f.Name, f.Tag.Get("expr"), f.Type)
	}
	sv.env = reflect.StructOf(fields)
	return sv
}

// Variables returns the names a condition of the given scope may use, in a
// fixed order: host-wide values first, then the scope's own, its labels
// and joined entities' values.
func (vb *Vocabulary) Variables(scope Scope) []Variable {
	sv, ok := vb.scopes[scope]
	if !ok {
		return nil
	}
	var out []Variable
	for _, v := range slices.Concat(sv.host, sv.own) {
		out = append(out, v.Variable)
	}
	k, _ := vb.schema.Kind(string(scope))
	for i, l := range sv.labels {
		help := ""
		if k != nil && i < len(k.Labels) {
			help = k.Labels[i].Help
		}
		out = append(out, Variable{Name: l.name, Kind: "label", Scope: scope, Help: help})
	}
	for _, j := range sv.joins {
		for _, v := range j.vars {
			out = append(out, v.Variable)
		}
	}
	return out
}

// Variables returns the names a condition of scope may use in the
// default vocabulary.
func Variables(scope Scope) []Variable { return DefaultVocabulary().Variables(scope) }

// scopeNames lists the scopes for a message: "host or listener".
func (vb *Vocabulary) scopeNames() string {
	names := make([]string, len(vb.order))
	for i, s := range vb.order {
		names[i] = string(s)
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// funcs are the functions of every scope. The evaluator binds them.
type funcs struct {
	Increase     func(series, window string) float64                  `expr:"increase"`
	Rate         func(series, window string) float64                  `expr:"rate"`
	MaxOverTime  func(series, window string) float64                  `expr:"max_over_time"`
	MinOverTime  func(series, window string) float64                  `expr:"min_over_time"`
	TimeToLimit  func(series string, limit float64, w string) float64 `expr:"time_to_limit"`
	BaselineRate func(series, window, exclude string) float64         `expr:"baseline_rate"`
	Sysctl       func(name string) float64                            `expr:"sysctl"`
	Present      func(name string) bool                               `expr:"present"`
}

// hasSection reports whether s names a checklist section: one the sources
// declare, or "other".
func (vb *Vocabulary) hasSection(s string) bool {
	return slices.Contains(vb.sectionNames(), s)
}

// sectionNames lists the sections a rule may name.
func (vb *Vocabulary) sectionNames() []string {
	var out []string
	for _, sec := range vb.schema.Sections() {
		out = append(out, sec.Name)
	}
	return append(out, "other")
}

package alerts

import (
	_ "embed"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/fileread"
)

// Severity says how urgent an alert is. It becomes the alert's severity
// label.
type Severity string

const (
	// SeverityInfo is worth knowing, not worth waking anyone for.
	SeverityInfo Severity = "info"
	// SeverityWarning needs attention before it turns critical.
	SeverityWarning Severity = "warning"
	// SeverityCritical means connections are being lost, or will be within
	// a minute.
	SeverityCritical Severity = "critical"
)

// Rule is one alerting rule, validated and compiled. Make rules with Load,
// LoadFile or DefaultRules; a Rule is never modified afterwards and may be
// shared between Engines.
type Rule struct {
	// Name becomes the alertname label.
	Name string
	// Scope says whether the rule is evaluated once for the host or once
	// per listener.
	Scope Scope
	// Condition is the expr expression that must hold for the alert to be
	// active.
	Condition string
	// Value is the expression whose result is the alert's value; empty
	// means the left operand of the condition's first comparison.
	Value string
	// For is how long the condition must hold before a pending alert
	// fires; 0 fires at once.
	For time.Duration
	// KeepFiringFor is how long a firing alert keeps firing after its
	// condition stopped holding.
	KeepFiringFor time.Duration
	// Severity becomes the severity label.
	Severity Severity
	// Labels are added to the alert's labels.
	Labels map[string]string
	// Summary and Description are text/template sources rendered into the
	// summary and description annotations.
	Summary     string
	Description string
	// Advice is a text/template source for the advice annotation: one
	// line naming the knob to turn, as `stormwatch check` prints it.
	Advice string
	// Section places the rule in a section of `stormwatch check` (one the
	// sources declare, or "other"); "" lets the values it reads decide.
	Section string

	prog      *vm.Program
	valueProg *vm.Program
	// refs are the variables the condition reads: if one is NaN (not
	// read), the condition has no data.
	refs        []*variable
	mentions    []string
	standing    bool // the condition reads settings only
	summary     *template.Template
	description *template.Template
	advice      *template.Template
	lookbacks   map[Scope]time.Duration
	series      map[string][]string // values read over windows, by entity kind
	vocab       *Vocabulary
	key         string
}

// Key identifies the rule as Prometheus does: by name and labels, severity
// included. Two rules with the same Key cannot run together.
func (r *Rule) Key() string { return r.key }

// Lookback is the longest window the rule's functions read: the History
// must hold at least this much for the rule to see all it asks for.
func (r *Rule) Lookback() time.Duration {
	var d time.Duration
	for _, l := range r.lookbacks {
		d = max(d, l)
	}
	return d
}

// Standing reports whether the rule's condition reads only settings
// (sysctls, limits, a server's configuration) and no measurement: its
// alerts describe how the host is configured, and last as long as that.
func (r *Rule) Standing() bool { return r.standing }

// Mentions returns the names of the values the rule's condition reads,
// directly or as a series, in order of appearance: what `stormwatch check`
// attaches the rule to.
func (r *Rule) Mentions() []string { return r.mentions }

func (r *Rule) addLookbacks(m map[Scope]time.Duration, series map[string][]string) {
	for k, d := range m {
		if r.lookbacks == nil {
			r.lookbacks = map[Scope]time.Duration{}
		}
		r.lookbacks[k] = max(r.lookbacks[k], d)
	}
	for kind, names := range series {
		if r.series == nil {
			r.series = map[string][]string{}
		}
		for _, n := range names {
			if !slices.Contains(r.series[kind], n) {
				r.series[kind] = append(r.series[kind], n)
			}
		}
	}
}

// Lookback returns the longest window any of rules reads.
func Lookback(rules []*Rule) time.Duration {
	var d time.Duration
	for _, r := range rules {
		d = max(d, r.Lookback())
	}
	return d
}

// Retention returns what a History must keep for rules, sampled every
// interval: host values for the longest window over a host series, an
// entity kind's values for the longest window over a series of that kind,
// each plus two intervals so the window's oldest point is there; and of
// the Snapshots before the newest, only the series the windows read.
func Retention(rules []*Rule, interval time.Duration) collector.Retention {
	r := collector.Retention{Kinds: map[string]time.Duration{}, Values: map[string][]string{}}
	for _, rule := range rules {
		for scope, d := range rule.lookbacks {
			if scope == ScopeHost {
				r.Host = max(r.Host, d)
			} else {
				r.Kinds[string(scope)] = max(r.Kinds[string(scope)], d)
			}
		}
		for kind, names := range rule.series {
			for _, n := range names {
				if !slices.Contains(r.Values[kind], n) {
					r.Values[kind] = append(r.Values[kind], n)
				}
			}
		}
	}
	r.Host += 2 * interval
	for k, d := range r.Kinds {
		r.Kinds[k] = d + 2*interval
	}
	return r
}

// baseLabels returns the labels every alert of the rule carries.
func (r *Rule) baseLabels() map[string]string {
	l := make(map[string]string, len(r.Labels)+4)
	maps.Copy(l, r.Labels)
	l[model.AlertNameLabel] = r.Name
	l["severity"] = string(r.Severity)
	return l
}

// ruleKey identifies a rule across reloads, as Prometheus does: by name
// and labels (severity included).
func ruleKey(name string, labels map[string]string) string {
	var b strings.Builder
	b.WriteString(name)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteByte(0xff)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(labels[k])
	}
	return b.String()
}

//go:embed default_rules.yml
var defaultRulesYAML []byte

// DefaultRulesYAML returns the source of the built-in rules.
func DefaultRulesYAML() []byte { return slices.Clone(defaultRulesYAML) }

// DefaultRules returns the built-in connection-storm checklist over the
// default vocabulary. It panics if the embedded file does not load, which
// the package's tests rule out.
func DefaultRules() []*Rule { return DefaultVocabulary().DefaultRules() }

// DefaultRules returns the built-in rules compiled for vb.
func (vb *Vocabulary) DefaultRules() []*Rule {
	rules, err := load(vb, "default_rules.yml", defaultRulesYAML)
	if err != nil {
		panic(fmt.Sprintf("alerts: built-in rules: %v", err))
	}
	return rules
}

// Load parses and validates a rules file against the default vocabulary.
// On failure the error is Errors, with every problem found and its line
// and column.
func Load(data []byte) ([]*Rule, error) { return DefaultVocabulary().Load("", data) }

// LoadFile reads and loads the rules file at path against the default
// vocabulary. Problems are reported with path as their file.
func LoadFile(path string) ([]*Rule, error) { return DefaultVocabulary().LoadFile(path) }

// Load parses and validates a rules file against vb; file names it in
// errors.
func (vb *Vocabulary) Load(file string, data []byte) ([]*Rule, error) { return load(vb, file, data) }

// MaxFileSize is the most a rules file may hold (the built-in rules take
// 12 KiB).
const MaxFileSize = 4 << 20

// LoadFile reads and loads the rules file at path against vb. Only a
// regular file of at most MaxFileSize is read, under a timeout: a FIFO or
// a device is an error, never a hang.
func (vb *Vocabulary) LoadFile(path string) ([]*Rule, error) {
	data, err := fileread.Read(path, MaxFileSize)
	if err != nil {
		return nil, err
	}
	return load(vb, path, data)
}

// ruleYAML is how a rule is written out.
type ruleYAML struct {
	Name          string            `yaml:"name"`
	Scope         Scope             `yaml:"scope"`
	Condition     string            `yaml:"condition"`
	Value         string            `yaml:"value,omitempty"`
	For           string            `yaml:"for,omitempty"`
	KeepFiringFor string            `yaml:"keep_firing_for,omitempty"`
	Severity      Severity          `yaml:"severity"`
	Labels        map[string]string `yaml:"labels,omitempty"`
	Summary       string            `yaml:"summary,omitempty"`
	Description   string            `yaml:"description,omitempty"`
	Advice        string            `yaml:"advice,omitempty"`
	Section       string            `yaml:"section,omitempty"`
}

func fmtDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return model.Duration(d).String()
}

// MarshalYAML writes the rule as it would be written in a rules file, with
// defaults filled in.
func (r *Rule) MarshalYAML() (any, error) {
	return ruleYAML{
		Name: r.Name, Scope: r.Scope, Condition: r.Condition, Value: r.Value,
		For: fmtDuration(r.For), KeepFiringFor: fmtDuration(r.KeepFiringFor),
		Severity: r.Severity, Labels: r.Labels,
		Summary: r.Summary, Description: r.Description, Advice: r.Advice, Section: r.Section,
	}, nil
}

// Marshal returns rules as a rules file that Load accepts.
func Marshal(rules []*Rule) ([]byte, error) {
	return yaml.Marshal(struct {
		Rules []*Rule `yaml:"rules"`
	}{rules})
}

// annotate renders the rule's annotation templates over data; nil when the
// rule has none.
func (r *Rule) annotate(data map[string]any) map[string]string {
	if r.summary == nil && r.description == nil && r.advice == nil {
		return nil
	}
	a := map[string]string{}
	for name, t := range map[string]*template.Template{"summary": r.summary, "description": r.description, "advice": r.advice} {
		if t != nil {
			a[name] = render(t, data)
		}
	}
	return a
}

package alerts

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stormwatch/stormwatch/collector"
)

// TestLoadInvalid pairs each invalid rules file with every problem it must
// report.
func TestLoadInvalid(t *testing.T) {
	tests := map[string][]string{
		"invalid-syntax.yml": {
			// yaml.v3 gives the line of the enclosing block, no column.
			"1: syntax error: did not find expected '-' indicator",
		},
		"invalid-empty.yml":            {`1:1: empty rules file: want a "rules" list`},
		"invalid-two-documents.yml":    {"2:1: only one YAML document is allowed"},
		"invalid-not-mapping.yml":      {`1:1: want a mapping with a "rules" list`},
		"invalid-top-field.yml":        {`1:1: unknown field "groups": rules are one flat "rules" list`},
		"invalid-rules-not-list.yml":   {`2:3: "rules" must be a list of rules`},
		"invalid-rule-not-mapping.yml": {"2:5: a rule must be a mapping"},
		"invalid-unknown-field.yml": {
			`3:5: rule "A": unknown field "expr": use "condition"`,
			`5:5: rule "A": unknown field "annotations": use "summary" and "description"`,
		},
		"invalid-repeated-field.yml": {`4:5: rule "A": field "condition" repeated (first at 3:5)`},
		"invalid-missing-name.yml": {
			`2:5: missing field "name"`,
			`3:5: missing field "name"`,
		},
		"invalid-bad-name.yml": {`2:11: name "conntrack full" must match ^[a-zA-Z_][a-zA-Z0-9_]*$`},
		"invalid-duplicate-name.yml": {
			`8:11: rule "ConntrackNearFull": duplicate rule: same name and labels as the rule at 2:11`,
		},
		"invalid-scope.yml":    {`3:12: rule "A": scope "socket": must be host, listener, interface or valkey`},
		"invalid-severity.yml": {`4:15: rule "A": severity "page": must be info, warning or critical`},
		"invalid-duration.yml": {
			`4:10: rule "A": for: "5 minutes" is not a duration (use e.g. 30s, 5m, 1h)`,
			`5:22: rule "A": keep_firing_for: "-1s" is not a duration (use e.g. 30s, 5m, 1h)`,
		},
		"invalid-missing-condition.yml": {`2:5: rule "A": missing field "condition"`},
		"invalid-condition-syntax.yml":  {`3:52: rule "A": condition: unexpected token EOF`},
		"invalid-condition-type.yml":    {`3:16: rule "A": condition: expected bool, but got float64`},
		"invalid-unknown-identifier.yml": {
			`3:17: rule "A": condition: unknown name conntrack_entrys`,
			`8:9: rule "B": condition: unknown name accept_queue`,
		},
		"invalid-function-args.yml": {
			`3:25: rule "Gauge": condition: increase: "established" is a gauge, increase needs a counter`,
			`5:38: rule "Window": condition: rate: window "10" is not a positive duration (use e.g. "30s", "5m")`,
			`7:21: rule "Series": condition: rate: unknown series "passive_open"`,
			`9:42: rule "Dynamic": condition: rate: the window must be a quoted duration like "30s"`,
			`11:84: rule "Baseline": condition: baseline_rate: the excluded recent part 5m must be shorter than the window 1m`,
			`13:16: rule "Arity": condition: not enough arguments to call time_to_limit`,
		},
		"invalid-template.yml": {
			`4:14: rule "A": summary: function "percent" not defined`,
			`5:18: rule "A": description: at <.conntrack_entrie>: map has no entry for key "conntrack_entrie"`,
			`9:14: rule "B": summary: unclosed action`,
			`10:18: rule "B": description: range must be over a field, like {{ range $k, $v := .labels }}`,
		},
		"invalid-labels.yml": {
			`5:7: rule "A": label "alertname" is reserved: stormwatch sets it`,
			`6:7: rule "A": label "port" is reserved: stormwatch sets it`,
			`7:7: rule "A": label name "team-name" must match ^[a-zA-Z_][a-zA-Z0-9_]*$`,
			`8:14: rule "A": label "owner" has an empty value`,
			`11:13: rule "C": labels must be a mapping of names to values`,
		},
		"invalid-value.yml": {`4:12: rule "A": value: expected float64, but got string`},
	}
	files, err := filepath.Glob("testdata/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := tests[filepath.Base(f)]; !ok {
			t.Errorf("%s has no expected message", f)
		}
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name)
			rules, err := LoadFile(path)
			if rules != nil {
				t.Errorf("got %d rules from an invalid file", len(rules))
			}
			if !errors.Is(err, ErrInvalidRules) {
				t.Fatalf("error %v does not match ErrInvalidRules", err)
			}
			for i := range want {
				want[i] = path + ":" + want[i]
			}
			if diff := cmp.Diff(strings.Join(want, "\n"), err.Error()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			var one *Error
			if !errors.As(err, &one) || one.File != path {
				t.Errorf("errors.As(*Error) = %v", one)
			}
		})
	}
}

func TestLoadValid(t *testing.T) {
	rules, err := LoadFile("testdata/valid.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := []*Rule{
		{
			Name: "ValkeyAcceptQueue", Scope: ScopeListener,
			Condition: "port == 6379 and accept_queue_fill >= 0.5", Value: "accept_queue",
			For: 10 * time.Second, KeepFiringFor: time.Minute, Severity: SeverityCritical,
			Labels:      map[string]string{"team": "cache", "service": "valkey"},
			Summary:     "{{ .addr }}:{{ .port }} has {{ .value }} waiting ({{ .labels.service }})",
			Description: "{{ range $k, $v := .labels }}{{ $k }}={{ $v }} {{ end }}\n",
		},
		{Name: "Anchored", Scope: ScopeHost, Condition: "conntrack_entries > 0", Severity: SeverityWarning, Labels: map[string]string{"team": "net"}},
		{Name: "Anchored2", Scope: ScopeHost, Condition: "conntrack_entries > 0", Severity: SeverityWarning, Labels: map[string]string{"team": "net"}},
	}
	if diff := cmp.Diff(want, rules, cmpopts.IgnoreUnexported(Rule{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// The rules evaluate, with their own labels in the description.
	h := history()
	h.Add(snap(0, func(s *fixture) {
		s.Set("conntrack_entries", 1)
		s.Listeners = []collector.Listener{listener("0.0.0.0", 6379, 64, 100, 0)}
	}))
	e := NewEngine(rules, Options{})
	if _, err := e.Eval(at(0), h); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range e.Active() {
		got[a.Name()] = a.Annotations["summary"] + " | " + a.Annotations["description"]
	}
	wantAnn := map[string]string{
		"ValkeyAcceptQueue": "0.0.0.0:6379 has 64 waiting (valkey) | addr=0.0.0.0 alertname=ValkeyAcceptQueue port=6379 service=valkey severity=critical team=cache \n",
		"Anchored":          " | ",
		"Anchored2":         " | ",
	}
	if diff := cmp.Diff(wantAnn, got); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
}

func TestLoadNoRules(t *testing.T) {
	for _, src := range []string{"rules: []", "rules:"} {
		rules, err := Load([]byte(src))
		if err != nil || len(rules) != 0 {
			t.Errorf("%q: %d rules, %v", src, len(rules), err)
		}
	}
}

// TestDefaultRules checks that the built-in rules load clean, each with
// the advice it owes, and survive a round trip through Marshal.
func TestDefaultRules(t *testing.T) {
	rules := DefaultRules()
	names := map[string]bool{}
	for _, r := range rules {
		names[r.Name] = true
		if r.Summary == "" || r.Description == "" {
			t.Errorf("%s: summary and description are required in the built-in rules", r.Name)
		}
		if r.valueProg == nil {
			t.Errorf("%s: no value for its summary", r.Name)
		}
	}
	for _, name := range []string{
		"ConntrackTableNearFull", "ConntrackFullSoon", "ConntrackDropping", "ConntrackInsertFailing",
		"SynQueueNearFull", "SynCookiesSent", "SynDropped", "SyncookiesDisabled",
		"AcceptQueueNearFull", "AcceptQueueFullSoon", "AcceptQueueOverflowing", "ListenOverflows",
		"BacklogCappedBySomaxconn", "ConnectionRateSurge",
	} {
		if !names[name] {
			t.Errorf("built-in rule %s missing", name)
		}
	}
	if got := Lookback(rules); got != 15*time.Minute {
		t.Errorf("Lookback = %s, want 15m", got)
	}
	out, err := Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Load(out)
	if err != nil {
		t.Fatalf("Marshal output does not load: %v\n%s", err, out)
	}
	if diff := cmp.Diff(rules, again, cmpopts.IgnoreUnexported(Rule{})); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// FuzzLoad checks that no input makes the loader, or an Engine running what
// it loaded, panic, and that what loads survives Marshal.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(DefaultRulesYAML())
	f.Add([]byte("rules: [{name: A, condition: '1/0 > 0', summary: '{{ .value }}'}]"))
	f.Add([]byte("rules: [&a {name: A, condition: 'true'}, *a]"))

	h := history()
	for i := range 3 {
		h.Add(snap(i, func(s *fixture) {
			s.Set("conntrack_entries", float64(90+i))
			s.Set("conntrack_limit", 100)
			s.Set("passive_opens", float64(1000*i))
			s.Listeners = []collector.Listener{listener("0.0.0.0", 6379, 100, 100, 3)}
			s.SynRecv = synRan
		}))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return // the built-in rules are under half of this; larger inputs only slow the fuzzer
		}
		rules, err := Load(data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not Errors: %v", err)
			}
			return
		}
		e := NewEngine(rules, Options{})
		_, _ = e.Eval(at(2), h)
		_, _ = e.Check(at(2), h)
		out, err := Marshal(rules)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Load(out); err != nil {
			t.Fatalf("Marshal output does not load: %v\n%s", err, out)
		}
	})
}

package deploy

import (
	"os"
	"os/exec"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/stormwatch/stormwatch/internal/testenv"
)

const (
	rulesPath     = "prometheus/stormwatch.rules.yml"
	rulesTestPath = "prometheus/stormwatch.rules.test.yml"
	scrapePath    = "prometheus/scrape.example.yml"
	// fleetGroup is the rule group holding the fleet-wide alerts.
	fleetGroup = "stormwatch-fleet"
)

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", rulesPath, err)
	}
	return rf
}

// TestRulesPromtool lints the rules and the scrape example and runs the
// rules' unit tests.
func TestRulesPromtool(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", rulesPath},
		{"test", "rules", rulesTestPath},
		{"check", "config", scrapePath},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// TestRulesMetricNames checks every stormwatch metric a rule uses is one
// stormwatch exports, and every recording rule used is defined in the file.
func TestRulesMetricNames(t *testing.T) {
	known := knownMetrics(t)
	rf := loadRules(t)
	recorded := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			metrics, records := metricRefs(r.Expr)
			for _, m := range metrics {
				if !known[m] {
					t.Errorf("%s: %s is not a metric stormwatch exports", name, m)
				}
			}
			for _, rec := range records {
				if !recorded[rec] {
					t.Errorf("%s: %s is not recorded by any rule in %s", name, rec, rulesPath)
				}
			}
		}
	}
}

// TestRulesShape checks each alert carries a severity and its annotations,
// has a unit test, and the fleet group exists.
func TestRulesShape(t *testing.T) {
	b, err := os.ReadFile(rulesTestPath)
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatalf("%s: %v", rulesTestPath, err)
	}
	tested := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			tested[a.Alertname] = true
		}
	}

	var groups []string
	for _, g := range loadRules(t).Groups {
		groups = append(groups, g.Name)
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			if !tested[r.Alert] {
				t.Errorf("%s: no alert_rule_test in %s", r.Alert, rulesTestPath)
			}
		}
	}
	if !slices.Contains(groups, fleetGroup) {
		t.Errorf("rule groups %q lack %q", groups, fleetGroup)
	}
}

func TestMetricRefs(t *testing.T) {
	metrics, records := metricRefs(`sum by (job) (rate(stormwatch_tcp_listen_overflows_total{name="stormwatch_fake"}[5m:1m]))
		/ on (job) instance:stormwatch_conntrack_fill:ratio and $__rate_interval`)
	if want := []string{"stormwatch_tcp_listen_overflows_total"}; !slices.Equal(metrics, want) {
		t.Errorf("metrics = %q, want %q", metrics, want)
	}
	if want := []string{"instance:stormwatch_conntrack_fill:ratio"}; !slices.Equal(records, want) {
		t.Errorf("records = %q, want %q", records, want)
	}
}

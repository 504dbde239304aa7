package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
)

const dashboardPath = "grafana/stormwatch.json"

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// allPanels returns the panels, those inside collapsed rows included.
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// exprs returns every PromQL expression: panel targets and variable
// queries, each with where it comes from.
func (d dashboard) exprs() map[string]string {
	out := map[string]string{}
	for _, p := range d.allPanels() {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("panel %q target %d", p.Title, i)] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			out[fmt.Sprintf("variable %q", v.Name)] = v.Definition
		}
	}
	return out
}

// TestDashboardMetricNames checks every stormwatch metric the dashboard
// queries is one stormwatch exports. The dashboard must work without the
// fleet rules, so it may use no recording rule.
func TestDashboardMetricNames(t *testing.T) {
	known := knownMetrics(t)
	d := loadDashboard(t)
	n := 0
	for where, expr := range d.exprs() {
		metrics, records := metricRefs(expr)
		n += len(metrics)
		for _, m := range metrics {
			if !known[m] {
				t.Errorf("%s: %s is not a metric stormwatch exports", where, m)
			}
		}
		for _, r := range records {
			t.Errorf("%s: uses recording rule %s; query stormwatch's metrics directly", where, r)
		}
	}
	if n == 0 {
		t.Error("no stormwatch metric found in any expression")
	}
}

// TestDashboardShape checks the variables, that every query goes through
// $datasource, and the panel layout.
func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" {
		t.Error("no uid")
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want ≥ 36", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %q: datasource %+v, want uid ${datasource}", v.Name, v.Datasource)
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "instance": "query", "port": "query"} {
		if vars[name] != typ {
			t.Errorf("variable %q: type %q, want %q", name, vars[name], typ)
		}
	}

	ids := map[int]bool{}
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel %q: duplicate id %d", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos x=%d w=%d outside 24 columns", p.Title, p.GridPos.X, p.GridPos.W)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %d (%s): no title or no query", p.ID, p.Type)
		}
		refs := []*datasourceRef{p.Datasource}
		for _, tg := range p.Targets {
			refs = append(refs, tg.Datasource)
		}
		for _, r := range refs {
			if r == nil || r.UID != "${datasource}" {
				t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, r)
			}
		}
	}

	// The panels the dashboard promises, by the metric each must show.
	used := map[string]bool{}
	for _, expr := range d.exprs() {
		metrics, _ := metricRefs(expr)
		for _, m := range metrics {
			used[m] = true
		}
	}
	for _, m := range []string{
		"stormwatch_listener_accept_queue_length", "stormwatch_listener_accept_queue_limit",
		"stormwatch_listener_syn_recv", "stormwatch_conntrack_entries", "stormwatch_conntrack_entries_limit",
		"stormwatch_tcp_listen_overflows_total", "stormwatch_tcp_listen_drops_total",
		"stormwatch_tcp_syncookies_sent_total", "stormwatch_tcp_syn_queue_drops_total",
		"stormwatch_tcp_passive_opens_total", "stormwatch_alerts", "stormwatch_collector_success",
		"stormwatch_nic_allowance_exceeded_total", "stormwatch_nic_conntrack_allowance_available",
		"stormwatch_nic_receive_dropped_total", "stormwatch_nic_receive_missed_total",
		"stormwatch_softnet_dropped_total", "stormwatch_softnet_times_squeezed_total",
	} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	if !slices.ContainsFunc(d.allPanels(), func(p panel) bool { return p.Type == "row" }) {
		t.Error("no rows")
	}
}

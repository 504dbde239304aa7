package deploy

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stormwatch/stormwatch/internal/testbin"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

// TestPrometheusEndToEnd runs stormwatch and a real Prometheus that scrapes
// it with the job and relabelling of scrape.example.yml and loads the fleet
// rules, then checks a listener the test opened reaches Prometheus with the
// expected labels, the recording rules compute on it, every rule group is
// loaded and healthy, and Prometheus accepts every dashboard query.
func TestPrometheusEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds stormwatch and starts it and Prometheus: not in -short")
	}
	prometheusBin := testenv.Tool(t, "prometheus")
	bin := testbin.Stormwatch(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	swAddr := freeAddr(t)
	sw := startProcess(t, "stormwatch", bin, "run",
		"--web.listen-address="+swAddr, "--collect.interval=200ms", "--log.level=debug")
	waitFor(t, sw, 30*time.Second, "stormwatch /metrics", func() error {
		resp, err := http.Get("http://" + swAddr + "/metrics")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %s", resp.Status)
		}
		return nil
	})

	rules, err := filepath.Abs(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "prometheus.yml")
	writePrometheusConfig(t, config, swAddr, rules)
	promAddr := freeAddr(t)
	prom := startProcess(t, "prometheus", prometheusBin,
		"--config.file="+config,
		"--storage.tsdb.path="+t.TempDir(),
		"--web.listen-address="+promAddr)
	api := &promAPI{t: t, proc: prom, base: "http://" + promAddr}
	waitFor(t, prom, 60*time.Second, "Prometheus /-/ready", func() error {
		resp, err := http.Get(api.base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %s", resp.Status)
		}
		return nil
	})

	// The series of the test's listener, labelled as scrape.example.yml says.
	got := api.waitSeries(fmt.Sprintf(`stormwatch_listener_accept_queue_length{port="%d"}`, port))
	want := map[string]string{"job": "stormwatch", "service": "e2e", "instance": "127.0.0.1", "addr": "127.0.0.1"}
	for k, v := range want {
		if got[0].Metric[k] != v {
			t.Errorf("label %s = %q, want %q (series %v)", k, got[0].Metric[k], v, got[0].Metric)
		}
	}
	// The recording rules compute on real data.
	api.waitSeries(`instance:stormwatch_listener_accept_queue_fill:max_ratio{service="e2e"}`)
	if hosts := api.waitSeries(`service:stormwatch_hosts:count{service="e2e"}`); hosts[0].Value[1] != "1" {
		t.Errorf("service:stormwatch_hosts:count = %v, want 1", hosts[0].Value[1])
	}

	// Every group of the rule file is loaded and every rule has evaluated
	// without error.
	var wantGroups []string
	nRules := map[string]int{}
	for _, g := range loadRules(t).Groups {
		wantGroups = append(wantGroups, g.Name)
		nRules[g.Name] = len(g.Rules)
	}
	waitFor(t, prom, 30*time.Second, "healthy rule groups", func() error {
		var data struct {
			Groups []struct {
				Name  string
				File  string
				Rules []struct{ Name, Health, LastError string }
			}
		}
		if err := api.get("/api/v1/rules", nil, &data); err != nil {
			return err
		}
		loaded := map[string]bool{}
		for _, g := range data.Groups {
			if g.File != rules {
				continue
			}
			if len(g.Rules) != nRules[g.Name] {
				return fmt.Errorf("group %s: %d rules loaded, want %d", g.Name, len(g.Rules), nRules[g.Name])
			}
			for _, r := range g.Rules {
				if r.Health != "ok" {
					return fmt.Errorf("group %s rule %s: health %q %s", g.Name, r.Name, r.Health, r.LastError)
				}
			}
			loaded[g.Name] = true
		}
		for _, name := range wantGroups {
			if !loaded[name] {
				return fmt.Errorf("group %s not loaded", name)
			}
		}
		return nil
	})

	checkDashboardQueries(t, api)
}

// labelValues matches a Grafana label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// checkDashboardQueries runs every dashboard query, its variables set to
// match everything, and fails the test on any Prometheus rejects.
func checkDashboardQueries(t *testing.T, api *promAPI) {
	t.Helper()
	vars := strings.NewReplacer("$__rate_interval", "1m", "$service", ".*", "$instance", ".*", "$port", ".*")
	for where, expr := range loadDashboard(t).exprs() {
		q := vars.Replace(expr)
		if m := labelValues.FindStringSubmatch(q); m != nil {
			q = m[1] // Grafana's function; the selector is PromQL
		}
		var data json.RawMessage
		if err := api.get("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
			t.Errorf("dashboard %s: %s: %v", where, q, err)
		}
	}
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// writePrometheusConfig writes a Prometheus configuration made of
// scrape.example.yml's first job, scraping target every second with the
// label service="e2e", and the rule file.
func writePrometheusConfig(t *testing.T, path, target, rules string) {
	t.Helper()
	b, err := os.ReadFile(scrapePath)
	if err != nil {
		t.Fatal(err)
	}
	var example map[string]any
	if err := yaml.Unmarshal(b, &example); err != nil {
		t.Fatalf("%s: %v", scrapePath, err)
	}
	jobs, _ := example["scrape_configs"].([]any)
	if len(jobs) == 0 {
		t.Fatalf("%s: no scrape_configs", scrapePath)
	}
	job, ok := jobs[0].(map[string]any)
	if !ok {
		t.Fatalf("%s: scrape_configs[0] is not a mapping", scrapePath)
	}
	job["scrape_interval"] = "1s"
	job["scrape_timeout"] = "1s"
	job["static_configs"] = []any{map[string]any{
		"targets": []any{target},
		"labels":  map[string]any{"service": "e2e"},
	}}
	delete(job, "file_sd_configs")
	cfg := map[string]any{
		"global":         map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"rule_files":     []any{rules},
		"scrape_configs": []any{job},
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls check every 200ms until it returns nil, failing the test
// with check's last error at the deadline or at once if p exits.
func waitFor(t *testing.T, p *process, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if perr := p.exited(); perr != nil {
			t.Fatalf("waiting for %s: %v", what, perr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// promAPI queries Prometheus's HTTP API.
type promAPI struct {
	t    *testing.T
	proc *process
	base string
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (a *promAPI) get(path string, query url.Values, data any) error {
	resp, err := http.Get(a.base + path + "?" + query.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: HTTP %s: %w", path, resp.Status, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s %s", path, body.Status, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

// waitSeries polls an instant query for up to 30s until it returns at least
// one sample.
func (a *promAPI) waitSeries(query string) []sample {
	a.t.Helper()
	var got []sample
	waitFor(a.t, a.proc, 30*time.Second, strconv.Quote(query), func() error {
		var data struct {
			ResultType string   `json:"resultType"`
			Result     []sample `json:"result"`
		}
		if err := a.get("/api/v1/query", url.Values{"query": {query}}, &data); err != nil {
			return err
		}
		if len(data.Result) == 0 {
			return fmt.Errorf("no series yet")
		}
		got = data.Result
		return nil
	})
	return got
}

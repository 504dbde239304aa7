package diagnose_test

// A new source, declared in this file alone, with an entity kind of its
// own: its values reach /metrics, a rule over its scope fires labelled by
// the entity, and `check` shows its item — with no other file changed.

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/diagnose"
	"github.com/stormwatch/stormwatch/metrics"
)

// The pool source's values, by index.
const (
	poolWaiting = iota
	poolLimit
	poolServed
)

var poolDecl = &collector.Declaration{
	Name: "pools",
	Kinds: []collector.EntityKind{{
		Name:   "pool",
		Help:   "a connection pool",
		Labels: []collector.Label{{Name: "pool"}},
	}},
	Values: []collector.Value{
		poolWaiting: {Name: "waiting", Entity: "pool", Kind: collector.Gauge, Unit: "clients", Metric: "pool_waiting", Help: "Clients waiting for a connection."},
		poolLimit:   {Name: "size", Entity: "pool", Kind: collector.Gauge, Unit: "clients", Metric: "pool_size", Help: "Connections the pool holds."},
		poolServed:  {Name: "served", Entity: "pool", Kind: collector.Counter, Unit: "clients", Metric: "pool_served_total", Help: "Clients served."},
	},
	Sections: []collector.Section{{Name: "pools", Title: "Pools", Order: 45}},
	Items: []collector.Item{{ID: "pool", Section: "pools", What: "pool", Entity: "pool",
		Value: "waiting", Limit: "size", Unit: "clients", Queue: true}},
}

type poolSource struct{}

func (poolSource) Declaration() *collector.Declaration { return poolDecl }
func (poolSource) Collect(_ context.Context, w *collector.Writer) error {
	t := w.Table("pool", 2)
	for _, p := range []struct {
		name                  string
		waiting, size, served float64
	}{{"orders", 95, 100, 1000}, {"search", 3, 100, 50}} {
		row := t.Add(p.name)
		t.Set(row, poolWaiting, p.waiting)
		t.Set(row, poolLimit, p.size)
		t.Set(row, poolServed, p.served)
	}
	return nil
}

const poolRules = `
rules:
  - name: PoolNearlyExhausted
    scope: pool
    condition: waiting / size >= 0.9
    severity: critical
    summary: "pool {{ .pool }}: {{ .waiting }} of {{ .size }} waiting"
    advice: "grow the pool"
`

func TestNewSourceEndToEnd(t *testing.T) {
	// The built-in file sources on a fixture tree, and the new one.
	builtin, err := collector.NewSources(collector.Config{Root: filepath.Join("..", "testdata", "linux-6.18")})
	if err != nil {
		t.Fatal(err)
	}
	defer collector.CloseSources(builtin)
	var sources []collector.Source
	var decls []*collector.Declaration
	for _, s := range builtin {
		if s.Declaration().Name != "listeners" { // no kernel here
			sources = append(sources, s)
		}
		decls = append(decls, s.Declaration())
	}
	sources = append(sources, poolSource{})
	sc, err := collector.NewSchema(append(decls, poolDecl)...)
	if err != nil {
		t.Fatal(err)
	}
	sampler, err := collector.NewSampler(sc, sources, nil, collector.NewHistory(collector.Retention{Host: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	sampler.Sample(context.Background(), now)

	// /metrics
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewExporter(sc, sampler.Latest, metrics.BuildInfo{Version: "test"}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exp bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&exp, mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{
		`stormwatch_pool_waiting{pool="orders"} 95`,
		`stormwatch_pool_size{pool="search"} 100`,
		"# TYPE stormwatch_pool_served_total counter",
		`stormwatch_pool_served_total{pool="orders"} 1000`,
		`stormwatch_collector_success{collector="pools"} 1`,
	} {
		if !strings.Contains(exp.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The rule over the new scope, labelled by the entity.
	vb := alerts.NewVocabulary(sc)
	rules, err := vb.Load("pools.yml", []byte(poolRules))
	if err != nil {
		t.Fatal(err)
	}
	engine := alerts.NewEngine(rules, alerts.Options{Vocabulary: vb})
	trs, err := engine.Eval(now, sampler.History())
	if err != nil {
		t.Fatal(err)
	}
	if len(trs) != 1 || trs[0].Alert.Labels["pool"] != "orders" || trs[0].To != alerts.StateFiring {
		t.Fatalf("transitions %+v, want PoolNearlyExhausted firing for pool orders", trs)
	}
	if got := trs[0].Alert.Annotations["summary"]; got != "pool orders: 95 of 100 waiting" {
		t.Errorf("summary %q", got)
	}
	// increase and rate take counters only, as for every source.
	if _, err := vb.Load("bad.yml", []byte(`rules: [{name: X, scope: pool, condition: 'rate("waiting", "1m") > 0'}]`)); err == nil ||
		!strings.Contains(err.Error(), `"waiting" is a gauge, rate needs a counter`) {
		t.Errorf("rate over a gauge: %v", err)
	}

	// The checklist: the new section, an item per pool, the alert on it.
	findings, err := engine.Check(now, sampler.History())
	if err != nil {
		t.Fatal(err)
	}
	r := diagnose.Build(diagnose.Input{Host: "h", Last: sampler.Latest(), Findings: findings})
	var pools *diagnose.Section
	for i := range r.Sections {
		if r.Sections[i].Name == "pools" {
			pools = &r.Sections[i]
		}
	}
	if pools == nil || len(pools.Items) != 2 {
		t.Fatalf("no pools section with two items in %+v", r.Sections)
	}
	orders := pools.Items[0]
	if orders.What != "pool orders" || orders.Status != diagnose.Critical || len(orders.Alerts) != 1 ||
		orders.Alerts[0].Name != "PoolNearlyExhausted" || orders.Labels["pool"] != "orders" || *orders.UsedRatio != 0.95 {
		t.Errorf("orders item %+v", orders)
	}
	if pools.Items[1].What != "pool search" || pools.Items[1].Status != diagnose.OK {
		t.Errorf("search item %+v", pools.Items[1])
	}
	if r.ExitCode != 2 {
		t.Errorf("exit code %d, want 2", r.ExitCode)
	}
}

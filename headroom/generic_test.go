package headroom

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
)

// valkeyDecl is a source declared in a test, the way a Valkey source
// declares its clients against maxclients: a Queue item of an entity
// kind of its own, joined to the listener on its port. Headroom must count
// it with no change to this package.
var valkeyDecl = &collector.Declaration{
	Name: "server_test",
	Kinds: []collector.EntityKind{{
		Name:   "testserver",
		Labels: []collector.Label{{Name: "target"}},
		Joins: []collector.Join{{Kind: collector.KindListener, Candidates: func(l []string) [][]string {
			host, port, _ := net.SplitHostPort(l[0])
			return [][]string{{host, port}, {"0.0.0.0", port}}
		}}},
	}},
	Values: []collector.Value{
		{Name: "connected_clients", Entity: "testserver", Unit: "clients"},
		{Name: "maxclients", Entity: "testserver", Unit: "clients"},
	},
	Sections: []collector.Section{{Name: "server", Title: "Server", Order: 50}},
	Items: []collector.Item{{ID: "testserver_clients", Section: "server", What: "Valkey clients", Entity: "testserver", Unit: "clients",
		Value: "connected_clients", Limit: "maxclients", Queue: true}},
}

var valkeySchema = collector.MustSchema(append(slices.Clone(collector.DefaultSchema().Sources()), valkeyDecl)...)

// valkeySnapshot is a quiet host with Valkey targets: clients[i] of
// 10000 (NaN: not measured), the source's result res.
func valkeySnapshot(res collector.SourceResult, clients map[string]float64) *collector.Snapshot {
	b := host(t0).build(collector.NewBuilder(valkeySchema, t0))
	b.Source(res)
	b.EmptyTable("testserver")
	for target, c := range clients {
		e := b.Entity("testserver", target).Set("connected_clients", c)
		if collector.Present(c) {
			e.Set("maxclients", 10000)
		}
	}
	return b.Snapshot()
}

func TestDeclaredQueueCounts(t *testing.T) {
	ok := collector.SourceResult{Name: "server_test", Success: true}
	snap := valkeySnapshot(ok, map[string]float64{"127.0.0.1:6379": 9000, "127.0.0.1:6380": 10})
	r := compute(DefaultOptions(), nil, snap)
	if r.OK || r.Limiting == nil || r.Limiting.ID != "testserver_clients" || r.Limiting.Kind != "testserver" {
		t.Fatalf("ok %v limiting %+v", r.OK, r.Limiting)
	}
	if diff := cmp.Diff(map[string]string{"target": "127.0.0.1:6379"}, r.Limiting.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Valkey clients of 127.0.0.1:6379 at 90% (limit 10000)"}, r.Reasons); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	if r.QueuesTotal != 9 {
		t.Errorf("total %d, want 9 (7 + 2 targets)", r.QueuesTotal)
	}

	// The port of a target is its listener's: 6380 leaves 6379's target out.
	o := DefaultOptions()
	o.Ports = []uint16{6380}
	r = compute(o, nil, snap)
	if !r.OK {
		t.Errorf("port 6380: not ok: %q", r.Reasons)
	}
	for _, q := range r.Queues {
		if q.Labels["target"] == "127.0.0.1:6379" {
			t.Errorf("port 6380 lists %s", q.Name)
		}
	}
	// There is no listener on 6380, but the target there counts as one.
	if slices.ContainsFunc(r.Reasons, func(s string) bool { return s == "nothing is reported listening on port 6380" }) {
		t.Errorf("reasons %q", r.Reasons)
	}
}

func TestDeclaredQueueNoData(t *testing.T) {
	// A target the source does not measure (its values not read while the
	// source succeeded) is left out, not missing.
	ok := collector.SourceResult{Name: "server_test", Success: true}
	r := compute(DefaultOptions(), nil, valkeySnapshot(ok, map[string]float64{"127.0.0.1:6379": collector.NaN}))
	if !r.OK {
		t.Errorf("an unmeasured target: not ok: %q", r.Reasons)
	}
	// A target whose poll failed is missing data.
	failed := collector.SourceResult{Name: "server_test", Err: errors.New("127.0.0.1:6379: dial tcp: connection refused")}
	r = compute(DefaultOptions(), nil, valkeySnapshot(failed, map[string]float64{"127.0.0.1:6379": collector.NaN, "127.0.0.1:6380": 10}))
	want := "no data: Valkey clients of 127.0.0.1:6379: server_test source failed: 127.0.0.1:6379: dial tcp: connection refused"
	if r.OK || !slices.Contains(r.Reasons, want) {
		t.Errorf("a failed target: ok %v reasons %q, want %q", r.OK, r.Reasons, want)
	}
	// No source ran at all: the absent subsystem is nothing to fill.
	absent := collector.SourceResult{Name: "server_test", NoData: true}
	if r := compute(DefaultOptions(), nil, valkeySnapshot(absent, nil)); !r.OK {
		t.Errorf("no targets: not ok: %q", r.Reasons)
	}
}

// fakeSource is a kernel source that reports a queue whose fill the test
// sets.
type fakeSource struct{ used float64 }

var fakeDecl = &collector.Declaration{
	Name:     "fake",
	Core:     true,
	Values:   []collector.Value{{Name: "used"}, {Name: "size"}},
	Sections: []collector.Section{{Name: "s", Title: "S"}},
	Items:    []collector.Item{{ID: "q", Section: "s", What: "the queue", Value: "used", Limit: "size", Queue: true}},
}

func (f *fakeSource) Declaration() *collector.Declaration { return fakeDecl }

func (f *fakeSource) Collect(_ context.Context, w *collector.Writer) error {
	w.Set(0, f.used)
	w.Set(1, 100)
	return nil
}

func TestLocal(t *testing.T) {
	sc := collector.MustSchema(fakeDecl)
	src := &fakeSource{used: 10}
	h := collector.NewHistory(Retention(sc, collector.Retention{}, 0))
	sampler, err := collector.NewSampler(sc, []collector.Source{src}, nil, h)
	if err != nil {
		t.Fatal(err)
	}
	p := &Local{Sampler: sampler, Options: DefaultOptions(), Host: "h", Warmup: 50 * time.Millisecond}
	start := time.Now()
	r, err := p.Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The first probe samples twice, Warmup apart: a trend already.
	if !r.OK || *r.Headroom != 0.9 || r.Host != "h" || r.Limiting.Trend == nil || r.Limiting.Trend.Points != 2 ||
		time.Since(start) < 50*time.Millisecond {
		t.Errorf("first probe: %+v", r)
	}
	src.used = 80
	time.Sleep(10 * time.Millisecond)
	r, err = p.Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.OK || r.Reasons[0] != "the queue at 80% (limit 100)" || r.Limiting.Trend.Points != 3 || !(r.Limiting.Trend.PerSecond > 0) {
		t.Errorf("second probe: ok %v reasons %q trend %+v", r.OK, r.Reasons, r.Limiting.Trend)
	}
	if p.Name() != "local" {
		t.Errorf("name %q", p.Name())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Probe(ctx); err == nil {
		t.Error("a cancelled probe returned a report")
	}
}

// TestOpenLocal reads a fixture tree (and this host's listeners, which
// need no privilege) with the built-in rules.
func TestOpenLocal(t *testing.T) {
	l, err := OpenLocal(LocalConfig{Collector: collector.Config{Root: "../testdata/linux-6.18"}, Rules: alerts.DefaultRules(),
		Options: DefaultOptions(), Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Warmup = 10 * time.Millisecond
	r, err := l.Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Schema != SchemaVersion || r.QueuesTotal == 0 || l.Sampler.History().Len() != 2 {
		t.Errorf("report %+v, %d samples", r, l.Sampler.History().Len())
	}
	for _, q := range r.Queues {
		if q.ID == "conntrack_table" && (q.Used == nil || q.Limit == nil) {
			t.Errorf("the fixture's conntrack table: %+v", q)
		}
	}
}

func TestRetention(t *testing.T) {
	r := Retention(collector.DefaultSchema(), collector.Retention{Host: time.Minute, Kinds: map[string]time.Duration{"listener": 3 * time.Second}}, 10*time.Second)
	want := collector.Retention{Host: time.Minute, Kinds: map[string]time.Duration{"listener": 10 * time.Second}}
	for _, it := range collector.DefaultSchema().Items() {
		if it.Queue && it.Entity != "" {
			want.Kinds[it.Entity] = 10 * time.Second // every kind with a queue keeps its trend
		}
	}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

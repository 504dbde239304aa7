package headroom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/golden"
)

func f(v float64) *float64 { return &v }

// approx compares floats to 1e-9.
var approx = cmpopts.EquateApprox(0, 1e-9)

func TestIdleHost(t *testing.T) {
	r := compute(DefaultOptions(), nil, host(t0).snapshot())
	if !r.OK || len(r.Reasons) != 0 {
		t.Fatalf("idle host: ok %v, reasons %q", r.OK, r.Reasons)
	}
	want := 1 - 4100.0/262144 // the conntrack table is the only queue with anything in it
	if diff := cmp.Diff(f(want), r.Headroom, approx); diff != "" {
		t.Errorf("headroom (-want +got):\n%s", diff)
	}
	if r.Limiting == nil || r.Limiting.ID != "conntrack_table" || r.Limiting.Kind != "host" || r.Limiting.Labels != nil {
		t.Errorf("limiting %+v, want the conntrack table", r.Limiting)
	}
	// Three listeners with two queues each, and the conntrack table.
	if r.QueuesTotal != 7 || len(r.Queues) != 7 {
		t.Errorf("queues total %d, listed %d; want 7 and 7", r.QueuesTotal, len(r.Queues))
	}
	if r.Schema != SchemaVersion || r.Host != "valkey-1" || !r.Time.Equal(t0) || *r.AgeSeconds != 0.2 || r.Min != DefaultMin {
		t.Errorf("header: %+v", r)
	}
}

func TestAcceptQueueBelowMin(t *testing.T) {
	s := host(t0)
	l := s.listener(6379)
	l.AcceptLimit, l.AcceptQueue = 128, 109 // 85%
	r := compute(DefaultOptions(), nil, s.snapshot())
	if r.OK || r.NoData {
		t.Fatalf("ok %v, no data %v with an accept queue 85%% full", r.OK, r.NoData)
	}
	want := &Queue{ID: "accept_queue", What: "accept queue", Kind: "listener",
		Labels: map[string]string{"addr": "0.0.0.0", "port": "6379"}, Entity: "0.0.0.0:6379", Name: "accept queue 0.0.0.0:6379", Unit: "connections",
		Used: f(109), Limit: f(128), Free: f(19), UsedRatio: f(109.0 / 128), Headroom: f(19.0 / 128)}
	if diff := cmp.Diff(want, r.Limiting, approx); diff != "" {
		t.Errorf("limiting (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"accept queue of 0.0.0.0:6379 at 85% (limit 128)"}, r.Reasons); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(f(19.0/128), r.Headroom, approx); diff != "" {
		t.Errorf("headroom (-want +got):\n%s", diff)
	}
	// A lower threshold lets it pass; 1 passes only empty queues.
	if r := compute(opts(0.1), nil, s.snapshot()); !r.OK {
		t.Errorf("min 0.1: not ok: %q", r.Reasons)
	}
	if r := compute(opts(0), nil, s.snapshot()); !r.OK {
		t.Errorf("min 0: not ok: %q", r.Reasons)
	}
	if r := compute(opts(1), nil, host(t0).snapshot()); r.OK {
		t.Error("min 1 with a conntrack table in use: ok")
	}
}

// TestFullQueue: an accept queue at limit+1 (full) has no headroom, not a
// negative one.
func TestFullQueue(t *testing.T) {
	s := host(t0)
	l := s.listener(6379)
	l.AcceptLimit, l.AcceptQueue = 128, 129
	r := compute(DefaultOptions(), nil, s.snapshot())
	if diff := cmp.Diff(f(0), r.Headroom); diff != "" {
		t.Errorf("headroom (-want +got):\n%s", diff)
	}
	if r.Limiting.Free == nil || *r.Limiting.Free != 0 {
		t.Errorf("free %v, want 0", r.Limiting.Free)
	}
	if r.OK || r.Reasons[0] != "accept queue of 0.0.0.0:6379 is full (limit 128)" {
		t.Errorf("ok %v, reasons %q", r.OK, r.Reasons)
	}
}

// TestReusePortFullestSocket: with SO_REUSEPORT the fullest socket's
// share (the declared ratio) sets the headroom, not the group's total.
func TestReusePortFullestSocket(t *testing.T) {
	s := host(t0)
	l := s.listener(6379)
	l.Sockets, l.AcceptLimit, l.AcceptQueue, l.MaxFill = 4, 4*128, 128, 1 // one socket full, three empty
	r := compute(DefaultOptions(), nil, s.snapshot())
	if r.OK || *r.Headroom != 0 || *r.Limiting.Used != 128 || *r.Limiting.Limit != 512 {
		t.Errorf("ok %v headroom %v limiting %+v: want the full socket to count", r.OK, *r.Headroom, r.Limiting)
	}
}

func TestSynQueueLimits(t *testing.T) {
	s := host(t0)
	s.listener(6379).SynRecv = 450 // of 511
	r := compute(DefaultOptions(), nil, s.snapshot())
	if r.OK || r.Limiting.ID != "syn_queue" || r.Reasons[0] != "SYN queue of 0.0.0.0:6379 at 88% (limit 511)" {
		t.Errorf("ok %v limiting %+v reasons %q", r.OK, r.Limiting, r.Reasons)
	}
}

func TestPortFilter(t *testing.T) {
	s := host(t0)
	l := s.listener(16379)
	l.AcceptLimit, l.AcceptQueue = 128, 120
	snap := s.snapshot()

	o := DefaultOptions()
	o.Ports = []uint16{6379}
	r := compute(o, nil, snap)
	if !r.OK {
		t.Errorf("port 6379 with only 16379 full: not ok: %q", r.Reasons)
	}
	// 6379's two queues and the conntrack table, which a wave to any port
	// fills.
	var ids []string
	for _, q := range r.Queues {
		ids = append(ids, q.Name)
	}
	if diff := cmp.Diff([]string{"conntrack table", "SYN queue 0.0.0.0:6379", "accept queue 0.0.0.0:6379"}, ids); diff != "" {
		t.Errorf("queues (-want +got):\n%s", diff)
	}
	if r.QueuesTotal != 3 {
		t.Errorf("queues total %d, want 3", r.QueuesTotal)
	}

	o.Ports = []uint16{6379, 16379}
	if r := compute(o, nil, snap); r.OK || r.Limiting.Labels["port"] != "16379" {
		t.Errorf("ports 6379,16379: ok %v limiting %+v", r.OK, r.Limiting)
	}

	o.Ports = []uint16{6379, 6380}
	r = compute(o, nil, snap)
	if r.OK || !slices_contains(r.Reasons, "nothing is reported listening on port 6380") {
		t.Errorf("a port nothing listens on: ok %v reasons %q", r.OK, r.Reasons)
	}
}

func slices_contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestUnlimitedConntrack(t *testing.T) {
	s := host(t0)
	delete(s.vals, "conntrack_limit") // nf_conntrack_max 0: the source leaves the limit no data
	s.vals["nf_conntrack_max"] = 0
	r := compute(DefaultOptions(), nil, s.snapshot())
	if !r.OK {
		t.Fatalf("unlimited conntrack: not ok: %q", r.Reasons)
	}
	if r.Limiting == nil || r.Limiting.ID == "conntrack_table" || *r.Headroom != 1 {
		t.Errorf("limiting %+v, headroom %v: the unlimited table must neither limit nor count as full", r.Limiting, *r.Headroom)
	}
	last := r.Queues[len(r.Queues)-1]
	want := Queue{ID: "conntrack_table", What: "conntrack table", Kind: "host", Name: "conntrack table", Unit: "entries",
		Used: f(4100), Note: "no limit"}
	if diff := cmp.Diff(want, last); diff != "" {
		t.Errorf("conntrack queue (-want +got):\n%s", diff)
	}
}

func TestConntrackAbsent(t *testing.T) {
	s := host(t0)
	s.sources["conntrack"] = collector.SourceResult{Name: "conntrack", NoData: true}
	delete(s.vals, "conntrack_entries")
	delete(s.vals, "conntrack_limit")
	r := compute(DefaultOptions(), nil, s.snapshot())
	if !r.OK || *r.Headroom != 1 || r.QueuesTotal != 6 {
		t.Errorf("no conntrack module: ok %v headroom %v total %d reasons %q", r.OK, *r.Headroom, r.QueuesTotal, r.Reasons)
	}
	for _, q := range r.Queues {
		if q.ID == "conntrack_table" {
			t.Errorf("an absent conntrack table is listed: %+v", q)
		}
	}
}

// TestNoData: whatever is missing, the answer is never ok, and says why.
func TestNoData(t *testing.T) {
	boom := errors.New("netlink receive: operation timed out")
	tests := []struct {
		name       string
		sample     func() *sample
		now        time.Duration // after the sample
		wantReason string
	}{
		{"listeners failed", func() *sample {
			s := host(t0).fail("listeners", fmt.Errorf("LISTEN dump: %w", boom))
			s.noListeners = true
			return s
		}, 0, "no data: listeners source failed: LISTEN dump: netlink receive: operation timed out"},
		{"tcpstat failed", func() *sample { return host(t0).fail("tcpstat", boom) }, 0,
			"no data: tcpstat source failed: netlink receive: operation timed out"},
		{"conntrack failed", func() *sample {
			s := host(t0).fail("conntrack", errors.New("read nf_conntrack_count: input/output error"))
			delete(s.vals, "conntrack_entries")
			delete(s.vals, "conntrack_limit")
			return s
		}, 0, "no data: conntrack table: conntrack source failed: read nf_conntrack_count: input/output error"},
		{"SYN_RECV dump failed", func() *sample {
			s := host(t0).fail("listeners", fmt.Errorf("SYN_RECV dump: %w", boom))
			return s
		}, 0, "no data: listeners source failed: SYN_RECV dump: netlink receive: operation timed out"},
		{"stale", func() *sample { return host(t0) }, 7 * time.Second,
			"no data: the latest sample is 7s old (stale after 5s): sampling has stalled"},
		{"nothing with a limit", func() *sample {
			s := host(t0)
			s.listeners = nil
			delete(s.vals, "conntrack_limit")
			return s
		}, 0, "no data: no queue with a limit was measured"},
		{"a port nothing listens on", func() *sample { return host(t0) }, 0, "nothing is reported listening on port 6380"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.sample()
			if tt.name == "SYN_RECV dump failed" {
				// The table is there, the SYN_RECV counts are not.
				b := s.build(collector.NewBuilder(collector.DefaultSchema(), s.t))
				for _, l := range s.listeners {
					b.Entity(collector.KindListener, l.Addr.String(), fmt.Sprint(l.Port)).Set("syn_recv", collector.NaN)
				}
				snap := b.Snapshot()
				r := Compute(Input{Now: snap.Time, History: history(snap)}, DefaultOptions())
				check(t, r, tt.wantReason)
				if !slices_contains(r.Reasons, "no data: SYN queue of 3 listeners: listeners source failed") {
					t.Errorf("reasons %q lack the SYN queues", r.Reasons)
				}
				return
			}
			snap := s.snapshot()
			o := DefaultOptions()
			if strings.Contains(tt.name, "port") {
				o.Ports = []uint16{6379, 6380}
			}
			r := Compute(Input{Now: snap.Time.Add(tt.now), History: history(snap)}, o)
			check(t, r, tt.wantReason)
		})
	}
	t.Run("listeners failed, a port asked", func(t *testing.T) {
		s := host(t0).fail("listeners", boom)
		s.noListeners = true
		o := DefaultOptions()
		o.Ports = []uint16{6379}
		r := compute(o, nil, s.snapshot())
		check(t, r, "no data: listeners source failed: netlink receive: operation timed out")
		if slices_contains(r.Reasons, "nothing is reported listening on port 6379") {
			t.Errorf("reasons %q blame the port, not the failure", r.Reasons)
		}
	})
	t.Run("no sample", func(t *testing.T) {
		r := Compute(Input{Now: t0, History: history()}, DefaultOptions())
		check(t, r, "no data: no sample taken yet")
		if r.Queues == nil || r.Alerts == nil || r.Reasons == nil {
			t.Errorf("lists must be empty, not null: %+v", r)
		}
	})
}

// check wants r not ok, with no data, no headroom figure (a gate on
// the figure alone must not pass) and reason among its reasons.
func check(t *testing.T, r *Report, reason string) {
	t.Helper()
	if r.OK || !r.NoData || r.Headroom != nil || r.Limiting != nil {
		t.Errorf("ok %v, no data %v, headroom %v, limiting %v with %q", r.OK, r.NoData, r.Headroom, r.Limiting, reason)
	}
	if !slices_contains(r.Reasons, reason) {
		t.Errorf("reasons %q, want %q among them", r.Reasons, reason)
	}
}

func TestAlerts(t *testing.T) {
	snap := host(t0).snapshot()
	warning := Alert{Name: "SyncookiesDisabled", State: "firing", Severity: "warning"}
	pending := Alert{Name: "SynDropped", State: "pending", Severity: "critical"}
	critical := Alert{Name: "SynDropped", State: "firing", Severity: "critical", Summary: "12 SYNs dropped recently on a full SYN queue"}
	onOther := Alert{Name: "AcceptQueueOverflowing", State: "firing", Severity: "critical", Labels: map[string]string{"addr": "127.0.0.1", "port": "16379"}}

	r := compute(DefaultOptions(), []Alert{warning, pending}, snap)
	if !r.OK || len(r.Alerts) != 2 {
		t.Errorf("warning and pending alerts: ok %v alerts %d reasons %q", r.OK, len(r.Alerts), r.Reasons)
	}
	r = compute(DefaultOptions(), []Alert{warning, critical}, snap)
	if r.OK || !slices_contains(r.Reasons, "critical alert SynDropped firing: 12 SYNs dropped recently on a full SYN queue") {
		t.Errorf("critical alert: ok %v reasons %q", r.OK, r.Reasons)
	}
	o := DefaultOptions()
	o.Ports = []uint16{6379}
	r = compute(o, []Alert{onOther}, snap)
	if !r.OK || len(r.Alerts) != 0 {
		t.Errorf("a critical alert of port 16379 with ?port=6379: ok %v alerts %+v", r.OK, r.Alerts)
	}
	o.Ports = nil
	if r := compute(o, []Alert{onOther}, snap); r.OK {
		t.Error("a critical alert of port 16379 without a port filter: ok")
	}
	// Many critical alerts: the first few are named, the rest counted.
	var many []Alert
	for i := range 8 {
		a := onOther
		a.Labels = map[string]string{"port": fmt.Sprint(7000 + i)}
		many = append(many, a)
	}
	r = compute(DefaultOptions(), many, snap)
	if len(r.Reasons) != maxQueueReasons+1 || r.Reasons[maxQueueReasons] != "and 3 more critical alerts firing" {
		t.Errorf("8 critical alerts: reasons %q", r.Reasons)
	}
}

// TestTrend: a queue filling at 10 a second over the window shows that
// slope and the time to full; carried SYN_RECV counts are not points.
func TestTrend(t *testing.T) {
	var snaps []*collector.Snapshot
	for i := range 11 {
		s := host(at(float64(i)))
		l := s.listener(6379)
		l.AcceptLimit, l.AcceptQueue = 128, uint32(20+10*i)
		l.SynRecv = uint32(5 * i)
		s.synCarried = i%2 == 1 // dumped on even seconds only
		snaps = append(snaps, s.snapshot())
	}
	r := compute(opts(0.1), nil, snaps...)
	q := r.Limiting
	want := &Trend{WindowSeconds: 10, Points: 11, PerSecond: 10, SecondsToFull: f(0.8)} // (128-120)/10
	if diff := cmp.Diff(want, q.Trend, approx); diff != "" {
		t.Errorf("accept queue trend (-want +got):\n%s", diff)
	}
	for _, q := range r.Queues {
		if q.ID == "syn_queue" && q.Labels["port"] == "6379" {
			// Points at 0, 2, …, 10: 6 of them, 5 a second; the SYN
			// queue's limit is the accept queue's.
			want := &Trend{WindowSeconds: 10, Points: 6, PerSecond: 5, SecondsToFull: f((128 - 50) / 5.0)}
			if diff := cmp.Diff(want, q.Trend, approx); diff != "" {
				t.Errorf("SYN queue trend (-want +got):\n%s", diff)
			}
		}
		if q.ID == "conntrack_table" {
			if q.Trend == nil || q.Trend.PerSecond != 0 || q.Trend.SecondsToFull != nil {
				t.Errorf("a flat conntrack table: trend %+v, want slope 0 and no time to full", q.Trend)
			}
		}
	}
	// Only the window counts.
	o := opts(0.1)
	o.TrendWindow = 3 * time.Second
	if r := compute(o, nil, snaps...); r.Limiting.Trend.Points != 4 {
		t.Errorf("3s window: %d points, want 4", r.Limiting.Trend.Points)
	}
	// One sample: no trend.
	if r := compute(opts(0.1), nil, snaps[len(snaps)-1]); r.Limiting.Trend != nil {
		t.Errorf("one sample: trend %+v", r.Limiting.Trend)
	}
}

// TestTrendListenerMoves: the listener's row in older samples is found
// by its labels when listeners opened or closed in between.
func TestTrendListenerMoves(t *testing.T) {
	var snaps []*collector.Snapshot
	for i := range 5 {
		s := host(at(float64(i)))
		if i < 3 { // a listener sorted before 0.0.0.0:6379 closed at 3s
			s.listeners = append(s.listeners, collector.Listener{Addr: netip.MustParseAddr("0.0.0.0"), Port: 1, Sockets: 1, AcceptLimit: 10})
		}
		l := s.listener(6379)
		l.AcceptLimit, l.AcceptQueue = 100, uint32(10*i)
		snaps = append(snaps, s.snapshot())
	}
	r := compute(opts(0), nil, snaps...)
	want := &Trend{WindowSeconds: 4, Points: 5, PerSecond: 10, SecondsToFull: f(6)}
	if diff := cmp.Diff(want, r.Limiting.Trend, approx); diff != "" {
		t.Errorf("trend (-want +got):\n%s", diff)
	}
}

func TestTop(t *testing.T) {
	s := host(t0)
	s.listeners = nil
	for i := range 30 {
		s.listeners = append(s.listeners, collector.Listener{Addr: netip.MustParseAddr("10.0.0.1"), Port: uint16(7000 + i), Sockets: 1,
			AcceptLimit: 100, AcceptQueue: uint32(i)})
	}
	snap := s.snapshot()
	o := opts(0.5)
	o.Top = 5
	r := compute(o, nil, snap)
	var names []string
	for _, q := range r.Queues {
		names = append(names, q.Name)
	}
	want := []string{
		"accept queue 10.0.0.1:7029", "accept queue 10.0.0.1:7028", "accept queue 10.0.0.1:7027",
		"accept queue 10.0.0.1:7026", "accept queue 10.0.0.1:7025",
		"conntrack table", "SYN queue 10.0.0.1:7000", // the tightest of every other kind
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("queues (-want +got):\n%s", diff)
	}
	if r.QueuesTotal != 61 {
		t.Errorf("total %d, want 61", r.QueuesTotal)
	}
	o.Top = 0
	if r := compute(o, nil, snap); len(r.Queues) != 61 {
		t.Errorf("top 0: %d queues, want all 61", len(r.Queues))
	}
}

// TestManyBelowMin: the reasons name the tightest few and count the rest.
func TestManyBelowMin(t *testing.T) {
	s := host(t0)
	s.listeners = nil
	for i := range 8 {
		s.listeners = append(s.listeners, collector.Listener{Addr: netip.MustParseAddr("10.0.0.1"), Port: uint16(7000 + i), Sockets: 1,
			AcceptLimit: 100, AcceptQueue: uint32(90 + i)})
	}
	r := compute(DefaultOptions(), nil, s.snapshot())
	want := []string{
		"accept queue of 10.0.0.1:7007 at 97% (limit 100)",
		"accept queue of 10.0.0.1:7006 at 96% (limit 100)",
		"accept queue of 10.0.0.1:7005 at 95% (limit 100)",
		"accept queue of 10.0.0.1:7004 at 94% (limit 100)",
		"accept queue of 10.0.0.1:7003 at 93% (limit 100)",
		"and 3 more queues with less than 30% headroom",
	}
	if diff := cmp.Diff(want, r.Reasons); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
}

func TestZeroLimit(t *testing.T) {
	s := host(t0)
	s.listener(6379).AcceptLimit = 0 // listen(fd, 0): both its queues have no room
	r := compute(DefaultOptions(), nil, s.snapshot())
	if r.OK || *r.Headroom != 0 || r.Limiting.Note != "limit 0: no room" || r.Limiting.UsedRatio != nil ||
		!slices_contains(r.Reasons, "accept queue of 0.0.0.0:6379 has a limit of 0") ||
		!slices_contains(r.Reasons, "SYN queue of 0.0.0.0:6379 has a limit of 0") {
		t.Errorf("limit 0: ok %v headroom %v limiting %+v reasons %q", r.OK, *r.Headroom, r.Limiting, r.Reasons)
	}
}

// TestGolden pins the JSON layout and the text rendering.
func TestGolden(t *testing.T) {
	var snaps []*collector.Snapshot
	for i := range 3 {
		s := host(at(float64(i)))
		l := s.listener(6379)
		l.AcceptLimit, l.AcceptQueue = 128, uint32(100+4*i)
		s.vals["conntrack_entries"] += float64(100 * i)
		snaps = append(snaps, s.snapshot())
	}
	alerts := []Alert{{Name: "AcceptQueueNearFull", State: "firing", Severity: "warning",
		Labels: map[string]string{"addr": "0.0.0.0", "port": "6379"}, Summary: "accept queue of 0.0.0.0:6379 84% full (108 waiting, limit 128)",
		ActiveAt: at(1)}}
	o := DefaultOptions()
	o.Top = 3
	r := compute(o, alerts, snaps...)
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "storm.json", append(js, '\n'))
	var text bytes.Buffer
	if err := WriteText(&text, "http://10.0.0.7:9955/api/v1/headroom", r); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "storm.txt", text.Bytes())

	// And the JSON reads back as it was.
	back, err := Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}

	idle := compute(DefaultOptions(), nil, host(t0).snapshot())
	text.Reset()
	if err := WriteText(&text, "this host (valkey-1)", idle); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "idle.txt", text.Bytes())
	if strings.Contains(text.String(), "not ok") {
		t.Errorf("an ok host gives reasons:\n%s", text.String())
	}
}

func TestNoNaNInJSON(t *testing.T) {
	s := host(t0)
	delete(s.vals, "conntrack_limit")
	s.listeners[0].AcceptLimit = 0
	r := compute(DefaultOptions(), nil, s.snapshot())
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("JSON: %v", err)
	}
	for _, q := range r.Queues {
		for _, p := range []*float64{q.Used, q.Limit, q.Free, q.UsedRatio, q.Headroom} {
			if p != nil && (math.IsNaN(*p) || math.IsInf(*p, 0)) {
				t.Errorf("%s: a NaN or Inf figure", q.Name)
			}
		}
	}
}

// TestTrendRetained: over a History keeping what Retention says on top of
// the rules' (older Snapshots keep only the series windows read), the
// report and its trends are those of a History keeping everything.
func TestTrendRetained(t *testing.T) {
	var snaps []*collector.Snapshot
	for i := range 11 {
		s := host(at(float64(i)))
		l := s.listener(6379)
		l.AcceptLimit, l.AcceptQueue = 128, uint32(20+10*i)
		l.SynRecv = uint32(5 * i)
		snaps = append(snaps, s.snapshot())
	}
	last := snaps[len(snaps)-1]
	in := Input{Now: last.Time.Add(200 * time.Millisecond), Host: "valkey-1", History: history(snaps...)}
	want := Compute(in, opts(0.1))
	// What the daemon keeps: no series for the rules (none read a
	// window here), the trends' on top.
	kept := collector.NewHistory(Retention(collector.DefaultSchema(), collector.Retention{Values: map[string][]string{}}, 0))
	for _, s := range snaps {
		kept.Add(s)
	}
	if kept.All()[0] == snaps[0] {
		t.Fatal("the older Snapshots were not thinned")
	}
	in.History = kept
	got := Compute(in, opts(0.1))
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("report over the retained History (-whole +retained):\n%s", diff)
	}
	if got.Limiting == nil || got.Limiting.Trend == nil || got.Limiting.Trend.Points != 11 {
		t.Errorf("limiting queue %+v, want a trend over 11 points", got.Limiting)
	}
}

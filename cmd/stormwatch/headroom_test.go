package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/headroom"
)

// listenerSample is a Snapshot at t of a host with n listeners on
// 10.0.0.1:7000+i, backlog 128, the first holding queued connections.
func listenerSample(t time.Time, n int, queued uint32) *collector.Snapshot {
	b := collector.NewBuilder(collector.DefaultSchema(), t)
	b.Set("conntrack_entries", 1000).Set("conntrack_limit", 262144).Set("syncookies", 1).Set("tcp_max_syn_backlog", 4096)
	for _, src := range []string{"sysctl", "tcpstat", "conntrack", "conntrack_stats", "listeners"} {
		b.Source(collector.SourceResult{Name: src, Success: true})
	}
	b.EmptyTable(collector.KindListener)
	for i := range n {
		l := collector.Listener{Addr: netip.MustParseAddr("10.0.0.1"), Port: uint16(7000 + i), Sockets: 1, AcceptLimit: 128}
		if i == 0 {
			l.AcceptQueue = queued
		}
		b.Entity(collector.KindListener, l.Addr.String(), strconv.Itoa(int(l.Port))).
			Set("accept_queue", float64(l.AcceptQueue)).Set("accept_queue_limit", 128).Set("accept_queue_fill", l.Fill()).
			Set("syn_recv", 0).Set("syn_queue_limit", 128).Set("sockets", 1)
	}
	return b.Snapshot()
}

// headroomFixture is a daemon's History of samples every second up to
// now, and the handler serving it.
func headroomFixture(t testing.TB, samples, listeners int, queued uint32) (*headroomAPI, time.Time) {
	t.Helper()
	now := time.Now()
	h := collector.NewHistory(headroom.Retention(collector.DefaultSchema(), collector.Retention{Host: time.Minute}, 0))
	for i := samples - 1; i >= 0; i-- {
		h.Add(listenerSample(now.Add(-time.Duration(i)*time.Second), listeners, queued))
	}
	f := &daemonFlags{headroomMin: 0.3}
	f.collect.interval = time.Second
	return newHeadroomAPI(h, alerts.NewEngine(nil, alerts.Options{}), f), now
}

// serve sends one request to h and returns the status and body.
func serve(h http.Handler, method, target string, body io.Reader) (int, []byte, http.Header) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, body))
	return w.Code, w.Body.Bytes(), w.Header()
}

func TestHeadroomAPI(t *testing.T) {
	api, _ := headroomFixture(t, 5, 3, 109) // 10.0.0.1:7000 at 85%
	decode := func(b []byte) *headroom.Report {
		t.Helper()
		r, err := headroom.Parse(b)
		if err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return r
	}

	code, body, hdr := serve(api, "GET", "/api/v1/headroom", nil)
	r := decode(body)
	if code != 200 || hdr.Get("Content-Type") != "application/json" || r.OK || r.Limiting == nil || r.Limiting.Labels["port"] != "7000" {
		t.Errorf("GET: %d %s ok %v limiting %+v", code, hdr.Get("Content-Type"), r.OK, r.Limiting)
	}
	if r.Limiting.Trend == nil || r.Limiting.Trend.Points != 5 {
		t.Errorf("trend %+v, want one over the 5 samples", r.Limiting.Trend)
	}
	// ?fail=503 answers 503 when not ok (with the same JSON), 200 when ok.
	if code, body, _ := serve(api, "GET", "/api/v1/headroom?fail=503", nil); code != 503 || decode(body).OK {
		t.Errorf("?fail=503 not ok: %d", code)
	}
	if code, body, _ := serve(api, "GET", "/api/v1/headroom?fail=503&min=0.1", nil); code != 200 || !decode(body).OK {
		t.Errorf("?fail=503&min=0.1: %d %s", code, body)
	}
	if code, body, _ := serve(api, "GET", "/api/v1/headroom?port=7001,7002", nil); code != 200 || !decode(body).OK {
		t.Errorf("?port=7001,7002 (the full listener left out): %d %s", code, body)
	}
	// Flagger POSTs its payload; it is ignored.
	payload := `{"name":"valkey-proxy","namespace":"prod","phase":"Progressing","metadata":{}}`
	if code, _, _ := serve(api, "POST", "/api/v1/headroom?fail=503", strings.NewReader(payload)); code != 503 {
		t.Errorf("POST ?fail=503: %d", code)
	}
	if code, _, _ := serve(api, "POST", "/api/v1/headroom?fail=503&min=0.1", strings.NewReader(payload)); code != 200 {
		t.Errorf("POST ?fail=503&min=0.1: %d", code)
	}
	// Bad queries name the parameter.
	if code, body, _ := serve(api, "GET", "/api/v1/headroom?min=2", nil); code != 400 ||
		!strings.Contains(string(body), `min: "2" is not a headroom between 0 and 1`) {
		t.Errorf("?min=2: %d %s", code, body)
	}
	if code, body, _ := serve(api, "GET", "/api/v1/headroom?min=%zz", nil); code != 400 {
		t.Errorf("a malformed query: %d %s", code, body)
	}
	if code, _, hdr := serve(api, "DELETE", "/api/v1/headroom", nil); code != 405 || hdr.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("DELETE: %d, Allow %q", code, hdr.Get("Allow"))
	}

	// Before the first sample, and when sampling stalled: 200, not ok.
	empty := newHeadroomAPI(collector.NewHistory(collector.Retention{}), nil, &daemonFlags{headroomMin: 0.3})
	if code, body, _ := serve(empty, "GET", "/api/v1/headroom", nil); code != 200 || decode(body).OK || !decode(body).NoData {
		t.Errorf("no sample: %d %s", code, body)
	}
	old := collector.NewHistory(collector.Retention{})
	old.Add(listenerSample(time.Now().Add(-time.Minute), 1, 0))
	stale := newHeadroomAPI(old, nil, &daemonFlags{headroomMin: 0.3})
	if code, body, _ := serve(stale, "GET", "/api/v1/headroom?fail=503", nil); code != 503 || decode(body).OK {
		t.Errorf("a sample a minute old: %d %s", code, body)
	}
}

// TestHeadroomAlerts: a critical alert firing makes the host not ok; its
// labels narrow with the port filter.
func TestHeadroomAlerts(t *testing.T) {
	api, now := headroomFixture(t, 3, 2, 0)
	rules, err := alerts.Load([]byte(`rules:
  - name: Doomed
    scope: listener
    condition: port == 7001
    severity: critical
    summary: "listener {{ .port }} doomed"
`))
	if err != nil {
		t.Fatal(err)
	}
	api.engine = alerts.NewEngine(rules, alerts.Options{})
	if _, err := api.engine.Eval(now, api.history); err != nil {
		t.Fatal(err)
	}
	_, body, _ := serve(api, "GET", "/api/v1/headroom", nil)
	var r headroom.Report
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if r.OK || len(r.Alerts) != 1 || r.Alerts[0].Labels["port"] != "7001" || r.Reasons[0] != "critical alert Doomed firing: listener 7001 doomed" {
		t.Errorf("ok %v alerts %+v reasons %q", r.OK, r.Alerts, r.Reasons)
	}
	_, body, _ = serve(api, "GET", "/api/v1/headroom?port=7000", nil)
	r = headroom.Report{}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if !r.OK || len(r.Alerts) != 0 {
		t.Errorf("?port=7000: ok %v alerts %+v", r.OK, r.Alerts)
	}
}

// TestHeadroomGauge: the tick's figure is what /metrics exports.
func TestHeadroomGauge(t *testing.T) {
	api, now := headroomFixture(t, 2, 2, 64)
	g := &headroomGauge{api: api}
	var nilGauge *headroomGauge
	nilGauge.update(now) // a loop without the gauge
	g.update(now)
	r := g.latest.Load()
	if r == nil || r.Headroom == nil || *r.Headroom != 0.5 || r.Limiting.Entity != "10.0.0.1:7000" {
		t.Fatalf("report %+v", r)
	}
}

// fakeDaemon serves the headroom API of hosts whose accept queue the
// test sets, over real HTTP.
type fakeDaemon struct {
	queued atomic.Uint32
	srv    *httptest.Server
	asked  atomic.Int32
}

func newFakeDaemon(t *testing.T, queued uint32) *fakeDaemon {
	d := &fakeDaemon{}
	d.queued.Store(queued)
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.asked.Add(1)
		api, _ := headroomFixture(t, 2, 2, d.queued.Load())
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func TestHeadroomCommand(t *testing.T) {
	sw := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"headroom"}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	idle, full := newFakeDaemon(t, 0), newFakeDaemon(t, 120)

	code, out, _ := sw("--url", idle.srv.URL)
	if code != exitOK || !strings.Contains(out, idle.srv.URL+"/api/v1/headroom: OK, headroom 99% (minimum 30%)") {
		t.Errorf("idle: exit %d\n%s", code, out)
	}
	code, out, _ = sw("--url", idle.srv.URL, "--url", full.srv.URL)
	if code != exitNotOK || !strings.Contains(out, "NOT OK, headroom 6% (minimum 30%), limiting: accept queue 10.0.0.1:7000") ||
		!strings.Contains(out, "not ok: accept queue of 10.0.0.1:7000 at 94% (limit 128)") {
		t.Errorf("one full: exit %d\n%s", code, out)
	}
	// --min and --port go into the query.
	if code, out, _ := sw("--url", full.srv.URL, "--min", "0.05"); code != exitOK {
		t.Errorf("--min 0.05: exit %d\n%s", code, out)
	}
	if code, out, _ := sw("--url", full.srv.URL, "--port", "7001"); code != exitOK || !strings.Contains(out, "ports 7001") {
		t.Errorf("--port 7001: exit %d\n%s", code, out)
	}
	// JSON.
	code, out, _ = sw("--url", idle.srv.URL, "--url", full.srv.URL, "--format", "json")
	var js headroomOutput
	if err := json.Unmarshal([]byte(out), &js); err != nil || code != exitNotOK || js.OK || len(js.Hosts) != 2 ||
		!js.Hosts[0].Report.OK || js.Hosts[1].Report.OK || js.Hosts[1].Name != full.srv.URL+"/api/v1/headroom" {
		t.Errorf("json: exit %d %v\n%s", code, err, out)
	}
	// Unreachable, not waiting: could not run.
	gone := newFakeDaemon(t, 0)
	gone.srv.Close()
	code, out, _ = sw("--url", idle.srv.URL, "--url", gone.srv.URL)
	if code != exitUnknown || !strings.Contains(out, "could not ask") {
		t.Errorf("unreachable: exit %d\n%s", code, out)
	}
	// A 503 is an error, not a "not ok".
	code, out, _ = sw("--url", full.srv.URL+"/api/v1/headroom?fail=503")
	if code != exitUnknown || !strings.Contains(out, "503 Service Unavailable") {
		t.Errorf("?fail=503: exit %d\n%s", code, out)
	}
}

func TestHeadroomWait(t *testing.T) {
	sw := func(args ...string) (int, string, string, time.Duration) {
		var stdout, stderr bytes.Buffer
		start := time.Now()
		code := run(append([]string{"headroom", "--wait", "--interval", "100ms"}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String(), time.Since(start)
	}
	full := newFakeDaemon(t, 120)
	idle := newFakeDaemon(t, 0)

	// The queue drains after a few polls: exit 0 then.
	go func() {
		for full.asked.Load() < 4 {
			time.Sleep(20 * time.Millisecond)
		}
		full.queued.Store(0)
	}()
	code, out, errOut, _ := sw("--timeout", "30s", "--url", full.srv.URL, "--url", idle.srv.URL)
	if code != exitOK || full.asked.Load() < 4 {
		t.Errorf("drained: exit %d after %d polls\n%s\n%s", code, full.asked.Load(), out, errOut)
	}
	if !strings.Contains(errOut, "waiting: "+full.srv.URL+"/api/v1/headroom: accept queue of 10.0.0.1:7000 at 94% (limit 128)") ||
		strings.Count(errOut, "waiting:") != 1 {
		t.Errorf("the wait is said once, with the reason:\n%s", errOut)
	}

	// Never drains: exit 1 at the timeout, not before.
	full.queued.Store(120)
	code, out, errOut, took := sw("--timeout", "1s", "--url", full.srv.URL)
	if code != exitNotOK || took < 900*time.Millisecond || took > 10*time.Second || !strings.Contains(errOut, "timed out after 1s") {
		t.Errorf("timeout: exit %d after %s\n%s\n%s", code, took, out, errOut)
	}
	// Unreachable while waiting: not ok until the timeout.
	gone := newFakeDaemon(t, 0)
	gone.srv.Close()
	if code, out, errOut, _ := sw("--timeout", "500ms", "--url", gone.srv.URL); code != exitNotOK || !strings.Contains(errOut, "could not ask") {
		t.Errorf("unreachable while waiting: exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestHeadroomFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"headroom", "--min=2"}, `--min: "2" is not a number from 0 to 1 (e.g. 0.3)`},
		{[]string{"headroom", "--min", "-0.1"}, `--min: "-0.1" is not a number from 0 to 1 (e.g. 0.3)`},
		{[]string{"headroom", "--url=10.0.0.7:9955"}, `--url: "10.0.0.7:9955" is not a stormwatch daemon's URL (http:// or https:// and a host) (e.g. http://10.0.0.7:9955)`},
		{[]string{"headroom", "--interval=10ms"}, `--interval: "10ms" is not a duration ≥ 100ms (e.g. 2s)`},
		{[]string{"headroom", "--timeout=0"}, `--timeout: "0" is not a duration > 0 (e.g. 10m)`},
		{[]string{"headroom", "--format=yaml"}, `--format: "yaml" is not a format (text or json)`},
		{[]string{"headroom", "--port=0"}, `--port: "0" is not a port (1-65535)`},
		{[]string{"headroom", "--url=http://a:9955", "--config=x.yml"}, `--config: reads this host's rules; it does not apply with --url (each daemon judges with its own)`},
		{[]string{"headroom", "--url=http://a:9955", "--path.root=/tmp"}, `--path.root: reads this host's kernel; it does not apply with --url`},
		{[]string{"run", "--headroom.min=1.5"}, `--headroom.min: "1.5" is not a number from 0 to 1 (e.g. 0.3)`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != exitUnknown {
				t.Errorf("exit %d, want %d", code, exitUnknown)
			}
			if diff := cmp.Diff("stormwatch: "+tt.want+"\n", stderr.String()); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
		})
	}

	c := newCLI(&bytes.Buffer{}, &bytes.Buffer{})
	if _, err := c.parse([]string{"headroom", "--url", "http://a:9955", "--url=https://b/x", "--min", "0", "--port", "6379",
		"--wait", "--timeout", "1m", "--interval=500ms", "--format=json"}); err != nil {
		t.Fatal(err)
	}
	want := headroomFlags{urls: []string{"http://a:9955", "https://b/x"}, min: 0, ports: []uint16{6379}, wait: true,
		timeout: time.Minute, interval: 500 * time.Millisecond, format: "json", root: "/"}
	if diff := cmp.Diff(want, *c.headroom, cmp.AllowUnexported(headroomFlags{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	c = newCLI(&bytes.Buffer{}, &bytes.Buffer{})
	if _, err := c.parse([]string{"run"}); err != nil {
		t.Fatal(err)
	}
	if c.daemon.headroomMin != 0.3 || c.headroom.min != -1 {
		t.Errorf("defaults: --headroom.min %v, headroom --min %v", c.daemon.headroomMin, c.headroom.min)
	}
}

// BenchmarkHeadroomAPI is GET /api/v1/headroom on a host with 10 or 500
// listeners and 17 seconds of samples (the listeners' retention of the
// built-in rules): with the default query (the 10 tightest queues, each
// with its trend) and with ?top=0 (every queue).
func BenchmarkHeadroomAPI(b *testing.B) {
	for _, bc := range []struct {
		listeners int
		query     string
	}{{10, ""}, {500, ""}, {500, "?top=0"}} {
		b.Run(fmt.Sprintf("listeners=%d%s", bc.listeners, bc.query), func(b *testing.B) {
			api, _ := headroomFixture(b, 17, bc.listeners, 100)
			api.defaults.StaleAfter = time.Hour
			req := httptest.NewRequest("GET", "/api/v1/headroom"+bc.query, nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				api.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}

// BenchmarkHeadroomGauge is the work each sampling tick adds for the
// headroom metric, at 500 listeners.
func BenchmarkHeadroomGauge(b *testing.B) {
	api, now := headroomFixture(b, 17, 500, 100)
	g := &headroomGauge{api: api}
	b.ReportAllocs()
	for b.Loop() {
		g.update(now)
	}
}

// TestBinaryWithoutTestDeps: k8s.io/client-go checks the shipped Argo
// gate in tests only; it must not end up in the binary.
func TestBinaryWithoutTestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/stormwatch/stormwatch/cmd/stormwatch").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "k8s.io/") {
			t.Errorf("the binary links %s", pkg)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/drain"
)

// TestDrainFlagErrors: each bad flag exits 3 with a message naming the
// flag and what it accepts, before anything is listed.
func TestDrainFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"drain"}, "required flag(s) '--port' not provided"},
		{[]string{"drain", "--port", "0"}, `--port: "0" is not a port (1-65535)`},
		{[]string{"drain", "--port", "70000"}, `--port: "70000" is not a port (1-65535)`},
		{[]string{"drain", "--port", "6379", "--addr", "localhost"}, `--addr "localhost": want an IP address`},
		{[]string{"drain", "--port", "6379", "--batch", "0"}, `--batch: bad batch size "0": want a count above 0 (e.g. 100) or a share of what is left (e.g. 10%)`},
		{[]string{"drain", "--port", "6379", "--batch", "150%"}, `--batch: bad batch size "150%": want a share above 0% and at most 100%`},
		{[]string{"drain", "--port", "6379", "--every", "0s"}, `--every: "0s" is not a duration > 0 (e.g. 1s)`},
		{[]string{"drain", "--port", "6379", "--every", "xyz"}, `--every: "xyz" is not a duration > 0 (e.g. 1s)`},
		{[]string{"drain", "--port", "6379", "--duration", "abc"}, `--duration: "abc" is not a duration ≥ 0 (e.g. 30s)`},
		{[]string{"drain", "--port", "6379", "--duration", "20s", "--batch", "10"}, "--batch and --duration exclude each other"},
		{[]string{"drain", "--port", "6379", "--duration", "500ms"}, "--duration 500ms is shorter than --every 1s"},
		{[]string{"drain", "--port", "6379", "--max=-1"}, `--max: "-1" is not a whole number ≥ 0 (e.g. 1000)`},
		{[]string{"drain", "--port", "6379", "--order", "newest"}, `--order "newest": accepted: oldest, random`},
		{[]string{"drain", "--port", "6379", "--method", "kill"}, `--method "kill": accepted: destroy, valkey`},
		{[]string{"drain", "--port", "6379", "--valkey", "127.0.0.1:6379"}, "--valkey applies to --method valkey only (--method is destroy)"},
		{[]string{"drain", "--port", "6379", "--valkey-password-file", "/etc/pw"}, "--valkey-password-file applies to --method valkey only"},
		{[]string{"drain", "--port", "6379", "--method", "valkey", "--valkey", "localhost"}, `--method valkey: --valkey: invalid valkey target config: address "localhost" is not host:port`},
		{[]string{"drain", "--port", "6379", "--method", "valkey", "--config", "/nonexistent/stormwatch.yml"}, "--method valkey: --config: "},
		{[]string{"drain", "--port", "6379", "--pace-by", "local", "--config", "/nonexistent/stormwatch.yml"}, "--pace-by local: --config: "},
		{[]string{"drain", "--port", "6379", "--format", "yaml"}, `--format "yaml": accepted: auto, text, json`},
		{[]string{"drain", "--port", "6379", "--min-headroom", "1.5"}, `--min-headroom: "1.5" is not a number from 0 to 1 (e.g. 0.3)`},
		{[]string{"drain", "--port", "6379", "--timeout", "0s"}, `--timeout: "0s" is not a duration > 0 (e.g. 5m)`},
		{[]string{"drain", "--port", "6379", "--pace-by", "10.0.0.7:9955"}, `--pace-by "10.0.0.7:9955": want an http:// or https:// URL`},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tt.args, &stdout, &stderr)
		if code != exitUnknown || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 3 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}

// TestDrainOpens: --method valkey and --pace-by local open what they need
// through localHeadroom and newValkeyMethod, once per --pace-by local, and
// what they open is released at the end and when a later flag is refused.
func TestDrainOpens(t *testing.T) {
	defer func(l func(*drainFlags) (drain.Receiver, func() error, error), v func(*drainFlags) (drain.Method, error)) {
		localHeadroom, newValkeyMethod = l, v
	}(localHeadroom, newValkeyMethod)
	flags := func() *drainFlags {
		return &drainFlags{port: "6379", method: "valkey", batch: "100", every: time.Second, order: "oldest", format: "json", minHeadroom: 0.3,
			timeout: time.Minute, paceBy: []string{"local", "local"}}
	}

	opened, closed := 0, 0
	localHeadroom = func(*drainFlags) (drain.Receiver, func() error, error) {
		opened++
		return drain.ReceiverFunc("local", func(context.Context) (drain.Headroom, error) { return drain.Headroom{OK: true, Headroom: 1}, nil }),
			func() error { closed++; return nil }, nil
	}
	var got *drainFlags
	newValkeyMethod = func(f *drainFlags) (drain.Method, error) {
		got = f
		return nil, errors.New("no server at 127.0.0.1:6379")
	}
	f := flags()
	if _, err := f.setup(&bytes.Buffer{}); err == nil || err.Error() != "--method valkey: no server at 127.0.0.1:6379" || got != f {
		t.Errorf("valkey hook: %v", err)
	}
	f.method = "destroy"
	s, err := f.setup(&bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.pacer.Receivers) != 1 || s.pacer.Receivers[0].Name() != "local" || opened != 1 {
		t.Errorf("receivers %v, opened %d times; want local, once", s.pacer.Receivers, opened)
	}
	s.close()
	if closed != 1 {
		t.Errorf("closed %d times, want 1", closed)
	}
	f.paceBy = []string{"local", "10.0.0.7:9955"} // the second is refused
	if _, err := f.setup(&bytes.Buffer{}); err == nil || closed != 2 {
		t.Errorf("a refused --pace-by after local: %v, local closed %d times; want an error and 2", err, closed)
	}
}

func sampleEvents() []drain.Event {
	ls := []drain.Listener{{Addr: netip.MustParseAddr("0.0.0.0"), Port: 6379, Sockets: 1}}
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	return []drain.Event{
		{Kind: drain.EventStart, Time: t0, Listeners: ls, Progress: drain.Progress{Total: 300, Left: 300, Remaining: 2 * time.Second}},
		{Kind: drain.EventBatch, Time: t0, Elapsed: 10 * time.Millisecond, Batch: 1, Planned: 100, Size: 100, Closed: 100, Took: 5 * time.Millisecond,
			Progress: drain.Progress{Total: 300, Closed: 100, Left: 200, Batches: 1, Rate: 100, Remaining: 2 * time.Second}},
		{Kind: drain.EventWait, Time: t0.Add(time.Second), Elapsed: time.Second, Batch: 2, Reason: "receiver 10.0.0.7:9955: accept queue 82%",
			Progress: drain.Progress{Total: 300, Closed: 100, Left: 200, Batches: 1, Rate: 100, Remaining: 2 * time.Second}},
		{Kind: drain.EventBatch, Time: t0.Add(3 * time.Second), Elapsed: 3 * time.Second, Batch: 2, Planned: 100, Size: 50, Closed: 48, Gone: 2,
			Note: "batch halved: the receivers were not ready", Took: 3 * time.Millisecond,
			Progress: drain.Progress{Total: 300, Closed: 148, Gone: 2, Left: 150, Batches: 2, Rate: 49.3, Waited: 2 * time.Second, Remaining: 2 * time.Second}},
	}
}

func newOutput(format string, w *bytes.Buffer) *drainOutput {
	f := &drainFlags{batch: "100", every: time.Second, timeout: 5 * time.Minute, max: 0}
	return &drainOutput{w: w, format: format, width: 100, f: f, setup: &drainSetup{method: &drain.Destroy{}}}
}

func TestDrainOutputJSON(t *testing.T) {
	var buf bytes.Buffer
	o := newOutput("json", &buf)
	for _, ev := range sampleEvents() {
		o.event(ev)
	}
	o.summary(drain.Summary{End: drain.EndStopped, Listeners: sampleEvents()[0].Listeners, Elapsed: 3 * time.Second,
		Progress: drain.Progress{Total: 300, Closed: 148, Gone: 2, Left: 150, Batches: 2}}, exitStoppedEarly)
	var kinds []string
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if m["schema"] != float64(1) {
			t.Errorf("line without schema 1: %q", l)
		}
		kinds = append(kinds, m["event"].(string))
		lines = append(lines, m)
	}
	if diff := cmp.Diff([]string{"start", "batch", "wait", "batch", "done"}, kinds); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	b := lines[3]
	for k, want := range map[string]any{"batch": 2.0, "planned": 100.0, "size": 50.0, "closed": 48.0, "gone": 2.0, "closed_total": 148.0,
		"left": 150.0, "total": 300.0, "note": "batch halved: the receivers were not ready", "waited_seconds": 2.0, "took_seconds": 0.003} {
		if b[k] != want {
			t.Errorf("batch line %s = %v, want %v", k, b[k], want)
		}
	}
	if lines[2]["reason"] != "receiver 10.0.0.7:9955: accept queue 82%" {
		t.Errorf("wait line %v", lines[2])
	}
	if d := lines[4]; d["end"] != "stopped" || d["exit_code"] != 1.0 || d["left"] != 150.0 {
		t.Errorf("done line %v", d)
	}
}

func TestDrainOutputText(t *testing.T) {
	var buf bytes.Buffer
	o := newOutput("text", &buf)
	for _, ev := range sampleEvents() {
		o.event(ev)
	}
	o.summary(drain.Summary{End: drain.EndDrained, Listeners: sampleEvents()[0].Listeners, Elapsed: 5 * time.Second,
		Progress: drain.Progress{Total: 300, Closed: 290, Gone: 10, Batches: 4, Rate: 58, New: 3, Unaccepted: 2, Waited: 2 * time.Second}}, exitOK)
	want := `draining 0.0.0.0:6379: 300 connections (--method destroy)
+0s      batch 1: closed 100  100/300 33%  100/s  2s left
+1s      waiting before batch 2: receiver 10.0.0.7:9955: accept queue 82%
+3s      batch 2: closed 48 (gone 2, skipped 0, unknown 0, failed 0)  148/300 50%  49/s  2s left  (batch halved: the receivers were not ready)
drained 0.0.0.0:6379: closed 290 connections in 5s (4 batches, 58/s); 10 closed by themselves, 3 arrived during the drain, 2 not yet accepted by the server, left alone, waited 2s for the receivers
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}

	for end, want := range map[drain.Ending]string{
		drain.EndMax:           "stopped at --max 0: closed 148 of 300 connections of 0.0.0.0:6379 in 3s; 150 left untouched",
		drain.EndStopped:       "stopped by a signal after 2 batches: closed 148 of 300 connections of 0.0.0.0:6379; 150 left untouched",
		drain.EndPacingTimeout: "refused by pacing beyond --timeout 5m0s: closed 148 of 300 connections of 0.0.0.0:6379; 150 left untouched (boom)",
		drain.EndFailed:        "failed after closing 148 of 300 connections of 0.0.0.0:6379: boom; 150 left untouched",
	} {
		buf.Reset()
		o.summary(drain.Summary{End: end, Err: errors.New("boom"), Listeners: sampleEvents()[0].Listeners, Elapsed: 3 * time.Second,
			Progress: drain.Progress{Total: 300, Closed: 148, Left: 150, Batches: 2}}, exitStoppedEarly)
		if got := strings.TrimSpace(buf.String()); got != want {
			t.Errorf("%s:\n got %q\nwant %q", end, got, want)
		}
	}
}

func TestDrainOutputBar(t *testing.T) {
	var buf bytes.Buffer
	o := newOutput("bar", &buf)
	evs := sampleEvents()
	o.event(evs[0])
	o.event(evs[1])
	o.event(evs[2])
	frames := strings.Split(buf.String(), "\r\x1b[K")
	last := frames[len(frames)-1]
	want := "[########----------------] 100/300 33%  100/s  2s left  waiting: receiver 10.0.0.7:9955: accept queue 82%"
	if last != want[:min(len(want), 99)] {
		t.Errorf("bar\n got %q\nwant %q", last, want)
	}
	if strings.Contains(buf.String(), "\n") {
		t.Error("the bar printed a newline before the end")
	}
	o.finish()
	if !strings.HasSuffix(buf.String(), "\n") {
		t.Error("finish did not end the line")
	}
}

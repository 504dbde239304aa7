//go:build linux

package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/stormlab"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

// drainRun is one run of `stormwatch drain`.
type drainRun struct {
	stdout, stderr string
	code           int
	took           time.Duration
	lines          []map[string]any // JSON lines of stdout
}

// done is the run's closing JSON line.
func (r drainRun) done() map[string]any {
	for i := len(r.lines) - 1; i >= 0; i-- {
		if r.lines[i]["event"] == "done" {
			return r.lines[i]
		}
	}
	return nil
}

// events returns the JSON lines of one event kind.
func (r drainRun) events(kind string) []map[string]any {
	var out []map[string]any
	for _, l := range r.lines {
		if l["event"] == kind {
			out = append(out, l)
		}
	}
	return out
}

// drainCommand returns `stormwatch drain args...` run inside the lab's
// namespace, behind the prefix command (setpriv ...) when given.
func drainCommand(t *testing.T, lab *stormlab.Lab, prefix []string, args ...string) *exec.Cmd {
	argv := append(append(append([]string{}, prefix...), testbin.Stormwatch(t), "drain"), args...)
	return lab.NS.Command(context.Background(), argv[0], argv[1:]...)
}

// finish waits for cmd and collects what it printed.
func finish(t *testing.T, cmd *exec.Cmd, stdout, stderr *bytes.Buffer, start time.Time) drainRun {
	t.Helper()
	err := cmd.Wait()
	r := drainRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			r.lines = append(r.lines, m)
		}
	}
	t.Logf("stormwatch drain exited %d after %v; stderr: %s", r.code, r.took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
	return r
}

// runDrain runs `stormwatch drain args...` to its end.
func runDrain(t *testing.T, lab *stormlab.Lab, prefix []string, args ...string) drainRun {
	t.Helper()
	cmd := drainCommand(t, lab, prefix, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return finish(t, cmd, &stdout, &stderr, start)
}

func num(m map[string]any, key string) float64 {
	v, _ := m[key].(float64)
	return v
}

// newFunnel sets up the Funnel scenario with its clients in a stormlab
// worker built without the race detector: the clients are the load, not
// the code under test, and must reconnect as fast as real ones.
func newFunnel(t *testing.T, clients int) (*stormlab.Lab, *stormlab.Funnel) {
	t.Helper()
	return newFunnelWith(t, stormlab.Funnel{Clients: clients})
}

// newFunnelWith sets up the Funnel scenario s (its Lab made here).
func newFunnelWith(t *testing.T, s stormlab.Funnel) (*stormlab.Lab, *stormlab.Funnel) {
	t.Helper()
	testbin.RequireTools(t, "ss", "nft", "redis-server")
	testbin.Stormwatch(t) // built now, not while a move is timed
	ns := netnstest.New(t)
	lab, err := stormlab.New(ns, stormlab.Options{Logf: t.Logf, WorkerExe: testbin.Stormlab(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	s.Lab = lab
	if err := s.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return lab, &s
}

func established(t *testing.T, s *stormlab.Funnel, port int) int {
	t.Helper()
	n, err := s.Established(context.Background(), port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFunnelKillStorm: 2,000 clients on the old server reconnect at once
// to the new one when the old one is killed; its accept queue (128)
// overflows.
func TestFunnelKillStorm(t *testing.T) {
	lab, s := newFunnel(t, 2000)
	before := counters(t, lab)
	res, err := s.Move(context.Background(), s.KillOld, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	after := counters(t, lab)
	t.Logf("no drain: peak accept queue %d/%d, %v overflows (kernel: %v), peak %.0f conns/s, all back after %v, %d attempts",
		res.PeakQueue, res.Limit, res.Overflows, after.ListenOverflows-before.ListenOverflows, res.PeakRate, res.AllBack.Round(time.Millisecond), res.Attempts)
	if after.ListenOverflows <= before.ListenOverflows {
		t.Errorf("ListenOverflows did not move (%v): 2,000 clients reconnecting at once did not overflow a 128 queue", after.ListenOverflows)
	}
	if n := established(t, s, stormlab.NewRedisPort); n != 2000 {
		t.Errorf("%d clients on the new server, want 2000", n)
	}
}

// TestFunnelDrain: `drain --batch 100 --every 1s` moves the 2,000 clients
// to the new server in about 20 s without an overflow, with either method.
func TestFunnelDrain(t *testing.T) {
	for _, method := range []string{"destroy", "valkey"} {
		t.Run(method, func(t *testing.T) {
			lab, s := newFunnel(t, 2000)
			before := counters(t, lab)
			var run drainRun
			res, err := s.Move(context.Background(), func(context.Context) error {
				run = runDrain(t, lab, nil, "--port", fmt.Sprint(stormlab.OldRedisPort), "--batch", "100", "--every", "1s", "--method", method)
				return nil
			}, 2*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			after := counters(t, lab)
			t.Logf("funnel (--method %s): peak accept queue %d/%d, %v overflows, peak %.0f conns/s, all back after %v, drain took %v",
				method, res.PeakQueue, res.Limit, after.ListenOverflows-before.ListenOverflows, res.PeakRate, res.AllBack.Round(time.Millisecond), run.took.Round(time.Millisecond))
			if run.code != 0 {
				t.Fatalf("exit %d, want 0 (drained)\n%s", run.code, run.stdout)
			}
			done := run.done()
			if done == nil || done["end"] != "drained" || num(done, "closed_total") != 2000 || num(done, "batches") != 20 {
				t.Errorf("summary line %v, want drained, 2000 closed in 20 batches", done)
			}
			if method == "valkey" && (num(done, "skipped_total") != 1 || num(done, "new") != 0) {
				t.Errorf("summary line %v: want its own connection skipped, nothing new", done)
			}
			batches := run.events("batch")
			if len(batches) != 20 {
				t.Errorf("%d batch lines, want 20", len(batches))
			}
			for _, b := range batches {
				if num(b, "closed") != 100 {
					t.Errorf("batch %v closed %v, want 100", b["batch"], b["closed"])
				}
			}
			if after.ListenOverflows != before.ListenOverflows {
				t.Errorf("ListenOverflows moved from %v to %v during the drain", before.ListenOverflows, after.ListenOverflows)
			}
			if res.PeakQueue > 100 {
				t.Errorf("the new server's accept queue peaked at %d, above a batch of 100", res.PeakQueue)
			}
			// 20 batches a second apart: the last one starts at 19 s.
			for what, d := range map[string]time.Duration{"the drain": run.took, "the clients' move": res.AllBack} {
				if d < 17*time.Second || d > 23*time.Second {
					t.Errorf("%s took %v, want 20s ± 15%%", what, d)
				}
			}
			if n := established(t, s, stormlab.NewRedisPort); n != 2000 {
				t.Errorf("%d clients on the new server, want 2000", n)
			}
			if n := established(t, s, stormlab.OldRedisPort); n != 0 {
				t.Errorf("%d clients left on the old server", n)
			}
		})
	}
}

// TestFunnelClosedLoop: `drain --pace-by` a stormwatch daemon watching the
// new server, which stops (SIGSTOP) for 3 s mid-drain: the batch that
// reached it while stopped fills its accept queue past what the daemon
// calls ok, so the drain waits — its wait line names the receiver and the
// queue —, resumes with a halved batch once the server runs again, and
// nothing overflows. The clients wait 5 s for a connect and its PING (as
// go-redis does by default): with a 1 s timeout and no backoff, each
// stopped client would queue a new connection every second on its own,
// which no pacing of the drain can prevent (cmd/stormlab funnel measures
// both).
func TestFunnelClosedLoop(t *testing.T) {
	lab, s := newFunnelWith(t, stormlab.Funnel{Clients: 2000, DialTimeout: 5 * time.Second})
	// Without its own connection to each server, so that the servers'
	// clients are the pool's.
	conf := filepath.Join(t.TempDir(), "stormwatch.yml")
	if err := os.WriteFile(conf, []byte("valkey:\n  discover: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, lab, "--config="+conf)
	receiver := "http://" + d.Addr + "/api/v1/headroom?port=" + fmt.Sprint(stormlab.NewRedisPort)
	before := counters(t, lab)
	var run drainRun
	res, err := s.Move(context.Background(), func(ctx context.Context) error {
		cmd := drainCommand(t, lab, nil, "--port", fmt.Sprint(stormlab.OldRedisPort), "--batch", "100", "--every", "1s",
			"--method", "valkey", "--pace-by", receiver, "--format", "json")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		// Mid-drain: the batches go at about 0, 1, 2, ... s.
		time.Sleep(5500 * time.Millisecond)
		if err := s.StallNew(ctx, 3*time.Second); err != nil {
			return err
		}
		run = finish(t, cmd, &stdout, &stderr, start)
		return nil
	}, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	after := counters(t, lab)
	done := run.done()
	t.Logf("closed loop: peak accept queue %d/%d, %v overflows, peak %.0f conns/s, all back after %v, drain took %v, waited %vs",
		res.PeakQueue, res.Limit, after.ListenOverflows-before.ListenOverflows, res.PeakRate, res.AllBack.Round(time.Millisecond),
		run.took.Round(time.Millisecond), done["waited_seconds"])
	if run.code != 0 {
		t.Fatalf("exit %d, want 0 (drained)\n%s", run.code, run.stdout)
	}
	if done["end"] != "drained" || num(done, "closed_total") != 2000 {
		t.Errorf("summary line %v, want drained, 2000 closed", done)
	}
	waits := run.events("wait")
	if len(waits) == 0 {
		t.Fatalf("the drain never waited for the stopped server:\n%s", run.stdout)
	}
	for _, w := range waits {
		t.Logf("wait before batch %v at +%vs: %v", w["batch"], w["elapsed_seconds"], w["reason"])
	}
	reason, _ := waits[0]["reason"].(string)
	if !strings.HasPrefix(reason, "receiver "+d.Addr+": ") || !strings.Contains(reason, fmt.Sprintf("accept queue of 127.0.0.1:%d", stormlab.NewRedisPort)) {
		t.Errorf("wait reason %q: want the receiver %s and the new server's accept queue", reason, d.Addr)
	}
	if w := num(done, "waited_seconds"); w < 1 {
		t.Errorf("waited %vs in all, want at least a second of the 3 s stop", w)
	}
	halved := false
	for _, b := range run.events("batch") {
		if note, _ := b["note"].(string); strings.HasPrefix(note, "batch halved") && num(b, "batch") >= num(waits[0], "batch") {
			halved = true
		}
	}
	if !halved {
		t.Error("no batch after the wait was halved")
	}
	if after.ListenOverflows != before.ListenOverflows {
		t.Errorf("ListenOverflows moved from %v to %v during the drain", before.ListenOverflows, after.ListenOverflows)
	}
	if res.PeakQueue > 128 {
		t.Errorf("the new server's accept queue peaked at %d, past its limit", res.PeakQueue)
	}
	if n := established(t, s, stormlab.NewRedisPort); n != 2000 {
		t.Errorf("%d clients on the new server, want 2000", n)
	}
}

// headroomEndpoint serves a /api/v1/headroom inside the lab's namespace,
// answering not OK for the first notOK questions (forever when negative)
// and OK afterwards.
func headroomEndpoint(t *testing.T, lab *stormlab.Lab, notOK int) (string, *atomic.Int64) {
	t.Helper()
	var ln net.Listener
	if err := lab.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := asked.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if notOK < 0 || n <= int64(notOK) {
			fmt.Fprint(w, `{"ok":false,"headroom":0.1,"limiting":"accept queue","reasons":["accept queue of 127.0.0.1:6380 at 90%"]}`)
			return
		}
		fmt.Fprint(w, `{"ok":true,"headroom":0.95}`)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, &asked
}

// TestDrainCommand checks the command's refusals and stops on a small
// pool: --dry-run closes nothing, with either method; without
// CAP_NET_ADMIN, for an unknown port and for a Valkey server not behind
// the port it exits 3 saying why; --pace-by local reads this namespace's
// own queues and waits while the new server is stopped; pacing beyond
// --timeout and SIGTERM exit 1 and leave the rest; pacing that clears
// resumes the drain.
func TestDrainCommand(t *testing.T) {
	testbin.RequireTools(t, "setpriv")
	const clients = 200
	lab, s := newFunnel(t, clients)
	port := fmt.Sprint(stormlab.OldRedisPort)
	left := func() int { return established(t, s, stormlab.OldRedisPort) }

	t.Run("dry run", func(t *testing.T) {
		r := runDrain(t, lab, nil, "--port", port, "--batch", "30", "--dry-run", "--format", "json")
		if r.code != 0 {
			t.Fatalf("exit %d", r.code)
		}
		conns := r.events("conn")
		if len(conns) != clients || num(conns[len(conns)-1], "batch") != 7 {
			t.Errorf("%d connections listed, the last in batch %v; want %d in 7 batches", len(conns), conns[len(conns)-1]["batch"], clients)
		}
		if n := left(); n != clients {
			t.Errorf("%d connections left after a dry run, want %d", n, clients)
		}
		text := runDrain(t, lab, nil, "--port", port, "--batch", "30", "--dry-run", "--format", "text")
		if !strings.Contains(text.stdout, fmt.Sprintf("dry run: would close %d of %d connections of 127.0.0.1:6379 in 7 batches over 6s", clients, clients)) {
			t.Errorf("dry run text:\n%s", text.stdout)
		}
	})

	t.Run("valkey dry run", func(t *testing.T) {
		r := runDrain(t, lab, nil, "--port", port, "--method", "valkey", "--batch", "30", "--dry-run", "--format", "json")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stdout)
		}
		plan := r.events("plan")
		if len(plan) != 1 || plan[0]["server"] != "127.0.0.1:6379" || num(plan[0], "to_close") != clients || num(plan[0], "batches") != 7 {
			t.Errorf("plan line %v: want server 127.0.0.1:6379, %d to close in 7 batches", plan, clients)
		}
		if n := len(r.events("conn")); n != clients {
			t.Errorf("%d connections listed, want %d", n, clients)
		}
		if n := left(); n != clients {
			t.Errorf("%d connections left after a dry run, want %d", n, clients)
		}
	})

	t.Run("valkey server not behind the port", func(t *testing.T) {
		newServer := fmt.Sprintf("127.0.0.1:%d", stormlab.NewRedisPort)
		r := runDrain(t, lab, nil, "--port", port, "--method", "valkey", "--valkey", newServer)
		if r.code != 3 || !strings.Contains(r.stderr, "not the server behind the drained listener") {
			t.Errorf("exit %d, stderr %q; want 3 and \"not the server behind the drained listener\"", r.code, r.stderr)
		}
		if n := left(); n != clients {
			t.Errorf("%d connections left, want %d", n, clients)
		}
	})

	t.Run("without CAP_NET_ADMIN", func(t *testing.T) {
		for name, prefix := range map[string][]string{
			"root without the capability": {"setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"},
			"nobody":                      {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"},
		} {
			r := runDrain(t, lab, prefix, "--port", port, "--batch", "50")
			if r.code != 3 || !strings.Contains(r.stderr, "CAP_NET_ADMIN") {
				t.Errorf("%s: exit %d, stderr %q; want 3 naming CAP_NET_ADMIN", name, r.code, r.stderr)
			}
		}
		if n := left(); n != clients {
			t.Errorf("%d connections left, want %d", n, clients)
		}
	})

	t.Run("unknown port", func(t *testing.T) {
		r := runDrain(t, lab, nil, "--port", "6390")
		if r.code != 3 || !strings.Contains(r.stderr, "no listener on port 6390") {
			t.Errorf("exit %d, stderr %q; want 3 and \"no listener on port 6390\"", r.code, r.stderr)
		}
	})

	// Each subtest from here on closes some and leaves the rest.
	remain := clients
	t.Run("pacing by local", func(t *testing.T) {
		dry := runDrain(t, lab, nil, "--port", port, "--dry-run", "--pace-by", "local", "--format", "json")
		recv := dry.events("receiver")
		if len(recv) != 1 || recv[0]["receiver"] != "local" || recv[0]["ready"] != true || num(recv[0], "headroom") < 0.5 {
			t.Errorf("receiver lines %v: want local, ready, with headroom", recv)
		}
		// The new server stopped: the first batch (20 clients) lands in
		// its accept queue, past what --min-headroom 0.9 allows, and the
		// next waits until --timeout.
		if err := s.New.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		r := runDrain(t, lab, nil, "--port", port, "--batch", "20", "--every", "200ms", "--pace-by", "local", "--min-headroom", "0.9",
			"--timeout", "3s", "--format", "json")
		if err := s.New.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\n%s", r.code, r.stdout)
		}
		waits := r.events("wait")
		want := fmt.Sprintf("receiver local: accept queue of 127.0.0.1:%d at", stormlab.NewRedisPort)
		if len(waits) == 0 || !strings.HasPrefix(fmt.Sprint(waits[len(waits)-1]["reason"]), want) {
			t.Errorf("wait lines %v, want one saying %q", waits, want)
		}
		d := r.done()
		if d["end"] != "pacing_timeout" || num(d, "closed_total") != 20 {
			t.Errorf("summary %v: want pacing_timeout after one batch of 20", d)
		}
		remain -= int(num(d, "closed_total"))
		if n := left(); n != remain {
			t.Errorf("%d connections left, want %d", n, remain)
		}
	})

	t.Run("refused by pacing beyond --timeout", func(t *testing.T) {
		url, asked := headroomEndpoint(t, lab, -1)
		r := runDrain(t, lab, nil, "--port", port, "--batch", "50", "--every", "200ms", "--pace-by", url, "--timeout", "2s", "--format", "json")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\n%s", r.code, r.stdout)
		}
		host := strings.TrimPrefix(url, "http://")
		waits := r.events("wait")
		if len(waits) == 0 || waits[0]["reason"] != "receiver "+host+": accept queue of 127.0.0.1:6380 at 90%" {
			t.Errorf("wait lines %v, want the receiver's reason", waits)
		}
		if d := r.done(); d == nil || d["end"] != "pacing_timeout" || num(d, "closed_total") != 0 {
			t.Errorf("summary %v", d)
		}
		if asked.Load() < 2 {
			t.Errorf("the receiver was asked %d times", asked.Load())
		}
		if n := left(); n != remain {
			t.Errorf("%d connections left, want all %d", n, remain)
		}
	})

	closed := 0
	t.Run("SIGTERM stops after the batch", func(t *testing.T) {
		cmd := drainCommand(t, lab, nil, "--port", port, "--batch", "20", "--every", "500ms", "--format", "json")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1200 * time.Millisecond) // three batches: at 0, 0.5 and 1 s
		cmd.Process.Signal(syscall.SIGTERM)
		r := finish(t, cmd, &stdout, &stderr, start)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1 (stopped early)", r.code)
		}
		d := r.done()
		closed = int(num(d, "closed_total"))
		if d["end"] != "stopped" || closed == 0 || closed%20 != 0 || closed == remain {
			t.Errorf("summary %v: want stopped after whole batches", d)
		}
		if n := left(); n != remain-closed {
			t.Errorf("%d connections left, want %d", n, remain-closed)
		}
	})

	t.Run("pacing clears", func(t *testing.T) {
		url, _ := headroomEndpoint(t, lab, 3)
		r := runDrain(t, lab, nil, "--port", port, "--batch", "50", "--every", "100ms", "--pace-by", url, "--format", "text")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stdout)
		}
		want := fmt.Sprintf("drained 127.0.0.1:6379: closed %d connections", remain-closed)
		if !strings.Contains(r.stdout, "waiting before batch 1: receiver") || !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks the wait or %q:\n%s", want, r.stdout)
		}
		if n := left(); n != 0 {
			t.Errorf("%d connections left", n)
		}
	})
}

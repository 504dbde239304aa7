package collector

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// echoDecl declares a target source of servers that answer "PING" with a
// number: one entity per server, labelled by its address.
var echoDecl = &Declaration{
	Name: "echo",
	Kinds: []EntityKind{{Name: "echo_server", Help: "a test server",
		Labels: []Label{{Name: "server"}}}},
	Values: []Value{
		{Name: "up", Entity: "echo_server", Kind: Gauge, Metric: "echo_up", Help: "1 if the last poll answered"},
		{Name: "answer", Entity: "echo_server", Kind: Gauge, Metric: "echo_answer", Help: "what the server said"},
	},
}

// echoSource polls its targets over TCP, one connection per poll.
type echoSource struct {
	targets []Target
	opts    TargetOptions
}

func (e *echoSource) Declaration() *Declaration  { return echoDecl }
func (e *echoSource) Options() TargetOptions     { return e.opts }
func (e *echoSource) Targets(*Snapshot) []Target { return e.targets }

func (e *echoSource) Poll(ctx context.Context, t Target, w *RowWriter) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.Name)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "PING\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
	if err != nil {
		return err
	}
	w.Set(1, v)
	return nil
}

// serve answers every line with 42 until stalled is closed... or never,
// when hang is set: it accepts and reads, and never answers.
func serve(t *testing.T, hang bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if hang {
						continue // read, never answer
					}
					fmt.Fprintf(c, "42\n")
				}
			}()
		}
	}()
	return l.Addr().String()
}

// tickDecl is a kernel source that counts its cycles.
var tickDecl = &Declaration{Name: "tick", Values: []Value{{Name: "ticks", Kind: Counter, Help: "cycles"}}}

type tickSource struct{ n float64 }

func (s *tickSource) Declaration() *Declaration { return tickDecl }
func (s *tickSource) Collect(_ context.Context, w *Writer) error {
	s.n++
	w.Set(0, s.n)
	return nil
}

// TestTargetThatNeverAnswers: a target that accepts and never answers does
// not delay the kernel sample, fails on its own within its timeout, and its
// values are no data; a target that answers next to it is unaffected.
func TestTargetThatNeverAnswers(t *testing.T) {
	good, bad := serve(t, false), serve(t, true)
	sc := MustSchema(tickDecl, echoDecl)
	src := &echoSource{
		targets: []Target{{Labels: []string{good}, Name: good}, {Labels: []string{bad}, Name: bad}},
		opts:    TargetOptions{Interval: 200 * time.Millisecond, Timeout: 500 * time.Millisecond, Up: "up"},
	}
	targets, err := NewTargets(sc, src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	targets.Start(ctx)
	defer targets.Stop()
	s, err := NewSampler(sc, []Source{&tickSource{}}, targets, NewHistory(Retention{Host: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}

	// Tick every 100 ms for 2 s: longer than the bad target's timeout.
	const interval = 100 * time.Millisecond
	start := time.Now()
	var snaps []*Snapshot
	var slowest time.Duration
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for range 20 {
		<-tk.C
		before := time.Now()
		snaps = append(snaps, s.Sample(ctx, before))
		slowest = max(slowest, time.Since(before))
	}
	elapsed := time.Since(start)
	// The kernel sample kept its interval: every tick sampled, each
	// Sample took a sliver of the bad target's 500 ms timeout, and the 20
	// ticks spanned 20 intervals (not 20 timeouts).
	if slowest > 100*time.Millisecond {
		t.Errorf("a Sample took %v: the target held the tick up", slowest)
	}
	if elapsed > 20*interval+time.Second {
		t.Errorf("20 ticks took %v", elapsed)
	}
	for i := 1; i < len(snaps); i++ {
		if gap := snaps[i].Time.Sub(snaps[i-1].Time); gap > 3*interval {
			t.Errorf("tick %d came %v after the previous", i, gap)
		}
		if snaps[i].Get("ticks") != float64(i+1) {
			t.Errorf("tick %d: kernel source value %v", i, snaps[i].Get("ticks"))
		}
	}

	last := snaps[len(snaps)-1]
	tab := last.TableOf("echo_server")
	if tab.Len() != 2 {
		t.Fatalf("%d targets in the table, want 2", tab.Len())
	}
	up, _ := sc.Lookup("echo_server", "up")
	answer, _ := sc.Lookup("echo_server", "answer")
	for _, c := range []struct {
		addr   string
		up     float64
		answer float64
	}{{good, 1, 42}, {bad, 0, math.NaN()}} {
		row, ok := tab.Find([]string{c.addr})
		if !ok {
			t.Fatalf("target %s missing", c.addr)
		}
		if got := tab.Value(row, up.Slot); got != c.up {
			t.Errorf("%s: up %v, want %v", c.addr, got, c.up)
		}
		if got := tab.Value(row, answer.Slot); got != c.answer && !(math.IsNaN(got) && math.IsNaN(c.answer)) {
			t.Errorf("%s: answer %v, want %v", c.addr, got, c.answer)
		}
	}
	var badResult, goodResult SourceResult
	for _, r := range last.Sources {
		switch r.Target {
		case bad:
			badResult = r
		case good:
			goodResult = r
		}
	}
	if badResult.Success || !errors.Is(badResult.Err, ErrPollTimeout) {
		t.Errorf("bad target: %+v, want a failure for the timeout", badResult)
	}
	if !goodResult.Success {
		t.Errorf("good target: %+v", goodResult)
	}
	if sum, _ := last.Source("echo"); sum.Success || sum.Err == nil || !strings.Contains(sum.Err.Error(), bad) {
		t.Errorf("echo summary %+v: want a failure naming %s", sum, bad)
	}
	if r, _ := last.Source("tick"); !r.Success {
		t.Errorf("kernel source: %+v", r)
	}
}

// stuckSource's polls never return, whatever the context says.
type stuckSource struct {
	echoSource
	release chan struct{}
}

func (s *stuckSource) Poll(ctx context.Context, t Target, w *RowWriter) error {
	if t.Name == "first" {
		w.Set(1, 7)
		return nil
	}
	<-s.release
	return nil
}

// TestTargetStale: a result older than its staleness bound is no data,
// never the old value; a poll that ignores its context is abandoned and
// not piled up on.
func TestTargetStale(t *testing.T) {
	sc := MustSchema(echoDecl)
	src := &stuckSource{release: make(chan struct{})}
	defer close(src.release)
	src.opts = TargetOptions{Interval: 50 * time.Millisecond, Timeout: 100 * time.Millisecond, StaleAfter: 300 * time.Millisecond, Up: "up"}
	src.targets = []Target{{Labels: []string{"a"}, Name: "first"}}
	targets, err := NewTargets(sc, src)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHistory(Retention{Host: time.Minute})
	s, err := NewSampler(sc, nil, targets, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Before Start: the target is known, not polled yet: no data.
	snap := s.Sample(ctx, time.Now())
	if r := snap.Sources[0]; r.Target != "first" || !r.NoData {
		t.Errorf("before the first poll: %+v", r)
	}
	targets.Start(ctx)
	defer targets.Stop()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	targets.Wait(wctx)
	wcancel()
	answer, _ := sc.Lookup("echo_server", "answer")
	row := func(snap *Snapshot) float64 { return snap.TableOf("echo_server").Value(0, answer.Slot) }
	now := time.Now()
	if v := row(s.Sample(ctx, now)); v != 7 {
		t.Fatalf("after a good poll: %v, want 7", v)
	}
	// A result read now is judged at later ticks: within the bound it is
	// the value, past it no data.
	if v := row(s.Sample(ctx, now.Add(200*time.Millisecond))); v != 7 {
		t.Errorf("within the bound: %v, want 7", v)
	}
	// Stop the poller so the good result stays the latest one.
	targets.Stop()
	if v := row(s.Sample(ctx, time.Now().Add(time.Second))); !math.IsNaN(v) {
		t.Errorf("past the bound: %v, want no data", v)
	}
	if r := s.Latest().Sources[0]; r.Success || !errors.Is(r.Err, ErrStale) {
		t.Errorf("stale target: %+v", r)
	}
}

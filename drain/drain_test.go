package drain_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/drain"
)

func seconds(s ...float64) []time.Duration {
	var out []time.Duration
	for _, v := range s {
		out = append(out, time.Duration(v*float64(time.Second)))
	}
	return out
}

func TestRunTimed(t *testing.T) {
	tests := []struct {
		name      string
		conns     int
		cfg       drain.Config
		wantSizes []int
		wantAt    []time.Duration
		wantEnd   drain.Ending
	}{
		{"count", 250, drain.Config{Batch: drain.Batch{Count: 100}, Every: time.Second},
			[]int{100, 100, 50}, seconds(0, 1, 2), drain.EndDrained},
		{"share of what is left", 100, drain.Config{Batch: drain.Batch{Percent: 50}, Every: time.Second},
			[]int{50, 25, 13, 6, 3, 2, 1}, seconds(0, 1, 2, 3, 4, 5, 6), drain.EndDrained},
		{"duration", 95, drain.Config{Duration: 10 * time.Second, Every: time.Second},
			[]int{10, 10, 10, 10, 10, 10, 10, 10, 10, 5}, seconds(0, 1, 2, 3, 4, 5, 6, 7, 8, 9), drain.EndDrained},
		{"duration, half-second batches", 20, drain.Config{Duration: 2 * time.Second, Every: 500 * time.Millisecond},
			[]int{5, 5, 5, 5}, seconds(0, 0.5, 1, 1.5), drain.EndDrained},
		{"max", 250, drain.Config{Batch: drain.Batch{Count: 100}, Every: time.Second, Max: 150},
			[]int{100, 50}, seconds(0, 1), drain.EndMax},
		{"nothing to drain", 0, drain.Config{Batch: drain.Batch{Count: 100}, Every: time.Second},
			nil, nil, drain.EndDrained},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newServer(tt.conns)
				m := &method{srv: srv}
				var ev events
				cfg := tt.cfg
				cfg.Source, cfg.Method, cfg.OnEvent = srv, m, ev.record
				start := time.Now()
				sum, err := drain.Run(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.wantSizes, m.sizes()); diff != "" {
					t.Errorf("batch sizes (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.wantAt, m.offsets(start)); diff != "" {
					t.Errorf("batch times (-want +got):\n%s", diff)
				}
				total := 0
				for _, s := range tt.wantSizes {
					total += s
				}
				want := drain.Progress{Total: tt.conns, Closed: total, Left: tt.conns - total, Batches: len(tt.wantSizes), Unaccepted: 2}
				got := sum.Progress
				got.Rate, got.Remaining = 0, 0
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("progress (-want +got):\n%s", diff)
				}
				if sum.End != tt.wantEnd {
					t.Errorf("end %q, want %q", sum.End, tt.wantEnd)
				}
				if err := ev.checkTotals(); err != nil {
					t.Error(err)
				}
				if n := len(ev.of(drain.EventStart)); n != 1 {
					t.Errorf("%d start events", n)
				}
				if n := len(ev.of(drain.EventBatch)); n != len(tt.wantSizes) {
					t.Errorf("%d batch events, want %d", n, len(tt.wantSizes))
				}
			})
		})
	}
}

// TestRunOldestFirst: every batch takes the lowest inodes left.
func TestRunOldestFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newServer(30)
		m := &method{srv: srv}
		if _, err := drain.Run(context.Background(), drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 7}, Every: time.Second}); err != nil {
			t.Fatal(err)
		}
		var inodes []uint32
		for _, call := range m.calls {
			for _, c := range call {
				inodes = append(inodes, c.Inode)
			}
		}
		if !slices.IsSorted(inodes) || len(inodes) != 30 {
			t.Errorf("inodes closed in order %v, want ascending", inodes)
		}
	})
}

func TestRunRandomOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newServer(200)
		m := &method{srv: srv}
		cfg := drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 50}, Every: time.Second,
			Order: drain.Random, Rand: rand.New(rand.NewPCG(1, 2))}
		if _, err := drain.Run(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		var inodes []uint32
		for _, call := range m.calls {
			for _, c := range call {
				inodes = append(inodes, c.Inode)
			}
		}
		if len(inodes) != 200 || slices.IsSorted(inodes) {
			t.Errorf("random order closed %d in ascending inode order", len(inodes))
		}
		slices.Sort(inodes)
		if len(slices.Compact(inodes)) != 200 {
			t.Error("a connection was closed twice")
		}
	})
}

// TestRunArrivals: connections arriving during the drain are drained too
// (counted new), or left alone with OnlyInitial; connections leaving by
// themselves count as gone.
func TestRunArrivals(t *testing.T) {
	for _, only := range []bool{false, true} {
		t.Run(map[bool]string{false: "include new", true: "only initial"}[only], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newServer(100)
				srv.onList = func(n int) {
					if n == 2 { // before the second batch
						srv.Add(15)
						srv.Drop(1090, 1091, 1092) // three initial clients leave
					}
				}
				m := &method{srv: srv}
				var ev events
				sum, err := drain.Run(context.Background(), drain.Config{Source: srv, Method: m, OnEvent: ev.record,
					Batch: drain.Batch{Count: 40}, Every: time.Second, OnlyInitial: only})
				if err != nil {
					t.Fatal(err)
				}
				want := drain.Progress{Total: 115, Closed: 112, Gone: 3, New: 15, Batches: 3, Unaccepted: 2}
				wantSizes := []int{40, 40, 32}
				if only {
					want = drain.Progress{Total: 100, Closed: 97, Gone: 3, New: 15, Batches: 3, Unaccepted: 2}
					wantSizes = []int{40, 40, 17}
				}
				got := sum.Progress
				got.Rate, got.Remaining = 0, 0
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("progress (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(wantSizes, m.sizes()); diff != "" {
					t.Errorf("sizes (-want +got):\n%s", diff)
				}
				if err := ev.checkTotals(); err != nil {
					t.Error(err)
				}
				if wantLeft := map[bool]int{false: 0, true: 15}[only]; srv.Len() != wantLeft {
					t.Errorf("%d connections left on the server, want %d", srv.Len(), wantLeft)
				}
				if sum.End != drain.EndDrained {
					t.Errorf("end %q", sum.End)
				}
			})
		})
	}
}

// TestRunFates: skipped connections are never asked again; unknown ones
// are, while they exist.
func TestRunFates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newServer(10)
		m := &method{srv: srv, fate: func(call int, c drain.Conn) drain.Fate {
			switch {
			case c.Cookie == 1003:
				return drain.Skipped
			case c.Cookie == 1005 && call == 0:
				return drain.Unknown
			}
			return drain.Closed
		}}
		sum, err := drain.Run(context.Background(), drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 6}, Every: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		asked := map[uint64]int{}
		for _, call := range m.calls {
			for _, c := range call {
				asked[c.Cookie]++
			}
		}
		if asked[1003] != 1 || asked[1005] != 2 {
			t.Errorf("asked the skipped one %d times, the unknown one %d times; want 1 and 2", asked[1003], asked[1005])
		}
		if sum.Closed != 9 || sum.Skipped != 1 || sum.End != drain.EndDrained || sum.Left != 0 {
			t.Errorf("summary %+v", sum)
		}
	})
}

// TestRunStop: the context ending stops the drain between batches; a
// batch in progress completes with a context that was not cancelled.
func TestRunStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newServer(500)
		m := &method{srv: srv}
		ctx, cancel := context.WithCancel(context.Background())
		var ev events
		cfg := drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 100}, Every: time.Second,
			OnEvent: func(e drain.Event) {
				ev.record(e)
				if e.Kind == drain.EventBatch && e.Batch == 2 {
					cancel() // as a signal right after the second batch
				}
			}}
		sum, err := drain.Run(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if sum.End != drain.EndStopped || sum.Closed != 200 || sum.Left != 300 || srv.Len() != 300 {
			t.Errorf("summary %+v with %d left on the server; want stopped after 200", sum, srv.Len())
		}
	})

	synctest.Test(t, func(t *testing.T) {
		srv := newServer(500)
		m := &method{srv: srv, block: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan drain.Summary)
		go func() {
			sum, _ := drain.Run(ctx, drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 100}, Every: time.Second})
			done <- sum
		}()
		synctest.Wait() // the first batch is blocked in the method
		cancel()
		close(m.block)
		sum := <-done
		if sum.End != drain.EndStopped || sum.Closed != 100 {
			t.Errorf("summary %+v; want the batch in progress completed, then stopped", sum)
		}
		if m.ctxErr[0] != nil {
			t.Errorf("the batch in progress saw its context end: %v", m.ctxErr[0])
		}
	})
}

func TestRunCouldNotRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newServer(10)
		srv.listErr = drain.ErrNoListener
		m := &method{srv: srv}
		if _, err := drain.Run(context.Background(), drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 5}, Every: time.Second}); !errors.Is(err, drain.ErrNoListener) {
			t.Errorf("no listener: err = %v", err)
		}

		srv = newServer(10)
		m = &method{srv: srv, checkErr: errBoom}
		if _, err := drain.Run(context.Background(), drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 5}, Every: time.Second}); !errors.Is(err, errBoom) {
			t.Errorf("check failed: err = %v", err)
		}
		if len(m.calls) != 0 {
			t.Errorf("method called after a failed check")
		}

		// Refused at the first batch: nothing closed, so it could not run.
		srv = newServer(10)
		m = &method{srv: srv, fate: func(int, drain.Conn) drain.Fate { return drain.Failed }, err: func(int) error { return errBoom }}
		if _, err := drain.Run(context.Background(), drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 5}, Every: time.Second}); !errors.Is(err, errBoom) {
			t.Errorf("first batch refused: err = %v", err)
		}

		// Failing later: the drain ended early.
		srv = newServer(10)
		m = &method{srv: srv, err: func(call int) error {
			if call == 1 {
				return errBoom
			}
			return nil
		}}
		sum, err := drain.Run(context.Background(), drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 3}, Every: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if sum.End != drain.EndFailed || !errors.Is(sum.Err, errBoom) || sum.Closed != 6 {
			t.Errorf("summary %+v, want failed with 6 closed", sum)
		}

		// Listing fails later.
		srv = newServer(10)
		srv.onList = func(n int) {
			if n == 3 {
				srv.mu.Lock()
				srv.listErr = errBoom
				srv.mu.Unlock()
			}
		}
		m = &method{srv: srv}
		sum, err = drain.Run(context.Background(), drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 3}, Every: time.Second})
		if err != nil || sum.End != drain.EndFailed || sum.Closed != 6 || !errors.Is(sum.Err, errBoom) {
			t.Errorf("listing failed later: %+v, %v", sum, err)
		}
	})
}

func TestRunRemaining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newServer(250)
		var ev events
		_, err := drain.Run(context.Background(), drain.Config{Source: srv, Method: &method{srv: srv}, OnEvent: ev.record,
			Batch: drain.Batch{Count: 100}, Every: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var got []time.Duration
		for _, e := range ev.all {
			got = append(got, e.Remaining)
		}
		if diff := cmp.Diff(seconds(2, 2, 1, 0), got); diff != "" {
			t.Errorf("time left at start and after each batch (-want +got):\n%s", diff)
		}
	})
}

func TestRunConfigErrors(t *testing.T) {
	srv := newServer(1)
	m := &method{srv: srv}
	for _, cfg := range []drain.Config{
		{Source: srv, Method: m, Batch: drain.Batch{Count: 1}},
		{Source: srv, Method: m, Every: time.Second},
		{Source: srv, Method: m, Batch: drain.Batch{Count: 1}, Every: time.Second, Max: -1},
		{Method: m, Batch: drain.Batch{Count: 1}, Every: time.Second},
		{Source: srv, Batch: drain.Batch{Count: 1}, Every: time.Second},
	} {
		if _, err := drain.Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) did not fail", cfg)
		}
	}
}

func TestPlan(t *testing.T) {
	srv := newServer(25)
	dry, err := drain.Plan(context.Background(), drain.Config{Source: srv, Batch: drain.Batch{Count: 10}, Every: 3 * time.Second, Max: 22})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	var at []time.Duration
	var inodes []uint32
	for _, b := range dry.Batches {
		sizes = append(sizes, len(b.Conns))
		at = append(at, b.At)
		for _, c := range b.Conns {
			inodes = append(inodes, c.Inode)
		}
	}
	if diff := cmp.Diff([]int{10, 10, 2}, sizes); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(seconds(0, 3, 6), at); diff != "" {
		t.Errorf("times (-want +got):\n%s", diff)
	}
	if !slices.IsSorted(inodes) {
		t.Errorf("not oldest first: %v", inodes)
	}
	if srv.Len() != 25 {
		t.Errorf("a dry run closed connections")
	}
	if len(dry.Listing.Listeners) != 1 || dry.Listing.Unaccepted != 2 {
		t.Errorf("listing %+v", dry.Listing)
	}
}

func TestParseBatch(t *testing.T) {
	for in, want := range map[string]drain.Batch{
		"100": {Count: 100}, " 7 ": {Count: 7}, "10%": {Percent: 10}, "0.5%": {Percent: 0.5}, "100%": {Percent: 100},
	} {
		got, err := drain.ParseBatch(in)
		if err != nil || got != want {
			t.Errorf("ParseBatch(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if again, _ := drain.ParseBatch(got.String()); again != got {
			t.Errorf("%q does not round-trip through String (%q)", in, got.String())
		}
	}
	for _, in := range []string{"", "0", "-5", "abc", "0%", "101%", "%", "NaN%", "1e3x", "10 %%"} {
		if _, err := drain.ParseBatch(in); !errors.Is(err, drain.ErrBadBatch) {
			t.Errorf("ParseBatch(%q) = %v, want ErrBadBatch", in, err)
		}
	}
	for left, want := range map[int]int{0: 0, 1: 1, 99: 10, 100: 10, 101: 11} {
		if got := (drain.Batch{Percent: 10}).Size(left); got != want {
			t.Errorf("10%% of %d = %d, want %d", left, got, want)
		}
	}
}

// failingOrderer is a method whose server cannot be asked for its order.
type failingOrderer struct{ *method }

func (failingOrderer) Order(context.Context, []drain.Conn) (int, error) {
	return 0, errors.New("NOAUTH Authentication required")
}

// TestPlanOrdererFails: a dry run whose method cannot order the
// connections (the server refuses it) says so instead of printing a plan
// the drain would not follow.
func TestPlanOrdererFails(t *testing.T) {
	srv := newServer(5)
	m := failingOrderer{&method{srv: srv}}
	_, err := drain.Plan(context.Background(), drain.Config{Source: srv, Method: m, Batch: drain.Batch{Count: 2}, Every: time.Second})
	if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("Plan = %v, want the orderer's error", err)
	}
}

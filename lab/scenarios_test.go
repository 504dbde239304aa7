//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/internal/stormlab"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

// acceptQueueMatchesSS waits until the daemon's accept queue length and
// limit for port equal ss's Recv-Q and Send-Q, and that Recv-Q is want.
func acceptQueueMatchesSS(t *testing.T, lab *stormlab.Lab, d *stormlab.Daemon, port, want int) {
	t.Helper()
	p := strconv.Itoa(port)
	eventually(t, 10*time.Second, fmt.Sprintf("accept queue of port %d is %d, in ss and stormwatch", port, want), func() error {
		q, l, err := lab.SSListen(context.Background(), port)
		if err != nil {
			return err
		}
		if q != want {
			return fmt.Errorf("ss Recv-Q %d, want %d", q, want)
		}
		x, err := d.Scrape()
		if err != nil {
			return err
		}
		gq, ok1 := x.Value("stormwatch_listener_accept_queue_length", "addr", "127.0.0.1", "port", p)
		gl, ok2 := x.Value("stormwatch_listener_accept_queue_limit", "addr", "127.0.0.1", "port", p)
		if !ok1 || !ok2 {
			return fmt.Errorf("no accept queue series for 127.0.0.1:%d", port)
		}
		if int(gq) != q || int(gl) != l {
			return fmt.Errorf("stormwatch says %v/%v, ss says %d/%d", gq, gl, q, l)
		}
		return nil
	})
}

// TestAcceptQueueOverflow stalls redis-server (SIGSTOP) while clients
// arrive: the accept queue fills to 90% (AcceptQueueNearFull fires, no
// overflow yet), then past its limit (ListenOverflows moves,
// AcceptQueueOverflowing names the listener), then SIGCONT drains it.
func TestAcceptQueueOverflow(t *testing.T) {
	lab := newLab(t, "redis-server")
	ctx := context.Background()
	s := &stormlab.AcceptQueueStorm{Lab: lab, Rate: 200}
	if err := s.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, lab)
	requireAlerting(t, d)
	listener := map[string]string{"addr": "127.0.0.1", "port": strconv.Itoa(s.Port)}
	before := counters(t, lab)

	if err := s.Stall(); err != nil {
		t.Fatal(err)
	}
	fill := s.Limit() * 9 / 10
	res, err := s.Arrive(ctx, fill, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Established != fill {
		t.Fatalf("%d of %d handshakes completed into a queue with room: %+v", res.Established, fill, res)
	}
	acceptQueueMatchesSS(t, lab, d, s.Port, fill)
	expectStill(t, lab, scrape(t, d), before, listenOverflows, syncookiesSent, synQueueDrops)

	// The warning comes while nothing is lost yet.
	x := waitAlert(t, d, 15*time.Second, "AcceptQueueNearFull", listener)
	expectStill(t, lab, x, before, listenOverflows)
	expectNoAlert(t, x, "AcceptQueueOverflowing")
	expectNoAlert(t, x, "ListenOverflows")

	// Past the limit: the queue holds limit+1, the rest is dropped.
	if _, err := s.Arrive(ctx, s.Limit()+1-fill+20, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	acceptQueueMatchesSS(t, lab, d, s.Port, s.Limit()+1)
	expectMoved(t, lab, d, before, listenOverflows)
	// The SYN queue never filled: handshakes complete at once on loopback.
	expectStill(t, lab, scrape(t, d), before, syncookiesSent, synQueueDrops)
	waitAlert(t, d, 10*time.Second, "AcceptQueueOverflowing", listener)
	waitAlert(t, d, 10*time.Second, "ListenOverflows", nil)

	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	acceptQueueMatchesSS(t, lab, d, s.Port, 0)
}

// TestSynFlood keeps handshakes half-open (final ACK dropped) until the
// listener's SYN queue is 90% full (SynQueueNearFull fires, nothing
// dropped), then past it: with SYN cookies the kernel answers with cookies
// (SyncookiesSent, TCPReqQFullDoCookies move), without them it drops SYNs
// (TCPReqQFullDrop moves). The accept queue is never involved.
func TestSynFlood(t *testing.T) {
	for _, cookies := range []int{1, 0} {
		t.Run(fmt.Sprintf("syncookies=%d", cookies), func(t *testing.T) {
			lab := newLab(t)
			ctx := context.Background()
			s := &stormlab.SynFlood{Lab: lab, Syncookies: cookies}
			if err := s.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, lab, "--collect.syn-recv-interval=1s")
			requireAlerting(t, d)
			listener := map[string]string{"addr": "127.0.0.1", "port": strconv.Itoa(s.Port)}
			before := counters(t, lab)

			synRecvMatchesSS := func(want func(int) bool, what string) {
				t.Helper()
				eventually(t, 15*time.Second, "half-open handshakes in ss and stormwatch: "+what, func() error {
					n, err := lab.SSSynRecv(ctx, s.Port)
					if err != nil {
						return err
					}
					if !want(n) {
						return fmt.Errorf("ss shows %d half-open, want %s", n, what)
					}
					x, err := d.Scrape()
					if err != nil {
						return err
					}
					got, ok := x.Value("stormwatch_listener_syn_recv", "addr", "127.0.0.1", "port", listener["port"])
					if !ok || int(got) != n {
						return fmt.Errorf("stormwatch says %v (present %v), ss %d", got, ok, n)
					}
					return nil
				})
			}

			fill := s.SynQueueLimit() * 9 / 10
			if _, err := s.Flood(ctx, fill); err != nil {
				t.Fatal(err)
			}
			synRecvMatchesSS(func(n int) bool { return n == fill }, strconv.Itoa(fill))
			expectStill(t, lab, scrape(t, d), before, syncookiesSent, synQueueCookies, synQueueDrops, listenOverflows)
			x := waitAlert(t, d, 15*time.Second, "SynQueueNearFull", listener)
			expectStill(t, lab, x, before, syncookiesSent, synQueueCookies, synQueueDrops)
			expectNoAlert(t, x, "SynCookiesSent")
			expectNoAlert(t, x, "SynDropped")
			if cookies == 0 {
				expectAlert(t, x, "SyncookiesDisabled", nil)
			} else {
				expectNoAlert(t, x, "SyncookiesDisabled")
			}

			if _, err := s.Flood(ctx, s.SynQueueLimit()/2); err != nil {
				t.Fatal(err)
			}
			// A full SYN queue holds its limit (plus one, as the accept
			// queue does).
			synRecvMatchesSS(func(n int) bool { return n >= s.SynQueueLimit() && n <= s.SynQueueLimit()+1 }, "the SYN queue limit")
			if cookies == 1 {
				expectMoved(t, lab, d, before, syncookiesSent, synQueueCookies)
				expectStill(t, lab, scrape(t, d), before, synQueueDrops, listenOverflows)
				waitAlert(t, d, 10*time.Second, "SynCookiesSent", nil)
			} else {
				expectMoved(t, lab, d, before, synQueueDrops)
				expectStill(t, lab, scrape(t, d), before, syncookiesSent, synQueueCookies, listenOverflows)
				waitAlert(t, d, 10*time.Second, "SynDropped", nil)
			}
			acceptQueueMatchesSS(t, lab, d, s.Port, 0)
		})
	}
}

// TestConntrackFill tracks one port's flows against a lowered global
// nf_conntrack_max: at 90% full the entries match conntrack -C and nothing
// is dropped (ConntrackTableNearFull fires); past the limit new flows are
// dropped and the drop counter moves (ConntrackDropping fires).
func TestConntrackFill(t *testing.T) {
	lab := newLab(t, "conntrack")
	ctx := context.Background()
	s := &stormlab.ConntrackFill{Lab: lab, Limit: 512}
	if err := s.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, lab)
	requireAlerting(t, d)
	restore, err := s.LowerLimit()
	if errors.Is(err, stormlab.ErrHostBusy) {
		testenv.Require(t, "a host conntrack table quiet enough to lower the global nf_conntrack_max", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := restore(); err != nil {
			t.Errorf("%v", err)
		}
	})

	stats := func() stormlab.ConntrackStats {
		t.Helper()
		c, err := lab.ConntrackStats()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	entriesMatch := func(want int) {
		t.Helper()
		eventually(t, 10*time.Second, fmt.Sprintf("%d conntrack entries in conntrack -C and stormwatch", want), func() error {
			n, err := lab.ConntrackCount(ctx)
			if err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("conntrack -C says %d, want %d", n, want)
			}
			x, err := d.Scrape()
			if err != nil {
				return err
			}
			if got := metric(t, x, "stormwatch_conntrack_entries"); int(got) != n {
				return fmt.Errorf("stormwatch says %v entries, conntrack -C %d", got, n)
			}
			if got := metric(t, x, "stormwatch_conntrack_entries_limit"); int(got) != s.Limit {
				return fmt.Errorf("stormwatch says the limit is %v, want %d", got, s.Limit)
			}
			return nil
		})
	}
	before := stats()

	fill := s.Limit * 9 / 10
	res, err := s.Open(ctx, fill)
	if err != nil {
		t.Fatal(err)
	}
	if res.Established != fill {
		t.Fatalf("%d of %d flows established in a table with room: %+v", res.Established, fill, res)
	}
	entriesMatch(fill)
	noDrops := func(x stormlab.Exposition) {
		t.Helper()
		if now := stats(); now.Drop != before.Drop || now.EarlyDrop != before.EarlyDrop {
			t.Errorf("conntrack dropped before the table was full: drop %v→%v, early_drop %v→%v", before.Drop, now.Drop, before.EarlyDrop, now.EarlyDrop)
		}
		if got := metric(t, x, "stormwatch_conntrack_drops_total"); got != before.Drop {
			t.Errorf("stormwatch_conntrack_drops_total = %v, want %v", got, before.Drop)
		}
	}
	noDrops(scrape(t, d))
	x := waitAlert(t, d, 15*time.Second, "ConntrackTableNearFull", map[string]string{"severity": "warning"})
	noDrops(x)
	expectNoAlert(t, x, "ConntrackDropping")

	if _, err := s.Open(ctx, s.Limit/5); err != nil {
		t.Fatal(err)
	}
	entriesMatch(s.Limit)
	eventually(t, 10*time.Second, "conntrack drops move, and stormwatch with them", func() error {
		x, err := d.Scrape()
		if err != nil {
			return err
		}
		after := stats()
		ours := metric(t, x, "stormwatch_conntrack_drops_total")
		if after.Drop <= before.Drop {
			return fmt.Errorf("kernel drop counter still %v", after.Drop)
		}
		if ours <= before.Drop || ours > after.Drop {
			return fmt.Errorf("stormwatch says %v; kernel %v before, %v now", ours, before.Drop, after.Drop)
		}
		return nil
	})
	waitAlert(t, d, 10*time.Second, "ConntrackDropping", nil)
	waitAlert(t, d, 10*time.Second, "ConntrackTableNearFull", map[string]string{"severity": "critical"})
}

// TestReconnectStorm restarts redis-server under a pool of clients that
// reconnect at once or with jittered backoff, and checks every client comes
// back and the daemon's view matches the kernel's afterwards. The two
// policies' peak rate and queue depth are logged (the benchmark compares
// them).
func TestReconnectStorm(t *testing.T) {
	for _, backoff := range []string{"none", "jitter"} {
		t.Run("backoff="+backoff, func(t *testing.T) {
			lab := newLab(t, "redis-server")
			ctx := context.Background()
			s := &stormlab.ReconnectStorm{Lab: lab, Clients: 1500, Backoff: backoff}
			if err := s.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, lab)
			before := counters(t, lab)
			res, err := s.Restart(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("backoff %s: peak %.0f new conns/s, peak accept queue %d/%d, %v overflows, %d attempts, all back after %v",
				backoff, res.PeakRate, res.PeakQueue, res.Limit, res.Overflows, res.Attempts, res.AllBack)
			if res.PeakQueue > res.Limit+1 {
				t.Errorf("accept queue peaked at %d, above its limit %d+1", res.PeakQueue, res.Limit)
			}
			if res.PeakRate <= 0 {
				t.Errorf("no new connections seen during the restart")
			}
			acceptQueueMatchesSS(t, lab, d, s.Port, 0)
			eventually(t, 10*time.Second, "established connections in stormwatch and the kernel", func() error {
				x, err := d.Scrape()
				if err != nil {
					return err
				}
				now := counters(t, lab)
				if ours := metric(t, x, "stormwatch_tcp_established"); ours < float64(s.Clients) {
					return fmt.Errorf("stormwatch says %v established, want at least the %d clients (kernel %v)", ours, s.Clients, now.CurrEstab)
				}
				ours := metric(t, x, "stormwatch_tcp_listen_overflows_total")
				if ours < before.ListenOverflows || ours > now.ListenOverflows {
					return fmt.Errorf("stormwatch says %v overflows; kernel %v before, %v now", ours, before.ListenOverflows, now.ListenOverflows)
				}
				return nil
			})
		})
	}
}

// TestBenignChurn runs steady short connections against an accepting
// server: no damage counter moves and no alert fires.
func TestBenignChurn(t *testing.T) {
	lab := newLab(t, "redis-server")
	ctx := context.Background()
	s := &stormlab.Churn{Lab: lab, Rate: 200}
	if err := s.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, lab)
	requireAlerting(t, d)
	before := counters(t, lab)
	w := stormlab.NewWatcher(d, s.Port)
	w.Start(100 * time.Millisecond)
	defer w.Stop()
	const churn = 8 * time.Second
	if err := s.Start(ctx, churn); err != nil {
		t.Fatal(err)
	}
	res, err := s.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // a last sample or two
	w.Stop()
	want := uint64(s.Rate * churn.Seconds())
	if res.OK != want || res.Failed != 0 {
		t.Errorf("churn: %d ok, %d failed (%s), want %d ok", res.OK, res.Failed, res.FirstErr, want)
	}
	x := scrape(t, d)
	expectStill(t, lab, x, before, listenOverflows, syncookiesSent, synQueueCookies, synQueueDrops)
	after := counters(t, lab)
	if ours := metric(t, x, "stormwatch_tcp_passive_opens_total"); ours < before.PassiveOpens+float64(want) || ours > after.PassiveOpens {
		t.Errorf("stormwatch_tcp_passive_opens_total = %v; kernel %v before, %v after %d connections", ours, before.PassiveOpens, after.PassiveOpens, want)
	}
	var peak float64
	for _, smp := range w.Samples() {
		if smp.Limit > 0 {
			peak = max(peak, smp.Queue/smp.Limit)
		}
	}
	t.Logf("%d daemon samples, accept queue peaked at %.0f%% of its limit", len(w.Samples()), 100*peak)
	for _, name := range []string{"AcceptQueueNearFull", "AcceptQueueFullSoon", "AcceptQueueOverflowing", "ListenOverflows",
		"SynQueueNearFull", "SynCookiesSent", "SynDropped", "ConnectionRateSurge"} {
		if at := w.FirstAlert(name, "firing"); !at.IsZero() {
			t.Errorf("%s fired on benign churn at %v", name, at.Format(time.StampMilli))
		}
	}
	if got := x["stormwatch_alerts"]; len(got) > 0 {
		t.Errorf("alerts active after benign churn: %s", describeAlerts(x))
	}
}

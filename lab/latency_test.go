//go:build linux

package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/internal/stormlab"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

// How fast the daemon warns, at its default flags (interval 1 s, storm
// interval 250 ms): each scenario runs latencyRuns times, each in a fresh
// namespace with a fresh daemon that samples calmly (every second) until
// the storm starts at a random point of its cycle. Times come from
// timestamps: the storm's onset and the first overflow from a probe
// reading the kernel every 5 ms, the alert's from the daemon's own
// firedAt (the start of the sample whose evaluation fired it). Where a
// probe can only bracket an event (between two of its samples), the
// bracket's end that makes the daemon look worse is used.

const latencyRuns = 5

// startDefaultDaemon runs stormwatch in the lab with its default flags, as
// an operator runs it, and logs its output if t fails.
func startDefaultDaemon(t *testing.T, lab *stormlab.Lab) *stormlab.Daemon {
	t.Helper()
	d, err := lab.StartStormwatch(context.Background(), testbin.Stormwatch(t), "--log.level=debug")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stormwatch log:\n%s", d.Log())
		}
	})
	return d
}

// waitCalm waits until the daemon samples at its calm interval.
func waitCalm(t *testing.T, d *stormlab.Daemon) {
	t.Helper()
	eventually(t, 20*time.Second, "the daemon samples every second", func() error {
		x, err := d.Scrape()
		if err != nil {
			return err
		}
		if v, ok := x.Value("stormwatch_sample_interval_seconds"); !ok || v != 1 {
			return fmt.Errorf("stormwatch_sample_interval_seconds = %v (present %v)", v, ok)
		}
		return nil
	})
}

// waitFiring polls the daemon's alerts until name fires with labels.
func waitFiring(t *testing.T, d *stormlab.Daemon, timeout time.Duration, name string, labels map[string]string) stormlab.Alert {
	t.Helper()
	var a stormlab.Alert
	eventually(t, timeout, name+" fires", func() error {
		alerts, err := d.Alerts()
		if err != nil {
			return err
		}
		var ok bool
		if a, ok = stormlab.FindAlert(alerts, name, "firing", labels); !ok {
			return fmt.Errorf("not firing; alerts: %v", alertNames(alerts))
		}
		return nil
	})
	return a
}

// readAlerts reads the daemon's alerts.
func readAlerts(t *testing.T, d *stormlab.Daemon) []stormlab.Alert {
	t.Helper()
	alerts, err := d.Alerts()
	if err != nil {
		t.Fatal(err)
	}
	return alerts
}

func alertNames(alerts []stormlab.Alert) string {
	var out []string
	for _, a := range alerts {
		out = append(out, a.Labels["alertname"]+"/"+a.State)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// TestSynFloodAlertLatency floods a redis-server (tcp-backlog 511) with
// hping3 — about 10,000 SYNs a second from a spoofed 127.66.0.1 whose
// SYN-ACKs nftables drops — and checks that SynQueueNearFull names the
// listener at most 1.5 s after the flood's first SYN, in each run. The
// SYN_RECV dump runs at the first sample after the SYN cookies start, and
// the rule has no "for"; the cycle is at most one calm interval (1 s)
// away, so the bound leaves half a second for a loaded machine.
func TestSynFloodAlertLatency(t *testing.T) {
	const target = 1500 * time.Millisecond
	var lat []time.Duration
	for run := range latencyRuns {
		t.Run("run"+strconv.Itoa(run+1), func(t *testing.T) {
			lab := newLab(t, "redis-server", "hping3")
			ctx := context.Background()
			s := &stormlab.HpingFlood{Lab: lab}
			if err := s.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			d := startDefaultDaemon(t, lab)
			waitCalm(t, d)
			probe, err := lab.StartProbeWith(stormlab.ProbeOptions{Interval: 5 * time.Millisecond, Ports: []int{s.Port}, SynRecvEvery: true})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(rand.N(time.Second)) // anywhere in the daemon's cycle
			started, err := s.Start()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			listener := map[string]string{"addr": "127.0.0.1", "port": strconv.Itoa(s.Port)}
			a := waitFiring(t, d, 15*time.Second, "SynQueueNearFull", listener)
			seen := time.Now()
			cookies, _ := stormlab.FindAlert(readAlerts(t, d), "SynCookiesSent", "firing", nil)
			x := scrape(t, d)
			s.Stop()
			samples, err := probe.Stop()
			if err != nil {
				t.Fatal(err)
			}
			before, first := stormlab.FirstHalfOpen(samples, s.Port)
			if first.IsZero() {
				t.Fatalf("the probe saw no half-open handshake on port %d", s.Port)
			}
			onset := before // the last sample without one: the daemon's worst case
			latency := a.FiredAt.Sub(onset)
			lat = append(lat, latency)
			t.Logf("hping3 started %v; first SYN in (%v, %v]; SynQueueNearFull fired %v after (seen by a poll %v later), SynCookiesSent %v after; interval now %v s",
				started.Format(time.StampMilli), before.Format(time.StampMilli), first.Format(time.StampMilli),
				latency.Round(time.Millisecond), seen.Sub(a.FiredAt).Round(time.Millisecond),
				cookies.FiredAt.Sub(onset).Round(time.Millisecond), metric(t, x, "stormwatch_sample_interval_seconds"))
			if a.FiredAt.IsZero() || latency > target || latency <= 0 {
				t.Errorf("SynQueueNearFull fired %v after the flood's first SYN, want within %v", latency.Round(time.Millisecond), target)
			}
			if v := metric(t, x, "stormwatch_sample_interval_seconds"); v != 0.25 {
				t.Errorf("during the flood the daemon samples every %v s, want 0.25 (storm mode)", v)
			}
		})
	}
	t.Logf("SynQueueNearFull after the flood's onset, %d runs: %v", len(lat), lat)
}

// TestAcceptQueueLead stalls redis-server (SIGSTOP, tcp-backlog 128) while
// clients arrive at 20 a second, and checks that AcceptQueueNearFull fires
// at least 1 s before the first accept queue overflow, in each run. At
// 20/s the queue goes from 80% (103 of 128) to overflowing (the 130th) in
// 1.35 s; a non-empty accept queue is a storm signal, so the daemon
// samples every 250 ms by then, leaving a lead of 1.1 s at worst.
func TestAcceptQueueLead(t *testing.T) {
	const target = time.Second
	var leads, soonLeads []time.Duration
	for run := range latencyRuns {
		t.Run("run"+strconv.Itoa(run+1), func(t *testing.T) {
			lab := newLab(t, "redis-server")
			ctx := context.Background()
			s := &stormlab.AcceptQueueStorm{Lab: lab, Rate: 20}
			if err := s.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			d := startDefaultDaemon(t, lab)
			waitCalm(t, d)
			probe, err := lab.StartProbe(5*time.Millisecond, s.Port)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Stall(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(rand.N(time.Second))
			// Up to a few past the limit: the first overflows and a sample.
			if _, err := s.Arrive(ctx, s.Limit()+5, 0); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			samples, err := probe.Stop()
			if err != nil {
				t.Fatal(err)
			}
			// The first overflow happened after overflowBefore, the last
			// sample without one: the lead is taken from there (the
			// daemon's worst case).
			overflowBefore, overflow := stormlab.FirstOverflow(samples)
			if overflow.IsZero() {
				t.Fatalf("no overflow: %+v", stormlab.Summarise(samples, s.Port, time.Second))
			}
			listener := map[string]string{"addr": "127.0.0.1", "port": strconv.Itoa(s.Port)}
			alerts := readAlerts(t, d)
			near, ok := stormlab.FindAlert(alerts, "AcceptQueueNearFull", "firing", listener)
			if !ok {
				t.Fatalf("AcceptQueueNearFull is not firing; alerts: %s", alertNames(alerts))
			}
			soon, _ := stormlab.FindAlert(alerts, "AcceptQueueFullSoon", "firing", listener)
			lead := overflowBefore.Sub(near.FiredAt)
			leads = append(leads, lead)
			soonLead := overflowBefore.Sub(soon.FiredAt)
			soonLeads = append(soonLeads, soonLead)
			t.Logf("first overflow in (%v, %v]; AcceptQueueNearFull fired %v before it, AcceptQueueFullSoon %v before",
				overflowBefore.Format(time.StampMilli), overflow.Format(time.StampMilli), lead.Round(time.Millisecond), soonLead.Round(time.Millisecond))
			if lead < target {
				t.Errorf("AcceptQueueNearFull fired %v before the first overflow, want at least %v", lead.Round(time.Millisecond), target)
			}
		})
	}
	t.Logf("lead before the first overflow, %d runs: AcceptQueueNearFull %v, AcceptQueueFullSoon %v", len(leads), leads, soonLeads)
}

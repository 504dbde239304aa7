//go:build linux

package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/stormlab"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

func TestMain(m *testing.M) {
	// The lab's workers are this test binary re-executed in the namespace.
	stormlab.RunWorkerIfRequested()
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

type tcpCounters = stormlab.TCPCounters

// newLab gives t a namespace and a Lab in it, both gone when t ends.
func newLab(t *testing.T, tools ...string) *stormlab.Lab {
	t.Helper()
	testbin.RequireTools(t, append([]string{"ss", "nft"}, tools...)...)
	ns := netnstest.New(t)
	lab, err := stormlab.New(ns, stormlab.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	// After netnstest's cleanup is registered, so it runs before the
	// namespace is deleted.
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return lab
}

// startDaemon runs stormwatch in the lab, sampling every 250 ms, and logs
// its output if t fails.
func startDaemon(t *testing.T, lab *stormlab.Lab, args ...string) *stormlab.Daemon {
	t.Helper()
	d, err := lab.StartStormwatch(context.Background(), testbin.Stormwatch(t),
		append([]string{"--collect.interval=250ms", "--log.level=debug"}, args...)...)
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

// eventually polls fn every 100 ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func scrape(t *testing.T, d *stormlab.Daemon) stormlab.Exposition {
	t.Helper()
	x, err := d.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func counters(t *testing.T, lab *stormlab.Lab) tcpCounters {
	t.Helper()
	c, err := lab.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// metric returns an unlabelled (or uniquely matched) series' value, failing
// t when it is absent.
func metric(t *testing.T, x stormlab.Exposition, name string, labels ...string) float64 {
	t.Helper()
	v, ok := x.Value(name, labels...)
	if !ok {
		t.Fatalf("no series %s%v in the scrape", name, labels)
	}
	return v
}

// damage names a kernel counter that only moves when something was lost,
// with the stormwatch metric that exports it.
type damage struct {
	kernel string
	metric string
	get    func(tcpCounters) float64
}

var (
	listenOverflows = damage{"TcpExt ListenOverflows", "stormwatch_tcp_listen_overflows_total", func(c tcpCounters) float64 { return c.ListenOverflows }}
	syncookiesSent  = damage{"TcpExt SyncookiesSent", "stormwatch_tcp_syncookies_sent_total", func(c tcpCounters) float64 { return c.SyncookiesSent }}
	synQueueCookies = damage{"TcpExt TCPReqQFullDoCookies", "stormwatch_tcp_syn_queue_cookies_total", func(c tcpCounters) float64 { return c.TCPReqQFullDoCookies }}
	synQueueDrops   = damage{"TcpExt TCPReqQFullDrop", "stormwatch_tcp_syn_queue_drops_total", func(c tcpCounters) float64 { return c.TCPReqQFullDrop }}
)

// expectStill checks that the damage counters have not moved since before,
// in the kernel nor in the daemon's scrape x.
func expectStill(t *testing.T, lab *stormlab.Lab, x stormlab.Exposition, before tcpCounters, ds ...damage) {
	t.Helper()
	now := counters(t, lab)
	for _, d := range ds {
		if got := d.get(now); got != d.get(before) {
			t.Errorf("%s moved from %v to %v; nothing should have been dropped yet", d.kernel, d.get(before), got)
		}
		if got := metric(t, x, d.metric); got != d.get(before) {
			t.Errorf("%s = %v, want %v (the kernel's, unmoved)", d.metric, got, d.get(before))
		}
	}
}

// expectMoved waits until each damage counter has risen past before in the
// kernel and the daemon reports a value between before and the kernel's.
func expectMoved(t *testing.T, lab *stormlab.Lab, d *stormlab.Daemon, before tcpCounters, ds ...damage) {
	t.Helper()
	for _, dm := range ds {
		eventually(t, 10*time.Second, dm.kernel+" moves, and stormwatch with it", func() error {
			x, err := d.Scrape()
			if err != nil {
				return err
			}
			after := counters(t, lab)
			ours := metric(t, x, dm.metric)
			if dm.get(after) <= dm.get(before) {
				return fmt.Errorf("kernel %s still %v", dm.kernel, dm.get(after))
			}
			// The daemon's value is from its last sample: past the start,
			// not ahead of the kernel.
			if ours <= dm.get(before) || ours > dm.get(after) {
				return fmt.Errorf("%s = %v; kernel %v before, %v now", dm.metric, ours, dm.get(before), dm.get(after))
			}
			return nil
		})
	}
}

// requireAlerting fails t unless the daemon evaluates alerts (serves
// /api/v1/alerts): the daemon is built from this tree, so one that does
// not is a regression, not a reason to leave the alert checks out.
func requireAlerting(t *testing.T, d *stormlab.Daemon) {
	t.Helper()
	status, _, err := d.Get("/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK {
		t.Fatalf("this stormwatch serves no /api/v1/alerts (HTTP %d)", status)
	}
}

// alertSeries returns the stormwatch_alerts series named alertname in
// state whose labels include labels.
func alertSeries(x stormlab.Exposition, alertname, state string, labels map[string]string) []stormlab.Series {
	match := map[string]string{"alertname": alertname, "alertstate": state}
	maps.Copy(match, labels)
	return x.Find("stormwatch_alerts", match)
}

// expectAlert checks the scrape shows alertname firing with labels (a
// listener's addr and port, for a listener rule).
func expectAlert(t *testing.T, x stormlab.Exposition, alertname string, labels map[string]string) {
	t.Helper()
	if len(alertSeries(x, alertname, "firing", labels)) == 0 {
		t.Errorf("alert %s%v is not firing; alerts in the scrape: %s", alertname, labels, describeAlerts(x))
	}
}

// expectNoAlert checks the scrape shows alertname neither pending nor
// firing.
func expectNoAlert(t *testing.T, x stormlab.Exposition, alertname string) {
	t.Helper()
	if s := x.Find("stormwatch_alerts", map[string]string{"alertname": alertname}); len(s) > 0 {
		t.Errorf("alert %s is active too early: %s", alertname, describeAlerts(x))
	}
}

// waitAlert scrapes until alertname fires with labels, and returns that
// scrape.
func waitAlert(t *testing.T, d *stormlab.Daemon, timeout time.Duration, alertname string, labels map[string]string) stormlab.Exposition {
	t.Helper()
	var x stormlab.Exposition
	eventually(t, timeout, "alert "+alertname+" fires", func() error {
		var err error
		if x, err = d.Scrape(); err != nil {
			return err
		}
		if len(alertSeries(x, alertname, "firing", labels)) == 0 {
			return fmt.Errorf("not firing; alerts: %s", describeAlerts(x))
		}
		return nil
	})
	expectAPIAlert(t, d, alertname, labels)
	return x
}

// expectAPIAlert checks /api/v1/alerts lists alertname firing with labels.
func expectAPIAlert(t *testing.T, d *stormlab.Daemon, alertname string, labels map[string]string) {
	t.Helper()
	status, body, err := d.Get("/api/v1/alerts")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /api/v1/alerts: %d, %v", status, err)
	}
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("/api/v1/alerts: %v\n%s", err, body)
	}
	for _, a := range resp.Data.Alerts {
		if a.Labels["alertname"] != alertname || a.State != "firing" {
			continue
		}
		ok := true
		for k, v := range labels {
			ok = ok && a.Labels[k] == v
		}
		if ok {
			return
		}
	}
	t.Errorf("/api/v1/alerts does not list %s%v firing:\n%s", alertname, labels, body)
}

func describeAlerts(x stormlab.Exposition) string {
	var out []string
	for _, s := range x["stormwatch_alerts"] {
		out = append(out, s.Labels["alertname"]+"/"+s.Labels["alertstate"]+labelSuffix(s.Labels))
	}
	slices.Sort(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func labelSuffix(l map[string]string) string {
	if l["port"] == "" {
		return ""
	}
	return "{" + l["addr"] + ":" + l["port"] + "}"
}

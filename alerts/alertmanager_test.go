package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/collector"
)

// alertmanagerBinary is Debian's prometheus-alertmanager package.
const alertmanagerBinary = "/usr/bin/prometheus-alertmanager"

const alertmanagerConfig = `
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: "null"
`

// startAlertmanager runs a real Alertmanager on a free port of 127.0.0.1,
// without clustering, and returns its URL once it is ready.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(alertmanagerBinary); err != nil {
		t.Skipf("end-to-end test needs Alertmanager: %s not found (apt-get install prometheus-alertmanager)", alertmanagerBinary)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte(alertmanagerConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	// Take a free port; the tiny window before Alertmanager binds it is
	// covered by the readiness wait failing loudly.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, alertmanagerBinary,
		"--config.file="+cfg,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
	)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", out.String())
		}
	})

	url := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("alertmanager exited: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready at %s after 20s\n%s", url, out.String())
		}
	}
}

// amAlert is the part of Alertmanager's GET /api/v2/alerts answer checked.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func getAlerts(t *testing.T, url string) []amAlert {
	t.Helper()
	resp, err := http.Get(url + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var alerts []amAlert
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		t.Fatal(err)
	}
	return alerts
}

// TestAlertmanagerEndToEnd fires a listener alert through the Engine and
// the Notifier into a real Alertmanager, then resolves it.
func TestAlertmanagerEndToEnd(t *testing.T) {
	url := startAlertmanager(t)

	rules := mustLoad(t, `
rules:
  - name: AcceptQueueNearFull
    scope: listener
    condition: accept_queue_fill >= 0.8
    labels: {team: cache}
    summary: "accept queue of {{ .addr }}:{{ .port }} at {{ .value | pct }}"
`)
	e := NewEngine(rules, Options{})
	n, err := NewNotifier(NotifierOptions{
		URLs:           []string{url},
		ExternalLabels: map[string]string{"instance": "cache-1"},
		GeneratorURL:   "http://cache-1:9799/api/v1/alerts",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	h := history()
	eval := func(queue uint32) time.Time {
		now := time.Now().Truncate(time.Millisecond)
		fx := &fixture{vals: map[string]float64{}, Listeners: []collector.Listener{listener("0.0.0.0", 6379, queue, 100, 0)}}
		h.Add(fx.build(now))
		if _, err := e.Eval(now, h); err != nil {
			t.Fatal(err)
		}
		n.Send(now, e.Alerts())
		return now
	}
	wait := func(what string, ok func([]amAlert) bool) []amAlert {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			alerts := getAlerts(t, url)
			if ok(alerts) {
				return alerts
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Alertmanager has %+v (notifier %+v)", what, alerts, n.Stats())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	fired := eval(90)
	alerts := wait("firing alert", func(a []amAlert) bool { return len(a) == 1 })
	want := amAlert{
		Labels: map[string]string{
			"alertname": "AcceptQueueNearFull", "severity": "warning", "team": "cache",
			"addr": "0.0.0.0", "port": "6379", "instance": "cache-1",
		},
		Annotations: map[string]string{"summary": "accept queue of 0.0.0.0:6379 at 90.0%"},
		StartsAt:    fired,
	}
	want.Status.State = "active"
	got := alerts[0]
	got.EndsAt = time.Time{} // four resend delays ahead, by Alertmanager's clock
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("firing alert (-want +got):\n%s", diff)
	}
	if !alerts[0].StartsAt.Equal(fired) || !alerts[0].EndsAt.After(time.Now()) {
		t.Errorf("startsAt %s endsAt %s, want %s and in the future", alerts[0].StartsAt, alerts[0].EndsAt, fired)
	}

	resolved := eval(10)
	// A resolved alert leaves Alertmanager's list of alerts once its endsAt
	// has passed.
	wait("resolved alert", func(a []amAlert) bool {
		return len(a) == 0 || (len(a) == 1 && !a[0].EndsAt.After(resolved))
	})
	// Alertmanager may list the change before the POST's answer reaches
	// the notifier, which counts it then.
	deadline := time.Now().Add(5 * time.Second)
	for n.Stats().Sent < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := n.Stats(); s.Sent != 2 || s.Failed != 0 {
		t.Errorf("notifier stats %+v, want 2 sent", s)
	}
}

package amtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/internal/testbin"
)

// config routes every alert to a receiver that sends nothing, grouped at
// once: the tests read Alertmanager's own list of alerts.
const config = `
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: "null"
`

// Options places an Alertmanager. The zero value runs it in the test's
// network namespace on a free port.
type Options struct {
	// Addr is the host:port it listens on; empty takes a free port of
	// 127.0.0.1 (which only the test's own namespace can be sure of).
	Addr string
	// Command starts a program; nil is exec.CommandContext. A network
	// namespace's Command runs Alertmanager inside it.
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
	// Dial opens a connection to Addr; nil is a net.Dialer. A network
	// namespace dials from inside it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Alertmanager is one Alertmanager a test can stop and start again; its
// data directory survives a restart, as a real one's would.
type Alertmanager struct {
	t      testing.TB
	bin    string
	dir    string
	addr   string
	opts   Options
	client *http.Client

	mu     sync.Mutex
	cancel context.CancelFunc
	exited chan error
	out    *bytes.Buffer // of the current run; read only after it exited
}

// New prepares an Alertmanager (it needs prometheus-alertmanager on the
// PATH: the test skips without it, or fails under CI=true) and stops it
// when the test ends. Start runs it.
func New(t testing.TB, o Options) *Alertmanager {
	t.Helper()
	testbin.RequireTools(t, "prometheus-alertmanager")
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if o.Addr == "" {
		// The tiny window before Alertmanager binds the port is covered
		// by Start failing loudly.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		o.Addr = l.Addr().String()
		l.Close()
	}
	if o.Command == nil {
		o.Command = exec.CommandContext
	}
	transport := &http.Transport{DisableKeepAlives: true}
	if o.Dial != nil {
		transport.DialContext = o.Dial
	}
	am := &Alertmanager{
		t: t, bin: bin, dir: dir, addr: o.Addr, opts: o,
		client: &http.Client{Transport: transport, Timeout: 5 * time.Second},
	}
	t.Cleanup(am.Stop)
	return am
}

// URL is the Alertmanager's base URL, for stormwatch's --alertmanager.url.
func (am *Alertmanager) URL() string { return "http://" + am.addr }

// Start runs Alertmanager and returns once it answers /-/ready.
func (am *Alertmanager) Start() {
	t := am.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &bytes.Buffer{}
	cmd := am.opts.Command(ctx, am.bin,
		"--config.file="+filepath.Join(am.dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(am.dir, "data"),
		"--web.listen-address="+am.addr,
		"--cluster.listen-address=",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	am.mu.Lock()
	am.cancel, am.exited, am.out = cancel, exited, out
	am.mu.Unlock()

	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _, err := am.get("/-/ready"); err == nil && code == http.StatusOK {
			return
		}
		select {
		case err := <-exited:
			am.mu.Lock()
			am.cancel = nil
			am.mu.Unlock()
			cancel()
			t.Fatalf("alertmanager exited: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			am.Stop()
			t.Fatalf("alertmanager not ready at %s after 20s\n%s", am.URL(), out.String())
		}
	}
}

// Stop kills Alertmanager, if it runs, and waits for it to exit. Its
// output is logged if the test failed.
func (am *Alertmanager) Stop() {
	am.mu.Lock()
	defer am.mu.Unlock()
	if am.cancel == nil {
		return
	}
	am.cancel()
	err := <-am.exited
	am.cancel = nil
	if am.t.Failed() {
		am.t.Logf("alertmanager (%v) output:\n%s", err, am.out.String())
	}
}

// Alert is the part of Alertmanager's GET /api/v2/alerts answer tests
// check.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

// Alerts returns the alerts Alertmanager holds, failing the test if it
// cannot tell.
func (am *Alertmanager) Alerts() []Alert {
	am.t.Helper()
	code, body, err := am.get("/api/v2/alerts")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%d: %s", code, body)
	}
	if err != nil {
		am.t.Fatalf("alertmanager GET /api/v2/alerts: %v", err)
	}
	var alerts []Alert
	if err := json.Unmarshal(body, &alerts); err != nil {
		am.t.Fatalf("alertmanager GET /api/v2/alerts: %v", err)
	}
	return alerts
}

// Find returns the alert whose alertname is name, or nil.
func (am *Alertmanager) Find(name string) *Alert {
	am.t.Helper()
	for _, a := range am.Alerts() {
		if a.Labels["alertname"] == name {
			return &a
		}
	}
	return nil
}

func (am *Alertmanager) get(path string) (int, []byte, error) {
	resp, err := am.client.Get(am.URL() + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, body, err
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr"
	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"
	"k8s.io/client-go/util/jsonpath"

	"github.com/stormwatch/stormwatch/headroom"
	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/promtooltest"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

// call sends a request to the daemon from inside its namespace and
// returns the status and body, whatever the status.
func (d *testDaemon) call(method, target, body string) (int, []byte, error) {
	var status int
	var out []byte
	err := d.ns.Do(func() error {
		conn, err := net.DialTimeout("tcp", d.addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "%s %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			method, target, d.addr, len(body), body)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		status = resp.StatusCode
		out, err = io.ReadAll(resp.Body)
		return err
	})
	return status, out, err
}

// headroomAt fetches the daemon's headroom at target (path and query).
func (d *testDaemon) headroomAt(target string) (int, *headroom.Report, []byte, error) {
	status, body, err := d.call("GET", target, "")
	if err != nil {
		return 0, nil, nil, err
	}
	r, err := headroom.Parse(body)
	if err != nil {
		return status, nil, body, fmt.Errorf("%w: %s", err, body)
	}
	return status, r, body, nil
}

// argoPhase judges an answer as Argo Rollouts' web metric provider does
// (metricproviders/webmetric and utils/evaluate): a non-2xx answer is an
// Error; the body is decoded into interface{}, jsonPath is evaluated with
// k8s.io/client-go/util/jsonpath (FindResults, the first value) and the
// result judged by successCondition, an expr expression over `result`;
// with no failureCondition a false condition is a Failure.
func argoPhase(status int, body []byte, jsonPath, successCondition string) (string, error) {
	if status < 200 || status > 299 {
		return "Error", nil
	}
	var data any
	if err := json.Unmarshal(body, &data); err != nil {
		return "", err
	}
	jp := jsonpath.New("metrics")
	if err := jp.Parse(jsonPath); err != nil {
		return "", err
	}
	results, err := jp.FindResults(data)
	if err != nil {
		return "Error", nil
	}
	if len(results) == 0 || len(results[0]) == 0 {
		return "Error", nil // "result of web metric produced no value"
	}
	env := map[string]any{"result": results[0][0].Interface()}
	prog, err := expr.Compile(successCondition, expr.Env(env), expr.AsBool())
	if err != nil {
		return "", err
	}
	out, err := expr.Run(prog, env)
	if err != nil {
		return "Error", nil
	}
	if out.(bool) {
		return "Successful", nil
	}
	return "Failed", nil
}

// shippedGates returns the shipped AnalysisTemplate's URL (args filled
// in: host, min's default, port), jsonPath and successCondition, and the
// path and query of the first Flagger webhook with its port replaced.
func shippedGates(t *testing.T, host string, port int) (argoURL, jsonPath, cond, flagger string) {
	t.Helper()
	root := filepath.Join("..", "..", "deploy", "rollouts")
	b, err := os.ReadFile(filepath.Join(root, "analysis-template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var at struct {
		Spec struct {
			Args []struct {
				Name  string  `yaml:"name"`
				Value *string `yaml:"value"`
			} `yaml:"args"`
			Metrics []struct {
				SuccessCondition string `yaml:"successCondition"`
				Provider         struct {
					Web struct {
						URL      string `yaml:"url"`
						JSONPath string `yaml:"jsonPath"`
					} `yaml:"web"`
				} `yaml:"provider"`
			} `yaml:"metrics"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &at); err != nil || len(at.Spec.Metrics) == 0 {
		t.Fatalf("analysis-template.yaml: %v", err)
	}
	m := at.Spec.Metrics[0]
	argoURL = m.Provider.Web.URL
	for _, a := range at.Spec.Args {
		v := ""
		switch {
		case a.Name == "host":
			v = host
		case a.Name == "port":
			v = fmt.Sprint(port)
		case a.Value != nil:
			v = *a.Value
		}
		argoURL = strings.ReplaceAll(argoURL, "{{args."+a.Name+"}}", v)
	}
	b, err = os.ReadFile(filepath.Join(root, "flagger-canary.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Spec struct {
			Analysis struct {
				Webhooks []struct {
					URL string `yaml:"url"`
				} `yaml:"webhooks"`
			} `yaml:"analysis"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil || len(c.Spec.Analysis.Webhooks) == 0 {
		t.Fatalf("flagger-canary.yaml: %v", err)
	}
	u, err := url.Parse(c.Spec.Analysis.Webhooks[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("port", fmt.Sprint(port))
	return argoURL, m.Provider.Web.JSONPath, m.SuccessCondition, u.Path + "?" + q.Encode()
}

// pathOf returns the path and query of raw.
func pathOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.RequestURI()
}

// TestHeadroomDaemon runs the daemon in a namespace: an idle host has
// headroom; a listener whose accept queue is 85% full (17 connections
// waiting on a backlog of 20, never accepted) makes it not ok and is
// named as the limit — by the API, ?fail=503, the metric, the shipped
// Argo and Flagger gates and the headroom command, over HTTP and read
// directly — until the connections are accepted.
func TestHeadroomDaemon(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	d := startDaemon(t, ns, "")
	const port, backlog, waiting = 7101, 20, 17
	argoURL, jsonPath, cond, flaggerTarget := shippedGates(t, "127.0.0.1", port)
	argoTarget := pathOf(t, argoURL)
	if u, _ := url.Parse(argoURL); u.Host != "127.0.0.1:9955" {
		t.Fatalf("the AnalysisTemplate asks %s, not the daemon's port", u.Host)
	}

	// Idle: ok, headroom near 1.
	eventually(t, "an idle host is ok", func() error {
		status, r, body, err := d.headroomAt("/api/v1/headroom")
		switch {
		case err != nil:
			return err
		case status != 200 || !r.OK || r.Headroom == nil || *r.Headroom < 0.99:
			return fmt.Errorf("status %d: %s", status, body)
		}
		return nil
	})
	if status, _, _ := d.call("GET", "/api/v1/headroom?fail=503", ""); status != 200 {
		t.Errorf("idle ?fail=503: %d", status)
	}
	// The template's own port (6379) has no listener here: no data, and
	// the gate fails rather than passes.
	status, body, err := d.call("GET", strings.Replace(argoTarget, fmt.Sprintf("port=%d", port), "port=6379", 1), "")
	if err != nil {
		t.Fatal(err)
	}
	if phase, err := argoPhase(status, body, jsonPath, cond); err != nil || phase != "Failed" {
		t.Errorf("Argo on a port nothing listens on: %s %v\n%s", phase, err, body)
	}

	// 17 connections wait on a backlog of 20: 85%.
	var lfd int
	var clients []int
	if err := ns.Do(func() (err error) {
		if lfd, err = listen(unix.AF_INET, []byte{127, 0, 0, 1}, port, backlog); err != nil {
			return err
		}
		clients, err = connectN(waiting, port)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(lfd); closeAll(clients) })

	var full *headroom.Report
	eventually(t, "the accept queue at 85% is the limit", func() error {
		status, r, body, err := d.headroomAt("/api/v1/headroom")
		if err != nil {
			return err
		}
		if status != 200 || r.OK || r.Limiting == nil || r.Limiting.ID != "accept_queue" ||
			r.Limiting.Labels["port"] != fmt.Sprint(port) || r.Limiting.Labels["addr"] != "127.0.0.1" ||
			r.Limiting.Used == nil || *r.Limiting.Used != waiting || *r.Limiting.Limit != backlog {
			return fmt.Errorf("status %d: %s", status, body)
		}
		full = r
		return nil
	})
	if math.Abs(*full.Headroom-0.15) > 1e-9 || len(full.Reasons) == 0 || full.Reasons[0] != "accept queue of 127.0.0.1:7101 at 85% (limit 20)" {
		t.Errorf("headroom %v, reasons %q", *full.Headroom, full.Reasons)
	}
	if status, r, body, err := d.headroomAt("/api/v1/headroom?fail=503"); err != nil || status != 503 || r.OK {
		t.Errorf("?fail=503: %d %v %s", status, err, body)
	}
	// Flagger POSTs its payload to the shipped webhook URL.
	payload := `{"name":"valkey-proxy","namespace":"prod","phase":"Progressing","metadata":{}}`
	if status, body, err := d.call("POST", flaggerTarget, payload); err != nil || status != 503 {
		t.Errorf("Flagger webhook %s: %d %v %s", flaggerTarget, status, err, body)
	}
	status, body, err = d.call("GET", argoTarget, "")
	if err != nil {
		t.Fatal(err)
	}
	if phase, err := argoPhase(status, body, jsonPath, cond); err != nil || phase != "Failed" {
		t.Errorf("Argo with the queue at 85%%: %s %v\n%s", phase, err, body)
	}
	// The metric.
	eventually(t, "the metric names the queue", func() error {
		raw, err := d.rawScrape()
		if err != nil {
			return err
		}
		m, err := d.scrape()
		if err != nil {
			return err
		}
		ratio, ok := m.Value("stormwatch_headroom_ratio")
		info, _ := m.Value("stormwatch_headroom_limiting_info", "queue", "accept_queue", "kind", "listener", "entity", fmt.Sprintf("127.0.0.1:%d", port))
		if !ok || math.Abs(ratio-0.15) > 1e-9 || info != 1 {
			return fmt.Errorf("headroom_ratio %v (present %v), limiting_info %v", ratio, ok, info)
		}
		promtooltest.CheckMetrics(t, raw)
		return nil
	})

	// The command: over HTTP and read directly, not ok; --wait times out.
	daemonURL := "http://" + d.addr
	out, code := runHeadroomIn(t, ns, "--url", daemonURL)
	if code != exitNotOK || !strings.Contains(out, "limiting: accept queue 127.0.0.1:7101") {
		t.Errorf("headroom --url: exit %d\n%s", code, out)
	}
	out, code = runHeadroomIn(t, ns, "--port", fmt.Sprint(port))
	if code != exitNotOK || !strings.Contains(out, "this host") || !strings.Contains(out, "accept queue of 127.0.0.1:7101 at 85% (limit 20)") {
		t.Errorf("headroom (this host): exit %d\n%s", code, out)
	}
	start := time.Now()
	out, code = runHeadroomIn(t, ns, "--url", daemonURL, "--wait", "--timeout=2s", "--interval=200ms")
	if took := time.Since(start); code != exitNotOK || took < 2*time.Second || !strings.Contains(out, "timed out after 2s") {
		t.Errorf("headroom --wait --timeout=2s: exit %d after %s\n%s", code, took, out)
	}

	// Waiting, over HTTP and directly, while the server accepts.
	remote := startHeadroomIn(t, ns, "--url", daemonURL, "--wait", "--timeout=60s", "--interval=200ms")
	local := startHeadroomIn(t, ns, "--port", fmt.Sprint(port), "--wait", "--timeout=60s", "--interval=200ms")
	time.Sleep(1500 * time.Millisecond)
	for _, w := range []*waitingCmd{remote, local} {
		if w.exited() {
			t.Fatalf("%s returned before the queue drained:\n%s", w.name, w.out)
		}
	}
	for range waiting {
		fd, _, err := unix.Accept(lfd)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, fd)
	}
	for _, w := range []*waitingCmd{remote, local} {
		if code := w.wait(t, 20*time.Second); code != exitOK {
			t.Errorf("%s: exit %d after the queue drained, want 0:\n%s", w.name, code, w.out)
		}
	}
	status, r, body, err := d.headroomAt("/api/v1/headroom?fail=503")
	if err != nil || status != 200 || !r.OK {
		t.Errorf("after the drain: %d %v %s", status, err, body)
	}
	status, body, err = d.call("GET", argoTarget, "")
	if err != nil {
		t.Fatal(err)
	}
	if phase, err := argoPhase(status, body, jsonPath, cond); err != nil || phase != "Successful" {
		t.Errorf("Argo after the drain: %s %v\n%s", phase, err, body)
	}
	if status, body, err := d.call("POST", flaggerTarget, payload); err != nil || status != 200 {
		t.Errorf("Flagger webhook after the drain: %d %v %s", status, err, body)
	}
}

// runHeadroomIn runs `stormwatch headroom` in ns and returns its output
// and exit code.
func runHeadroomIn(t *testing.T, ns *netnstest.NS, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, testbin.Stormwatch(t), append([]string{"headroom"}, args...)...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("stormwatch headroom: %v\n%s", err, out)
	return "", 0
}

// waitingCmd is a `stormwatch headroom --wait` running in the background.
type waitingCmd struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func startHeadroomIn(t *testing.T, ns *netnstest.NS, args ...string) *waitingCmd {
	t.Helper()
	w := &waitingCmd{name: "stormwatch headroom " + strings.Join(args, " "), out: &syncBuffer{}, done: make(chan error, 1)}
	w.cmd = ns.Command(context.Background(), testbin.Stormwatch(t), append([]string{"headroom"}, args...)...)
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			w.cmd.Process.Kill()
		}
	})
	return w
}

func (w *waitingCmd) exited() bool {
	select {
	case err := <-w.done:
		w.done <- err
		return true
	default:
		return false
	}
}

// wait returns the exit code, failing t after timeout.
func (w *waitingCmd) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-w.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		return 0
	case <-time.After(timeout):
		w.cmd.Process.Kill()
		t.Fatalf("%s still running after %s:\n%s", w.name, timeout, w.out)
		return -1
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

// runCheckIn runs `stormwatch check` in ns (as user, unless empty) and
// returns its output and exit code.
func runCheckIn(t *testing.T, ns *netnstest.NS, user string, args ...string) (string, int) {
	t.Helper()
	argv := append([]string{testbin.Stormwatch(t), "check"}, args...)
	if user != "" {
		argv = append([]string{"setpriv", "--reuid=" + user, "--regid=" + user, "--clear-groups", "--inh-caps=-all"}, argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, argv[0], argv[1:]...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("stormwatch check: %v\n%s", err, out)
	return "", 0
}

func TestCheckQuietNamespace(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	out, code := runCheckIn(t, ns, "", "--window=1s")
	if code != exitOK {
		t.Fatalf("exit %d on a quiet namespace, want 0:\n%s", code, out)
	}
	for _, want := range []string{"CONNTRACK", "SYSCTL SIZING", "net.core.somaxconn", "Result: OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestCheckFullAcceptQueue holds an accept queue full while clients keep
// arriving: check must exit 2 and name the port.
func TestCheckFullAcceptQueue(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	const port = 7401
	var lfd int
	var clients []int
	if err := ns.Do(func() (err error) {
		if lfd, err = listen(unix.AF_INET, []byte{127, 0, 0, 1}, port, 16); err != nil {
			return err
		}
		clients, err = connectN(40, port)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	defer func() { closeAll(clients) }()
	// More clients during the window, so its overflow counter moves.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			// A client the full queue holds up is part of the storm.
			_ = ns.Do(func() error {
				fds, err := connectN(1, port)
				clients = append(clients, fds...)
				return err
			})
		}
	}()
	out, code := runCheckIn(t, ns, "", "--format=json")
	close(stop)
	<-done

	if code != exitCritical {
		t.Fatalf("exit %d with a full accept queue, want 2:\n%s", code, out)
	}
	var report struct {
		Status   string `json:"status"`
		Sections []struct {
			Items []struct {
				ID     string            `json:"id"`
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
				Value  float64           `json:"value"`
				Limit  float64           `json:"limit"`
				Alerts []struct {
					Name string `json:"alertname"`
				} `json:"alerts"`
			} `json:"items"`
		} `json:"sections"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	found := false
	for _, sec := range report.Sections {
		for _, it := range sec.Items {
			if it.ID == "accept_queue" && it.Labels["port"] == fmt.Sprint(port) {
				found = true
				if it.Status != "CRIT" || it.Value != 17 || it.Limit != 16 {
					t.Errorf("accept queue item: status %s, %v/%v, want CRIT 17/16: %+v", it.Status, it.Value, it.Limit, it)
				}
			}
		}
	}
	if !found {
		t.Errorf("no accept queue item names port %d:\n%s", port, out)
	}

	text, code := runCheckIn(t, ns, "", "--window=0", "--quiet", fmt.Sprintf("--port=%d", port))
	if code == exitOK || !strings.Contains(text, fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Errorf("quiet text check, exit %d, does not name the port:\n%s", code, text)
	}
}

// TestCheckUnprivileged runs check as nobody on a kernel without
// /proc/net/stat/nf_conntrack (a fixture tree): the conntrack stats item is
// UNKNOWN, saying it needs CAP_NET_ADMIN, and the rest is judged.
func TestCheckUnprivileged(t *testing.T) {
	testbin.RequireTools(t, "setpriv")
	ns := netnstest.New(t)
	root, err := filepath.Abs(filepath.Join("..", "..", "testdata", "no-conntrack-procfs"))
	if err != nil {
		t.Fatal(err)
	}
	out, code := runCheckIn(t, ns, "65534", "--window=500ms", "--path.root="+root)
	if code == exitUnknown {
		t.Fatalf("exit 3 as nobody:\n%s", out)
	}
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "conntrack drops") {
			line = l
		}
	}
	if !strings.Contains(line, "UNKNOWN") || !strings.Contains(out, "CAP_NET_ADMIN") {
		t.Errorf("conntrack stats not UNKNOWN with the reason:\n%s", out)
	}
	if !strings.Contains(out, "net.core.somaxconn") {
		t.Errorf("the rest was not checked:\n%s", out)
	}
}

package main

// The valkey source against a real redis-server (Debian's, the
// Valkey-compatible server) in a network namespace: discovered without
// config, its limits read and joined to its listener, its storm rules
// firing; a password read from a file and never shown; a server that
// accepts and never answers failing on its own while the kernel sample
// keeps its interval.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

// startRedisIn starts redis-server on 127.0.0.1:port in ns with extra
// arguments, waits until it answers PING and returns its process ("ip
// netns exec" execs it: the process is redis-server itself).
func startRedisIn(t *testing.T, ns *netnstest.NS, port int, extra ...string) *os.Process {
	t.Helper()
	testbin.RequireTools(t, "redis-server")
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--protected-mode", "no", "--dir", t.TempDir(), "--loglevel", "warning"}, extra...)
	cmd := ns.Command(context.Background(), "redis-server", args...)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	eventually(t, "redis-server answers", func() error {
		var reply string
		err := ns.Do(func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Second))
			fmt.Fprintf(c, "PING\r\n")
			reply, err = bufio.NewReader(c).ReadString('\n')
			return err
		})
		if err != nil {
			return fmt.Errorf("%w (log: %s)", err, log)
		}
		if !strings.HasPrefix(reply, "+PONG") && !strings.HasPrefix(reply, "-NOAUTH") {
			return fmt.Errorf("PING answered %q", reply)
		}
		return nil
	})
	return cmd.Process
}

// TestValkeyDiscovered: a redis-server started in the namespace is found
// without any config; its maxclients and tcp-backlog are read; with
// somaxconn 128 and tcp-backlog 511 ValkeyBacklogCapped names both; 60
// clients against maxclients 50 make ValkeyRejectingConnections fire for
// that target; check shows its Valkey section.
func TestValkeyDiscovered(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	if out, err := ns.Exec(context.Background(), "sysctl", "-w", "net.core.somaxconn=128"); err != nil {
		t.Fatalf("sysctl: %v %s", err, out)
	}
	startRedisIn(t, ns, 6379, "--maxclients", "50", "--tcp-backlog", "511")
	d := startDaemon(t, ns, "")
	target := []string{"target", "127.0.0.1:6379"}

	eventually(t, "the server discovered and read", func() error {
		m, err := d.scrape()
		if err != nil {
			return err
		}
		if v := value(m, "stormwatch_valkey_up", target...); v != 1 {
			return fmt.Errorf("valkey_up %v", v)
		}
		for name, want := range map[string]float64{"stormwatch_valkey_maxclients": 50, "stormwatch_valkey_config_tcp_backlog": 511} {
			if v := value(m, name, target...); v != want {
				return fmt.Errorf("%s = %v, want %v", name, v, want)
			}
		}
		return nil
	})
	eventually(t, "ValkeyBacklogCapped", func() error {
		as, err := d.alerts()
		if err != nil {
			return err
		}
		a, ok := firing(as, "ValkeyBacklogCapped", map[string]string{"target": "127.0.0.1:6379"})
		if !ok {
			return fmt.Errorf("not firing: %+v", as)
		}
		if s := a.Annotations["summary"]; !strings.Contains(s, "511") || !strings.Contains(s, "128") {
			return fmt.Errorf("summary %q does not name 511 and 128", s)
		}
		return nil
	})
	// The guess about the listener gives way to what the server says.
	if as, _ := d.alerts(); func() bool {
		_, ok := firing(as, "BacklogCappedBySomaxconn", map[string]string{"port": "6379"})
		return ok
	}() {
		t.Error("BacklogCappedBySomaxconn fires for a listener whose server is known")
	}

	// check, while the server has room for its connection.
	out, code := runCheckIn(t, ns, "", "--window=1s")
	if code < exitWarning {
		t.Errorf("check exit %d, want a warning or worse:\n%s", code, out)
	}
	for _, want := range []string{"VALKEY", "clients 127.0.0.1:6379", "tcp-backlog 127.0.0.1:6379", "ValkeyBacklogCapped", "redis "} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	// 60 clients against maxclients 50 (stormwatch holds one).
	var fds []int
	if err := ns.Do(func() error {
		var err error
		fds, err = connectN(60, 6379)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer closeAll(fds)
	eventually(t, "ValkeyRejectingConnections", func() error {
		as, err := d.alerts()
		if err != nil {
			return err
		}
		if _, ok := firing(as, "ValkeyRejectingConnections", map[string]string{"target": "127.0.0.1:6379", "severity": "critical"}); !ok {
			m, _ := d.scrape()
			return fmt.Errorf("not firing (rejected_connections %v): %+v", value(m, "stormwatch_valkey_rejected_connections_total", target...), as)
		}
		return nil
	})
	// The server is full now: a check's own connection is refused, and
	// check says so for that server.
	out, _ = runCheckIn(t, ns, "", "--window=1s")
	if !strings.Contains(out, "maxclients") {
		t.Errorf("check on a full server does not say it is at maxclients:\n%s", out)
	}
}

// TestValkeyPassword: a server with requirepass is read with the password
// from a file; a wrong password is a clear failure of that target only;
// the secret never appears in the log, /metrics, the alerts or check.
func TestValkeyPassword(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	const secret = "s3cret-do-not-print"
	startRedisIn(t, ns, 6380, "--requirepass", secret)
	dir := t.TempDir()
	good := writeFile(t, dir, "good.pw", secret+"\n")
	bad := writeFile(t, dir, "bad.pw", "wrong-"+secret+"\n")
	conf := func(pw string) string {
		return writeFile(t, dir, filepath.Base(pw)+".yml", fmt.Sprintf("valkey:\n  discover: false\n  targets:\n    - address: 127.0.0.1:6380\n      password_file: %s\n", pw))
	}
	target := []string{"target", "127.0.0.1:6380"}

	d := startDaemon(t, ns, "", "--config="+conf(good))
	eventually(t, "read with the password", func() error {
		m, err := d.scrape()
		if err != nil {
			return err
		}
		if v := value(m, "stormwatch_valkey_up", target...); v != 1 {
			return fmt.Errorf("valkey_up %v", v)
		}
		if _, ok := m.Value("stormwatch_valkey_connected_clients", target...); !ok {
			return fmt.Errorf("no connected_clients")
		}
		return nil
	})

	d2 := startDaemonAt(t, ns, "127.0.0.1:9956", "--config="+conf(bad))
	eventually(t, "a wrong password fails", func() error {
		m, err := d2.scrape()
		if err != nil {
			return err
		}
		if v, ok := m.Value("stormwatch_valkey_up", target...); !ok || v != 0 {
			return fmt.Errorf("valkey_up %v (present %v), want 0", v, ok)
		}
		if _, ok := m.Value("stormwatch_valkey_connected_clients", target...); ok {
			return fmt.Errorf("values from a target that refused the password")
		}
		if v := value(m, "stormwatch_collector_success", "collector", "listeners"); v != 1 {
			return fmt.Errorf("the kernel sources suffered: listeners success %v", v)
		}
		if !strings.Contains(d2.log.String(), "target=127.0.0.1:6380") || !strings.Contains(strings.ToLower(d2.log.String()), "auth") {
			return fmt.Errorf("the log does not say the target failed to authenticate:\n%s", d2.log)
		}
		return nil
	})
	out, _ := runCheckIn(t, ns, "", "--window=1s", "--format=json", "--config="+conf(bad))
	for what, text := range map[string]string{"good daemon log": d.log.String(), "bad daemon log": d2.log.String(), "check": out} {
		if strings.Contains(text, secret) {
			t.Errorf("the secret appears in the %s", what)
		}
	}
	for _, dd := range []*testDaemon{d, d2} {
		for _, path := range []string{"/metrics", "/api/v1/alerts"} {
			body, err := dd.get(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(body), secret) {
				t.Errorf("the secret appears in %s", path)
			}
		}
	}
	if !strings.Contains(out, "127.0.0.1:6380") || !strings.Contains(strings.ToLower(out), "auth") {
		t.Errorf("check does not say the target failed to authenticate:\n%s", out)
	}
}

// TestValkeyTargetThatNeverAnswers: a configured target that accepts and
// never answers fails within its timeout, while the kernel sample keeps
// its interval.
func TestValkeyTargetThatNeverAnswers(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	var l net.Listener
	if err := ns.Do(func() error {
		var err error
		l, err = net.Listen("tcp", "127.0.0.1:6381")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { // read, never answer
				defer c.Close()
				buf := make([]byte, 1024)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	cfg := writeFile(t, t.TempDir(), "hang.yml", "valkey:\n  discover: false\n  timeout: 1s\n  targets:\n    - address: 127.0.0.1:6381\n")
	d := startDaemon(t, ns, "", "--config="+cfg) // samples every 200 ms
	target := []string{"target", "127.0.0.1:6381"}

	start := time.Now()
	var stamps []float64
	eventually(t, "the poll of the target times out", func() error {
		if !strings.Contains(d.log.String(), "timed out") {
			return fmt.Errorf("no timeout in the log:\n%s", d.log)
		}
		return nil
	})
	t.Logf("the poll's timeout (1s) was logged %v after the daemon answered", time.Since(start).Round(10*time.Millisecond))
	eventually(t, "the target fails on its own", func() error {
		m, err := d.scrape()
		if err != nil {
			return err
		}
		stamps = append(stamps, value(m, "stormwatch_last_sample_timestamp_seconds"))
		if v, ok := m.Value("stormwatch_valkey_up", target...); !ok || v != 0 {
			return fmt.Errorf("valkey_up %v (present %v)", v, ok)
		}
		if v := value(m, "stormwatch_collector_success", "collector", "valkey"); v != 0 {
			return fmt.Errorf("valkey collector_success %v", v)
		}
		if v := value(m, "stormwatch_collector_success", "collector", "listeners"); v != 1 {
			return fmt.Errorf("listeners collector_success %v", v)
		}
		return nil
	})
	// Keep scraping for 3 s: the sample time moves on every 200 ms however
	// long the target hangs.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		m, err := d.scrape()
		if err != nil {
			t.Fatal(err)
		}
		stamps = append(stamps, value(m, "stormwatch_last_sample_timestamp_seconds"))
		time.Sleep(100 * time.Millisecond)
	}
	var biggest float64
	for i := 1; i < len(stamps); i++ {
		biggest = max(biggest, stamps[i]-stamps[i-1])
	}
	if biggest > 0.8 {
		t.Errorf("the kernel sample went %.2fs without a new sample while the target hung (interval 200ms)", biggest)
	}
}

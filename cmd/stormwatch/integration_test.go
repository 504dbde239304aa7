package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/promtooltest"
	"github.com/stormwatch/stormwatch/internal/stormlab"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// testDaemon is a stormwatch process running inside a namespace.
type testDaemon struct {
	ns   *netnstest.NS
	addr string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDaemon runs stormwatch in ns (as user, unless empty) with args and
// waits until /metrics answers.
func startDaemon(t testing.TB, ns *netnstest.NS, user string, args ...string) *testDaemon {
	t.Helper()
	return startDaemonAs(t, ns, user, "127.0.0.1:9955", args...)
}

// startDaemonAt is startDaemon, as root, listening on addr.
func startDaemonAt(t testing.TB, ns *netnstest.NS, addr string, args ...string) *testDaemon {
	t.Helper()
	return startDaemonAs(t, ns, "", addr, args...)
}

func startDaemonAs(t testing.TB, ns *netnstest.NS, user, addr string, args ...string) *testDaemon {
	t.Helper()
	d := &testDaemon{ns: ns, addr: addr, log: &syncBuffer{}, done: make(chan error, 1)}
	argv := []string{testbin.Stormwatch(t), "--web.listen-address=" + d.addr, "--log.level=debug"}
	// Sample fast unless the test says otherwise.
	for _, def := range []string{"--collect.interval=200ms", "--collect.syn-recv-interval=0s"} {
		name, _, _ := strings.Cut(def, "=")
		if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, name+"=") }) {
			argv = append(argv, def)
		}
	}
	argv = append(argv, args...)
	if user != "" {
		argv = append([]string{"setpriv", "--reuid=" + user, "--regid=" + user, "--clear-groups", "--inh-caps=-all"}, argv...)
	}
	d.cmd = ns.Command(context.Background(), argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("stormwatch log:\n%s", d.log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := d.scrape(); err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("stormwatch did not serve /metrics within 10s; log:\n%s", d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawScrape fetches /metrics from inside the namespace.
func (d *testDaemon) rawScrape() ([]byte, error) { return d.get("/metrics") }

// get fetches path from the daemon, from inside the namespace.
func (d *testDaemon) get(path string) ([]byte, error) { return d.request("GET", path) }

// request sends a request without a body to the daemon from inside the
// namespace (a raw connection: net/http dials on other threads) and wants
// 200 OK.
func (d *testDaemon) request(method, path string) ([]byte, error) {
	var body []byte
	err := d.ns.Do(func() error {
		conn, err := net.DialTimeout("tcp", d.addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", method, path, d.addr)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
		}
		body, err = io.ReadAll(resp.Body)
		return err
	})
	return body, err
}

// scrape fetches and parses /metrics (stormlab.ParseExposition).
func (d *testDaemon) scrape() (stormlab.Exposition, error) {
	body, err := d.rawScrape()
	if err != nil {
		return nil, err
	}
	return stormlab.ParseExposition(body)
}

// value is the one series of name with the given label pairs, 0 when
// there is none.
func value(x stormlab.Exposition, name string, labelPairs ...string) float64 {
	v, _ := x.Value(name, labelPairs...)
	return v
}

// listen opens a TCP listener with an exact backlog in the calling
// thread's namespace (Go's net.Listen always uses somaxconn).
func listen(family int, addr []byte, port, backlog int) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, err
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		s := &unix.SockaddrInet4{Port: port}
		copy(s.Addr[:], addr)
		sa = s
	} else {
		s := &unix.SockaddrInet6{Port: port}
		copy(s.Addr[:], addr)
		sa = s
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// connectN starts n non-blocking connects to 127.0.0.1:port and returns
// their descriptors.
func connectN(n, port int) ([]int, error) {
	var fds []int
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fds, err
		}
		fds = append(fds, fd)
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		if err != nil && err != unix.EINPROGRESS {
			return fds, err
		}
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// tcpExt reads one TcpExt counter inside the namespace, as nstat would.
func tcpExt(t *testing.T, ns *netnstest.NS, field string) float64 {
	t.Helper()
	out, err := ns.Exec(context.Background(), "cat", "/proc/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(names) != len(values) {
			continue
		}
		for j, n := range names {
			if n == field {
				v, err := strconv.ParseFloat(values[j], 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatalf("TcpExt %s not found", field)
	return 0
}

// eventually polls fn every 100ms until it returns nil or 10s pass.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
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

// TestDaemonInNamespace runs the daemon in a fresh namespace and checks
// its /metrics against the kernel's own tools: the accept queue against
// ss, conntrack entries against conntrack -C, ListenOverflows against
// /proc/net/netstat.
func TestDaemonInNamespace(t *testing.T) {
	testbin.RequireTools(t, "nft", "conntrack", "ss")
	ns := netnstest.New(t)
	ctx := context.Background()
	// Any ct expression makes the namespace track connections.
	if out, err := ns.Exec(ctx, "nft", "add table inet sw; add chain inet sw in { type filter hook input priority 0; }; add rule inet sw in ct state new counter"); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	d := startDaemon(t, ns, "")

	const port, backlog = 7001, 16
	var lfd int
	var clients []int
	overflowsBefore := tcpExt(t, ns, "ListenOverflows")
	if err := ns.Do(func() error {
		var err error
		if lfd, err = listen(unix.AF_INET, []byte{127, 0, 0, 1}, port, backlog); err != nil {
			return err
		}
		clients, err = connectN(40, port)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	defer closeAll(clients)

	listener := []string{"addr", "127.0.0.1", "port", strconv.Itoa(port)}
	eventually(t, "accept queue matches ss", func() error {
		out, err := ns.Exec(ctx, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port))
		if err != nil {
			return err
		}
		f := strings.Fields(string(out))
		if len(f) < 3 {
			return fmt.Errorf("ss printed %q", out)
		}
		m, err := d.scrape()
		if err != nil {
			return err
		}
		got := fmt.Sprintf("%v/%v", value(m, "stormwatch_listener_accept_queue_length", listener...), value(m, "stormwatch_listener_accept_queue_limit", listener...))
		want := f[1] + "/" + f[2]
		if got != want {
			return fmt.Errorf("stormwatch says %s, ss says %s", got, want)
		}
		if want != "17/16" {
			t.Logf("ss Recv-Q/Send-Q %s (17/16 expected on current kernels)", want)
		}
		return nil
	})

	eventually(t, "ListenOverflows moves and our counter with it", func() error {
		now := tcpExt(t, ns, "ListenOverflows")
		m, err := d.scrape()
		if err != nil {
			return err
		}
		ours := value(m, "stormwatch_tcp_listen_overflows_total")
		after := tcpExt(t, ns, "ListenOverflows")
		if now <= overflowsBefore {
			return fmt.Errorf("kernel ListenOverflows has not moved from %v", overflowsBefore)
		}
		// The daemon's value is from its last sample, at most one interval
		// old: it has moved past the start and is not ahead of the kernel.
		if ours <= overflowsBefore || ours > after {
			return fmt.Errorf("stormwatch says %v, kernel %v before the storm, %v now", ours, overflowsBefore, after)
		}
		return nil
	})

	eventually(t, "conntrack entries match conntrack -C", func() error {
		out, err := ns.Exec(ctx, "conntrack", "-C")
		if err != nil {
			return err
		}
		want, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
		if err != nil {
			return err
		}
		m, err := d.scrape()
		if err != nil {
			return err
		}
		if want < 17 {
			return fmt.Errorf("conntrack -C says %v, expected the 17 accepted flows at least", want)
		}
		if got := value(m, "stormwatch_conntrack_entries"); got != want {
			return fmt.Errorf("stormwatch says %v, conntrack -C %v", got, want)
		}
		return nil
	})

	body, err := d.rawScrape()
	if err != nil {
		t.Fatal(err)
	}
	promtooltest.CheckMetrics(t, body)
}

// TestDaemonUnprivileged runs the daemon as nobody: every source still
// works on a kernel with /proc/net/stat/nf_conntrack; on one without it
// (a fixture tree) only conntrack_stats fails, for want of CAP_NET_ADMIN.
func TestDaemonUnprivileged(t *testing.T) {
	testbin.RequireTools(t, "setpriv")
	ns := netnstest.New(t)
	nobody := "65534"

	t.Run("host kernel", func(t *testing.T) {
		d := startDaemon(t, ns, nobody)
		m, err := d.scrape()
		if err != nil {
			t.Fatal(err)
		}
		for _, src := range []string{"sysctl", "tcpstat", "listeners", "conntrack_stats"} {
			if got := value(m, "stormwatch_collector_success", "collector", src); got != 1 {
				t.Errorf("collector_success{%s} = %v as nobody, want 1", src, got)
			}
		}
	})

	t.Run("kernel without conntrack procfs", func(t *testing.T) {
		root, err := filepath.Abs(filepath.Join("..", "..", "testdata", "no-conntrack-procfs"))
		if err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, ns, nobody, "--path.root="+root)
		m, err := d.scrape()
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]float64{"sysctl": 1, "tcpstat": 1, "conntrack": 1, "listeners": 1, "conntrack_stats": 0}
		for src, w := range want {
			if got, ok := m.Value("stormwatch_collector_success", "collector", src); !ok || got != w {
				t.Errorf("collector_success{%s} = %v (present %v), want %v", src, got, ok, w)
			}
		}
		if !strings.Contains(d.log.String(), "CAP_NET_ADMIN") {
			t.Errorf("log does not say conntrack stats need CAP_NET_ADMIN:\n%s", d.log)
		}
	})
}

// TestDaemonSIGTERM checks the daemon stops cleanly, exit 0, on SIGTERM.
func TestDaemonSIGTERM(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	d := startDaemon(t, ns, "")
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		d.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, d.log)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after SIGTERM")
	}
	if !strings.Contains(d.log.String(), "shutting down") {
		t.Errorf("no shutdown log line:\n%s", d.log)
	}
}

// TestDaemonPortTakenNotReady: with its port already taken the daemon exits
// non-zero and never tells systemd it is ready (READY=1 would make systemd
// restart a "ready" daemon every RestartSec).
func TestDaemonPortTakenNotReady(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	var taken net.Listener
	if err := ns.Do(func() error {
		var err error
		taken, err = net.Listen("tcp", "127.0.0.1:9955")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	cmd := ns.Command(context.Background(), testbin.Stormwatch(t), "--web.listen-address=127.0.0.1:9955", "--collect.interval=200ms")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("exit = %v, want exit status 3; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "cannot listen") || !strings.Contains(string(out), "address already in use") {
		t.Errorf("the log does not say why:\n%s", out)
	}
	if err := notify.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := notify.Read(buf)
		if err != nil {
			break // nothing more was sent
		}
		if strings.Contains(string(buf[:n]), "READY=1") {
			t.Fatalf("READY=1 sent by a daemon that could not listen: %q", buf[:n])
		}
	}
}

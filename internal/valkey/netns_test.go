//go:build linux

package valkey

// Tests against a real redis-server (Debian's 7.0, the Valkey-compatible
// server the project tests with), each in a network namespace of its own
// (netnstest). They need root; under CI they fail instead of skipping.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/testbin"
	"github.com/stormwatch/stormwatch/procfs"
)

// newNS returns a fresh network namespace for a test that runs
// redis-server in it.
func newNS(t testing.TB) *netnstest.NS {
	t.Helper()
	testbin.RequireTools(t, "redis-server", "redis-cli", "ip", "ss")
	return netnstest.New(t)
}

// redisServer is a redis-server the test started inside a namespace.
type redisServer struct {
	ns   *netnstest.NS
	cmd  *exec.Cmd
	dir  string
	addr string
}

// startRedis starts redis-server on 127.0.0.1:6379 inside ns with conf
// appended to a minimal configuration, waits until it accepts
// connections, and stops it when the test ends.
func startRedis(t testing.TB, ns *netnstest.NS, conf string) *redisServer {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "redis.conf")
	base := fmt.Sprintf("port 6379\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir %s\nlogfile %s\n",
		dir, filepath.Join(dir, "redis.log"))
	if err := os.WriteFile(path, []byte(base+conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(context.Background(), "redis-server", path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &redisServer{ns: ns, cmd: cmd, dir: dir, addr: "127.0.0.1:6379"}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT) // in case a test stopped it
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := s.dial(context.Background())
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server did not accept connections within 10s: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial opens a TCP connection to the server from inside its namespace.
func (s *redisServer) dial(ctx context.Context) (net.Conn, error) {
	var c net.Conn
	err := s.ns.Do(func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", s.addr)
		return err
	})
	return c, err
}

// cli runs redis-cli inside the namespace (ground truth).
func (s *redisServer) cli(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.ns.Exec(context.Background(), "redis-cli", append([]string{"-p", "6379", "--no-auth-warning"}, args...)...)
	if err != nil {
		t.Fatalf("redis-cli %v: %v", args, err)
	}
	return string(out)
}

// client returns a Client for cfg that dials inside the server's
// namespace.
func (s *redisServer) client(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = s.addr
	}
	c := newTestClient(t, cfg)
	c.dialNet = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := s.ns.Do(func() error {
			var err error
			conn, err = c.dialer.DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
	return c
}

// openClients opens n idle TCP connections to the server, closed when the
// test ends.
func (s *redisServer) openClients(t testing.TB, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := s.dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		t.Cleanup(func() { c.Close() })
	}
	return conns
}

func TestRealInfoAndConfig(t *testing.T) {
	ns := newNS(t)
	s := startRedis(t, ns, "maxclients 50\ntcp-backlog 300\n")
	c := s.client(t, Config{})
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name() != "redis" || !strings.HasPrefix(info.Version(), "7.") {
		t.Errorf("Name, Version = %q, %q; want redis 7.x", info.Name(), info.Version())
	}
	want := Info{
		RedisVersion:             info.RedisVersion,
		ProcessID:                i64(int64(s.cmd.Process.Pid)),
		TCPPort:                  i64(6379),
		UptimeSeconds:            info.UptimeSeconds,
		ConnectedClients:         i64(1), // this Client
		MaxClients:               i64(50),
		BlockedClients:           i64(0),
		TotalConnectionsReceived: info.TotalConnectionsReceived,
		RejectedConnections:      i64(0),
		EvictedClients:           i64(0),
		// Redis 7.0 has no eventloop_cycles and no buffer-limit
		// disconnection counters: absent, not zero.
	}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("Info (-want +got):\n%s", diff)
	}
	if !info.UptimeSeconds.Valid || !info.TotalConnectionsReceived.Valid {
		t.Error("uptime or total_connections_received absent")
	}
	sc, err := c.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel caps the backlog at somaxconn, but CONFIG says what the
	// server asked for.
	wantSC := ServerConfig{TCPBacklog: i64(300), MaxClients: i64(50)}
	if diff := cmp.Diff(wantSC, sc); diff != "" {
		t.Errorf("Config (-want +got):\n%s", diff)
	}
}

// TestRealRejected fills a server at maxclients 50 with 60 more clients:
// the Client, connected before the storm, keeps its slot and sees every
// refusal.
func TestRealRejected(t *testing.T) {
	ns := newNS(t)
	s := startRedis(t, ns, "maxclients 50\n")
	c := s.client(t, Config{})
	ctx := context.Background()
	before, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.openClients(t, 60)
	// 61 connections (60 + the Client's) for 50 slots: 11 refused.
	var info Info
	deadline := time.Now().Add(10 * time.Second)
	for {
		if info, err = c.Info(ctx); err != nil {
			t.Fatal(err)
		}
		if info.RejectedConnections.Value >= before.RejectedConnections.Value+11 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := info.RejectedConnections.Value - before.RejectedConnections.Value; got != 11 {
		t.Errorf("rejected_connections grew by %d, want 11", got)
	}
	if info.ConnectedClients.Value != 50 || info.MaxClients.Value != 50 {
		t.Errorf("connected_clients %v of maxclients %v, want 50 of 50", info.ConnectedClients, info.MaxClients)
	}
	// A Client that connects now is refused with a clear error.
	late := s.client(t, Config{})
	if _, err := late.Info(ctx); !errors.Is(err, ErrMaxClients) {
		t.Errorf("Info of a new Client at maxclients = %v, want ErrMaxClients", err)
	}
}

func TestRealAuth(t *testing.T) {
	const secret = "Xq7-requirepass-secret-91"
	const userSecret = "Zk4-monitor-secret-27"
	const wrong = "Wr0ng-password-55"
	ns := newNS(t)
	s := startRedis(t, ns, fmt.Sprintf("requirepass %s\n"+
		"user monitor on >%s ~* -@all +info +config|get +client|list +client|id +client|kill +client|setname +hello +auth +ping\n",
		secret, userSecret))
	dir := t.TempDir()
	pwFile := func(name, pw string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	for _, cfg := range []Config{
		{PasswordFile: pwFile("default", secret)},
		{Username: "monitor", PasswordFile: pwFile("monitor", userSecret)},
	} {
		c := s.client(t, cfg)
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatalf("Info as %q: %v", cfg.Username, err)
		}
		if info.MaxClients.Value != 10000 {
			t.Errorf("maxclients %v", info.MaxClients)
		}
		if _, err := c.Config(ctx); err != nil {
			t.Errorf("Config as %q: %v", cfg.Username, err)
		}
	}

	var errs []error
	for _, cfg := range []Config{
		{PasswordFile: pwFile("wrong", wrong)},
		{Username: "monitor", PasswordFile: pwFile("wrong", wrong)},
		{Username: "nobody-such", PasswordFile: pwFile("monitor", userSecret)},
		{}, // no password at all
	} {
		c := s.client(t, cfg)
		_, err := c.Info(ctx)
		if !errors.Is(err, ErrAuth) {
			t.Errorf("Info as %q with a wrong or no password = %v, want ErrAuth", cfg.Username, err)
		}
		t.Logf("%+v", err)
		errs = append(errs, err)
		for _, verb := range []string{"%v", "%+v", "%#v"} {
			out := fmt.Sprintf(verb, c) + fmt.Sprintf(verb, cfg)
			for _, pw := range []string{secret, userSecret, wrong} {
				if strings.Contains(out, pw) {
					t.Errorf("%s of the Client or Config shows a password: %s", verb, out)
				}
			}
		}
	}
	for _, err := range errs {
		for _, verb := range []string{"%v", "%+v", "%#v", "%q"} {
			out := fmt.Sprintf(verb, err)
			for _, pw := range []string{secret, userSecret, wrong} {
				if strings.Contains(out, pw) {
					t.Errorf("error printed with %s shows a password: %s", verb, out)
				}
			}
		}
	}
}

// TestRealHang: a TCP server in the namespace that accepts and never
// answers makes Info fail within its timeout.
func TestRealHang(t *testing.T) {
	ns := newNS(t)
	// The listening socket is made inside the namespace; serving it from
	// any goroutine keeps it there.
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:6379")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	hung := serveListener(t, ln, hang)
	s := &redisServer{ns: ns, addr: "127.0.0.1:6379"}
	const timeout = 500 * time.Millisecond
	c := s.client(t, Config{DialTimeout: timeout, Timeout: timeout})
	start := time.Now()
	_, err := c.Info(context.Background())
	took := time.Since(start)
	t.Logf("Info: %v after %v", err, took)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Info = %v, want ErrTimeout", err)
	}
	if took < timeout || took > 2*timeout+2*time.Second {
		t.Errorf("Info failed after %v with a %v timeout", took, timeout)
	}
	if n := hung.accepts.Load(); n != 1 {
		t.Errorf("the hung server accepted %d connections, want 1", n)
	}
}

func TestRealConfigRenamed(t *testing.T) {
	ns := newNS(t)
	s := startRedis(t, ns, "rename-command CONFIG \"\"\n")
	c := s.client(t, Config{})
	ctx := context.Background()
	_, err := c.Config(ctx)
	if !errors.Is(err, ErrConfigUnavailable) {
		t.Fatalf("Config with CONFIG disabled = %v, want ErrConfigUnavailable", err)
	}
	t.Log(err)
	// Not a failed target: INFO works at once, no backoff.
	if _, err := c.Info(ctx); err != nil {
		t.Errorf("Info after CONFIG unavailable: %v", err)
	}
}

// TestRealOneConnection polls from several goroutines at once and checks,
// from the server's view and the kernel's, that the Client never holds
// more than one connection; then the server drops it and the Client
// reconnects, once.
func TestRealOneConnection(t *testing.T) {
	ns := newNS(t)
	s := startRedis(t, ns, "")
	c := s.client(t, Config{BackoffMin: 50 * time.Millisecond})
	ctx := context.Background()
	if _, err := c.Info(ctx); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Info(ctx); err != nil {
					errs <- err
					return
				}
				if _, err := c.Config(ctx); err != nil {
					errs <- err
					return
				}
				if _, err := c.Clients(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	maxServer, maxKernel := 0, 0
	for range 20 {
		server, kernel := s.countConns(t)
		maxServer, maxKernel = max(maxServer, server), max(maxKernel, kernel)
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("poll: %v", err)
	}
	if maxServer != 1 || maxKernel != 1 {
		t.Errorf("during concurrent polls: at most %d connections named %s on the server, %d established to :6379 in the kernel; want 1 and 1",
			maxServer, ClientName, maxKernel)
	}

	// The server drops the connection: the next call fails or reconnects,
	// and within a backoff the Client is back, on one connection.
	before := s.received(t)
	s.cli(t, "client", "kill", "laddr", "127.0.0.1:6379", "skipme", "yes")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Info(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrDown) && !errors.Is(err, ErrBackoff) {
			t.Fatalf("Info after the server dropped the connection: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect within 5s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// redis-cli's own connections count too: two per s.received.
	if got := s.received(t) - before; got != 1+2 {
		t.Errorf("%d connections received around the reconnect, want 1 (and redis-cli's 2)", got-2)
	}
	if server, kernel := s.countConns(t); server != 1 || kernel != 1 {
		t.Errorf("after the reconnect: %d on the server, %d in the kernel; want 1 and 1", server, kernel)
	}
}

// countConns counts the Client's connections as the server sees them
// (CLIENT LIST, by name) and as the kernel does (established client-side
// sockets to :6379, less redis-cli's, which is closed before ss runs).
func (s *redisServer) countConns(t testing.TB) (server, kernel int) {
	t.Helper()
	server = strings.Count(s.cli(t, "client", "list"), " name="+ClientName+" ")
	out, err := s.ns.Exec(context.Background(), "ss", "-Htn", "state", "established", "dport = :6379")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			kernel++
		}
	}
	return server, kernel
}

// received returns total_connections_received, read with redis-cli.
func (s *redisServer) received(t testing.TB) int {
	t.Helper()
	for _, line := range strings.Split(s.cli(t, "info", "stats"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_connections_received:"); ok {
			var n int
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("total_connections_received: %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatal("no total_connections_received")
	return 0
}

func TestRealClientsAndKill(t *testing.T) {
	ns := newNS(t)
	s := startRedis(t, ns, "")
	c := s.client(t, Config{})
	ctx := context.Background()
	victims := s.openClients(t, 5)
	for i, v := range victims {
		fmt.Fprintf(v, "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$7\r\nvictim%d\r\n", i)
		if line, err := bufio.NewReader(v).ReadString('\n'); err != nil || line != "+OK\r\n" {
			t.Fatalf("CLIENT SETNAME: %q %v", line, err)
		}
	}
	list, err := c.Clients(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	var self ClientInfo
	for _, ci := range list {
		switch {
		case ci.Self:
			self = ci
		case strings.HasPrefix(ci.Name, "victim"):
			ids = append(ids, ci.ID)
			if ci.LAddr != s.addr || ci.FD <= 0 || ci.Cmd != "client|setname" {
				t.Errorf("victim %+v", ci)
			}
		}
	}
	if len(ids) != 5 || self.Name != ClientName {
		t.Fatalf("CLIENT LIST: %d victims, self %+v:\n%+v", len(ids), self, list)
	}
	// Two ids at once: both go (one CLIENT KILL ID with both on Valkey
	// ≥ 8.1; on an older server, after its syntax error, one per id).
	n, err := c.Kill(ctx, ids[0], ids[1])
	if err != nil || n != 2 {
		t.Errorf("Kill(2 ids) = %d, %v; want 2", n, err)
	}
	t.Logf("server takes one id per CLIENT KILL ID: %v", c.killSplit.Load())
	n, err = c.Kill(ctx, ids[2], 999999, self.ID)
	if err != nil || n != 1 {
		t.Errorf("Kill(victim, unknown id, own id) = %d, %v; want 1", n, err)
	}
	if got := strings.Count(s.cli(t, "client", "list"), "name=victim"); got != 2 {
		t.Errorf("redis-cli sees %d victims left, want 2", got)
	}
	if _, err := c.Info(ctx); err != nil {
		t.Errorf("Info after killing others (and trying itself): %v", err)
	}
	if _, err := c.Kill(ctx, 0); err == nil {
		t.Error("Kill(0) succeeded")
	}
}

// BenchmarkPoll is one poll of a target, Info and Config, against a real
// redis-server in a namespace, over the Client's one connection.
func BenchmarkPoll(b *testing.B) {
	ns := newNS(b)
	s := startRedis(b, ns, "")
	c := s.client(b, Config{})
	ctx := context.Background()
	if _, err := c.Info(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Info(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Config(ctx); err != nil {
			b.Fatal(err)
		}
	}
	server, kernel := s.countConns(b)
	b.ReportMetric(float64(server), "server-conns")
	b.ReportMetric(float64(kernel), "kernel-conns")
}

// BenchmarkInfo is one Info call alone.
func BenchmarkInfo(b *testing.B) {
	ns := newNS(b)
	s := startRedis(b, ns, "")
	c := s.client(b, Config{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Info(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRealDiscover finds a redis-server listening on 127.0.0.1 and ::1 in
// a namespace from its sock_diag listeners and /proc, with no config, and
// reads it.
func TestRealDiscover(t *testing.T) {
	ns := newNS(t)
	s := startRedis(t, ns, "bind 127.0.0.1 -::1\n")
	var listeners []Listener
	if err := ns.Do(func() error {
		conn, err := sockdiag.Dial()
		if err != nil {
			return err
		}
		defer conn.Close()
		for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
			if _, err := sockdiag.Dump(context.Background(), conn, fam, 1<<unix.BPF_TCP_LISTEN, func(m sockdiag.Msg) {
				listeners = append(listeners, Listener{Addr: m.Src, Port: m.SrcPort, Inode: m.Inode})
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	fs, err := procfs.NewFS("/")
	if err != nil {
		t.Fatal(err)
	}
	inodes := make([]uint32, len(listeners))
	for i, l := range listeners {
		inodes[i] = l.Inode
	}
	owners, err := fs.SocketOwners(inodes, procfs.OwnerLimits{})
	if err != nil {
		t.Fatal(err)
	}
	targets, err := Discover(listeners, owners)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 || targets[0].Address != s.addr || targets[0].Process.PID != s.cmd.Process.Pid || len(targets[0].Listeners) != 2 {
		t.Fatalf("Discover = %+v, want one target %s (pid %d) with 2 listeners", targets, s.addr, s.cmd.Process.Pid)
	}
	c := s.client(t, Config{Address: targets[0].Address})
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.ProcessID.Value != int64(targets[0].Process.PID) {
		t.Errorf("INFO process_id %v, discovered pid %d", info.ProcessID, targets[0].Process.PID)
	}
}

// TestRealStoppedServer: a server stopped with SIGSTOP accepts nothing.
// The Client's first connection waits in its accept queue unanswered; the
// Client holds it, and however many calls follow, opens no other (the
// queue stays at 1: a watcher must not add to the queue of a server that
// is not serving). Once the server runs again, the Client is back on one
// connection.
func TestRealStoppedServer(t *testing.T) {
	ns := newNS(t)
	s := startRedis(t, ns, "")
	c := s.client(t, Config{DialTimeout: 300 * time.Millisecond, Timeout: 300 * time.Millisecond, BackoffMin: 50 * time.Millisecond})
	ctx := context.Background()
	queued := func() int {
		t.Helper()
		out, err := s.ns.Exec(ctx, "ss", "-Hltn", "sport = :6379")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(out))
		if len(f) < 2 {
			t.Fatalf("ss -Hltn: no listener on :6379: %q", out)
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("ss -Hltn: Recv-Q %q: %v", f[1], err)
		}
		return n
	}

	// The server has accepted everything (startRedis's own probe) before
	// it stops.
	for deadline := time.Now().Add(5 * time.Second); queued() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("accept queue of a running server not empty after 5s: %d", queued())
		}
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	_, err := c.Info(ctx)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Info of a stopped server = %v, want ErrTimeout", err)
	}
	for i := range 10 {
		time.Sleep(100 * time.Millisecond)
		_, err = c.Info(ctx)
		if !errors.Is(err, ErrBackoff) || !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "has not answered") {
			t.Fatalf("call %d to a stopped server = %v, want ErrBackoff and ErrTimeout: not answered", i+2, err)
		}
		if n := queued(); n != 1 {
			t.Fatalf("after %d calls the stopped server's accept queue holds %d connections, want 1 (the Client's first)", i+2, n)
		}
	}
	t.Logf("while stopped: %v", err)

	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Info(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer within 5s of SIGCONT: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if server, kernel := s.countConns(t); server != 1 || kernel != 1 {
		t.Errorf("after the server resumed: %d connections on the server, %d in the kernel; want 1 and 1", server, kernel)
	}
}

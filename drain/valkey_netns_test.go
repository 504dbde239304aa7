//go:build linux

package drain_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/drain"
	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testbin"
	"github.com/stormwatch/stormwatch/internal/valkey"
)

// startRedis runs redis-server inside ns on port with extra arguments,
// waits until it answers PING, and stops it when the test ends.
func startRedis(t *testing.T, ns *netnstest.NS, port string, args ...string) {
	t.Helper()
	dir := t.TempDir()
	argv := append([]string{"--port", port, "--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"), "--protected-mode", "no"}, args...)
	cmd := ns.Command(context.Background(), "redis-server", argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // killed at the end: its exit status says nothing
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	cli(t, ns, port, "ping") // retried until it answers
}

// cli runs redis-cli inside ns against 127.0.0.1:port (ground truth),
// retrying for a few seconds while the server starts.
func cli(t *testing.T, ns *netnstest.NS, port string, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := ns.Exec(context.Background(), "redis-cli", append([]string{"-p", port, "--no-auth-warning"}, args...)...)
		if err == nil && !strings.HasPrefix(string(out), "Could not connect") {
			return string(out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-cli -p %s %v: %v %s", port, args, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dialIn opens a connection to addr inside ns, closed when the test
// ends.
func dialIn(t *testing.T, ns *netnstest.NS, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// named opens a connection to addr inside ns that sets its client name,
// closed when the test ends.
func named(t *testing.T, ns *netnstest.NS, addr, name string) net.Conn {
	t.Helper()
	c := dialIn(t, ns, addr)
	fmt.Fprintf(c, "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$%d\r\n%s\r\n", len(name), name)
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("CLIENT SETNAME %s: %q %v", name, line, err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// readBy reads one byte from c, waiting at most d.
func readBy(c net.Conn, d time.Duration) (int, error) {
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return 0, err
	}
	return c.Read(make([]byte, 1))
}

// nsDial dials inside ns.
func nsDial(ns *netnstest.NS) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// killLog wraps a ValkeyServer and records the ids of each Kill.
type killLog struct {
	drain.ValkeyServer
	mu    sync.Mutex
	kills [][]int64
}

func (k *killLog) Kill(ctx context.Context, ids ...int64) (int, error) {
	k.mu.Lock()
	k.kills = append(k.kills, slices.Clone(ids))
	k.mu.Unlock()
	return k.ValkeyServer.Kill(ctx, ids...)
}

// valkeyIn returns a Valkey method reaching its server inside ns with
// cfg (Address set by the method), and the log of its kills.
func valkeyIn(ns *netnstest.NS, cfg valkey.Config) (*drain.Valkey, *killLog) {
	log := &killLog{}
	return &drain.Valkey{Connect: func(addr string) (drain.ValkeyServer, error) {
		cfg.Address = addr
		c, err := valkey.NewWithDial(cfg, nsDial(ns))
		if err != nil {
			return nil, err
		}
		log.ValkeyServer = c
		return log, nil
	}}, log
}

// clientNames maps the ids of a CLIENT LIST (redis-cli's) to the clients'
// names, and counts the names by prefix (leaving out the method's own
// connection).
func clientNames(t *testing.T, text string) (map[int64]string, map[string]int) {
	t.Helper()
	list, err := valkey.ParseClientList(text, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids, counts := map[int64]string{}, map[string]int{}
	for _, c := range list {
		ids[c.ID] = c.Name
		switch {
		case c.Replica:
			counts["replica"]++
		case c.Name == valkey.ClientName: // the method's own, if not yet closed
		case c.Name != "":
			counts[strings.TrimRight(c.Name, "0123456789")]++
		}
	}
	return ids, counts
}

// TestValkeyInNamespace drains one listener of a real redis-server with
// CLIENT KILL: a dry run kills nothing; the drain kills the clients that
// came in through that listener, oldest first, in batches, each seeing a
// clean close (EOF, not a reset); the replica's link to this server, the
// method's own connection and the clients of the server's other listener
// are left; on the replica, whose link to its primary is an outgoing
// connection, a drain of its port leaves replication up.
func TestValkeyInNamespace(t *testing.T) {
	testbin.RequireTools(t, "redis-server", "redis-cli")
	ns := netnstest.New(t)
	startRedis(t, ns, "6379", "--bind", "127.0.0.1 127.0.0.2", "--repl-diskless-sync-delay", "0")
	startRedis(t, ns, "6380", "--bind", "127.0.0.1", "--replicaof", "127.0.0.1 6379")
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(cli(t, ns, "6380", "info", "replication"), "master_link_status:up") {
		if time.Now().After(deadline) {
			t.Fatal("the replica's link did not come up in 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	const victims, others = 30, 5
	var conns []net.Conn
	for i := range victims {
		conns = append(conns, named(t, ns, "127.0.0.1:6379", fmt.Sprintf("victim%02d", i)))
	}
	for i := range others {
		named(t, ns, "127.0.0.2:6379", fmt.Sprintf("other%d", i))
	}
	names, counts := clientNames(t, cli(t, ns, "6379", "client", "list"))
	wantAll := map[string]int{"victim": victims, "other": others, "replica": 1}
	if diff := cmp.Diff(wantAll, counts); diff != "" {
		t.Fatalf("clients before (-want +got):\n%s", diff)
	}
	diag, _ := inNS(ns)
	cfg := drain.Config{Batch: drain.Batch{Count: 12}, Every: 50 * time.Millisecond}

	t.Run("dry run", func(t *testing.T) {
		src := &drain.SockDiag{Port: 6379, Addr: netip.MustParseAddr("127.0.0.1"), Dial: diag}
		defer src.Close()
		m, log := valkeyIn(ns, valkey.Config{})
		defer m.Close()
		c := cfg
		c.Source, c.Method = src, m
		plan, err := drain.Plan(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for _, b := range plan.Batches {
			sizes = append(sizes, len(b.Conns))
		}
		if len(plan.Skipped) != 1 || !slices.Equal(sizes, []int{12, 12, 6}) || len(log.kills) != 0 {
			t.Errorf("plan: %d skipped, batches %v, kills %v; want the replica's link, [12 12 6], none", len(plan.Skipped), sizes, log.kills)
		}
		_, after := clientNames(t, cli(t, ns, "6379", "client", "list"))
		if diff := cmp.Diff(wantAll, after); diff != "" {
			t.Errorf("clients after a dry run (-want +got):\n%s", diff)
		}
	})

	t.Run("drain", func(t *testing.T) {
		src := &drain.SockDiag{Port: 6379, Addr: netip.MustParseAddr("127.0.0.1"), Dial: diag}
		defer src.Close()
		m, log := valkeyIn(ns, valkey.Config{})
		defer m.Close()
		var ev events
		c := cfg
		c.Source, c.Method, c.OnEvent = src, m, ev.record
		sum, err := drain.Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if sum.End != drain.EndDrained || sum.Closed != victims || sum.Skipped != 2 || sum.New != 0 {
			t.Errorf("summary %+v; want drained, %d closed, 2 skipped (the replica's link, its own), none new", sum, victims)
		}
		var sizes []int
		for _, e := range ev.of(drain.EventBatch) {
			sizes = append(sizes, e.Closed)
		}
		if !slices.Equal(sizes, []int{12, 12, 6}) {
			t.Errorf("closed per batch %v, want [12 12 6]", sizes)
		}
		var order []string
		for _, k := range log.kills[1:] { // the first is Check's
			for _, id := range k {
				order = append(order, names[id])
			}
		}
		var want []string
		for i := range victims {
			want = append(want, fmt.Sprintf("victim%02d", i))
		}
		if diff := cmp.Diff(want, order); diff != "" {
			t.Errorf("killed, in order (-want +got):\n%s", diff)
		}
		_, after := clientNames(t, cli(t, ns, "6379", "client", "list"))
		if diff := cmp.Diff(map[string]int{"other": others, "replica": 1}, after); diff != "" {
			t.Errorf("clients after the drain (-want +got):\n%s", diff)
		}
		for i, c := range conns {
			if _, err := readBy(c, 5*time.Second); !errors.Is(err, io.EOF) {
				t.Errorf("victim %d: read %v, want EOF (a clean close)", i, err)
			}
		}
	})

	t.Run("replica", func(t *testing.T) {
		src := &drain.SockDiag{Port: 6380, Dial: diag}
		defer src.Close()
		m, _ := valkeyIn(ns, valkey.Config{})
		defer m.Close()
		c := cfg
		c.Source, c.Method = src, m
		sum, err := drain.Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if sum.End != drain.EndDrained || sum.Closed != 0 || sum.Skipped != 1 {
			t.Errorf("summary %+v; want drained, nothing closed, its own connection skipped", sum)
		}
		if !strings.Contains(cli(t, ns, "6380", "info", "replication"), "master_link_status:up") ||
			!strings.Contains(cli(t, ns, "6379", "info", "replication"), "connected_slaves:1") {
			t.Error("replication is down after draining the replica")
		}
	})
}

// TestValkeyPasswordInNamespace: the method authenticates with the
// password file; a wrong one stops the drain before anything is closed,
// and neither password shows in the error.
func TestValkeyPasswordInNamespace(t *testing.T) {
	testbin.RequireTools(t, "redis-server", "redis-cli")
	const secret, wrong = "drain-S3cret-do-not-print", "not-it-Wr0ng-do-not-print"
	ns := netnstest.New(t)
	startRedis(t, ns, "6379", "--bind", "127.0.0.1", "--requirepass", secret)
	var conns []net.Conn
	for range 3 {
		conns = append(conns, dialIn(t, ns, "127.0.0.1:6379")) // clients that have not authenticated yet
	}
	cli(t, ns, "6379", "-a", secret, "ping") // the server has accepted them
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	for p, pw := range map[string]string{good: secret, bad: wrong} {
		if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	diag, _ := inNS(ns)

	src := &drain.SockDiag{Port: 6379, Dial: diag}
	defer src.Close()
	m, _ := valkeyIn(ns, valkey.Config{PasswordFile: bad})
	_, err := drain.Run(context.Background(), drain.Config{Source: src, Method: m, Batch: drain.Batch{Count: 10}, Every: time.Millisecond})
	m.Close()
	if !errors.Is(err, valkey.ErrAuth) {
		t.Fatalf("wrong password: %v, want ErrAuth", err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		if out := fmt.Sprintf(verb, err); strings.Contains(out, secret) || strings.Contains(out, wrong) {
			t.Errorf("error printed with %s shows a password: %s", verb, out)
		}
	}

	m, _ = valkeyIn(ns, valkey.Config{PasswordFile: good})
	defer m.Close()
	sum, err := drain.Run(context.Background(), drain.Config{Source: src, Method: m, Batch: drain.Batch{Count: 10}, Every: time.Millisecond})
	if err != nil || sum.Closed != 3 || sum.Skipped != 1 {
		t.Errorf("right password: %+v, %v; want 3 closed, its own skipped", sum, err)
	}
	for i, c := range conns {
		if _, err := readBy(c, 5*time.Second); !errors.Is(err, io.EOF) {
			t.Errorf("client %d: read %v, want EOF", i, err)
		}
	}
}

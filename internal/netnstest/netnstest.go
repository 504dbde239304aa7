//go:build linux

package netnstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/testenv"
)

// Prefix starts the name of every namespace New creates, so that leftovers
// of a killed test run are easy to find ("ip netns list").
const Prefix = "stormwatch-"

// cleanupTimeout bounds the "ip netns del" run at the end of a test.
const cleanupTimeout = 30 * time.Second

// NS is a named network namespace owned by one test.
type NS struct {
	name string

	mu sync.RWMutex
	fd int // open /run/netns/<name>, -1 once closed
}

// Require stops t unless it can create and enter a network namespace: it
// skips t in -short mode (a namespace test is a kernel test), and when the
// test does not run as root or ip(8) is not on the PATH it skips t, or
// fails it under CI (see package testenv).
func Require(t testing.TB) {
	t.Helper()
	testenv.Kernel(t)
	if runtime.GOOS != "linux" {
		t.Skipf("netnstest: network namespaces need Linux, this is %s", runtime.GOOS)
	}
	testenv.Root(t, "creating a network namespace (CAP_SYS_ADMIN)")
	testenv.Tool(t, "ip")
}

// New creates a fresh network namespace named Prefix plus a random suffix,
// brings its loopback interface up and deletes the namespace when t ends.
// It stops t as Require does, and as package testenv says when the host
// refuses to create namespaces.
func New(t testing.TB) *NS {
	t.Helper()
	Require(t)

	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("netnstest: random name: %v", err)
	}
	n := &NS{name: Prefix + hex.EncodeToString(rnd[:]), fd: -1}

	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := runIP(ctx, "netns", "add", n.name); err != nil {
		if errors.Is(err, errNotPermitted) {
			testenv.Require(t, "creating network namespaces on this host", err)
		}
		t.Fatalf("netnstest: %v", err)
	}
	t.Cleanup(func() {
		n.close()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if _, err := runIP(ctx, "netns", "del", n.name); err != nil {
			t.Errorf("netnstest: %v", err)
		}
	})

	fd, err := unix.Open(n.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("netnstest: open %s: %v", n.Path(), err)
	}
	n.fd = fd

	if _, err := runIP(ctx, "-n", n.name, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	return n
}

// NewIPv4Only is New with IPv6 turned off in the namespace: no router
// solicitations, DAD or MLD reports moving interface counters behind a
// test's back. It needs sysctl(8) (procps).
func NewIPv4Only(t testing.TB) *NS {
	t.Helper()
	Require(t)
	testenv.Tool(t, "sysctl")
	n := New(t)
	n.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return n
}

// Run runs the named program with args inside the namespace, as Exec does
// with a minute's bound, and returns its standard output; an error fails
// t.
func (n *NS) Run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.Exec(ctx, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Name returns the namespace's name, as "ip netns" knows it.
func (n *NS) Name() string { return n.name }

// Path returns the namespace's bind mount, usable as a namespace file
// descriptor source (for example netlink.Config.NetNS after opening it).
func (n *NS) Path() string { return filepath.Join("/run/netns", n.name) }

// Do runs fn on an OS thread that has entered the namespace and returns its
// error. Sockets fn opens belong to the namespace and stay there after Do
// returns; so do processes it starts. fn must not call t.FailNow and
// friends (it runs on another goroutine); a panic in fn is re-raised in the
// caller.
//
// The thread is moved back to its original namespace afterwards. If that
// fails, Do returns an error and the thread is never handed back to the Go
// scheduler: it ends with its goroutine.
func (n *NS) Do(fn func() error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.fd < 0 {
		return fmt.Errorf("netnstest: namespace %s is closed", n.name)
	}

	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan result, 1)
	go func() {
		var r result
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("netnstest: open current namespace: %w", err)}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			// Still in the original namespace: the thread is clean.
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("netnstest: enter %s: %w", n.name, err)}
			return
		}

		returned := false
		defer func() {
			if !returned {
				if p := recover(); p != nil {
					r.panicked, r.panicVal = true, p
				} else {
					r.err = errors.New("netnstest: function passed to Do called runtime.Goexit (t.FailNow?)")
				}
			}
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				// Leave the thread locked: the runtime terminates it when
				// this goroutine exits.
				r.err = errors.Join(r.err, fmt.Errorf("netnstest: leave %s: %w", n.name, err))
			} else {
				runtime.UnlockOSThread()
			}
			done <- r
		}()
		r.err = fn()
		returned = true
	}()

	r := <-done
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}

// Exec runs the named program with args inside the namespace ("ip netns
// exec") and returns its standard output. The error carries the program's
// standard error.
func (n *NS) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	return run(n.Command(ctx, name, args...))
}

// Command returns an exec.Cmd that runs the named program with args inside
// the namespace ("ip netns exec"), for callers that need to start it in the
// background or wire its input and output themselves.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// DialContext opens a connection from inside the namespace, for an
// http.Transport's DialContext: the socket is made on a thread in the
// namespace and stays there, so any goroutine may use it afterwards.
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

func (n *NS) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fd >= 0 {
		unix.Close(n.fd)
		n.fd = -1
	}
}

// errNotPermitted marks an ip(8) failure that means the host forbids
// namespaces to this process.
var errNotPermitted = errors.New("not permitted")

func runIP(ctx context.Context, args ...string) ([]byte, error) {
	return run(exec.CommandContext(ctx, "ip", args...))
}

func run(cmd *exec.Cmd) ([]byte, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "Operation not permitted") || strings.Contains(msg, "Permission denied") {
			err = fmt.Errorf("%w: %w", errNotPermitted, err)
		}
		return out, fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, msg)
	}
	return out, nil
}

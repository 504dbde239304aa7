//go:build linux

package netnstest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"golang.org/x/sys/unix"
)

// netnsID identifies the network namespace of the calling thread.
func netnsID() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func hostNetnsID(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestNewAndCleanup(t *testing.T) {
	var name string
	t.Run("owner", func(t *testing.T) {
		ns := netnstest.New(t)
		name = ns.Name()
		if !strings.HasPrefix(name, netnstest.Prefix) {
			t.Errorf("name %q lacks prefix %q", name, netnstest.Prefix)
		}
		if _, err := os.Stat(ns.Path()); err != nil {
			t.Errorf("namespace mount: %v", err)
		}
		if other := netnstest.New(t); other.Name() == name {
			t.Errorf("two namespaces named %q", name)
		}
	})
	if name == "" {
		t.Skip("owner subtest skipped")
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), name) {
		t.Errorf("namespace %s still listed after its test ended:\n%s", name, out)
	}
}

func TestDo(t *testing.T) {
	ns := netnstest.New(t)
	host := hostNetnsID(t)

	var inside uint64
	if err := ns.Do(func() error {
		var err error
		inside, err = netnsID()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == host {
		t.Fatalf("Do ran in the host namespace (%d)", host)
	}

	// A socket opened inside belongs to the namespace: ss run there sees it.
	var fd, port int
	if err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		if err := unix.Listen(fd, 1); err != nil {
			return err
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		port = sa.(*unix.SockaddrInet4).Port
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	out, err := ns.Exec(context.Background(), "ss", "-Hltn", fmt.Sprintf("sport = :%d", port))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Errorf("ss in the namespace does not show the listener on port %d:\n%s", port, out)
	}

	// Threads handed back to the scheduler are in the host namespace.
	for range 20 {
		if err := ns.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*runtime.GOMAXPROCS(0)+8)
	for range cap(errs) {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			id, err := netnsID()
			if err == nil && id != host {
				err = fmt.Errorf("thread in namespace %d, want host %d", id, host)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestDoErrors(t *testing.T) {
	ns := netnstest.New(t)
	errBoom := errors.New("boom")
	if err := ns.Do(func() error { return errBoom }); !errors.Is(err, errBoom) {
		t.Errorf("Do = %v, want the function's error", err)
	}
	if err := ns.Do(func() error { runtime.Goexit(); return nil }); err == nil {
		t.Error("Do of a function calling runtime.Goexit returned nil")
	}
	func() {
		defer func() {
			if p := recover(); p != "oops" {
				t.Errorf("recovered %v, want the function's panic", p)
			}
		}()
		_ = ns.Do(func() error { panic("oops") })
		t.Error("Do returned after the function panicked")
	}()
}

func TestExec(t *testing.T) {
	ns := netnstest.New(t)
	ctx := context.Background()
	out, err := ns.Exec(ctx, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "lo:") || !strings.Contains(lines[0], "UP") {
		t.Errorf("want only lo, up; got:\n%s", out)
	}
	_, err = ns.Exec(ctx, "ip", "link", "show", "no-such-device")
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Exec of a failing command = %v, want an error carrying its stderr", err)
	}
}

// TestShortSkips checks -short skips the namespace tests before they need
// root or ip(8): make test-short runs no kernel test.
func TestShortSkips(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the namespace tests in -short mode itself")
	}
	cmd := exec.Command(os.Args[0], "-test.short", "-test.v", "-test.run=^(TestDo|TestExec)$")
	cmd.Env = append(os.Environ(), "CI=true") // -short skips under CI too
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the namespace tests in -short mode: %v\n%s", err, out)
	}
	for _, name := range []string{"TestDo", "TestExec"} {
		if !strings.Contains(string(out), "--- SKIP: "+name+" ") {
			t.Errorf("%s did not skip in -short mode:\n%s", name, out)
		}
	}
}

//go:build linux

package procfs

// The socket-owner scan against a real redis-server started in a network
// namespace, as root and, through a helper process, as an unprivileged
// user and under hidepid=invisible (what systemd's ProtectProc=invisible
// mounts). Root only; under CI they fail instead of skipping.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

// helperEnv makes the test binary a helper that scans for one inode and
// prints the result.
const helperEnv = "STORMWATCH_OWNER_HELPER_INODE"

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		os.Exit(ownerHelper(v))
	}
	os.Exit(m.Run())
}

func ownerHelper(arg string) int {
	ino, err := strconv.ParseUint(arg, 10, 32)
	if err != nil {
		fmt.Println("bad inode:", err)
		return 2
	}
	fs, err := NewFS("/")
	if err != nil {
		fmt.Println(err)
		return 2
	}
	res, err := fs.SocketOwners([]uint32{uint32(ino)}, OwnerLimits{})
	if err != nil {
		fmt.Println("scan error:", err)
		return 2
	}
	p, err := res.Owner(uint32(ino))
	if err != nil {
		fmt.Printf("uid %d: %v (hidden %d, hidepid %q)\n", os.Geteuid(), err, res.Hidden, res.HidePID)
		return 0
	}
	fmt.Printf("uid %d: owner %d %s %s\n", os.Geteuid(), p.PID, p.Comm, p.State)
	return 0
}

// startRedis runs redis-server on 127.0.0.1:6379 in a fresh namespace and
// returns the process and its listening socket's inode (from ss).
func startRedis(t *testing.T) (*netnstest.NS, *exec.Cmd, uint32) {
	testbin.RequireTools(t, "redis-server", "ss", "ip", "unshare", "setpriv")
	ns := netnstest.New(t)
	dir := t.TempDir()
	cmd := ns.Command(context.Background(), "redis-server", "--port", "6379", "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	re := regexp.MustCompile(`ino:(\d+)`)
	for deadline := time.Now().Add(10 * time.Second); ; {
		out, err := ns.Exec(context.Background(), "ss", "-Hltne", "sport = :6379")
		if err != nil {
			t.Fatal(err)
		}
		if m := re.FindSubmatch(out); m != nil {
			ino, _ := strconv.ParseUint(string(m[1]), 10, 32)
			return ns, cmd, uint32(ino)
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server is not listening after 10s: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSocketOwnersReal(t *testing.T) {
	_, cmd, ino := startRedis(t)
	fs, err := NewFS("/")
	if err != nil {
		t.Fatal(err)
	}
	owner := func() Process {
		t.Helper()
		res, err := fs.SocketOwners([]uint32{ino}, OwnerLimits{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := res.Owner(ino)
		if err != nil {
			t.Fatalf("Owner(%d): %v", ino, err)
		}
		t.Logf("inode %d: pid %d %q %s after %d processes, %d fds", ino, p.PID, p.Comm, p.State, res.Processes, res.FDs)
		return p
	}
	p := owner()
	if p.PID != cmd.Process.Pid || p.Comm != "redis-server" || p.State != StateSleeping {
		t.Errorf("owner %+v, want pid %d redis-server sleeping", p, cmd.Process.Pid)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p = owner(); p.State != StateStopped && time.Now().Before(deadline); p = owner() {
		time.Sleep(20 * time.Millisecond)
	}
	if p.State != StateStopped || p.State.String() != "stopped" {
		t.Errorf("after SIGSTOP: state %s, want stopped", p.State)
	}
	cmd.Process.Signal(syscall.SIGCONT)
}

// helperBinary copies the test binary where an unprivileged user can run
// it.
func helperBinary(t *testing.T) string {
	dir, err := os.MkdirTemp("", "stormwatch-owner-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, "owner-helper")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSocketOwnersUnprivileged runs the scan as nobody: the redis-server
// (root's) cannot be seen, and the result says why instead of failing.
func TestSocketOwnersUnprivileged(t *testing.T) {
	_, _, ino := startRedis(t)
	bin := helperBinary(t)
	env := append(os.Environ(), helperEnv+"="+strconv.FormatUint(uint64(ino), 10))
	tests := []struct {
		name string
		cmd  *exec.Cmd
		want []string
	}{
		{
			"nobody",
			exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin),
			[]string{"uid 65534", ErrOwnerHidden.Error(), "permission denied", `hidepid ""`},
		},
		{
			// A private mount namespace with /proc remounted as systemd's
			// ProtectProc=invisible does.
			"hidepid=invisible",
			exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
				`mount -t proc -o hidepid=invisible proc /proc && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$0"`, bin),
			[]string{"uid 65534", ErrOwnerHidden.Error(), "hidepid=invisible", "ProtectProc", "hidden 0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cmd.Env = env
			out, err := tt.cmd.CombinedOutput()
			t.Logf("%s", out)
			if err != nil {
				t.Fatalf("helper: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("helper output lacks %q", w)
				}
			}
		})
	}
}

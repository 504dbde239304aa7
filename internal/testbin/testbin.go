// Package testbin gives tests the stormwatch binary and the programs they
// drive (and a stormlab binary for lab workers). Stormwatch builds cmd/stormwatch once per test process into a
// directory every user can read (tests run it as nobody too); a package
// that uses it calls Cleanup from TestMain. RequireTools skips a kernel
// test in -short mode, and when a program is missing skips it, or fails it
// under CI, whose .ci/run installs them all (package testenv).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stormwatch/stormwatch/internal/testenv"
)

var (
	once    sync.Once
	dir     string
	binPath string
	err     error
)

// Stormwatch returns the path of a stormwatch binary built from this tree,
// building it on first use.
func Stormwatch(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		if dir, err = os.MkdirTemp("", "stormwatch-test-bin-"); err != nil {
			return
		}
		if err = os.Chmod(dir, 0o755); err != nil {
			return
		}
		binPath = filepath.Join(dir, "stormwatch")
		out, e := exec.Command("go", "build", "-o", binPath, "github.com/stormwatch/stormwatch/cmd/stormwatch").CombinedOutput()
		if e != nil {
			err = fmt.Errorf("go build ./cmd/stormwatch: %w\n%s", e, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return binPath
}

var (
	labOnce sync.Once
	labPath string
	labErr  error
)

// Stormlab returns the path of a stormlab binary built from this tree
// (without the race detector, whatever the test runs with), building it on
// first use: a lab's worker program (stormlab.Options.WorkerExe) whose
// clients run at the speed real clients do.
func Stormlab(t testing.TB) string {
	t.Helper()
	Stormwatch(t) // makes the directory
	labOnce.Do(func() {
		labPath = filepath.Join(dir, "stormlab")
		out, e := exec.Command("go", "build", "-o", labPath, "github.com/stormwatch/stormwatch/cmd/stormlab").CombinedOutput()
		if e != nil {
			labErr = fmt.Errorf("go build ./cmd/stormlab: %w\n%s", e, out)
		}
	})
	if labErr != nil {
		t.Fatal(labErr)
	}
	return labPath
}

// Cleanup removes the binaries Stormwatch and Stormlab built, if any. Call it from
// TestMain after m.Run.
func Cleanup() {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// RequireTools skips t in -short mode (these are kernel tests); when one of
// tools is not on the PATH it skips t, or fails it under CI, naming the
// Debian package to install (see package testenv).
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	testenv.Kernel(t)
	for _, tool := range tools {
		testenv.Tool(t, tool)
	}
}

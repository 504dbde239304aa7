// Package testbin gives tests the stormwatch binary and the programs they
// drive (and a stormlab binary for lab workers). Stormwatch builds cmd/stormwatch once per test process into a
// directory every user can read (tests run it as nobody too); a package
// that uses it calls Cleanup from TestMain. RequireTools skips a test when a
// program is missing, except under CI (CI set in the environment), whose
// .ci/run installs them all: there it fails.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
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
			err = fmt.Errorf("go build ./cmd/stormwatch: %v\n%s", e, out)
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
			labErr = fmt.Errorf("go build ./cmd/stormlab: %v\n%s", e, out)
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

// RequireTools skips t in -short mode (these are kernel tests) and when one
// of tools is not on the PATH; under CI a missing tool fails t instead.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("kernel test: skipped in -short mode")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed: .ci/run must install it", tool)
			}
			t.Skipf("%s is not installed (see .ci/run for the packages the tests use)", tool)
		}
	}
}

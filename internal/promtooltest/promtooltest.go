// Package promtooltest lints metric expositions in tests with promtool,
// the checker Prometheus users run. Without promtool (Debian package
// prometheus) the lint is left out with a log line and the rest of the test
// goes on, except under CI, whose .ci/run installs it: there the test fails
// (package testenv).
package promtooltest

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/stormwatch/stormwatch/internal/testenv"
)

// CheckMetrics runs `promtool check metrics` on exposition and fails t
// with promtool's complaints.
func CheckMetrics(t testing.TB, exposition []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if testenv.CI() {
			t.Fatalf("testenv: CI=true and promtool (Debian package prometheus) is not available: %v", err)
		}
		t.Log("promtool not installed (package prometheus): lint skipped")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

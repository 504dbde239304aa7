// Package promtooltest lints metric expositions in tests with promtool,
// the checker Prometheus users run. Without promtool (Debian package
// prometheus) the check is skipped with a log line, except under CI
// (CI set in the environment), whose .ci/run installs it: there it fails.
package promtooltest

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// CheckMetrics runs `promtool check metrics` on exposition and fails t
// with promtool's complaints.
func CheckMetrics(t testing.TB, exposition []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not installed: .ci/run must install prometheus")
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

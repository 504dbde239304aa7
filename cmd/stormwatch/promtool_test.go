package main

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// promtoolCheck lints an exposition with `promtool check metrics`.
func promtoolCheck(t *testing.T, exposition []byte) {
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

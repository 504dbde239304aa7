package testenv_test

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/internal/testenv"
)

// childEnv, when set, makes TestChild run the helper it names instead of
// being a test of its own.
const childEnv = "TESTENV_CHILD"

// TestChild is the helper the other tests run in a child process, where
// skips and failures can be observed.
func TestChild(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "":
		t.Log("helper for the other tests, nothing to do on its own")
	case "require-nil":
		testenv.Require(t, "nothing", nil)
		t.Log("went on")
	case "require":
		testenv.Require(t, "the flux capacitor (for time travel)", errors.New("not fitted"))
		t.Log("went on")
	case "tool":
		testenv.Tool(t, "stormwatch-no-such-tool")
		t.Log("went on")
	case "tool-known":
		t.Setenv("PATH", t.TempDir())
		testenv.Tool(t, "nft")
		t.Log("went on")
	case "kernel":
		testenv.Kernel(t)
		t.Log("went on")
	case "optional":
		testenv.Optional(t, "run with -update to rewrite the fixtures")
		t.Log("went on")
	}
}

func runChild(t *testing.T, helper string, env []string, args ...string) (out string, failed bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestChild$", "-test.v"}, args...)...)
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=" + helper}, env...)...)
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return string(b), err != nil
}

var resultRE = regexp.MustCompile(`--- (PASS|FAIL|SKIP): TestChild`)

func TestOutcomes(t *testing.T) {
	tests := []struct {
		helper string
		ci     string
		args   []string
		want   string // PASS, FAIL or SKIP
		says   string // in the output
	}{
		{helper: "require-nil", ci: "true", want: "PASS", says: "went on"},
		{helper: "require", ci: "", want: "SKIP", says: "the flux capacitor (for time travel) is not available: not fitted"},
		{helper: "require", ci: "false", want: "SKIP", says: "is not available"},
		{helper: "require", ci: "true", want: "FAIL", says: "CI=true and the test cannot run its real part: the flux capacitor"},
		{helper: "require", ci: "1", want: "FAIL", says: "CI=true"},
		{helper: "tool", ci: "", want: "SKIP", says: "stormwatch-no-such-tool (Debian package see .ci/run)"},
		{helper: "tool", ci: "true", want: "FAIL", says: "stormwatch-no-such-tool"},
		{helper: "tool-known", ci: "true", want: "FAIL", says: "nft (Debian package nftables)"},
		{helper: "kernel", ci: "true", want: "PASS", says: "went on"},
		{helper: "kernel", ci: "true", args: []string{"-test.short"}, want: "SKIP", says: "skipped in -short mode"},
		{helper: "optional", ci: "true", want: "SKIP", says: testenv.OptionalMarker + " run with -update"},
	}
	for _, tt := range tests {
		name := tt.helper + "/CI=" + tt.ci + strings.Join(tt.args, "")
		t.Run(name, func(t *testing.T) {
			out, failed := runChild(t, tt.helper, []string{"CI=" + tt.ci}, tt.args...)
			m := resultRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no result line in the child's output:\n%s", out)
			}
			if m[1] != tt.want || failed != (tt.want == "FAIL") {
				t.Errorf("child %s (exit failed=%v), want %s:\n%s", m[1], failed, tt.want, out)
			}
			if !strings.Contains(out, tt.says) {
				t.Errorf("child output lacks %q:\n%s", tt.says, out)
			}
			if tt.want != "PASS" && strings.Contains(out, "went on") {
				t.Errorf("the child went on after the helper stopped it:\n%s", out)
			}
		})
	}
}

// TestPackagesInstalledByCI checks .ci/run installs the Debian package of
// every program the tests look for.
func TestPackagesInstalledByCI(t *testing.T) {
	b, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\npackages=\(\n(.*?)\n\)`).FindSubmatch(b)
	if m == nil {
		t.Fatal(".ci/run has no packages=( ... ) list")
	}
	installed := strings.Fields(string(m[1]))
	var missing []string
	for tool, pkg := range testenv.Packages {
		if !slices.Contains(installed, pkg) {
			missing = append(missing, tool+" → "+pkg)
		}
	}
	slices.Sort(missing)
	if diff := cmp.Diff([]string(nil), missing); diff != "" {
		t.Errorf(".ci/run does not install these tools' packages (-want +got):\n%s", diff)
	}
}

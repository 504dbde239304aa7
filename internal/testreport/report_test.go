package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/internal/testenv"
)

// events builds a go test -json stream: each entry is action, package,
// test, output.
func events(evs ...[4]string) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, `{"Action":%q,"Package":%q,"Test":%q,"Output":%q}`+"\n", e[0], e[1], e[2], e[3])
	}
	return b.String()
}

const (
	pkgA = "example.com/a"
	pkgB = "example.com/b"
	pkgC = "example.com/c"
)

// mixed has a passing package with an optional skip and a gap, a package
// whose tests all skipped, and one without test files.
var mixed = events(
	[4]string{"run", pkgA, "TestOK", ""},
	[4]string{"pass", pkgA, "TestOK", ""},
	[4]string{"run", pkgA, "TestSub", ""},
	[4]string{"run", pkgA, "TestSub/one", ""},
	[4]string{"pass", pkgA, "TestSub/one", ""},
	[4]string{"pass", pkgA, "TestSub", ""},
	[4]string{"run", pkgA, "TestFixtures", ""},
	[4]string{"output", pkgA, "TestFixtures", "    a_test.go:9: testenv: " + testenv.OptionalMarker + " run with -update\n"},
	[4]string{"skip", pkgA, "TestFixtures", ""},
	[4]string{"output", pkgA, "", "ok  \texample.com/a\t0.1s\n"},
	[4]string{"pass", pkgA, "", ""},
	[4]string{"run", pkgB, "TestNft", ""},
	[4]string{"output", pkgB, "TestNft", "=== RUN   TestNft\n"},
	[4]string{"output", pkgB, "TestNft", "    b_test.go:5: nft is not installed\n"},
	[4]string{"output", pkgB, "TestNft", "--- SKIP: TestNft (0.00s)\n"},
	[4]string{"skip", pkgB, "TestNft", ""},
	[4]string{"pass", pkgB, "", ""},
	[4]string{"output", pkgC, "", "?   \texample.com/c\t[no test files]\n"},
	[4]string{"skip", pkgC, "", ""},
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		ci       bool
		wantCode int
		wantOut  []string // lines that must be in the output
	}{
		{
			name: "mixed", in: mixed, wantCode: 0,
			wantOut: []string{
				"ok   example.com/a 0.0s (3 passed, 0 failed, 1 skipped)",
				"    SKIP TestNft: b_test.go:5: nft is not installed",
				"SKIP example.com/b 0.0s (0 passed, 0 failed, 1 skipped): no test passed",
				"packages: 1 passed, 0 failed, 1 skipped, 1 without tests",
				"tests: 3 passed, 0 failed, 2 skipped",
			},
		},
		{
			name: "mixed under CI", in: mixed, ci: true, wantCode: 1,
			wantOut: []string{
				"CI=true: 1 skipped tests are gaps (a kernel or tool path not tested), counted as failed:",
				"    example.com/b TestNft: b_test.go:5: nft is not installed",
				"    SKIP (a gap under CI, counted as failed) TestNft: b_test.go:5: nft is not installed",
				"FAIL example.com/b 0.0s (0 passed, 1 failed, 0 skipped)",
				"packages: 1 passed, 1 failed, 0 skipped, 1 without tests",
				"tests: 3 passed, 1 failed, 1 skipped",
			},
		},
		{
			name: "failure",
			in: events(
				[4]string{"run", pkgA, "TestBad", ""},
				[4]string{"output", pkgA, "TestBad", "    a_test.go:3: got 1, want 2\n"},
				[4]string{"fail", pkgA, "TestBad", ""},
				[4]string{"run", pkgA, "TestOK", ""},
				[4]string{"pass", pkgA, "TestOK", ""},
				[4]string{"fail", pkgA, "", ""},
			),
			wantCode: 1,
			wantOut: []string{
				"--- FAIL example.com/a TestBad",
				"        a_test.go:3: got 1, want 2",
				"FAIL example.com/a 0.0s (1 passed, 1 failed, 0 skipped)",
				"packages: 0 passed, 1 failed, 0 skipped, 0 without tests",
				"tests: 1 passed, 1 failed, 0 skipped",
			},
		},
		{
			name: "timeout: a test that never ended",
			in: events(
				[4]string{"run", pkgA, "TestHang", ""},
				[4]string{"output", pkgA, "TestHang", "panic: test timed out after 10m0s\n"},
				[4]string{"fail", pkgA, "", ""},
			),
			wantCode: 1,
			wantOut:  []string{"--- FAIL example.com/a TestHang", "tests: 0 passed, 1 failed, 0 skipped"},
		},
		{
			name: "killed: a package that never ended",
			in: events(
				[4]string{"run", pkgA, "TestOK", ""},
				[4]string{"pass", pkgA, "TestOK", ""},
			),
			wantCode: 1,
			wantOut:  []string{"packages: 0 passed, 1 failed, 0 skipped, 0 without tests"},
		},
		{
			name: "build failure",
			in: `{"ImportPath":"example.com/a [example.com/a.test]","Action":"build-output","Output":"a_test.go:1:1: syntax error\n"}
{"ImportPath":"example.com/a [example.com/a.test]","Action":"build-fail"}
{"Action":"start","Package":"example.com/a"}
{"Action":"fail","Package":"example.com/a","FailedBuild":"example.com/a [example.com/a.test]"}
go: some plain error
`,
			wantCode: 1,
			wantOut: []string{
				"go: some plain error",
				"    a_test.go:1:1: syntax error",
				"FAIL example.com/a 0.0s (0 passed, 0 failed, 0 skipped)",
				"testreport: no test ran",
				"tests: 0 passed, 0 failed, 0 skipped",
			},
		},
		{
			name: "nothing", in: "", wantCode: 1,
			wantOut: []string{"testreport: no test ran", "tests: 0 passed, 0 failed, 0 skipped"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(strings.NewReader(tt.in), &out, tt.ci, false)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
			var missing []string
			for _, w := range tt.wantOut {
				found := false
				for _, l := range lines {
					found = found || l == w
				}
				if !found {
					missing = append(missing, w)
				}
			}
			if diff := cmp.Diff([]string(nil), missing); diff != "" {
				t.Errorf("lines missing from the output (-want +got):\n%s\noutput:\n%s", diff, out.String())
			}
			// The closing line is the last, in the form CI reads.
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "tests: ") {
				t.Errorf("last line %q, want the tests: closing line", last)
			}
		})
	}
}

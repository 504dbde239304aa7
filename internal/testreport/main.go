// Command testreport reads `go test -json` on standard input and prints
// what a person reading CI needs: each package's result with its counts,
// the full output of failed tests, the reason of every skipped test, and
// closing lines computed from the run:
//
//	packages: 21 passed, 0 failed, 1 skipped, 3 without tests
//	tests: 412 passed, 0 failed, 6 skipped
//
// Tests count subtests. A package "passed" when it ran a test that passed
// and none failed; one whose tests all skipped counts as skipped, not
// passed. A test that never ended (a panic, a timeout) counts as failed.
//
// With -ci (the default when CI=true), a skipped test is a gap — a kernel
// or tool path that went untested — unless it skipped through
// testenv.Optional; gaps are listed, and counted as failed instead of
// skipped (their package too).
//
// It exits 1 when a test or package failed, or when no test ran at all.
//
//	go test -json ./... 2>&1 | go run ./internal/testreport
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/stormwatch/stormwatch/internal/testenv"
)

func main() {
	ci := flag.Bool("ci", testenv.CI(), "count skipped tests that are not optional as failed (default: CI=true)")
	verbose := flag.Bool("v", false, "also print the output of tests that passed")
	flag.Parse()
	os.Exit(run(os.Stdin, os.Stdout, *ci, *verbose))
}

func run(in io.Reader, out io.Writer, ci, verbose bool) int {
	r := newReport(out, verbose, ci)
	if err := r.read(in); err != nil {
		fmt.Fprintln(out, "testreport: reading go test -json:", err)
		return 1
	}
	c := r.finish()
	if len(c.Gaps) > 0 {
		fmt.Fprintf(out, "CI=true: %d skipped tests are gaps (a kernel or tool path not tested), counted as failed:\n", len(c.Gaps))
		for _, g := range c.Gaps {
			fmt.Fprintf(out, "    %s\n", g)
		}
	}
	code := 0
	if c.TestsFailed > 0 || c.PkgsFailed > 0 {
		code = 1
	}
	if c.TestsPassed+c.TestsFailed+c.TestsSkipped == 0 {
		fmt.Fprintln(out, "testreport: no test ran")
		code = 1
	}
	fmt.Fprintf(out, "packages: %d passed, %d failed, %d skipped, %d without tests\n",
		c.PkgsPassed, c.PkgsFailed, c.PkgsSkipped, c.PkgsNoTests)
	fmt.Fprintf(out, "tests: %d passed, %d failed, %d skipped\n", c.TestsPassed, c.TestsFailed, c.TestsSkipped)
	return code
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/stormwatch/stormwatch/internal/testenv"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time        time.Time
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	ImportPath  string // build-output, build-fail
	FailedBuild string
}

// test is one test's (or subtest's) state.
type test struct {
	pkg, name string
	action    string // "", pass, fail, skip
	output    strings.Builder
}

// pkgState is one package's state.
type pkgState struct {
	name    string
	action  string // pass, fail, skip ("no test files")
	elapsed float64
	output  strings.Builder // output not tied to a test
	tests   []*test
}

// Counts are a run's totals.
type Counts struct {
	TestsPassed, TestsFailed, TestsSkipped int
	// PkgsPassed ran at least one test that passed and failed none;
	// PkgsSkipped ran tests that all skipped (or none); PkgsNoTests have
	// no test files.
	PkgsPassed, PkgsFailed, PkgsSkipped, PkgsNoTests int
	// Gaps are, under CI, the skipped tests that are not optional
	// (testenv.Optional): a kernel or tool path that went untested. They
	// are counted as failed, not skipped.
	Gaps []string
}

// report reads the events, prints each package's result, the output of
// failed tests and the reason of skipped ones to w, and returns the counts.
// Lines that are not JSON (go's own errors) are copied to w.
type report struct {
	w       io.Writer
	verbose bool
	ci      bool // a skip that is not optional is a gap, counted as failed
	pkgs    map[string]*pkgState
	order   []string
	tests   map[[2]string]*test
	builds  map[string]*strings.Builder // build output by import path
	nonJSON int
	counts  Counts
}

func newReport(w io.Writer, verbose, ci bool) *report {
	return &report{w: w, verbose: verbose, ci: ci, pkgs: map[string]*pkgState{}, tests: map[[2]string]*test{}, builds: map[string]*strings.Builder{}}
}

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			r.nonJSON++
			fmt.Fprintf(r.w, "%s\n", line)
			continue
		}
		r.handle(e)
	}
	return sc.Err()
}

func (r *report) pkg(name string) *pkgState {
	p, ok := r.pkgs[name]
	if !ok {
		p = &pkgState{name: name}
		r.pkgs[name] = p
		r.order = append(r.order, name)
	}
	return p
}

func (r *report) handle(e event) {
	switch e.Action {
	case "build-output":
		b, ok := r.builds[e.ImportPath]
		if !ok {
			b = &strings.Builder{}
			r.builds[e.ImportPath] = b
		}
		b.WriteString(e.Output)
		return
	case "build-fail":
		return
	}
	if e.Package == "" {
		return
	}
	p := r.pkg(e.Package)
	if e.Test == "" {
		switch e.Action {
		case "output":
			p.output.WriteString(e.Output)
		case "pass", "fail", "skip":
			p.action, p.elapsed = e.Action, e.Elapsed
			r.endPackage(p, e)
		}
		return
	}
	key := [2]string{e.Package, e.Test}
	t, ok := r.tests[key]
	if !ok {
		t = &test{pkg: e.Package, name: e.Test}
		r.tests[key] = t
		p.tests = append(p.tests, t)
	}
	switch e.Action {
	case "output":
		t.output.WriteString(e.Output)
		if r.verbose {
			fmt.Fprint(r.w, e.Output)
		}
	case "pass", "fail", "skip":
		t.action = e.Action
	}
}

func (r *report) endPackage(p *pkgState, e event) {
	var passed, failed, skipped int
	for _, t := range p.tests {
		switch t.action {
		case "pass":
			passed++
		case "skip":
			reason := skipReason(t.output.String())
			if r.ci && !strings.Contains(reason, testenv.OptionalMarker) {
				failed++
				r.counts.Gaps = append(r.counts.Gaps, fmt.Sprintf("%s %s: %s", t.pkg, t.name, reason))
				fmt.Fprintf(r.w, "    SKIP (a gap under CI, counted as failed) %s: %s\n", t.name, reason)
				break
			}
			skipped++
			fmt.Fprintf(r.w, "    SKIP %s: %s\n", t.name, reason)
		case "fail":
			failed++
			r.printFailure(t)
		default: // never ended: the package panicked or timed out
			failed++
			t.action = "fail"
			r.printFailure(t)
		}
	}
	r.counts.TestsPassed += passed
	r.counts.TestsFailed += failed
	r.counts.TestsSkipped += skipped
	counts := fmt.Sprintf("%d passed, %d failed, %d skipped", passed, failed, skipped)
	switch {
	case p.action == "fail" || failed > 0:
		r.counts.PkgsFailed++
		if b, ok := r.builds[e.FailedBuild]; ok && e.FailedBuild != "" {
			fmt.Fprint(r.w, indentLines(strings.TrimRight(b.String(), "\n"))+"\n")
		}
		if out := strings.TrimSpace(dropTrailer(p.output.String(), p.name)); out != "" {
			fmt.Fprintln(r.w, indentLines(out))
		}
		fmt.Fprintf(r.w, "FAIL %s %.1fs (%s)\n", p.name, p.elapsed, counts)
	case p.action == "skip":
		r.counts.PkgsNoTests++
		if r.verbose {
			fmt.Fprintf(r.w, "---- %s [no test files]\n", p.name)
		}
	case passed == 0:
		r.counts.PkgsSkipped++
		fmt.Fprintf(r.w, "SKIP %s %.1fs (%s): no test passed\n", p.name, p.elapsed, counts)
	default:
		r.counts.PkgsPassed++
		fmt.Fprintf(r.w, "ok   %s %.1fs (%s)\n", p.name, p.elapsed, counts)
	}
}

func (r *report) printFailure(t *test) {
	fmt.Fprintf(r.w, "--- FAIL %s %s\n%s\n", t.pkg, t.name, indentLines(dropTrailer(t.output.String(), t.pkg)))
}

// dropTrailer removes go test's package result lines ("FAIL", "FAIL\tpkg
// 0.1s", "ok  \tpkg"), which the report prints its own way.
func dropTrailer(out, pkg string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l == "FAIL" || l == "PASS" || strings.HasPrefix(l, "FAIL\t"+pkg) || strings.HasPrefix(l, "ok  \t"+pkg) {
			continue
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// finish accounts for packages that never ended (go test was killed) and
// returns the counts.
func (r *report) finish() Counts {
	for _, name := range r.order {
		p := r.pkgs[name]
		if p.action == "" {
			p.action = "fail"
			p.output.WriteString("the package never reported its end (go test killed?)\n")
			r.endPackage(p, event{})
		}
	}
	slices.Sort(r.counts.Gaps)
	return r.counts
}

// skipReason returns what a skipped test said, without go test's own
// === RUN / --- SKIP lines.
func skipReason(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		lines = append(lines, t)
	}
	if len(lines) == 0 {
		return "(no reason given)"
	}
	return strings.Join(lines, " | ")
}

func indentLines(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

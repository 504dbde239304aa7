package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stormwatch/stormwatch/internal/testbin"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

// TestManPage builds stormwatch(1) as `make deb` does (manpage.sh), renders
// it with `man -l` and checks that it renders without a warning, that every
// section a reader looks for is there in order, that every flag of every
// command and every HTTP endpoint is in it, and that whatis can read its
// NAME line.
func TestManPage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds stormwatch: not in -short")
	}
	man := testenv.Tool(t, "man")
	bin := testbin.Stormwatch(t)

	page, err := exec.Command("sh", "manpage.sh", bin, "1.2.3").Output()
	if err != nil {
		t.Fatalf("manpage.sh: %v", err)
	}
	path := filepath.Join(t.TempDir(), "stormwatch.1")
	if err := os.WriteFile(path, page, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(man, "--warnings", "-l", path)
	// Wide, unhyphenated lines: a flag is never split across two.
	cmd.Env = append(os.Environ(), "MANWIDTH=250", "MANPAGER=cat", "PAGER=cat", "MANROFFOPT=-rHY=0", "LC_ALL=C.UTF-8")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("man -l: %v\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("man -l warns:\n%s", stderr.String())
	}
	text := string(out)

	// The sections, in this order, each a heading line of its own.
	var headings []string
	for _, line := range strings.Split(text, "\n") {
		if regexp.MustCompile(`^[A-Z][A-Z ]+$`).MatchString(line) {
			headings = append(headings, line)
		}
	}
	want := []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "CONFIGURATION",
		"HTTP ENDPOINTS", "FILES", "SIGNALS", "EXIT STATUS", "ENVIRONMENT", "EXAMPLES", "SEE ALSO"}
	if !slices.Equal(want, headings) {
		t.Errorf("sections %q, want %q", headings, want)
	}
	if !strings.Contains(text, "stormwatch 1.2.3") {
		t.Error("the page does not name its version")
	}

	// Every flag of every command, as the binary lists them.
	flagRE := regexp.MustCompile(`--(?:\[no-\])?([a-z][a-z0-9.-]+)`)
	seen := map[string]bool{}
	for _, c := range [][]string{{"--help"}, {"run", "--help"}, {"check", "--help"}, {"rules", "--help"}} {
		help, err := exec.Command(bin, c...).Output()
		if err != nil {
			t.Fatalf("stormwatch %s: %v", strings.Join(c, " "), err)
		}
		for _, m := range flagRE.FindAllStringSubmatch(string(help), -1) {
			name := strings.TrimRight(m[1], ".")
			if name == "help-long" || name == "help-man" {
				continue
			}
			seen[name] = true
			if !strings.Contains(text, "--"+name) {
				t.Errorf("flag --%s (from stormwatch %s) is not in the page", name, strings.Join(c, " "))
			}
		}
	}
	if len(seen) < 20 {
		t.Errorf("found only %d flags in the help output: %v", len(seen), seen)
	}
	for _, s := range []string{
		"GET /metrics", "GET /api/v1/alerts", "POST /-/reload", "GET /-/healthy",
		"/etc/stormwatch/stormwatch.yml", "/etc/default/stormwatch",
		"SIGHUP", "SIGTERM", "0 OK, 1 warning", "2 critical", "3 unknown",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("the page does not mention %q", s)
		}
	}

	out, err = exec.Command(testenv.Tool(t, "lexgrog"), path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"stormwatch - early warning of TCP connection storms on Linux hosts"`) {
		t.Errorf("lexgrog (whatis) cannot read the NAME line: %v\n%s", err, out)
	}
}

package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stormwatch/stormwatch/internal/testbin"
)

// registeredAtRunTime are the stormwatch metrics the exporter's golden files
// cannot show because the daemon registers them beside the exporter: the
// rule engine's alert states and config reload result. The process
// collector's metrics are added from client_golang itself (processMetrics).
var registeredAtRunTime = []string{
	"stormwatch_alerts",
	"stormwatch_config_last_reload_successful",
}

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// repoRoot returns the repository root (the parent of this package).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	return root
}

// knownMetrics returns every metric name stormwatch exports: those in the
// exporter's golden files, registeredAtRunTime and the process collector's.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "metrics", "testdata", "*.prom"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files metrics/testdata/*.prom")
	}
	known := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range expositionNames(b) {
			known[name] = true
		}
	}
	for _, name := range registeredAtRunTime {
		known[name] = true
	}
	for _, name := range processMetrics(t) {
		known[name] = true
	}
	return known
}

// expositionNames returns the metric names in a text exposition.
func expositionNames(b []byte) []string {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "# TYPE "), strings.HasPrefix(line, "# HELP "):
			if f := strings.Fields(line); len(f) >= 3 {
				names = append(names, f[2])
			}
		case line == "", strings.HasPrefix(line, "#"):
		default:
			if i := strings.IndexAny(line, "{ "); i > 0 {
				names = append(names, line[:i])
			}
		}
	}
	return names
}

// processMetrics returns the names of the process collector the daemon
// registers with namespace "stormwatch".
func processMetrics(t *testing.T) []string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "stormwatch"}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	return names
}

var (
	promqlString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlRange  = regexp.MustCompile(`\[[^\]]*\]`)
	promqlIdent  = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// metricRefs returns the stormwatch metric names (stormwatch_...) and the
// recording-rule names (level:metric:operations) an expression uses. String
// literals and range or subquery brackets are removed first, so label values
// and durations are never taken for names.
func metricRefs(expr string) (metrics, records []string) {
	expr = promqlString.ReplaceAllString(expr, `""`)
	expr = promqlRange.ReplaceAllString(expr, "[]")
	seen := map[string]bool{}
	for _, id := range promqlIdent.FindAllString(expr, -1) {
		if seen[id] {
			continue
		}
		seen[id] = true
		switch {
		case strings.Contains(id, ":"):
			records = append(records, id)
		case strings.HasPrefix(id, "stormwatch_"):
			metrics = append(metrics, id)
		}
	}
	sort.Strings(metrics)
	sort.Strings(records)
	return metrics, records
}

// lockedBuffer collects a process's output for the test log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a program the test started; it is stopped at cleanup.
type process struct {
	name string
	out  *lockedBuffer
	done chan struct{}
	err  error // valid once done is closed
}

// startProcess starts path with args and stops it (SIGTERM, then SIGKILL
// after 10s) when the test ends, logging its output if the test failed.
func startProcess(t *testing.T, name, path string, args ...string) *process {
	t.Helper()
	p := &process{name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd := exec.Command(path, args...)
	cmd.Dir = t.TempDir()
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fails only if it already ended
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out)
		}
	})
	return p
}

// exited returns an error describing the process's early exit, nil while it
// runs.
func (p *process) exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return fmt.Errorf("%s exited early, with status 0", p.name)
		}
		return fmt.Errorf("%s exited early: %w", p.name, p.err)
	default:
		return nil
	}
}

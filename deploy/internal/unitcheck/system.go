package unitcheck

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// command runs name with args, logs the command line and its output, and
// returns its combined output. A non-zero exit is an error carrying the
// output.
func (r *Runner) command(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	r.logf("$ %s %s (%v)\n%s", name, strings.Join(args, " "), errOrOK(err), indent(string(out)))
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func errOrOK(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

// systemctl runs systemctl with a timeout.
func (r *Runner) systemctl(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return r.command(ctx, "systemctl", args...)
}

// show returns the unit's properties (systemctl show -p).
func (r *Runner) show(ctx context.Context, props ...string) (map[string]string, error) {
	args := []string{"show", Unit}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemctl", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("systemctl show: %w", err)
	}
	m := parseProperties(string(out))
	for _, p := range props {
		if _, ok := m[p]; !ok {
			return nil, fmt.Errorf("systemctl show: no property %s in %q", p, out)
		}
	}
	return m, nil
}

// parseProperties parses systemctl show's KEY=VALUE lines.
func parseProperties(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// mainPID returns the unit's MainPID, 0 when it has none.
func (r *Runner) mainPID(ctx context.Context) int {
	p, err := r.show(ctx, "MainPID")
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(p["MainPID"])
	return pid
}

// journal returns the unit's journal (the daemon's messages and systemd's
// about it) since the given time, message text only.
func (r *Runner) journal(ctx context.Context, since time.Time) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "journalctl", "--no-pager", "-o", "cat",
		"--since=@"+strconv.FormatFloat(float64(since.UnixMicro())/1e6, 'f', 6, 64), "-u", Unit).CombinedOutput()
	return string(out)
}

// monotonic returns CLOCK_MONOTONIC, the clock of systemd's *Monotonic
// timestamps.
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // cannot fail on Linux
	}
	return time.Duration(ts.Nano())
}

// parseUSec parses systemd's time spans as systemctl show prints them
// ("30s", "1min 30s", "100ms", "infinity", "0").
func parseUSec(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "0":
		return 0, nil
	case "infinity":
		return -1, nil
	}
	var total time.Duration
	for _, f := range strings.Fields(s) {
		i := strings.IndexFunc(f, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if i <= 0 {
			return 0, fmt.Errorf("time span %q: %q has no number and unit", s, f)
		}
		v, err := strconv.ParseFloat(f[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("time span %q: %w", s, err)
		}
		unit, ok := map[string]time.Duration{
			"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second,
			"min": time.Minute, "h": time.Hour,
		}[f[i:]]
		if !ok {
			return 0, fmt.Errorf("time span %q: unknown unit %q", s, f[i:])
		}
		total += time.Duration(v * float64(unit))
	}
	return total, nil
}

// procStatus is what /proc/PID/status says about a process's identity.
type procStatus struct {
	UID, GID                   [4]uint64 // real, effective, saved, filesystem
	CapInh, CapPrm, CapEff     uint64
	CapBnd, CapAmb             uint64
	NoNewPrivs, Seccomp        int
	haveUID, haveGID, haveCaps bool
}

// parseStatus parses the identity fields of /proc/PID/status.
func parseStatus(rd io.Reader) (procStatus, error) {
	var st procStatus
	caps := 0
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		var err error
		switch k {
		case "Uid", "Gid":
			f := strings.Fields(v)
			if len(f) != 4 {
				return st, fmt.Errorf("status %s: want 4 ids, got %q", k, v)
			}
			dst := &st.UID
			if k == "Gid" {
				dst, st.haveGID = &st.GID, true
			} else {
				st.haveUID = true
			}
			for i, s := range f {
				if dst[i], err = strconv.ParseUint(s, 10, 32); err != nil {
					return st, fmt.Errorf("status %s: %w", k, err)
				}
			}
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			c, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return st, fmt.Errorf("status %s: %w", k, err)
			}
			switch k {
			case "CapInh":
				st.CapInh = c
			case "CapPrm":
				st.CapPrm = c
			case "CapEff":
				st.CapEff = c
			case "CapBnd":
				st.CapBnd = c
			case "CapAmb":
				st.CapAmb = c
			}
			caps++
		case "NoNewPrivs":
			st.NoNewPrivs, err = strconv.Atoi(v)
		case "Seccomp":
			st.Seccomp, err = strconv.Atoi(v)
		}
		if err != nil {
			return st, fmt.Errorf("status %s: %w", k, err)
		}
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	st.haveCaps = caps == 5
	if !st.haveUID || !st.haveGID || !st.haveCaps {
		return st, errors.New("status: Uid, Gid or a Cap* line is missing")
	}
	return st, nil
}

// sample is one series of a scrape.
type sample struct {
	labels map[string]string
	value  float64
}

// exposition maps metric names to their series.
type exposition map[string][]sample

// parseExposition parses the Prometheus text format.
func parseExposition(rd io.Reader) (exposition, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(rd)
	if err != nil {
		return nil, err
	}
	e := exposition{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := sample{labels: map[string]string{}, value: metricValue(m)}
			for _, lp := range m.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			e[name] = append(e[name], s)
		}
	}
	return e, nil
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// value returns the value of the one series of name whose labels include
// the given name, value pairs.
func (e exposition) value(name string, labels ...string) (float64, bool) {
	found, v := 0, 0.0
	for _, s := range e[name] {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if match {
			found++
			v = s.value
		}
	}
	return v, found == 1
}

// scrape fetches and parses the daemon's /metrics.
func (r *Runner) scrape(ctx context.Context) (exposition, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.MetricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", r.MetricsURL, resp.Status)
	}
	return parseExposition(resp.Body)
}

// poll calls f every interval until it returns nil or timeout passes, and
// returns f's last error.
func poll(ctx context.Context, timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(interval):
		}
	}
}

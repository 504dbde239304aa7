//go:build linux

package stormlab

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Ground truth: what the kernel's own tools say, to hold stormwatch's
// numbers against. Product code never shells out; the lab does.

// TCPCounters are the namespace's Tcp and TcpExt counters that describe a
// storm, as the lab reads them itself (ground truth), NaN when absent.
type TCPCounters struct {
	ListenOverflows, ListenDrops                         float64
	SyncookiesSent, SyncookiesRecv, SyncookiesFailed     float64
	TCPReqQFullDrop, TCPReqQFullDoCookies                float64
	ActiveOpens, PassiveOpens, AttemptFails, EstabResets float64
	CurrEstab                                            float64
}

// Counters reads the namespace's Tcp and TcpExt counters from
// /proc/net/netstat and /proc/net/snmp as seen from inside it (what nstat
// reads).
func (l *Lab) Counters() (TCPCounters, error) {
	var c TCPCounters
	err := l.NS.Do(func() error {
		var err error
		c, err = readCounters()
		return err
	})
	return c, err
}

// readCounters reads the counters of the calling thread's namespace.
func readCounters() (TCPCounters, error) {
	nan := math.NaN()
	c := TCPCounters{nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan}
	v := map[string]float64{}
	for _, f := range []string{"/proc/thread-self/net/netstat", "/proc/thread-self/net/snmp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return c, err
		}
		parseNetstat(b, v)
	}
	set := func(dst *float64, key string) {
		if x, ok := v[key]; ok {
			*dst = x
		}
	}
	set(&c.ListenOverflows, "TcpExt.ListenOverflows")
	set(&c.ListenDrops, "TcpExt.ListenDrops")
	set(&c.SyncookiesSent, "TcpExt.SyncookiesSent")
	set(&c.SyncookiesRecv, "TcpExt.SyncookiesRecv")
	set(&c.SyncookiesFailed, "TcpExt.SyncookiesFailed")
	set(&c.TCPReqQFullDrop, "TcpExt.TCPReqQFullDrop")
	set(&c.TCPReqQFullDoCookies, "TcpExt.TCPReqQFullDoCookies")
	set(&c.ActiveOpens, "Tcp.ActiveOpens")
	set(&c.PassiveOpens, "Tcp.PassiveOpens")
	set(&c.AttemptFails, "Tcp.AttemptFails")
	set(&c.EstabResets, "Tcp.EstabResets")
	set(&c.CurrEstab, "Tcp.CurrEstab")
	return c, nil
}

// parseNetstat reads the "Prefix: names" / "Prefix: values" line pairs of
// /proc/net/netstat and /proc/net/snmp into v as "Prefix.Name".
func parseNetstat(b []byte, v map[string]float64) {
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) < 2 || len(names) != len(values) || names[0] != values[0] {
			continue
		}
		prefix := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			if x, err := strconv.ParseFloat(values[j], 64); err == nil {
				v[prefix+"."+names[j]] = x
			}
		}
	}
}

// ConntrackStats are the namespace's conntrack counters summed over CPUs,
// from /proc/net/stat/nf_conntrack.
type ConntrackStats struct {
	Entries, Drop, EarlyDrop, InsertFailed float64
}

// ConntrackStats reads the conntrack table's fill and counters inside the
// namespace.
func (l *Lab) ConntrackStats() (ConntrackStats, error) {
	var s ConntrackStats
	err := l.NS.Do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/stat/nf_conntrack")
		if err != nil {
			return err
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) < 2 {
			return fmt.Errorf("nf_conntrack stats: %d lines", len(lines))
		}
		head := strings.Fields(lines[0])
		for _, line := range lines[1:] {
			for i, f := range strings.Fields(line) {
				if i >= len(head) {
					break
				}
				x, err := strconv.ParseUint(f, 16, 64)
				if err != nil {
					return fmt.Errorf("nf_conntrack stats: %w", err)
				}
				switch head[i] {
				case "entries":
					s.Entries = float64(x) // the same total on every line
				case "drop":
					s.Drop += float64(x)
				case "early_drop":
					s.EarlyDrop += float64(x)
				case "insert_failed":
					s.InsertFailed += float64(x)
				}
			}
		}
		return nil
	})
	return s, err
}

// ConntrackCount is "conntrack -C" run inside the namespace.
func (l *Lab) ConntrackCount(ctx context.Context) (int, error) {
	out, err := l.Exec(ctx, "conntrack", "-C")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// SSLines runs ss with args inside the namespace and returns its non-empty
// output lines.
func (l *Lab) SSLines(ctx context.Context, args ...string) ([]string, error) {
	out, err := l.Exec(ctx, "ss", args...)
	if err != nil {
		return nil, err
	}
	var lines []string
	for line := range strings.Lines(string(out)) {
		if s := strings.TrimSpace(line); s != "" {
			lines = append(lines, s)
		}
	}
	return lines, nil
}

// SSListen returns ss's Recv-Q and Send-Q (accept queue length and limit)
// of the TCP listener on port ("ss -Hltn sport = :port").
func (l *Lab) SSListen(ctx context.Context, port int) (queue, limit int, err error) {
	lines, err := l.SSLines(ctx, "-Hltn", fmt.Sprintf("sport = :%d", port))
	if err != nil {
		return 0, 0, err
	}
	if len(lines) != 1 {
		return 0, 0, fmt.Errorf("ss shows %d listeners on port %d: %q", len(lines), port, lines)
	}
	f := strings.Fields(lines[0])
	if len(f) < 3 {
		return 0, 0, fmt.Errorf("ss printed %q", lines[0])
	}
	queue, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, err
	}
	limit, err = strconv.Atoi(f[2])
	return queue, limit, err
}

// SSSynRecv counts the half-open handshakes to port ("ss -Htn state
// syn-recv sport = :port").
func (l *Lab) SSSynRecv(ctx context.Context, port int) (int, error) {
	lines, err := l.SSLines(ctx, "-Htn", "state", "syn-recv", fmt.Sprintf("sport = :%d", port))
	return len(lines), err
}

// Series is one sample of a scrape: its labels and value.
type Series struct {
	Labels map[string]string
	Value  float64
}

// Exposition is a parsed /metrics page: series by metric family name.
type Exposition map[string][]Series

// ParseExposition parses a Prometheus text exposition.
func ParseExposition(body []byte) (Exposition, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	e := Exposition{}
	for name, mf := range mfs {
		for _, m := range mf.Metric {
			s := Series{Labels: map[string]string{}, Value: metricValue(m)}
			for _, lp := range m.Label {
				s.Labels[lp.GetName()] = lp.GetValue()
			}
			e[name] = append(e[name], s)
		}
	}
	return e, nil
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// Find returns the series of name whose labels include all of match.
func (e Exposition) Find(name string, match map[string]string) []Series {
	var out []Series
	for _, s := range e[name] {
		ok := true
		for k, v := range match {
			if s.Labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// Value returns the value of the one series of name with the given labels
// (name, value pairs) among its labels, and whether there is one.
func (e Exposition) Value(name string, labelPairs ...string) (float64, bool) {
	match := map[string]string{}
	for i := 0; i+1 < len(labelPairs); i += 2 {
		match[labelPairs[i]] = labelPairs[i+1]
	}
	s := e.Find(name, match)
	if len(s) != 1 {
		return 0, false
	}
	return s[0].Value, true
}

// String formats a series as name{k="v",...}.
func (s Series) String(name string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, s.Labels[k]))
	}
	return fmt.Sprintf("%s{%s} %v", name, strings.Join(parts, ","), s.Value)
}

//go:build linux

package stormlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/collector"
)

// Names of the measured cases.
const (
	CaseSamplerListen = "sampler: LISTEN + counters"
	CaseSamplerFull   = "sampler: LISTEN + SYN_RECV + counters"
	CaseDumpListen    = "listeners source: LISTEN"
	CaseDumpFull      = "listeners source: LISTEN + SYN_RECV"
	CaseSSListen      = "ss -Hltn"
	CaseSSSynRecv     = "ss -Htn state syn-recv"
	CaseScrapeSW      = "stormwatch /metrics"
	CaseScrapeNode    = "node_exporter tcpstat /metrics"

	// PerFamily is appended to a cycle case's name for its run with one
	// sock_diag dump per address family (two walks of the socket table
	// for SYN_RECV), as a kernel refusing the one-walk request gets and as
	// every cycle was before stormwatch used it.
	PerFamily = ", per family"
	// Loaded is appended to a case's name for its run while a CPU-bound
	// process competes for the CPUs.
	Loaded = ", loaded"
)

// cycleBenchRequest asks a worker (inside the namespace, so that procfs and
// sock_diag both see it) to time the cases.
type cycleBenchRequest struct {
	// Cycle times the sampler and listeners-source cases; IdlePorts are
	// the listeners the LISTEN-only cases keep (no queue, no half-open
	// handshake, so no storm signal triggers the SYN_RECV dump).
	Cycle     bool          `json:"cycle,omitempty"`
	IdlePorts []uint16      `json:"idle_ports,omitempty"`
	MinTime   time.Duration `json:"min_time"`
	MaxRuns   int           `json:"max_runs"`
	// PerFamily also times the cycle cases with per-family dumps.
	PerFamily bool `json:"per_family,omitempty"`
	// Only, when not empty, limits the cycle cases to these.
	Only []string `json:"only,omitempty"`
	// Suffix is appended to the names of the cases timed (Loaded).
	Suffix string `json:"suffix,omitempty"`
	// SS times the ss(8) runs.
	SS bool `json:"ss,omitempty"`
	// Scrapes times GET /metrics of these targets (name → address).
	Scrapes map[string]string `json:"scrapes,omitempty"`
}

// Timing is the distribution of one case's wall time per run.
type Timing struct {
	Runs   int           `json:"runs"`
	Median time.Duration `json:"median"`
	P10    time.Duration `json:"p10"`
	P90    time.Duration `json:"p90"`
	// AllocsPerOp and BytesPerOp are heap allocations per run, CPUPerOp
	// the process's CPU time (user and system, every thread) per run
	// (in-process cases only).
	AllocsPerOp float64       `json:"allocs_per_op,omitempty"`
	BytesPerOp  float64       `json:"bytes_per_op,omitempty"`
	CPUPerOp    time.Duration `json:"cpu_per_op,omitempty"`
	// SynRecvDumps counts the runs whose cycle ran the SYN_RECV dump.
	SynRecvDumps int `json:"syn_recv_dumps,omitempty"`
	// Bytes is the size of a scraped page.
	Bytes int `json:"bytes,omitempty"`
}

type cycleBenchResult struct {
	Cases map[string]Timing `json:"cases"`
}

// timeRuns runs fn at least 5 times and until minTime passed or maxRuns
// ran, after two warm-up runs (and then warmed, when not nil), and returns
// the distribution of its wall time and its allocations per run.
func timeRuns(minTime time.Duration, maxRuns int, fn func() error, warmed func()) (Timing, error) {
	for range 2 {
		if err := fn(); err != nil {
			return Timing{}, err
		}
	}
	if warmed != nil {
		warmed()
	}
	durs := make([]time.Duration, 0, maxRuns)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	mallocs, bytes := ms.Mallocs, ms.TotalAlloc
	cpu0 := processCPU()
	start := time.Now()
	for len(durs) < maxRuns && (len(durs) < 5 || time.Since(start) < minTime) {
		t := time.Now()
		if err := fn(); err != nil {
			return Timing{}, err
		}
		durs = append(durs, time.Since(t))
	}
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&ms)
	n := len(durs)
	slices.Sort(durs)
	return Timing{
		Runs:        n,
		Median:      durs[n/2],
		P10:         durs[n/10],
		P90:         durs[n*9/10],
		AllocsPerOp: float64(ms.Mallocs-mallocs) / float64(n),
		BytesPerOp:  float64(ms.TotalAlloc-bytes) / float64(n),
		CPUPerOp:    cpu / time.Duration(n),
	}, nil
}

// processCPU is the calling process's user and system time so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runCycleBench times the requested cases in the calling process, which
// runs inside the namespace.
func runCycleBench(ctx context.Context, req cycleBenchRequest) (cycleBenchResult, error) {
	res := cycleBenchResult{Cases: map[string]Timing{}}
	if req.MinTime <= 0 {
		req.MinTime = 2 * time.Second
	}
	if req.MaxRuns <= 0 {
		req.MaxRuns = 2000
	}
	if req.Cycle {
		var idle []collector.PortRange
		for _, p := range req.IdlePorts {
			idle = append(idle, collector.PortRange{Lo: p, Hi: p})
		}
		if len(idle) == 0 {
			return res, errors.New("no idle listener ports for the LISTEN-only cases")
		}
		listenOnly := collector.ListenerConfig{Include: idle, SynRecvInterval: time.Hour}
		full := collector.ListenerConfig{SynRecvInterval: 0}
		type cycleCase struct {
			name      string
			cfg       collector.ListenerConfig
			sampler   bool
			perFamily bool
		}
		cases := []cycleCase{
			{CaseSamplerListen, listenOnly, true, false},
			{CaseSamplerFull, full, true, false},
			{CaseDumpListen, listenOnly, false, false},
			{CaseDumpFull, full, false, false},
		}
		if req.PerFamily {
			for _, c := range cases[:4] {
				c.name, c.perFamily = c.name+PerFamily, true
				cases = append(cases, c)
			}
		}
		for _, c := range cases {
			if len(req.Only) > 0 && !slices.Contains(req.Only, c.name) {
				continue
			}
			t, err := timeCycle(ctx, c.cfg, c.sampler, c.perFamily, req.MinTime, req.MaxRuns)
			if err != nil {
				return res, fmt.Errorf("%s: %w", c.name, err)
			}
			res.Cases[c.name+req.Suffix] = t
		}
	}
	if req.SS {
		for name, args := range map[string][]string{
			CaseSSListen:  {"-Hltn"},
			CaseSSSynRecv: {"-Htn", "state", "syn-recv"},
		} {
			t, err := timeRuns(req.MinTime, 31, func() error {
				return exec.CommandContext(ctx, "ss", args...).Run()
			}, nil)
			if err != nil {
				return res, fmt.Errorf("ss %v: %w", args, err)
			}
			t.AllocsPerOp, t.BytesPerOp, t.CPUPerOp = 0, 0, 0
			res.Cases[name+req.Suffix] = t
		}
	}
	for name, addr := range req.Scrapes {
		size := 0
		t, err := timeRuns(req.MinTime, 101, func() error {
			status, body, err := httpGet(addr, "/metrics")
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("status %d", status)
			}
			size = len(body)
			return err
		}, nil)
		if err != nil {
			return res, fmt.Errorf("scrape %s: %w", addr, err)
		}
		t.AllocsPerOp, t.BytesPerOp, t.CPUPerOp, t.Bytes = 0, 0, 0, size
		res.Cases[name+req.Suffix] = t
	}
	return res, nil
}

// timeCycle times one cycle of the whole sampler (every source) or of the
// listeners source alone, with the given listener configuration, with one
// walk for both address families or one dump per family.
func timeCycle(ctx context.Context, cfg collector.ListenerConfig, sampler, perFamily bool, minTime time.Duration, maxRuns int) (Timing, error) {
	sources, err := collector.NewSources(collector.Config{Listeners: cfg})
	if err != nil {
		return Timing{}, err
	}
	defer collector.CloseSources(sources)
	if perFamily && !collector.UsePerFamilyDumps(sources) {
		return Timing{}, errors.New("no listeners source")
	}
	dumps := 0
	var fn func() error
	var s *collector.Sampler
	if sampler {
		s, err = collector.NewSampler(collector.DefaultSchema(), sources, nil, collector.NewHistory(collector.Retention{}))
	} else {
		s, err = listenersOnly(sources)
	}
	if err != nil {
		return Timing{}, err
	}
	fn = func() error {
		snap := s.Sample(ctx, time.Now())
		for _, r := range snap.Sources {
			if r.Err != nil {
				return fmt.Errorf("%s: %w", r.Name, r.Err)
			}
		}
		if collector.SynRecvRan(snap) {
			dumps++
		}
		return nil
	}
	t, err := timeRuns(minTime, maxRuns, fn, func() { dumps = 0 })
	t.SynRecvDumps = dumps
	return t, err
}

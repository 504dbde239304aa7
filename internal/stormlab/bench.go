//go:build linux

package stormlab

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BenchConfig configures RunBench.
type BenchConfig struct {
	// Sizes are the socket populations to measure at.
	Sizes []int
	// Stormwatch is the stormwatch binary.
	Stormwatch string
	// CPUWindow is how long the daemon's CPU use is averaged over at the
	// largest population, calm and in storm mode (scraped every 15 s).
	CPUWindow time.Duration
	// LoadWindow is how long the daemon's sampling intervals are watched
	// at the largest population, in storm mode, without and with LoadProcs
	// CPU-bound processes competing for the CPUs (default 20 s, 1).
	LoadWindow time.Duration
	LoadProcs  int
	// MinTime is how long each timed case runs at least.
	MinTime time.Duration
	// LeadRuns is how many accept-queue runs measure the detection lead
	// per daemon configuration; LeadRate is their client arrival rate.
	LeadRuns int
	LeadRate float64
	// ReconnectClients is the client pool of the reconnection storms, run
	// ReconnectRuns times per backoff policy.
	ReconnectClients int
	ReconnectRuns    int
	// NewLab makes a fresh Lab in a fresh namespace; closing it removes
	// the namespace.
	NewLab func(ctx context.Context) (*Lab, error)
	// Logf receives progress lines.
	Logf func(format string, args ...any)
}

// SizeResult is what one population measured.
type SizeResult struct {
	Target     int
	Population *Population
	Cases      map[string]Timing
}

// DaemonUsage is the daemon's resource use over a window.
type DaemonUsage struct {
	// Mode is "calm" (no storm signal: the busy and half-open listeners
	// are excluded, so their never-accepted queues signal nothing) or
	// "storm" (every listener kept: storm signals held on).
	Mode       string
	Sockets    int
	Window     time.Duration
	CPU        time.Duration
	CPUPercent float64 // of one core
	RSS, HWM   int64
	// Samples and SynRecvDumps are the cycles and the SYN_RECV dumps in
	// the window; DumpCPU is the CPU time of those dumps.
	Samples, SynRecvDumps int
	DumpCPU               time.Duration
}

// IntervalStats describes the daemon's sampling intervals over a window.
type IntervalStats struct {
	Window  time.Duration
	Samples int // cycles the daemon ran
	// Mean is the time between the first and the last sample seen over
	// the cycles between them; Median, P99 and Max are of the gaps between
	// consecutive samples a scrape every 25 ms saw both of.
	Mean, Median, P99, Max time.Duration
	Gaps                   int
	SynRecvDumps, Timeouts int
}

// LoadResult is the daemon's sampling in storm mode at the largest
// population, without and with CPU-bound processes competing.
type LoadResult struct {
	Sockets, Procs int
	Idle, Loaded   IntervalStats
}

// LeadResult is one accept-queue run's detection lead time.
type LeadResult struct {
	// Config names the daemon's flags (Flags).
	Config string
	Flags  []string
	Rate   float64 // client arrivals per second
	Limit  int     // accept queue limit
	// Signal is the start of the daemon's first sample whose accept queue
	// was at least 80% of its limit; Overflow the first probe sample (5 ms
	// apart) where TcpExt ListenOverflows had risen.
	Signal, Overflow time.Time
	// Lead is Overflow − Signal: positive when stormwatch saw it coming.
	Lead time.Duration
	// AlertPending and AlertFiring are when a scrape first showed the
	// AcceptQueueNearFull alert pending and firing, relative to Overflow
	// (negative: before the overflow); nil when not seen or not wired.
	AlertPending, AlertFiring *time.Duration
}

// BenchReport is everything RunBench measured.
type BenchReport struct {
	Command   string
	Sizes     []SizeResult
	Usage     []DaemonUsage
	Load      *LoadResult
	Lead      []LeadResult
	Reconnect []ReconnectResult
	NoFile    uint64
	Started   time.Time
	Took      time.Duration
}

func (c *BenchConfig) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// leadConfigs are the daemon configurations the lead time is measured
// with: as shipped, and without storm mode (as before it existed).
var leadConfigs = []struct {
	name  string
	flags []string
}{
	{"interval 1s, storm interval 250ms (default)", nil},
	{"interval 1s, no storm mode", []string{"--collect.storm-interval=1s"}},
}

// RunBench measures stormwatch against its references at each population
// size, the daemon's footprint and its sampling under load at the
// largest, the accept-queue detection lead time and the reconnection
// storms, all in one run.
func RunBench(ctx context.Context, cfg BenchConfig) (*BenchReport, error) {
	rep := &BenchReport{Started: time.Now()}
	rep.NoFile, _ = NoFileLimit()
	if cfg.CPUWindow == 0 {
		cfg.CPUWindow = time.Minute
	}
	if cfg.LoadWindow == 0 {
		cfg.LoadWindow = 20 * time.Second
	}
	if cfg.LoadProcs == 0 {
		cfg.LoadProcs = 1
	}
	if cfg.MinTime == 0 {
		cfg.MinTime = 2 * time.Second
	}
	if cfg.LeadRate == 0 {
		cfg.LeadRate = 20
	}
	largest := slices.Max(cfg.Sizes)
	for _, size := range cfg.Sizes {
		r, err := benchSize(ctx, cfg, size, size == largest, rep)
		if err != nil {
			return rep, fmt.Errorf("%d sockets: %w", size, err)
		}
		rep.Sizes = append(rep.Sizes, r)
	}
	for _, c := range leadConfigs {
		for range cfg.LeadRuns {
			r, err := benchLead(ctx, cfg, c.name, c.flags)
			if err != nil {
				return rep, fmt.Errorf("lead time: %w", err)
			}
			rep.Lead = append(rep.Lead, r)
		}
	}
	if cfg.ReconnectClients > 0 {
		for range max(1, cfg.ReconnectRuns) {
			for _, backoff := range []string{"none", "jitter"} {
				r, err := benchReconnect(ctx, cfg, backoff)
				if err != nil {
					return rep, fmt.Errorf("reconnect storm (%s): %w", backoff, err)
				}
				rep.Reconnect = append(rep.Reconnect, r)
			}
		}
	}
	rep.Took = time.Since(rep.Started)
	return rep, nil
}

func benchSize(ctx context.Context, cfg BenchConfig, size int, largest bool, rep *BenchReport) (SizeResult, error) {
	res := SizeResult{Target: size, Cases: map[string]Timing{}}
	lab, err := cfg.NewLab(ctx)
	if err != nil {
		return res, err
	}
	defer lab.Close()
	cfg.logf("populating %d sockets", size)
	pop, err := lab.Populate(ctx, PopulationFor(size))
	if err != nil {
		return res, err
	}
	res.Population = pop
	bw, err := lab.StartWorker(ctx)
	if err != nil {
		return res, err
	}
	var idle []uint16
	for _, p := range pop.IdlePorts {
		idle = append(idle, uint16(p))
	}

	// First the in-process cycles and ss, nothing else running; then
	// node_exporter; then the daemon, alone.
	cfg.logf("%d sockets: timing collection cycles and ss", pop.Sockets)
	if err := benchCall(ctx, bw, cycleBenchRequest{Cycle: true, PerFamily: true, SS: true, IdlePorts: idle, MinTime: cfg.MinTime}, res.Cases); err != nil {
		return res, err
	}
	ne, err := lab.StartNodeExporter(ctx)
	if err != nil {
		return res, err
	}
	cfg.logf("%d sockets: timing node_exporter scrapes", pop.Sockets)
	if err := benchCall(ctx, bw, cycleBenchRequest{Scrapes: map[string]string{CaseScrapeNode: NodeExporterAddr}, MinTime: cfg.MinTime}, res.Cases); err != nil {
		return res, err
	}
	ne.Stop(5 * time.Second)
	d, err := lab.StartStormwatch(ctx, cfg.Stormwatch)
	if err != nil {
		return res, err
	}
	cfg.logf("%d sockets: timing stormwatch scrapes", pop.Sockets)
	if err := benchCall(ctx, bw, cycleBenchRequest{Scrapes: map[string]string{CaseScrapeSW: d.Addr}, MinTime: cfg.MinTime}, res.Cases); err != nil {
		return res, err
	}
	d.Stop(5 * time.Second)
	if !largest {
		return res, nil
	}

	// The daemon's footprint, calm and in storm mode: fresh daemons, so
	// that start-up is not in the window.
	var exclude []string
	for _, p := range append(slices.Clone(pop.BusyPorts), pop.HalfOpenPort) {
		exclude = append(exclude, strconv.Itoa(p))
	}
	for _, mode := range []struct {
		name  string
		flags []string
	}{
		{"calm", []string{"--collect.listeners.exclude-ports=" + strings.Join(exclude, ",")}},
		{"storm", nil},
	} {
		u, err := benchFootprint(ctx, cfg, lab, pop, mode.name, mode.flags)
		if err != nil {
			return res, fmt.Errorf("footprint (%s): %w", mode.name, err)
		}
		rep.Usage = append(rep.Usage, u)
	}

	// The full cycle, and the daemon's sampling in storm mode, with the
	// machine loaded.
	load, err := benchLoad(ctx, cfg, lab, bw, pop, idle, res.Cases)
	if err != nil {
		return res, fmt.Errorf("loaded: %w", err)
	}
	rep.Load = load
	return res, nil
}

// scrapeValue scrapes d once and returns the value of each of names, NaN
// for one absent.
func scrapeValue(d *Daemon, names ...string) ([]float64, error) {
	x, err := d.Scrape()
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(names))
	for i, n := range names {
		v, ok := x.Value(n)
		if !ok {
			v = math.NaN()
		}
		out[i] = v
	}
	return out, nil
}

var footprintMetrics = []string{"stormwatch_samples_total", "stormwatch_syn_recv_dumps_total", "stormwatch_syn_recv_dump_cpu_seconds_total"}

// benchFootprint measures a fresh daemon's CPU and memory over
// cfg.CPUWindow, scraped every 15 s as by a Prometheus server.
func benchFootprint(ctx context.Context, cfg BenchConfig, lab *Lab, pop *Population, mode string, flags []string) (DaemonUsage, error) {
	u := DaemonUsage{Mode: mode, Sockets: pop.Sockets}
	d, err := lab.StartStormwatch(ctx, cfg.Stormwatch, flags...)
	if err != nil {
		return u, err
	}
	defer d.Stop(5 * time.Second)
	cfg.logf("%d sockets: measuring the daemon's CPU and memory over %v (%s)", pop.Sockets, cfg.CPUWindow, mode)
	// Past start-up, and past the storm mode a scrape waiting in its own
	// listener's accept queue at start-up brings.
	time.Sleep(12 * time.Second)
	u0, err := d.Usage()
	if err != nil {
		return u, err
	}
	m0, err := scrapeValue(d, footprintMetrics...)
	if err != nil {
		return u, err
	}
	start := time.Now()
	var m1 []float64
	for {
		select {
		case <-ctx.Done():
			return u, ctx.Err()
		case <-time.After(min(15*time.Second, cfg.CPUWindow-time.Since(start))):
		}
		if m1, err = scrapeValue(d, footprintMetrics...); err != nil {
			return u, err
		}
		if time.Since(start) >= cfg.CPUWindow {
			break
		}
	}
	u1, err := d.Usage()
	if err != nil {
		return u, err
	}
	u.Window = time.Since(start)
	u.CPU = u1.CPU - u0.CPU
	u.CPUPercent = 100 * u.CPU.Seconds() / u.Window.Seconds()
	u.RSS, u.HWM = u1.RSS, u1.HWM
	u.Samples = int(m1[0] - m0[0])
	u.SynRecvDumps = int(m1[1] - m0[1])
	u.DumpCPU = time.Duration((m1[2] - m0[2]) * float64(time.Second))
	return u, nil
}

// benchLoad times the full cycle in-process and watches a storm-mode
// daemon's sampling, first alone, then with cfg.LoadProcs CPU-bound
// processes (sha256sum of /dev/zero) running.
func benchLoad(ctx context.Context, cfg BenchConfig, lab *Lab, bw *Worker, pop *Population, idle []uint16, cases map[string]Timing) (*LoadResult, error) {
	res := &LoadResult{Sockets: pop.Sockets, Procs: cfg.LoadProcs}
	d, err := lab.StartStormwatch(ctx, cfg.Stormwatch)
	if err != nil {
		return nil, err
	}
	defer d.Stop(5 * time.Second)
	w := NewWatcher(d, pop.BusyPorts[0])
	w.Start(25 * time.Millisecond)
	defer w.Stop()
	window := func() (IntervalStats, error) {
		m0, err := scrapeValue(d, "stormwatch_syn_recv_dumps_total", "stormwatch_syn_recv_dump_timeouts_total")
		if err != nil {
			return IntervalStats{}, err
		}
		from := time.Now()
		select {
		case <-ctx.Done():
			return IntervalStats{}, ctx.Err()
		case <-time.After(cfg.LoadWindow):
		}
		to := time.Now()
		m1, err := scrapeValue(d, "stormwatch_syn_recv_dumps_total", "stormwatch_syn_recv_dump_timeouts_total")
		if err != nil {
			return IntervalStats{}, err
		}
		gaps, span, samples := w.Gaps(from, to)
		st := IntervalStats{Window: to.Sub(from), Samples: samples, Gaps: len(gaps),
			SynRecvDumps: int(m1[0] - m0[0]), Timeouts: int(m1[1] - m0[1])}
		if samples > 0 {
			st.Mean = span / time.Duration(samples)
		}
		if len(gaps) > 0 {
			slices.Sort(gaps)
			st.Median, st.P99, st.Max = gaps[len(gaps)/2], gaps[len(gaps)*99/100], gaps[len(gaps)-1]
		}
		return st, nil
	}
	time.Sleep(12 * time.Second) // past start-up
	cfg.logf("%d sockets: the daemon's sampling, machine idle, over %v", pop.Sockets, cfg.LoadWindow)
	if res.Idle, err = window(); err != nil {
		return nil, err
	}
	var hogs []*Process
	defer func() {
		for _, h := range hogs {
			h.Kill()
		}
	}()
	for range cfg.LoadProcs {
		h, err := lab.Start("sha256sum", "/dev/zero")
		if err != nil {
			return nil, err
		}
		hogs = append(hogs, h)
	}
	cfg.logf("%d sockets: the daemon's sampling, %d CPU-bound process(es) running, over %v", pop.Sockets, cfg.LoadProcs, cfg.LoadWindow)
	if res.Loaded, err = window(); err != nil {
		return nil, err
	}
	w.Stop()
	d.Stop(5 * time.Second)
	cfg.logf("%d sockets: timing the full cycle, machine loaded", pop.Sockets)
	err = benchCall(ctx, bw, cycleBenchRequest{Cycle: true, PerFamily: true, IdlePorts: idle, MinTime: cfg.MinTime, Suffix: Loaded,
		Only: []string{CaseSamplerListen, CaseSamplerFull, CaseSamplerFull + PerFamily}}, cases)
	return res, err
}

func benchCall(ctx context.Context, w *Worker, req cycleBenchRequest, into map[string]Timing) error {
	var resp response
	if err := w.call(ctx, request{Op: "bench", Bench: &req}, &resp); err != nil {
		return err
	}
	for k, v := range resp.Bench.Cases {
		into[k] = v
	}
	return nil
}

// benchLead runs the accept-queue storm once with the daemon started with
// flags, and times the daemon's first near-full sample against the
// kernel's first overflow.
func benchLead(ctx context.Context, cfg BenchConfig, name string, flags []string) (LeadResult, error) {
	res := LeadResult{Config: name, Flags: flags, Rate: cfg.LeadRate}
	lab, err := cfg.NewLab(ctx)
	if err != nil {
		return res, err
	}
	defer lab.Close()
	s := &AcceptQueueStorm{Lab: lab, Rate: cfg.LeadRate}
	if err := s.Setup(ctx); err != nil {
		return res, err
	}
	res.Limit = s.Limit()
	d, err := lab.StartStormwatch(ctx, cfg.Stormwatch, flags...)
	if err != nil {
		return res, err
	}
	probe, err := lab.StartProbe(5*time.Millisecond, s.Port)
	if err != nil {
		return res, err
	}
	if err := s.Stall(); err != nil {
		return res, err
	}
	w := NewWatcher(d, s.Port)
	w.Start(25 * time.Millisecond)
	defer w.Stop()
	// Start the arrivals at a random point of the daemon's cycle, so that
	// runs sample the phase rather than repeat one.
	time.Sleep(rand.N(time.Second))
	cfg.logf("lead time: %d clients at %v/s, daemon %s", res.Limit+40, cfg.LeadRate, name)
	if _, err := s.Arrive(ctx, res.Limit+40, 0); err != nil {
		return res, err
	}
	// Let the last arrivals be dropped and the daemon sample once more.
	time.Sleep(1500 * time.Millisecond)
	w.Stop()
	samples, err := probe.Stop()
	if err != nil {
		return res, err
	}
	st := Summarise(samples, s.Port, time.Second)
	if st.FirstOverflow.IsZero() {
		return res, fmt.Errorf("no overflow: peak queue %d of %d", st.PeakQueue, st.Limit)
	}
	res.Overflow = st.FirstOverflow
	res.Signal = w.FirstFill(0.8)
	if !res.Signal.IsZero() {
		res.Lead = res.Overflow.Sub(res.Signal)
	}
	if t := w.FirstAlert("AcceptQueueNearFull", "pending"); !t.IsZero() {
		d := t.Sub(res.Overflow)
		res.AlertPending = &d
	}
	if t := w.FirstAlert("AcceptQueueNearFull", "firing"); !t.IsZero() {
		d := t.Sub(res.Overflow)
		res.AlertFiring = &d
	}
	cfg.logf("lead time: %v (signal %v, overflow %v)", res.Lead, res.Signal.Format(time.StampMilli), res.Overflow.Format(time.StampMilli))
	return res, nil
}

func benchReconnect(ctx context.Context, cfg BenchConfig, backoff string) (ReconnectResult, error) {
	lab, err := cfg.NewLab(ctx)
	if err != nil {
		return ReconnectResult{}, err
	}
	defer lab.Close()
	s := &ReconnectStorm{Lab: lab, Clients: cfg.ReconnectClients, Backoff: backoff}
	cfg.logf("reconnect storm: %d clients, backoff %s", cfg.ReconnectClients, backoff)
	if err := s.Setup(ctx); err != nil {
		return ReconnectResult{}, err
	}
	return s.Restart(ctx)
}

// Markdown writes the report as the tables of docs/benchmarks.md.
func (r *BenchReport) Markdown(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
	ratio := func(a, b time.Duration) string {
		if b == 0 || a == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", float64(a)/float64(b))
	}
	p("Measured %s in %v, kernel sockets per worker process limited to %d (RLIMIT_NOFILE).\n\n",
		r.Started.Format("2006-01-02"), r.Took.Round(time.Second), r.NoFile)

	p("### Collection cycle and scrape, median wall time (ratio to the reference)\n\n")
	p("\"Full cycle\" dumps SYN_RECV for both address families in one walk of the socket table (TCPDIAG_GETSOCK); \"per family\" dumps each family on its own, as a kernel refusing that request gets and as every cycle did before (two walks). CPU is the worker process's, every thread, per cycle.\n\n")
	p("| TCP sockets (ss) | LISTEN + counters | full cycle | its CPU | full, per family | ss -Htn state syn-recv | full ÷ ss | per family ÷ ss | node_exporter tcpstat scrape | node_exporter ÷ full | stormwatch /metrics | ss -Hltn |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Sizes {
		c := s.Cases
		full, pf, ssSyn, node := c[CaseSamplerFull].Median, c[CaseSamplerFull+PerFamily].Median, c[CaseSSSynRecv].Median, c[CaseScrapeNode].Median
		p("| %d | %s | %s | %s | %s | %s | **%s** | %s | %s | **%s** | %s | %s |\n",
			s.Population.Sockets, ms(c[CaseSamplerListen].Median), ms(full), ms(c[CaseSamplerFull].CPUPerOp), ms(pf), ms(ssSyn),
			ratio(full, ssSyn), ratio(pf, ssSyn), ms(node), ratio(node, full), ms(c[CaseScrapeSW].Median), ms(c[CaseSSListen].Median))
	}
	p("\n### The listeners source alone: one walk or per family, median wall time and allocations per cycle\n\n")
	p("| TCP sockets (ss) | LISTEN | LISTEN, per family | LISTEN + SYN_RECV | LISTEN + SYN_RECV, per family |\n")
	p("|---:|---:|---:|---:|---:|\n")
	cell := func(t Timing) string {
		return fmt.Sprintf("%s, %.0f allocs, %.0f B", ms(t.Median), t.AllocsPerOp, t.BytesPerOp)
	}
	for _, s := range r.Sizes {
		c := s.Cases
		p("| %d | %s | %s | %s | %s |\n", s.Population.Sockets, cell(c[CaseDumpListen]), cell(c[CaseDumpListen+PerFamily]),
			cell(c[CaseDumpFull]), cell(c[CaseDumpFull+PerFamily]))
	}
	p("\n### Allocations per cycle\n\n")
	p("| TCP sockets (ss) | sampler: LISTEN + counters | sampler: full | sampler: full, per family | /metrics page |\n")
	p("|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Sizes {
		c := s.Cases
		p("| %d | %.0f allocs | %.0f allocs | %.0f allocs | %d B |\n", s.Population.Sockets,
			c[CaseSamplerListen].AllocsPerOp, c[CaseSamplerFull].AllocsPerOp, c[CaseSamplerFull+PerFamily].AllocsPerOp, c[CaseScrapeSW].Bytes)
	}
	if len(r.Usage) > 0 {
		u := r.Usage[0]
		p("\n### Daemon footprint at %d sockets (default flags, scraped every 15 s)\n\n", u.Sockets)
		p("Calm: the busy and half-open listeners excluded (--collect.listeners.exclude-ports), so that no storm signal is active: the daemon samples every second and dumps SYN_RECV every 5 s. Storm: every listener kept, so their never-accepted queues hold the storm signals on: it samples every 250 ms and dumps SYN_RECV as often as its CPU budget allows.\n\n")
		p("| mode | window | samples | SYN_RECV dumps | their CPU | CPU time | average CPU (one core) | RSS | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, u := range r.Usage {
			p("| %s | %v | %d | %d | %v | %v | %.2f %% | %.1f MB | %.1f MB |\n", u.Mode, u.Window.Round(time.Second), u.Samples, u.SynRecvDumps,
				u.DumpCPU.Round(time.Millisecond), u.CPU, u.CPUPercent, float64(u.RSS)/1e6, float64(u.HWM)/1e6)
		}
	}
	if l := r.Load; l != nil {
		p("\n### Sampling with the machine loaded, %d sockets, storm mode\n\n", l.Sockets)
		p("The daemon in storm mode (every listener kept), first alone, then with %d CPU-bound process(es) (sha256sum of /dev/zero) on a %d-core machine. Gaps are between consecutive samples (stormwatch_samples_total one apart) as a scrape every 25 ms saw them; every sample includes the LISTEN dump.\n\n", l.Procs, runtime.NumCPU())
		p("| machine | window | samples | mean interval | median gap | p99 gap | longest gap | SYN_RECV dumps | timed out |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, row := range []struct {
			name string
			st   IntervalStats
		}{{"idle", l.Idle}, {"loaded", l.Loaded}} {
			st := row.st
			p("| %s | %v | %d | %s | %s | %s | %s | %d | %d |\n", row.name, st.Window.Round(time.Second), st.Samples, ms(st.Mean),
				ms(st.Median), ms(st.P99), ms(st.Max), st.SynRecvDumps, st.Timeouts)
		}
		if big := r.largest(); big != nil {
			c := big.Cases
			p("\nThe full cycle in-process at the same population, median (p90): idle %s (%s), loaded %s (%s); per family idle %s (%s), loaded %s (%s); LISTEN + counters idle %s, loaded %s.\n",
				ms(c[CaseSamplerFull].Median), ms(c[CaseSamplerFull].P90), ms(c[CaseSamplerFull+Loaded].Median), ms(c[CaseSamplerFull+Loaded].P90),
				ms(c[CaseSamplerFull+PerFamily].Median), ms(c[CaseSamplerFull+PerFamily].P90),
				ms(c[CaseSamplerFull+PerFamily+Loaded].Median), ms(c[CaseSamplerFull+PerFamily+Loaded].P90),
				ms(c[CaseSamplerListen].Median), ms(c[CaseSamplerListen+Loaded].Median))
		}
	}
	if len(r.Lead) > 0 {
		p("\n### Accept-queue detection lead time\n\n")
		p("Clients arrive at a stalled redis-server (SIGSTOP) at a steady rate. Lead = first ListenOverflows increment (probe every 5 ms) − start of the daemon's first sample with the queue ≥ 80%% of its limit. Alert times are relative to the overflow (negative = before).\n\n")
		p("| daemon | arrivals/s | limit | lead | AcceptQueueNearFull pending | firing |\n|---|---:|---:|---:|---:|---:|\n")
		opt := func(d *time.Duration) string {
			if d == nil {
				return "–"
			}
			return d.Round(time.Millisecond).String()
		}
		for _, l := range r.Lead {
			lead := "not seen"
			if !l.Signal.IsZero() {
				lead = l.Lead.Round(time.Millisecond).String()
			}
			p("| %s | %.0f | %d | %s | %s | %s |\n", l.Config, l.Rate, l.Limit, lead, opt(l.AlertPending), opt(l.AlertFiring))
		}
	}
	if len(r.Reconnect) > 0 {
		runs := 0
		for _, c := range r.Reconnect {
			if c.Backoff == "none" {
				runs++
			}
		}
		p("\n### Reconnection storm: %d clients, redis-server restarted (down 500 ms), tcp-backlog 128\n\n", r.Reconnect[0].Clients)
		p("Median of %d runs per policy (min–max where it varies most).\n\n", runs)
		p("| clients reconnect | peak new conns/s (1 s window) | peak accept queue | ListenOverflows | connect attempts | all back after |\n|---|---:|---:|---:|---:|---:|\n")
		for _, b := range []string{"none", "jitter"} {
			var rate, queue, over, attempts, back []float64
			limit := 0
			for _, c := range r.Reconnect {
				if c.Backoff != b {
					continue
				}
				rate = append(rate, c.PeakRate)
				queue = append(queue, float64(c.PeakQueue))
				over = append(over, c.Overflows)
				attempts = append(attempts, float64(c.Attempts))
				back = append(back, c.AllBack.Seconds())
				limit = int(c.Limit)
			}
			if len(rate) == 0 {
				continue
			}
			name := map[string]string{"none": "at once, no backoff", "jitter": "exponential backoff, full jitter (50 ms … 2 s)"}[b]
			p("| %s | %.0f | %.0f / %d | %.0f (%.0f–%.0f) | %.0f | %.2f s (%.2f–%.2f) |\n", name, median(rate), median(queue), limit,
				median(over), slices.Min(over), slices.Max(over), median(attempts), median(back), slices.Min(back), slices.Max(back))
		}
	}
	p("\n### Targets\n\n")
	for _, line := range r.targets() {
		p("- %s\n", line)
	}
}

// largest returns the result of the largest population, nil if none.
func (r *BenchReport) largest() *SizeResult {
	var big *SizeResult
	for i := range r.Sizes {
		if big == nil || r.Sizes[i].Population.Sockets > big.Population.Sockets {
			big = &r.Sizes[i]
		}
	}
	return big
}

// Budgets the daemon is held to (docs/benchmarks.md says why).
const (
	// calmCPUBudget: the daemon at rest at 200k sockets, as before storm
	// mode.
	calmCPUBudget = 1.0
	// stormCPUBudget is what storm mode may add to it: the SYN_RECV dumps
	// stay within their own budget (synRecvShare of a core), and four cheap
	// cycles and rule evaluations a second take the rest.
	stormCPUBudget = 1.5
	// synRecvShare is the SYN_RECV dumps' CPU budget, in % of a core.
	synRecvShare = 0.8
)

// targets judges the measurements at the largest population against the
// goals.
func (r *BenchReport) targets() []string {
	var out []string
	big := r.largest()
	if big == nil {
		return out
	}
	c := big.Cases
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	full := c[CaseSamplerFull].Median
	nodeRatio := float64(c[CaseScrapeNode].Median) / float64(full)
	ssRatio := float64(full) / float64(c[CaseSSSynRecv].Median)
	pfRatio := float64(c[CaseSamplerFull+PerFamily].Median) / float64(c[CaseSSSynRecv].Median)
	out = append(out,
		fmt.Sprintf("full cycle at %d sockets ≥15× cheaper than node_exporter's tcpstat scrape: %.1f× — %s", big.Population.Sockets, nodeRatio, mark(nodeRatio >= 15)),
		fmt.Sprintf("full cycle ≤0.3× `ss -Htn state syn-recv`: %.2f× (per family, as before: %.2f×) — %s", ssRatio, pfRatio, mark(ssRatio <= 0.3)),
		fmt.Sprintf("LISTEN + counters under 2 ms: %s — %s", c[CaseSamplerListen].Median, mark(c[CaseSamplerListen].Median < 2*time.Millisecond)))
	worst := time.Duration(0)
	for _, s := range r.Sizes {
		worst = max(worst, s.Cases[CaseScrapeSW].Median)
	}
	out = append(out, fmt.Sprintf("/metrics under 5 ms at every population: worst %s — %s", worst, mark(worst < 5*time.Millisecond)))
	// The dump parses in place; what allocates is one buffer per netlink
	// datagram of the reply (mdlayher/netlink copies each datagram it
	// receives), so allocations follow the sockets reported (listeners and
	// half-open handshakes), not the sockets the kernel walks.
	first, last := r.Sizes[0], *big
	walked := last.Population.Sockets - first.Population.Sockets
	reported := last.Population.Spec.HalfOpen - first.Population.Spec.HalfOpen
	dAllocs := last.Cases[CaseDumpFull].AllocsPerOp - first.Cases[CaseDumpFull].AllocsPerOp
	line := fmt.Sprintf("no allocation per socket in the dump path: LISTEN dump %.0f → %.0f allocs per cycle; LISTEN + SYN_RECV %.0f → %.0f",
		first.Cases[CaseDumpListen].AllocsPerOp, last.Cases[CaseDumpListen].AllocsPerOp,
		first.Cases[CaseDumpFull].AllocsPerOp, last.Cases[CaseDumpFull].AllocsPerOp)
	if walked > 0 {
		line += fmt.Sprintf(" while the sockets walked grow by %d (%.5f allocs per walked socket)", walked, dAllocs/float64(walked))
	}
	if reported > 0 && dAllocs > 0 {
		line += fmt.Sprintf(" and the half-open sockets reported by %d (one allocation per %.0f reported: a buffer per netlink datagram)", reported, float64(reported)/dAllocs)
	}
	flat := math.Abs(last.Cases[CaseDumpListen].AllocsPerOp-first.Cases[CaseDumpListen].AllocsPerOp) < 1 && (walked == 0 || dAllocs/float64(walked) < 0.001)
	out = append(out, line+" — "+mark(flat)+" per socket walked")
	usage := map[string]DaemonUsage{}
	for _, u := range r.Usage {
		usage[u.Mode] = u
		out = append(out, fmt.Sprintf("RSS under 30 MB (%s): %.1f MB — %s", u.Mode, float64(u.RSS)/1e6, mark(u.RSS < 30e6)))
	}
	calm, okCalm := usage["calm"]
	storm, okStorm := usage["storm"]
	if okCalm {
		out = append(out, fmt.Sprintf("average CPU at %d sockets, calm, under %.0f%% of a core: %.2f %% — %s",
			calm.Sockets, calmCPUBudget, calm.CPUPercent, mark(calm.CPUPercent < calmCPUBudget)))
	}
	if okCalm && okStorm {
		extra := storm.CPUPercent - calm.CPUPercent
		out = append(out, fmt.Sprintf("storm mode adds under %.1f%% of a core at %d sockets: %.2f %% (%.2f %% in all) — %s",
			stormCPUBudget, storm.Sockets, extra, storm.CPUPercent, mark(extra < stormCPUBudget)))
	}
	if okStorm && storm.Window > 0 {
		// The budget is kept dump by dump (each waits for its
		// predecessor's CPU time over the share), so a window's share
		// moves with the spread of the dumps' costs: said, not judged.
		share := 100 * storm.DumpCPU.Seconds() / storm.Window.Seconds()
		out = append(out, fmt.Sprintf("(SYN_RECV dumps in storm mode: %.2f %% of a core over %d dumps; their budget, %.1f%%, is kept dump by dump: each waits for its predecessor's CPU time ÷ %.3f)",
			share, storm.SynRecvDumps, synRecvShare, synRecvShare/100))
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	if l := r.Load; l != nil && l.Idle.Mean > 0 {
		slower := float64(l.Loaded.Mean)/float64(l.Idle.Mean) - 1
		out = append(out, fmt.Sprintf("the sampling interval holds under load (mean within 10%% of idle, no SYN_RECV dump timed out): %s → %s, %d timed out — %s",
			ms(l.Idle.Mean), ms(l.Loaded.Mean), l.Loaded.Timeouts, mark(slower <= 0.1 && l.Loaded.Timeouts == 0)))
	}
	return out
}

// median returns the middle value of v (the lower middle for an even
// count).
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

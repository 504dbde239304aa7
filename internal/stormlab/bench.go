//go:build linux

package stormlab

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// BenchConfig configures RunBench.
type BenchConfig struct {
	// Sizes are the socket populations to measure at.
	Sizes []int
	// Stormwatch is the stormwatch binary.
	Stormwatch string
	// CPUWindow is how long the daemon's CPU use is averaged over at the
	// largest population (default interval, scraped every 15 s).
	CPUWindow time.Duration
	// MinTime is how long each timed case runs at least.
	MinTime time.Duration
	// LeadRuns is how many accept-queue runs measure the detection lead
	// per collection interval; LeadRate is their client arrival rate.
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
	Sockets    int
	Window     time.Duration
	CPU        time.Duration
	CPUPercent float64 // of one core
	RSS, HWM   int64
}

// LeadResult is one accept-queue run's detection lead time.
type LeadResult struct {
	Interval time.Duration // the daemon's --collect.interval
	Rate     float64       // client arrivals per second
	Limit    int           // accept queue limit
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
	Usage     *DaemonUsage
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

// RunBench measures stormwatch against its references at each population
// size, the daemon's footprint at the largest, the accept-queue detection
// lead time and the reconnection storms, all in one run.
func RunBench(ctx context.Context, cfg BenchConfig) (*BenchReport, error) {
	rep := &BenchReport{Started: time.Now()}
	rep.NoFile, _ = NoFileLimit()
	if cfg.CPUWindow == 0 {
		cfg.CPUWindow = time.Minute
	}
	if cfg.MinTime == 0 {
		cfg.MinTime = 2 * time.Second
	}
	if cfg.LeadRate == 0 {
		cfg.LeadRate = 20
	}
	largest := slices.Max(cfg.Sizes)
	for _, size := range cfg.Sizes {
		r, usage, err := benchSize(ctx, cfg, size, size == largest)
		if err != nil {
			return rep, fmt.Errorf("%d sockets: %w", size, err)
		}
		rep.Sizes = append(rep.Sizes, r)
		if usage != nil {
			rep.Usage = usage
		}
	}
	for _, interval := range []time.Duration{time.Second, 250 * time.Millisecond} {
		for range cfg.LeadRuns {
			r, err := benchLead(ctx, cfg, interval)
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

func benchSize(ctx context.Context, cfg BenchConfig, size int, footprint bool) (SizeResult, *DaemonUsage, error) {
	res := SizeResult{Target: size, Cases: map[string]Timing{}}
	lab, err := cfg.NewLab(ctx)
	if err != nil {
		return res, nil, err
	}
	defer lab.Close()
	cfg.logf("populating %d sockets", size)
	pop, err := lab.Populate(ctx, PopulationFor(size))
	if err != nil {
		return res, nil, err
	}
	res.Population = pop
	bw, err := lab.StartWorker(ctx)
	if err != nil {
		return res, nil, err
	}
	var idle []uint16
	for _, p := range pop.IdlePorts {
		idle = append(idle, uint16(p))
	}

	// First the in-process cycles and ss, nothing else running; then
	// node_exporter; then the daemon, alone.
	cfg.logf("%d sockets: timing collection cycles and ss", pop.Sockets)
	if err := benchCall(ctx, bw, cycleBenchRequest{Cycle: true, SS: true, IdlePorts: idle, MinTime: cfg.MinTime}, res.Cases); err != nil {
		return res, nil, err
	}
	ne, err := lab.StartNodeExporter(ctx)
	if err != nil {
		return res, nil, err
	}
	cfg.logf("%d sockets: timing node_exporter scrapes", pop.Sockets)
	if err := benchCall(ctx, bw, cycleBenchRequest{Scrapes: map[string]string{CaseScrapeNode: NodeExporterAddr}, MinTime: cfg.MinTime}, res.Cases); err != nil {
		return res, nil, err
	}
	ne.Stop(5 * time.Second)
	d, err := lab.StartStormwatch(ctx, cfg.Stormwatch)
	if err != nil {
		return res, nil, err
	}
	cfg.logf("%d sockets: timing stormwatch scrapes", pop.Sockets)
	if err := benchCall(ctx, bw, cycleBenchRequest{Scrapes: map[string]string{CaseScrapeSW: d.Addr}, MinTime: cfg.MinTime}, res.Cases); err != nil {
		return res, nil, err
	}
	if !footprint {
		return res, nil, nil
	}
	// A fresh daemon, so its start-up is not in the window.
	d.Stop(5 * time.Second)
	if d, err = lab.StartStormwatch(ctx, cfg.Stormwatch); err != nil {
		return res, nil, err
	}
	cfg.logf("%d sockets: measuring the daemon's CPU and memory over %v", pop.Sockets, cfg.CPUWindow)
	time.Sleep(5 * time.Second) // past start-up
	u0, err := d.Usage()
	if err != nil {
		return res, nil, err
	}
	start := time.Now()
	for time.Since(start) < cfg.CPUWindow {
		// Scraped as a Prometheus server would, every 15 s.
		if _, err := d.Scrape(); err != nil {
			return res, nil, err
		}
		select {
		case <-ctx.Done():
			return res, nil, ctx.Err()
		case <-time.After(min(15*time.Second, cfg.CPUWindow-time.Since(start))):
		}
	}
	u1, err := d.Usage()
	if err != nil {
		return res, nil, err
	}
	window := time.Since(start)
	cpu := u1.CPU - u0.CPU
	return res, &DaemonUsage{
		Sockets: pop.Sockets, Window: window, CPU: cpu,
		CPUPercent: 100 * cpu.Seconds() / window.Seconds(),
		RSS:        u1.RSS, HWM: u1.HWM,
	}, nil
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

// benchLead runs the accept-queue storm once with the daemon sampling
// every interval, and times the daemon's first near-full sample against
// the kernel's first overflow.
func benchLead(ctx context.Context, cfg BenchConfig, interval time.Duration) (LeadResult, error) {
	res := LeadResult{Interval: interval, Rate: cfg.LeadRate}
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
	d, err := lab.StartStormwatch(ctx, cfg.Stormwatch, "--collect.interval="+interval.String())
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
	time.Sleep(rand.N(interval))
	cfg.logf("lead time: %d clients at %v/s, daemon every %v", res.Limit+40, cfg.LeadRate, interval)
	if _, err := s.Arrive(ctx, res.Limit+40, 0); err != nil {
		return res, err
	}
	// Let the last arrivals be dropped and the daemon sample once more.
	time.Sleep(interval + 500*time.Millisecond)
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
		if b == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", float64(a)/float64(b))
	}
	p("Measured %s in %v, kernel sockets per worker process limited to %d (RLIMIT_NOFILE).\n\n",
		r.Started.Format("2006-01-02"), r.Took.Round(time.Second), r.NoFile)

	p("### Collection cycle and scrape, median wall time (ratio to the reference)\n\n")
	p("| TCP sockets (ss) | LISTEN + counters | full cycle | ss -Htn state syn-recv | full ÷ ss syn-recv | node_exporter tcpstat scrape | node_exporter ÷ full | stormwatch /metrics | ss -Hltn |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Sizes {
		c := s.Cases
		full, ssSyn, node := c[CaseSamplerFull].Median, c[CaseSSSynRecv].Median, c[CaseScrapeNode].Median
		p("| %d | %s | %s | %s | **%s** | %s | **%s** | %s | %s |\n",
			s.Population.Sockets, ms(c[CaseSamplerListen].Median), ms(full), ms(ssSyn), ratio(full, ssSyn),
			ms(node), ratio(node, full), ms(c[CaseScrapeSW].Median), ms(c[CaseSSListen].Median))
	}
	p("\n### Allocations per cycle\n\n")
	p("| TCP sockets (ss) | listeners: LISTEN | listeners: LISTEN + SYN_RECV | sampler: LISTEN + counters | sampler: full | /metrics page |\n")
	p("|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Sizes {
		c := s.Cases
		p("| %d | %.0f allocs, %.0f B | %.0f allocs, %.0f B | %.0f allocs | %.0f allocs | %d B |\n", s.Population.Sockets,
			c[CaseDumpListen].AllocsPerOp, c[CaseDumpListen].BytesPerOp,
			c[CaseDumpFull].AllocsPerOp, c[CaseDumpFull].BytesPerOp,
			c[CaseSamplerListen].AllocsPerOp, c[CaseSamplerFull].AllocsPerOp, c[CaseScrapeSW].Bytes)
	}
	if u := r.Usage; u != nil {
		p("\n### Daemon footprint at %d sockets (default flags, scraped every 15 s)\n\n", u.Sockets)
		p("| window | CPU time | average CPU (one core) | RSS | peak RSS |\n|---:|---:|---:|---:|---:|\n")
		p("| %v | %v | %.2f %% | %.1f MB | %.1f MB |\n", u.Window.Round(time.Second), u.CPU, u.CPUPercent,
			float64(u.RSS)/1e6, float64(u.HWM)/1e6)
	}
	if len(r.Lead) > 0 {
		p("\n### Accept-queue detection lead time\n\n")
		p("Clients arrive at a stalled redis-server (SIGSTOP) at a steady rate. Lead = first ListenOverflows increment (probe every 5 ms) − start of the daemon's first sample with the queue ≥ 80%% of its limit. Alert times are relative to the overflow (negative = before).\n\n")
		p("| interval | arrivals/s | limit | lead | AcceptQueueNearFull pending | firing |\n|---:|---:|---:|---:|---:|---:|\n")
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
			p("| %v | %.0f | %d | %s | %s | %s |\n", l.Interval, l.Rate, l.Limit, lead, opt(l.AlertPending), opt(l.AlertFiring))
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

// targets judges the measurements at the largest population against the
// goals.
func (r *BenchReport) targets() []string {
	var out []string
	if len(r.Sizes) == 0 {
		return out
	}
	big := r.Sizes[len(r.Sizes)-1]
	for _, s := range r.Sizes {
		if s.Population.Sockets > big.Population.Sockets {
			big = s
		}
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
	out = append(out,
		fmt.Sprintf("full cycle at %d sockets ≥10× cheaper than node_exporter's tcpstat scrape: %.1f× — %s", big.Population.Sockets, nodeRatio, mark(nodeRatio >= 10)),
		fmt.Sprintf("full cycle within 1.2× of `ss -Htn state syn-recv`: %.2f× — %s", ssRatio, mark(ssRatio <= 1.2)),
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
	first, last := r.Sizes[0], big
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
	if u := r.Usage; u != nil {
		out = append(out,
			fmt.Sprintf("RSS under 30 MB: %.1f MB — %s", float64(u.RSS)/1e6, mark(u.RSS < 30e6)),
			fmt.Sprintf("average CPU under 1%% of a core at %d sockets: %.2f %% — %s", u.Sockets, u.CPUPercent, mark(u.CPUPercent < 1)))
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

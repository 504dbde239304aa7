//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stormwatch/stormwatch/internal/stormlab"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the scenario or benchmark failed
	exitUsage   = 2 // bad command line
	exitNotRoot = 3 // cannot make namespaces
)

const usage = `usage: stormlab <command> [flags]

Runs a TCP connection storm in a fresh network namespace and prints what
the kernel (and, with --stormwatch, the daemon) saw. Needs root.

commands:
  accept-queue  clients pile into a stalled redis-server until its accept queue overflows
  syn-flood     half-open handshakes (final ACK dropped) fill a SYN queue
  conntrack     tracked flows fill the conntrack table under a lowered nf_conntrack_max
  reconnect     a client pool reconnects to a restarted redis-server, without and with backoff
  churn         steady short connections against an accepting redis-server (no storm)
  funnel        clients move to a new redis-server: old one killed, or drained with stormwatch drain
  destroy-rate  how fast stormwatch drain closes many connections in one batch (--method destroy or valkey)
  bench         stormwatch's collection cycle, scrape and footprint against ss and node_exporter

"stormlab <command> -h" lists a command's flags.
`

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Print(usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmds := map[string]func(context.Context, *env, []string) error{
		"accept-queue": cmdAcceptQueue,
		"syn-flood":    cmdSynFlood,
		"conntrack":    cmdConntrack,
		"reconnect":    cmdReconnect,
		"churn":        cmdChurn,
		"funnel":       cmdFunnel,
		"destroy-rate": cmdDestroyRate,
		"bench":        cmdBench,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "stormlab: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "stormlab: creating network namespaces needs root")
		return exitNotRoot
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{out: os.Stdout}
	err := cmd(ctx, e, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var uerr usageError
	if errors.As(err, &uerr) {
		fmt.Fprintf(os.Stderr, "stormlab %s: %v\n", args[0], err)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "stormlab %s: %v\n", args[0], err)
		return exitFailed
	}
	return exitOK
}

type usageError struct{ error }

// env is what every command shares.
type env struct {
	out     io.Writer
	verbose bool
}

func (e *env) printf(format string, args ...any) { fmt.Fprintf(e.out, format, args...) }

func (e *env) logf(format string, args ...any) {
	if e.verbose {
		fmt.Fprintf(os.Stderr, "# "+format+"\n", args...)
	}
}

// newLab makes a fresh namespace and a Lab in it; closing the lab deletes
// the namespace.
func (e *env) newLab(ctx context.Context) (*stormlab.Lab, error) {
	ns, err := stormlab.NewNetns(ctx)
	if err != nil {
		return nil, err
	}
	lab, err := stormlab.New(ns, stormlab.Options{Logf: e.logf})
	if err != nil {
		ns.Close()
		return nil, err
	}
	// Registered first, so it runs last: after every process is gone.
	lab.Defer(ns.Close)
	e.logf("namespace %s", ns.Name())
	return lab, nil
}

// flags returns a FlagSet for a command with the shared flags.
func (e *env) flags(name string, stormwatch *string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.BoolVar(&e.verbose, "v", false, "log each step to stderr")
	if stormwatch != nil {
		fs.StringVar(stormwatch, "stormwatch", defaultStormwatch(), "stormwatch binary to run in the namespace (empty: none)")
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

// defaultStormwatch is a stormwatch binary beside this one, else on PATH,
// else none.
func defaultStormwatch() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "stormwatch")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("stormwatch"); err == nil {
		return p
	}
	return ""
}

// daemon starts stormwatch in the lab when a binary was given.
// setUp makes a lab, sets the scenario newScenario builds up in it and
// starts the stormwatch binary bin there (none when bin is empty). Closing
// the lab undoes it all; on error setUp has closed it.
func setUp[S interface{ Setup(context.Context) error }](ctx context.Context, e *env, bin string, newScenario func(*stormlab.Lab) S) (*stormlab.Lab, S, *stormlab.Daemon, error) {
	var s S
	lab, err := e.newLab(ctx)
	if err != nil {
		return nil, s, nil, err
	}
	s = newScenario(lab)
	if err := s.Setup(ctx); err != nil {
		lab.Close()
		return nil, s, nil, err
	}
	d, err := daemon(ctx, lab, bin)
	if err != nil {
		lab.Close()
		return nil, s, nil, err
	}
	return lab, s, d, nil
}

func daemon(ctx context.Context, lab *stormlab.Lab, bin string, args ...string) (*stormlab.Daemon, error) {
	if bin == "" {
		return nil, nil
	}
	return lab.StartStormwatch(ctx, bin, append([]string{"--collect.interval=250ms"}, args...)...)
}

// counters prints the rise of the damage counters between two reads.
func (e *env) counters(lab *stormlab.Lab, before stormlab.ProbeSample) error {
	now, err := lab.Counters()
	if err != nil {
		return err
	}
	b := before.TCP
	e.printf("  TcpExt rises: ListenOverflows %+.0f, ListenDrops %+.0f, SyncookiesSent %+.0f, TCPReqQFullDoCookies %+.0f, TCPReqQFullDrop %+.0f; Tcp PassiveOpens %+.0f\n",
		now.ListenOverflows-b.ListenOverflows, now.ListenDrops-b.ListenDrops, now.SyncookiesSent-b.SyncookiesSent,
		now.TCPReqQFullDoCookies-b.TCPReqQFullDoCookies, now.TCPReqQFullDrop-b.TCPReqQFullDrop, now.PassiveOpens-b.PassiveOpens)
	return nil
}

// daemonView prints what the daemon says about port, and its alerts.
func (e *env) daemonView(d *stormlab.Daemon, port int) error {
	if d == nil {
		return nil
	}
	x, err := d.Scrape()
	if err != nil {
		return err
	}
	p := strconv.Itoa(port)
	q, _ := x.Value("stormwatch_listener_accept_queue_length", "port", p)
	l, _ := x.Value("stormwatch_listener_accept_queue_limit", "port", p)
	s, _ := x.Value("stormwatch_listener_syn_recv", "port", p)
	e.printf("  stormwatch: accept queue %v/%v, syn_recv %v", q, l, s)
	for _, m := range []string{"stormwatch_tcp_listen_overflows_total", "stormwatch_tcp_syncookies_sent_total",
		"stormwatch_tcp_syn_queue_drops_total", "stormwatch_conntrack_entries", "stormwatch_conntrack_drops_total"} {
		if v, ok := x.Value(m); ok {
			e.printf(", %s %v", strings.TrimPrefix(m, "stormwatch_"), v)
		}
	}
	e.printf("\n")
	for _, a := range x["stormwatch_alerts"] {
		e.printf("  alert %s\n", a.String("stormwatch_alerts"))
	}
	return nil
}

func cmdAcceptQueue(ctx context.Context, e *env, args []string) error {
	var bin string
	fs := e.flags("accept-queue", &bin)
	backlog := fs.Int("backlog", 128, "redis-server tcp-backlog (the accept queue limit)")
	rate := fs.Float64("rate", 40, "client arrivals per second")
	extra := fs.Int("overflow", 40, "clients beyond the limit")
	if err := parse(fs, args); err != nil {
		return err
	}
	lab, s, d, err := setUp(ctx, e, bin, func(lab *stormlab.Lab) *stormlab.AcceptQueueStorm {
		return &stormlab.AcceptQueueStorm{Lab: lab, Backlog: *backlog, Rate: *rate}
	})
	if err != nil {
		return err
	}
	defer lab.Close()
	probe, err := lab.StartProbe(10*time.Millisecond, s.Port)
	if err != nil {
		return err
	}
	before := probe.Latest()
	e.printf("redis-server on %s, tcp-backlog %d; stalled with SIGSTOP; %d clients arrive at %.0f/s\n", s.Redis.Addr(), s.Backlog, s.Limit()+*extra, *rate)
	if err := s.Stall(); err != nil {
		return err
	}
	res, err := s.Arrive(ctx, s.Limit()+*extra, 500*time.Millisecond)
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	e.printf("while stalled: %d handshakes completed, %d clients still retransmitting SYNs\n", res.Established, res.Pending)
	if q, l, err := lab.SSListen(ctx, s.Port); err == nil {
		e.printf("  ss -ltn: Recv-Q %d, Send-Q %d\n", q, l)
	}
	if err := e.counters(lab, before); err != nil {
		return err
	}
	if err := e.daemonView(d, s.Port); err != nil {
		return err
	}
	if err := s.Release(); err != nil {
		return err
	}
	time.Sleep(3500 * time.Millisecond) // past the clients' 3 s SYN retransmit
	samples, err := probe.Stop()
	if err != nil {
		return err
	}
	st := stormlab.Summarise(samples, s.Port, time.Second)
	e.printf("after SIGCONT: peak accept queue %d/%d, ListenOverflows %+.0f", st.PeakQueue, st.Limit, st.Overflows)
	if !st.FirstOverflow.IsZero() {
		e.printf(" (first at +%v)", st.FirstOverflow.Sub(samples[0].Time).Round(time.Millisecond))
	}
	e.printf("\n")
	if q, l, err := lab.SSListen(ctx, s.Port); err == nil {
		e.printf("  ss -ltn: Recv-Q %d, Send-Q %d\n", q, l)
	}
	return e.daemonView(d, s.Port)
}

func cmdSynFlood(ctx context.Context, e *env, args []string) error {
	var bin string
	fs := e.flags("syn-flood", &bin)
	backlog := fs.Int("backlog", 256, "listen backlog (the SYN queue limit)")
	cookies := fs.Int("syncookies", 1, "net.ipv4.tcp_syncookies in the namespace (0, 1)")
	n := fs.Int("n", 400, "handshakes to start")
	if err := parse(fs, args); err != nil {
		return err
	}
	lab, s, d, err := setUp(ctx, e, bin, func(lab *stormlab.Lab) *stormlab.SynFlood {
		return &stormlab.SynFlood{Lab: lab, Backlog: *backlog, Syncookies: *cookies}
	})
	if err != nil {
		return err
	}
	defer lab.Close()
	before, err := lab.Counters()
	if err != nil {
		return err
	}
	e.printf("listener on 127.0.0.1:%d, backlog %d, tcp_syncookies=%d; final ACKs dropped; %d SYNs\n", s.Port, s.Backlog, s.Syncookies, *n)
	if _, err := s.Flood(ctx, *n); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond)
	got, err := lab.SSSynRecv(ctx, s.Port)
	if err != nil {
		return err
	}
	e.printf("  ss state syn-recv: %d half-open (SYN queue limit %d)\n", got, s.SynQueueLimit())
	if err := e.counters(lab, stormlab.ProbeSample{TCP: before}); err != nil {
		return err
	}
	if d != nil {
		time.Sleep(5 * time.Second) // a SYN_RECV dump on the slow cadence at the latest
	}
	return e.daemonView(d, s.Port)
}

func cmdConntrack(ctx context.Context, e *env, args []string) (err error) {
	var bin string
	fs := e.flags("conntrack", &bin)
	limit := fs.Int("limit", 512, "nf_conntrack_max while filling (global; restored afterwards)")
	n := fs.Int("n", 600, "flows to open")
	if err := parse(fs, args); err != nil {
		return err
	}
	lab, s, d, err := setUp(ctx, e, bin, func(lab *stormlab.Lab) *stormlab.ConntrackFill {
		return &stormlab.ConntrackFill{Lab: lab, Limit: *limit}
	})
	if err != nil {
		return err
	}
	defer lab.Close()
	restore, err := s.LowerLimit()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, restore()) }()
	before, err := lab.ConntrackStats()
	if err != nil {
		return err
	}
	e.printf("flows to 127.0.0.1:%d tracked, everything else notrack; nf_conntrack_max=%d; %d flows\n", s.Port, s.Limit, *n)
	res, err := s.Open(ctx, *n)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	after, err := lab.ConntrackStats()
	if err != nil {
		return err
	}
	c, err := lab.ConntrackCount(ctx)
	if err != nil {
		return err
	}
	e.printf("  %d flows established, %d still retransmitting SYNs\n", res.Established, res.Pending)
	e.printf("  conntrack -C: %d; drops %+.0f, early drops %+.0f, insert failures %+.0f\n", c,
		after.Drop-before.Drop, after.EarlyDrop-before.EarlyDrop, after.InsertFailed-before.InsertFailed)
	if d != nil {
		time.Sleep(time.Second)
	}
	return e.daemonView(d, s.Port)
}

func cmdReconnect(ctx context.Context, e *env, args []string) error {
	fs := e.flags("reconnect", nil)
	clients := fs.Int("clients", 3000, "clients in the pool")
	backlog := fs.Int("backlog", 128, "redis-server tcp-backlog")
	backoff := fs.String("backoff", "both", "none, jitter or both")
	outage := fs.Duration("outage", 500*time.Millisecond, "how long the server stays down")
	if err := parse(fs, args); err != nil {
		return err
	}
	policies := []string{*backoff}
	switch *backoff {
	case "both":
		policies = []string{"none", "jitter"}
	case "none", "jitter":
	default:
		return usageError{fmt.Errorf("--backoff %q: want none, jitter or both", *backoff)}
	}
	rep := &stormlab.BenchReport{Started: time.Now()}
	for _, p := range policies {
		lab, err := e.newLab(ctx)
		if err != nil {
			return err
		}
		s := &stormlab.ReconnectStorm{Lab: lab, Clients: *clients, Backlog: *backlog, Backoff: p, Outage: *outage}
		err = s.Setup(ctx)
		var r stormlab.ReconnectResult
		if err == nil {
			r, err = s.Restart(ctx)
		}
		lab.Close()
		if err != nil {
			return fmt.Errorf("backoff %s: %w", p, err)
		}
		rep.Reconnect = append(rep.Reconnect, r)
	}
	rep.Took = time.Since(rep.Started)
	for _, r := range rep.Reconnect {
		e.printf("backoff %-6s: peak %.0f new conns/s, peak accept queue %d/%d, ListenOverflows %+.0f, %d connect attempts (%d failed), all %d back after %v\n",
			r.Backoff, r.PeakRate, r.PeakQueue, r.Limit, r.Overflows, r.Attempts, r.Failures, r.Clients, r.AllBack.Round(time.Millisecond))
	}
	return nil
}

func cmdChurn(ctx context.Context, e *env, args []string) error {
	var bin string
	fs := e.flags("churn", &bin)
	rate := fs.Float64("rate", 200, "connections per second")
	dur := fs.Duration("duration", 10*time.Second, "how long")
	if err := parse(fs, args); err != nil {
		return err
	}
	lab, s, d, err := setUp(ctx, e, bin, func(lab *stormlab.Lab) *stormlab.Churn { return &stormlab.Churn{Lab: lab, Rate: *rate} })
	if err != nil {
		return err
	}
	defer lab.Close()
	probe, err := lab.StartProbe(10*time.Millisecond, s.Port)
	if err != nil {
		return err
	}
	before := probe.Latest()
	e.printf("%.0f connections/s (connect, PING, close) to %s for %v\n", *rate, s.Redis.Addr(), *dur)
	if err := s.Start(ctx, *dur); err != nil {
		return err
	}
	res, err := s.Wait(ctx)
	if err != nil {
		return err
	}
	samples, err := probe.Stop()
	if err != nil {
		return err
	}
	st := stormlab.Summarise(samples, s.Port, time.Second)
	e.printf("  %d ok, %d failed; peak %.0f new conns/s, peak accept queue %d/%d\n", res.OK, res.Failed, st.PeakRate, st.PeakQueue, st.Limit)
	if err := e.counters(lab, before); err != nil {
		return err
	}
	return e.daemonView(d, s.Port)
}

func cmdBench(ctx context.Context, e *env, args []string) error {
	var bin string
	fs := e.flags("bench", &bin)
	sizes := fs.String("sizes", "10000,100000,200000", "socket populations, comma-separated")
	cpu := fs.Duration("cpu-window", time.Minute, "how long the daemon's CPU use is averaged at the largest population, calm and in storm mode")
	loadWindow := fs.Duration("load-window", 20*time.Second, "how long the daemon's sampling is watched at the largest population, idle and loaded")
	loadProcs := fs.Int("load-procs", 1, "CPU-bound processes loading the machine for the loaded measurements")
	minTime := fs.Duration("min-time", 2*time.Second, "how long each timed case runs at least")
	leadRuns := fs.Int("lead-runs", 3, "accept-queue runs per daemon configuration (default, no storm mode) for the detection lead time")
	clients := fs.Int("reconnect-clients", 3000, "client pool of the reconnection storms (0: skip)")
	reconnectRuns := fs.Int("reconnect-runs", 3, "reconnection storms per backoff policy")
	out := fs.String("o", "", "also write the markdown report to this file")
	jsonOut := fs.String("json", "", "also write the raw results as JSON to this file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if bin == "" {
		return usageError{errors.New("--stormwatch: no stormwatch binary beside stormlab or on PATH")}
	}
	cfg := stormlab.BenchConfig{
		Stormwatch: bin, CPUWindow: *cpu, LoadWindow: *loadWindow, LoadProcs: *loadProcs, MinTime: *minTime, LeadRuns: *leadRuns,
		ReconnectClients: *clients, ReconnectRuns: *reconnectRuns, NewLab: e.newLab,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "# "+f+"\n", a...) },
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1000 {
			return usageError{fmt.Errorf("--sizes: %q is not a population of at least 1000", s)}
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}
	rep, err := stormlab.RunBench(ctx, cfg)
	if err != nil {
		return err
	}
	var b strings.Builder
	rep.Markdown(&b)
	e.printf("%s", b.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	if *jsonOut != "" {
		j, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, j, 0o644); err != nil {
			return err
		}
	}
	return nil
}

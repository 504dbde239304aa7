package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/diagnose"
	"github.com/stormwatch/stormwatch/internal/clients"
)

// checkFlags are the flags of `stormwatch check`.
type checkFlags struct {
	root       string
	configFile string
	window     time.Duration
	format     string
	ports      []uint16
	quiet      bool
	valkey     []string
	// clients groups the clients of listeners not OK (Top 0: not read).
	clients clients.Config
}

// registerClients declares the --clients.* flags of check.
func (f *checkFlags) registerClients(cmd *kingpin.CmdClause) {
	f.clients = clients.DefaultConfig()
	rangeFlag(cmd.Flag("clients.top", "For each listener not OK, show the client prefixes with the most half-open and established connections, this many of each (0: do not look; the dump walks every TCP socket).").
		Default(strconv.Itoa(clients.DefaultTop)), &f.clients.Top, 0, clients.MaxTop, "a number of prefixes")
	rangeFlag(cmd.Flag("clients.prefix4", "Prefix length grouping IPv4 clients.").Default(strconv.Itoa(clients.DefaultPrefix4)),
		&f.clients.Prefix4, 0, 32, "a prefix length")
	rangeFlag(cmd.Flag("clients.prefix6", "Prefix length grouping IPv6 clients.").Default(strconv.Itoa(clients.DefaultPrefix6)),
		&f.clients.Prefix6, 0, 128, "a prefix length")
}

// rangeFlag accepts a whole number from lo to hi; what names it ("a
// prefix length").
func rangeFlag(c *kingpin.FlagClause, p *int, lo, hi int, what string) {
	what = fmt.Sprintf("%s from %d to %d", what, lo, hi)
	example := c.Model().Default
	accept := fmt.Sprintf("%s (e.g. %s)", what, strings.Join(example, ""))
	setValue(c, &flagValue{
		accept: accept, what: what, example: strings.Join(example, ""),
		set: func(s string) error {
			v, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || v < lo || v > hi {
				return fmt.Errorf("%s is not %s", quote(s), accept)
			}
			*p = v
			return nil
		},
		get: func() string { return strconv.Itoa(*p) },
	})
}

// clientsTimeout bounds the dumps that read the clients of listeners.
const clientsTimeout = 10 * time.Second

// addClients reads who connects to the listeners not OK (the worst
// cfg.MaxListeners of them) and attaches it to their items.
func addClients(ctx context.Context, r *diagnose.Report, cfg clients.Config) {
	notOK := r.ListenersNotOK()
	if len(notOK) == 0 {
		return
	}
	look := notOK[:min(len(notOK), cfg.MaxListeners)]
	dctx, cancel := context.WithTimeout(ctx, clientsTimeout)
	defer cancel()
	found, err := clients.Dump(dctx, cfg, nil, look)
	for i, l := range look {
		c := &diagnose.Clients{PrefixIPv4: cfg.Prefix4, PrefixIPv6: cfg.Prefix6}
		if err != nil {
			c.Error = oneLine(err)
		} else {
			c = diagnose.NewClients(found[i], cfg)
		}
		r.SetClients(l, c)
	}
	for _, l := range notOK[len(look):] {
		r.SetClients(l, &diagnose.Clients{PrefixIPv4: cfg.Prefix4, PrefixIPv6: cfg.Prefix6,
			Error: fmt.Sprintf("only the %d worst listeners are looked at", cfg.MaxListeners)})
	}
}

// runCheck samples twice, window apart, judges the samples with the rules
// (ignoring `for`) and prints the checklist. Its exit code is the verdict:
// 0 OK, 1 warning, 2 critical, 3 unknown (nothing could be read, or bad
// flags or config).
func runCheck(f *checkFlags, stdout, stderr io.Writer) int {
	conf, err := loadConfig(f.configFile)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	rules := conf.rules
	cfg := collector.Config{Root: f.root, Listeners: collector.ListenerConfig{SynRecvInterval: 0}, Valkey: conf.valkey}
	for _, p := range f.ports {
		cfg.Listeners.Include = append(cfg.Listeners.Include, collector.PortRange{Lo: p, Hi: p})
	}
	for _, addr := range f.valkey {
		t := conf.valkey.Defaults
		t.Address = addr
		if err := t.Validate(); err != nil {
			fmt.Fprintf(stderr, "stormwatch: --valkey: %v\n", err)
			return exitUnknown
		}
		cfg.Valkey.Targets = append(cfg.Valkey.Targets, t)
	}
	sm, _, err := openSampling(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	defer sm.close()
	schema, sources, targets := sm.schema, sm.sources, sm.targets
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	targets.Start(ctx)
	defer targets.Stop()
	// Both samples whole: the first is a little more than the window old
	// when the second is taken.
	keep := 2*f.window + time.Second
	retention := collector.Retention{Host: keep, Kinds: map[string]time.Duration{}}
	for _, k := range schema.Kinds() {
		retention.Kinds[k.Name] = keep
	}
	newSampler := func() (*collector.Sampler, *collector.History, error) {
		h := collector.NewHistory(retention)
		s, err := collector.NewSampler(schema, sources, targets, h)
		return s, h, err
	}
	sampler, _, err := newSampler()
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	in := diagnose.Input{}
	in.Host, _ = os.Hostname()
	// A first sample finds the servers to poll (configured or listening
	// here); their first answers are awaited, within their timeout. The
	// window starts after them: a first connection to a server that is
	// not serving waits in its accept queue, and would look like a queue
	// that moved.
	sampler.Sample(ctx, time.Now())
	wctx, wcancel := context.WithTimeout(ctx, max(f.window, 2*time.Second))
	targets.Wait(wctx)
	wcancel()
	sampler, history, err := newSampler()
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	// Two samples a window apart; an instant check (--window=0) judges one.
	if f.window > 0 {
		start := time.Now()
		in.First = sampler.Sample(ctx, start)
		time.Sleep(f.window - time.Since(start))
	}
	in.Last = sampler.Sample(ctx, time.Now())
	in.Findings, err = alerts.NewEngine(rules, alerts.Options{}).Check(in.Last.Time, history)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: some rules could not be judged: %s\n", oneLine(err))
	}
	in.Ports = f.ports
	report := diagnose.Build(in)
	if f.clients.Top > 0 {
		addClients(ctx, report, f.clients)
	}
	if f.format == "json" {
		err = report.WriteJSON(stdout)
	} else {
		err = report.WriteText(stdout, diagnose.TextOptions{Color: wantColor(stdout), Quiet: f.quiet})
	}
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	return report.ExitCode
}

// wantColor is true when w is a terminal and NO_COLOR is not set.
func wantColor(w io.Writer) bool {
	if _, set := os.LookupEnv("NO_COLOR"); set {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/diagnose"
)

// checkFlags are the flags of `stormwatch check`.
type checkFlags struct {
	root       string
	configFile string
	window     time.Duration
	format     string
	ports      []uint16
	quiet      bool
}

// runCheck samples twice, window apart, judges the samples with the rules
// (ignoring `for`) and prints the checklist. Its exit code is the verdict:
// 0 OK, 1 warning, 2 critical, 3 unknown (nothing could be read, or bad
// flags or config).
func runCheck(f *checkFlags, stdout, stderr io.Writer) int {
	rules, err := loadRules(f.configFile)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	cfg := collector.Config{Root: f.root, Listeners: collector.ListenerConfig{SynRecvInterval: 0}}
	for _, p := range f.ports {
		cfg.Listeners.Include = append(cfg.Listeners.Include, collector.PortRange{Lo: p, Hi: p})
	}
	sources, err := collector.NewSources(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	defer collector.CloseSources(sources)
	history := collector.NewHistory(collector.Retention{Host: f.window, Kinds: map[string]time.Duration{collector.KindListener: f.window}})
	sampler, err := collector.NewSampler(collector.DefaultSchema(), sources, nil, history)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	ctx := context.Background()
	in := diagnose.Input{}
	in.Host, _ = os.Hostname()
	if f.window > 0 {
		in.First = sampler.Sample(ctx, time.Now())
		time.Sleep(f.window)
	}
	in.Last = sampler.Sample(ctx, time.Now())
	in.Findings, err = alerts.NewEngine(rules, alerts.Options{}).Check(in.Last.Time, history)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: some rules could not be judged: %s\n", oneLine(err))
	}
	in.Ports = f.ports
	report := diagnose.Build(in)
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

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/headroom"
)

// exitNotOK is headroom's exit code for a host that is not ok, or a
// --wait that timed out.
const exitNotOK = 1

// headroomFlags are the flags of `stormwatch headroom`.
type headroomFlags struct {
	urls       []string
	min        float64 // < 0: not given
	ports      []uint16
	wait       bool
	timeout    time.Duration
	interval   time.Duration
	format     string
	configFile string
	root       string
}

const (
	// minHeadroomInterval is the shortest --interval.
	minHeadroomInterval = 100 * time.Millisecond
	// headroomRequestTimeout bounds one request to a daemon (and this
	// host's first answer, which takes two samples a second apart).
	headroomRequestTimeout = 10 * time.Second
)

// register declares the command and its flags.
func (f *headroomFlags) register(app *kingpin.Application) *kingpin.CmdClause {
	f.min = -1
	cmd := app.Command("headroom", "How much more this host, or the stormwatch daemons at --url, can absorb now: "+
		"the tightest remaining share of any queue new connections fill. "+
		"Exit codes: 0 every host ok, 1 not ok (or --wait timed out), 3 could not run (an unreachable --url without --wait, bad flags or config).")
	httpURLsFlag(cmd.Flag("url", "A stormwatch daemon to ask: its address (the headroom path is added) or its full headroom URL; repeatable. Without it, this host is read directly."),
		&f.urls, "a stormwatch daemon's URL", "http://10.0.0.7:9955")
	ratioFlag(cmd.Flag("min", "Least headroom that is ok (default: each daemon's --headroom.min; for this host 0.3).").PlaceHolder("0.3"),
		&f.min, "0.3")
	portsFlag(cmd.Flag("port", "Only the listeners on this port (repeatable); the host's own queues, such as conntrack, always count."), &f.ports)
	cmd.Flag("wait", "Poll until every host is ok (exit 0) or --timeout passes (exit 1).").BoolVar(&f.wait)
	durationFlag(cmd.Flag("timeout", "How long --wait waits.").Default("10m"), &f.timeout, 0, true, "10m")
	durationFlag(cmd.Flag("interval", "How often --wait asks.").Default("2s"), &f.interval, minHeadroomInterval, false, "2s")
	enumFlag(cmd.Flag("format", "Output format: text or json.").Default("text"), &f.format, "a format", "text", "json")
	cmd.Flag("config", "Config file, as for run: the rules judged for this host (not with --url).").PlaceHolder("FILE").StringVar(&f.configFile)
	dirFlag(cmd.Flag("path.root", "Directory holding proc/ to read this host's kernel from (not with --url).").Default("/"),
		&f.root, "the directory holding proc/", "/")
	return cmd
}

// hostResult is one host's answer in one round.
type hostResult struct {
	Name   string           `json:"name"`
	Report *headroom.Report `json:"report,omitempty"`
	Error  string           `json:"error,omitempty"`
}

// headroomOutput is what --format json prints.
type headroomOutput struct {
	OK       bool         `json:"ok"`
	TimedOut bool         `json:"timed_out,omitempty"`
	Hosts    []hostResult `json:"hosts"`
}

// runHeadroom asks every host once, or with --wait until all are ok, and
// prints the answers.
func runHeadroom(f *headroomFlags, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	probers, closeFn, err := f.probers()
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	defer closeFn()
	deadline := time.Now().Add(f.timeout)
	results := askAll(ctx, probers, deadline, f.wait)
	lastStatus := ""
	timedOut := false
	for f.wait && !allOK(results) && ctx.Err() == nil {
		if status := waitStatus(results); status != lastStatus {
			fmt.Fprintf(stderr, "waiting: %s\n", status)
			lastStatus = status
		}
		left := time.Until(deadline)
		if left <= 0 {
			timedOut = true
			break
		}
		sleep(ctx, min(f.interval, left)) // the last answer is read at the deadline
		if ctx.Err() != nil {
			break
		}
		results = askAll(ctx, probers, deadline, true)
	}
	if err := writeHeadroom(stdout, f.format, results, timedOut); err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	switch {
	case allOK(results):
		return exitOK
	case timedOut:
		fmt.Fprintf(stderr, "stormwatch: timed out after %s: %s\n", f.timeout, waitStatus(results))
		return exitNotOK
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "stormwatch: interrupted")
		return exitNotOK
	case !f.wait:
		for _, r := range results {
			if r.Report == nil {
				return exitUnknown // could not ask: the answer is incomplete
			}
		}
	}
	return exitNotOK
}

// probers returns what answers for each host: a Remote per --url, else
// a Local over this host's kernel sources.
func (f *headroomFlags) probers() (probers []headroom.Prober, closeFn func(), err error) {
	closeFn = func() {}
	if len(f.urls) > 0 {
		if f.configFile != "" {
			return nil, closeFn, &flagError{flag: "--config", msg: "reads this host's rules; it does not apply with --url (each daemon judges with its own)"}
		}
		if f.root != "/" {
			return nil, closeFn, &flagError{flag: "--path.root", msg: "reads this host's kernel; it does not apply with --url"}
		}
		client := &http.Client{}
		for _, u := range f.urls {
			full, err := headroom.URL(u, f.min, f.ports)
			if err != nil {
				return nil, closeFn, &flagError{flag: "--url", msg: err.Error()}
			}
			probers = append(probers, &headroom.Remote{URL: full, Client: client})
		}
		return probers, closeFn, nil
	}
	rules, err := loadRules(f.configFile)
	if err != nil {
		return nil, closeFn, err
	}
	o := headroom.DefaultOptions()
	if f.min >= 0 {
		o.Min = f.min
	}
	o.Ports = f.ports
	local, err := headroom.OpenLocal(headroom.LocalConfig{Collector: collector.Config{Root: f.root}, Rules: rules, Options: o, Interval: f.interval})
	if err != nil {
		return nil, closeFn, err
	}
	return []headroom.Prober{local}, func() { local.Close() }, nil
}

// askAll asks every host at once. Each request is bounded by
// headroomRequestTimeout and, when waiting, by the deadline.
func askAll(ctx context.Context, probers []headroom.Prober, deadline time.Time, waiting bool) []hostResult {
	out := make([]hostResult, len(probers))
	done := make(chan struct{}, len(probers))
	for i, p := range probers {
		go func() {
			defer func() { done <- struct{}{} }()
			rctx, cancel := context.WithTimeout(ctx, headroomRequestTimeout)
			defer cancel()
			if waiting {
				var cancelWait context.CancelFunc
				rctx, cancelWait = context.WithDeadline(rctx, deadline.Add(time.Second))
				defer cancelWait()
			}
			out[i].Name = p.Name()
			r, err := p.Probe(rctx)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Report = r
		}()
	}
	for range probers {
		<-done
	}
	return out
}

func allOK(results []hostResult) bool {
	for _, r := range results {
		if r.Report == nil || !r.Report.OK {
			return false
		}
	}
	return len(results) > 0
}

// waitStatus says in one line which hosts are not ok and why.
func waitStatus(results []hostResult) string {
	var parts []string
	for _, r := range results {
		switch {
		case r.Report == nil:
			parts = append(parts, r.Name+": could not ask: "+r.Error)
		case !r.Report.OK:
			why := "not ok"
			if len(r.Report.Reasons) > 0 {
				why = r.Report.Reasons[0]
			}
			parts = append(parts, r.Name+": "+why)
		}
	}
	return strings.Join(parts, "; ")
}

// writeHeadroom prints the answers: a table per host, or JSON.
func writeHeadroom(w io.Writer, format string, results []hostResult, timedOut bool) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(headroomOutput{OK: allOK(results), TimedOut: timedOut, Hosts: results})
	}
	for i, r := range results {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		title := r.Name
		if title == "local" {
			host, _ := os.Hostname()
			title = "this host (" + host + ")"
		}
		if r.Report == nil {
			if _, err := fmt.Fprintf(w, "%s: could not ask: %s\n", title, r.Error); err != nil {
				return err
			}
			continue
		}
		if err := headroom.WriteText(w, title, r.Report); err != nil {
			return err
		}
	}
	return nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

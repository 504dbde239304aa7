package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/drain"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

// exitStoppedEarly: the drain stopped before the end (a signal, pacing
// beyond --timeout, a failure after it began).
const exitStoppedEarly = 1

// drainSchema is the version of the drain's JSON lines.
const drainSchema = 1

// What the drain opens from its flags, as variables so that tests can
// put fakes in their place.
var (
	// localHeadroom opens this host's own headroom, for --pace-by local:
	// the receiver, and the function that releases what it holds.
	localHeadroom = openLocalHeadroom
	// newValkeyMethod makes the closer of --method valkey from the
	// command's flags.
	newValkeyMethod = valkeyMethod
)

// drainFlags are the flags of `stormwatch drain`.
type drainFlags struct {
	port        string
	addr        string
	method      string
	batch       string
	every       time.Duration
	duration    time.Duration
	max         int
	order       string
	dryRun      bool
	paceBy      []string
	minHeadroom float64
	timeout     time.Duration
	format      string
	includeNew  bool
	configFile  string
	// --method valkey
	valkeyAddr         string
	valkeyUser         string
	valkeyPasswordFile string

	batchSet bool
	conf     *config // the --config file, once loaded
}

// config loads the --config file (the built-in defaults without one),
// once.
func (f *drainFlags) config() (*config, error) {
	if f.conf == nil {
		c, err := loadConfig(f.configFile)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		f.conf = c
	}
	return f.conf, nil
}

// register adds the drain command to app.
func (f *drainFlags) register(app *kingpin.Application) *kingpin.CmdClause {
	cmd := app.Command("drain", "Close a listener's established connections in paced batches (the Funnel), so that its clients reconnect elsewhere a few at a time. "+
		"Exit codes: 0 drained, 1 stopped early (signal, pacing beyond --timeout, a failure midway), 3 could not run.")
	cmd.Flag("port", "Port of the listener to drain.").Required().PlaceHolder("N").StringVar(&f.port)
	cmd.Flag("addr", "Address the listener is bound to, when several listen on the port (e.g. 0.0.0.0, ::, 10.0.0.7). Default: all of them.").PlaceHolder("A").StringVar(&f.addr)
	cmd.Flag("method", "How to close: destroy (the kernel's SOCK_DESTROY: the client gets an RST; needs CAP_NET_ADMIN) or valkey (CLIENT KILL ID through the server: a clean close).").
		Default("destroy").StringVar(&f.method)
	cmd.Flag("valkey", "--method valkey: the server's address, host:port. Default: through the drained listener (127.0.0.1:PORT for 0.0.0.0 or 127.0.0.1, [::1]:PORT for ::).").
		PlaceHolder("ADDR").StringVar(&f.valkeyAddr)
	cmd.Flag("valkey-user", "--method valkey: the ACL user (default: the config file's valkey.username, else the default user). It needs +client|list +client|kill +client|id.").
		PlaceHolder("NAME").StringVar(&f.valkeyUser)
	cmd.Flag("valkey-password-file", "--method valkey: a file holding the password (default: the config file's valkey.password_file). The password is never shown.").
		PlaceHolder("FILE").StringVar(&f.valkeyPasswordFile)
	cmd.Flag("batch", "Connections per batch: a count (100) or a share of what is left (10%).").
		Default("100").IsSetByUser(&f.batchSet).StringVar(&f.batch)
	durationFlag(cmd.Flag("every", "Time between the starts of two batches.").Default("1s"), &f.every, 0, true, "1s")
	durationFlag(cmd.Flag("duration", "Spread the connections there at the start evenly over this time, a batch every --every, instead of --batch.").
		PlaceHolder("D"), &f.duration, 0, false, "30s")
	intFlag(cmd.Flag("max", "Stop after closing this many (0: no limit).").Default("0"), &f.max, 0, "1000")
	cmd.Flag("order", "Which first: oldest (in the order the server accepted them; with --method valkey, by the server's own client age) or random.").Default("oldest").StringVar(&f.order)
	cmd.Flag("dry-run", "List what would be closed, batch by batch, and close nothing.").BoolVar(&f.dryRun)
	cmd.Flag("pace-by", "Headroom endpoint of a host receiving the clients (http://host:9955, path /api/v1/headroom by default), or local for this host (repeatable). "+
		"Each batch waits while any has less headroom than --min-headroom, and shrinks when their queues rose.").PlaceHolder("URL").StringsVar(&f.paceBy)
	ratioFlag(cmd.Flag("min-headroom", "Least headroom (0 to 1) every receiver must have for a batch to go.").Default("0.3"), &f.minHeadroom, "0.3")
	durationFlag(cmd.Flag("timeout", "Most time, in all, batches may wait for the receivers before the drain gives up (exit 1).").Default("5m"), &f.timeout, 0, true, "5m")
	cmd.Flag("format", "Output: auto (a progress bar on a terminal, JSON lines otherwise), text (a line per batch) or json (a line per event).").Default("auto").StringVar(&f.format)
	cmd.Flag("include-new", "Also drain connections that arrive during the drain (--no-include-new: only those there at the start).").
		Default("true").BoolVar(&f.includeNew)
	cmd.Flag("config", "Config file, as for run: its valkey section says how to reach the server for --method valkey (a valkey.targets entry with the server's address wins over the section's defaults; TLS only there), its rules judge this host for --pace-by local.").
		PlaceHolder("FILE").StringVar(&f.configFile)
	return cmd
}

// drainSetup is a validated drain command.
type drainSetup struct {
	cfg       drain.Config
	source    *drain.SockDiag
	method    drain.Method
	pacer     *drain.ClosedLoop
	port      uint16
	addr      netip.Addr
	format    string // bar, text or json
	termWidth int
	closers   []func() error // what --pace-by local holds
}

// close releases what the setup holds.
func (s *drainSetup) close() {
	if s.source != nil {
		s.source.Close()
	}
	if s.method != nil {
		s.method.Close()
	}
	for _, c := range s.closers {
		_ = c() // nothing to do about a failure at the end
	}
	s.closers = nil
}

// setup validates the flags; every error names the flag and what it
// accepts. On an error it has released what it opened.
func (f *drainFlags) setup(stdout io.Writer) (_ *drainSetup, err error) {
	s := &drainSetup{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	p, err := parsePort(f.port)
	if err != nil {
		return nil, fmt.Errorf("--port: %w", err)
	}
	s.port = p
	if f.addr != "" {
		a, err := netip.ParseAddr(strings.Trim(f.addr, "[]"))
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("--addr %q: want an IP address the listener is bound to (e.g. 0.0.0.0, ::, 10.0.0.7)", f.addr)
		}
		s.addr = a.Unmap()
	}
	if f.every <= 0 {
		return nil, fmt.Errorf("--every %v: must be positive (e.g. 1s)", f.every)
	}
	if f.duration < 0 {
		return nil, fmt.Errorf("--duration %v: must not be negative", f.duration)
	}
	if f.duration > 0 && f.batchSet {
		return nil, errors.New("--batch and --duration exclude each other: give a batch size, or a total time to spread the connections over")
	}
	if f.duration > 0 && f.duration < f.every {
		return nil, fmt.Errorf("--duration %v is shorter than --every %v: one batch would close everything", f.duration, f.every)
	}
	var batch drain.Batch
	if f.duration == 0 {
		if batch, err = drain.ParseBatch(f.batch); err != nil {
			return nil, fmt.Errorf("--batch: %w", err)
		}
	}
	if f.max < 0 {
		return nil, fmt.Errorf("--max %d: must not be negative (0: no limit)", f.max)
	}
	order, err := drain.ParseOrder(f.order)
	if err != nil {
		return nil, fmt.Errorf("--order %q: accepted: oldest, random", f.order)
	}
	if math.IsNaN(f.minHeadroom) || f.minHeadroom < 0 || f.minHeadroom > 1 {
		return nil, fmt.Errorf("--min-headroom %v: want a number from 0 to 1", f.minHeadroom)
	}
	if f.timeout <= 0 {
		return nil, fmt.Errorf("--timeout %v: must be positive", f.timeout)
	}
	tty := isTerminal(stdout)
	switch f.format {
	case "auto":
		s.format = "json"
		if tty {
			s.format = "bar"
		}
	case "text":
		s.format = "text"
	case "json":
		s.format = "json"
	default:
		return nil, fmt.Errorf("--format %q: accepted: auto, text, json", f.format)
	}
	if s.format == "bar" {
		s.termWidth = termWidth(stdout)
	}

	if f.method != "valkey" {
		for _, v := range []struct{ flag, value string }{
			{"--valkey", f.valkeyAddr}, {"--valkey-user", f.valkeyUser}, {"--valkey-password-file", f.valkeyPasswordFile},
		} {
			if v.value != "" {
				return nil, fmt.Errorf("%s applies to --method valkey only (--method is %s)", v.flag, f.method)
			}
		}
	}
	switch f.method {
	case "destroy":
		s.method = &drain.Destroy{}
	case "valkey":
		if s.method, err = newValkeyMethod(f); err != nil {
			return nil, fmt.Errorf("--method valkey: %w", err)
		}
	default:
		return nil, fmt.Errorf("--method %q: accepted: destroy, valkey", f.method)
	}

	if len(f.paceBy) > 0 {
		s.pacer = &drain.ClosedLoop{MinHeadroom: f.minHeadroom, Timeout: f.timeout}
		for _, u := range f.paceBy {
			if u == "local" {
				if slices.ContainsFunc(s.pacer.Receivers, func(r drain.Receiver) bool { return r.Name() == "local" }) {
					continue
				}
				r, closeFn, err := localHeadroom(f)
				if err != nil {
					return nil, fmt.Errorf("--pace-by local: %w", err)
				}
				s.closers = append(s.closers, closeFn)
				s.pacer.Receivers = append(s.pacer.Receivers, r)
				continue
			}
			r, err := drain.NewHTTPReceiver(u, f.minHeadroom)
			if err != nil {
				return nil, fmt.Errorf("--pace-by %w", err)
			}
			s.pacer.Receivers = append(s.pacer.Receivers, r)
		}
	}

	s.source = &drain.SockDiag{Port: s.port, Addr: s.addr}
	s.cfg = drain.Config{
		Source: s.source, Method: s.method, Batch: batch, Every: f.every, Duration: f.duration,
		Max: f.max, Order: order, OnlyInitial: !f.includeNew,
	}
	if s.pacer != nil {
		s.cfg.Pacer = s.pacer
	}
	return s, nil
}

// runDrain runs `stormwatch drain`.
func runDrain(f *drainFlags, stdout, stderr io.Writer) int {
	s, err := f.setup(stdout)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch drain: %v\n", err)
		return exitUnknown
	}
	defer s.close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal a second one ends the process at once.
	context.AfterFunc(ctx, stop)

	if f.dryRun {
		return s.dryRun(ctx, f, stdout, stderr)
	}

	out := &drainOutput{w: stdout, format: s.format, width: s.termWidth, f: f, setup: s}
	s.cfg.OnEvent = out.event
	sum, err := drain.Run(ctx, s.cfg)
	out.finish()
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch drain: %s\n", explain(err))
		return exitUnknown
	}
	code := exitOK
	if sum.End != drain.EndDrained && sum.End != drain.EndMax {
		code = exitStoppedEarly
	}
	out.summary(sum, code)
	return code
}

// explain adds what to do to the errors that have an obvious remedy.
func explain(err error) string {
	switch {
	case errors.Is(err, sockdiag.ErrNoCapNetAdmin):
		return err.Error() + " (run it as root or with that capability: AmbientCapabilities=CAP_NET_ADMIN in a systemd unit, securityContext.capabilities.add: [NET_ADMIN] in Kubernetes)"
	case errors.Is(err, sockdiag.ErrDestroyUnsupported):
		return err.Error() + "; use --method valkey for a Valkey server"
	}
	return err.Error()
}

// dryRun lists the batches a drain would close.
func (s *drainSetup) dryRun(ctx context.Context, f *drainFlags, stdout, stderr io.Writer) int {
	plan, err := drain.Plan(ctx, s.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch drain: %s\n", explain(err))
		return exitUnknown
	}
	// Say whether a real run could close them, and how the receivers are.
	if err := s.method.Check(ctx); err != nil {
		fmt.Fprintf(stderr, "stormwatch drain: note: a real run would fail: --method %s: %s\n", s.method.Name(), explain(err))
	}
	var readings []drain.Reading
	if s.pacer != nil {
		readings = s.pacer.Ask(ctx)
	}
	n := 0
	for _, b := range plan.Batches {
		n += len(b.Conns)
	}
	listeners := listenerNames(plan.Listing.Listeners)
	if s.format == "json" {
		enc := json.NewEncoder(stdout)
		var werr error
		emit := func(v any) {
			if werr == nil {
				werr = enc.Encode(v)
			}
		}
		m := map[string]any{"schema": drainSchema, "event": "plan", "listeners": listeners, "method": s.method.Name(),
			"connections": len(plan.Listing.Conns), "to_close": n, "batches": len(plan.Batches), "unaccepted": plan.Listing.Unaccepted,
			"skipped": len(plan.Skipped)}
		if srv := serverAddress(s.method); srv != "" {
			m["server"] = srv
		}
		emit(m)
		for _, r := range readings {
			emit(readingJSON(r, f.minHeadroom))
		}
		for _, c := range plan.Skipped {
			emit(map[string]any{"schema": drainSchema, "event": "conn", "batch": 0, "skipped": true,
				"remote": unmapPort(c.Remote).String(), "local": unmapPort(c.Local).String(), "inode": c.Inode, "cookie": fmt.Sprintf("%#x", c.Cookie)})
		}
		for i, b := range plan.Batches {
			for _, c := range b.Conns {
				emit(map[string]any{"schema": drainSchema, "event": "conn", "batch": i + 1, "at_seconds": b.At.Seconds(),
					"remote": unmapPort(c.Remote).String(), "local": unmapPort(c.Local).String(), "inode": c.Inode, "cookie": fmt.Sprintf("%#x", c.Cookie)})
			}
		}
		emit(map[string]any{"schema": drainSchema, "event": "done", "end": "dry_run", "closed": 0, "exit_code": exitOK})
		if werr != nil {
			fmt.Fprintf(stderr, "stormwatch drain: writing the plan: %v\n", werr)
			return exitUnknown
		}
		return exitOK
	}
	span := time.Duration(0)
	if len(plan.Batches) > 0 {
		span = plan.Batches[len(plan.Batches)-1].At
	}
	fmt.Fprintf(stdout, "dry run: would close %d of %d connections of %s in %d batches over %v (--method %s); nothing closed\n",
		n, len(plan.Listing.Conns), strings.Join(listeners, ", "), len(plan.Batches), span, s.method.Name())
	if plan.Listing.Unaccepted > 0 {
		fmt.Fprintf(stdout, "%d connections not yet accepted by the server are left alone\n", plan.Listing.Unaccepted)
	}
	if len(plan.Skipped) > 0 {
		fmt.Fprintf(stdout, "%d connections the method never closes (its own, a replica's link, the primary link, or not a client of the server at %s):\n",
			len(plan.Skipped), serverAddress(s.method))
		for _, c := range plan.Skipped {
			fmt.Fprintf(stdout, "  %s -> %s (inode %d)\n", unmapPort(c.Remote), unmapPort(c.Local), c.Inode)
		}
	}
	for _, r := range readings {
		ready, reason, _ := drain.Judge([]drain.Reading{r}, f.minHeadroom)
		if ready {
			fmt.Fprintf(stdout, "receiver %s: ready (headroom %.2f)\n", r.Receiver, r.Headroom.Headroom)
		} else {
			fmt.Fprintf(stdout, "%s: a batch would wait\n", reason)
		}
	}
	if n > 0 {
		fmt.Fprintf(stdout, "%-6s %-8s %-40s %-40s %s\n", "BATCH", "AT", "REMOTE", "LOCAL", "INODE")
	}
	for i, b := range plan.Batches {
		for _, c := range b.Conns {
			fmt.Fprintf(stdout, "%-6d %-8s %-40s %-40s %d\n", i+1, "+"+b.At.String(), unmapPort(c.Remote), unmapPort(c.Local), c.Inode)
		}
	}
	return exitOK
}

// serverAddress is the server a method talks to ("" for the kernel's
// destroy).
func serverAddress(m drain.Method) string {
	if v, ok := m.(*drain.Valkey); ok {
		return v.ServerAddress()
	}
	return ""
}

func readingJSON(r drain.Reading, minHeadroom float64) map[string]any {
	ready, reason, _ := drain.Judge([]drain.Reading{r}, minHeadroom)
	m := map[string]any{"schema": drainSchema, "event": "receiver", "receiver": r.Receiver, "ready": ready}
	if r.Err == nil {
		if !r.Headroom.NoData {
			m["headroom"] = r.Headroom.Headroom
		}
		m["ok"] = r.Headroom.OK
	}
	if reason != "" {
		m["reason"] = reason
	}
	return m
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func listenerNames(ls []drain.Listener) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.String())
	}
	return out
}

// drainOutput shows a drain's progress: a bar redrawn in place on a
// terminal, a line per batch as text, or JSON lines.
type drainOutput struct {
	w      io.Writer
	format string
	width  int
	f      *drainFlags
	setup  *drainSetup

	listeners []string
	last      drain.Event // the latest event, for the bar
	waiting   string
	drawn     bool
}

func (o *drainOutput) event(ev drain.Event) {
	switch ev.Kind {
	case drain.EventStart:
		o.listeners = listenerNames(ev.Listeners)
	case drain.EventWait:
		o.waiting = ev.Reason
	case drain.EventBatch:
		o.waiting = ""
	}
	o.last = ev
	switch o.format {
	case "json":
		_ = json.NewEncoder(o.w).Encode(o.eventJSON(ev)) // the drain goes on whoever reads its log
	case "text":
		o.textLine(ev)
	default:
		o.draw()
	}
}

func (o *drainOutput) eventJSON(ev drain.Event) map[string]any {
	m := map[string]any{"schema": drainSchema, "event": string(ev.Kind), "time": ev.Time.UTC().Format(time.RFC3339Nano),
		"elapsed_seconds": round3(ev.Elapsed.Seconds())}
	switch ev.Kind {
	case drain.EventStart:
		m["listeners"] = o.listeners
		m["method"] = o.setup.method.Name()
		if srv := serverAddress(o.setup.method); srv != "" {
			m["server"] = srv
		}
		if o.f.duration > 0 {
			m["duration_seconds"] = o.f.duration.Seconds()
		} else {
			m["batch_size"] = o.f.batch
		}
		m["every_seconds"] = o.f.every.Seconds()
		m["paced"] = o.setup.pacer != nil
	case drain.EventWait:
		m["batch"] = ev.Batch
		m["reason"] = ev.Reason
	case drain.EventBatch:
		m["batch"] = ev.Batch
		m["planned"] = ev.Planned
		m["size"] = ev.Size
		m["closed"] = ev.Closed
		m["gone"] = ev.Gone
		m["skipped"] = ev.Skipped
		m["unknown"] = ev.Unknown
		m["failed"] = ev.Failed
		m["took_seconds"] = round3(ev.Took.Seconds())
		if ev.Note != "" {
			m["note"] = ev.Note
		}
		if ev.Err != nil {
			m["error"] = ev.Err.Error()
		}
	}
	progressJSON(m, ev.Progress)
	return m
}

func progressJSON(m map[string]any, p drain.Progress) {
	m["total"] = p.Total
	m["closed_total"] = p.Closed
	m["gone_total"] = p.Gone
	m["skipped_total"] = p.Skipped
	m["left"] = p.Left
	m["new"] = p.New
	m["unaccepted"] = p.Unaccepted
	m["batches"] = p.Batches
	m["waited_seconds"] = round3(p.Waited.Seconds())
	m["rate"] = round3(p.Rate)
	if p.Remaining >= 0 {
		m["remaining_seconds"] = round3(p.Remaining.Seconds())
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// textLine prints one line per batch and wait, for a log.
func (o *drainOutput) textLine(ev drain.Event) {
	p := ev.Progress
	switch ev.Kind {
	case drain.EventStart:
		how := "--method " + o.setup.method.Name()
		if srv := serverAddress(o.setup.method); srv != "" {
			how += ", server " + srv
		}
		fmt.Fprintf(o.w, "draining %s: %d connections (%s)\n", strings.Join(o.listeners, ", "), p.Total, how)
	case drain.EventWait:
		fmt.Fprintf(o.w, "+%-7s waiting before batch %d: %s\n", ev.Elapsed.Round(100*time.Millisecond), ev.Batch, ev.Reason)
	case drain.EventBatch:
		line := fmt.Sprintf("+%-7s batch %d: closed %d", ev.Elapsed.Round(100*time.Millisecond), ev.Batch, ev.Closed)
		if n := ev.Gone + ev.Skipped + ev.Unknown + ev.Failed; n > 0 {
			line += fmt.Sprintf(" (gone %d, skipped %d, unknown %d, failed %d)", ev.Gone, ev.Skipped, ev.Unknown, ev.Failed)
		}
		line += fmt.Sprintf("  %d/%d %s  %.0f/s  %s left", p.Closed, p.Total, percent(p), p.Rate, remaining(p))
		if ev.Note != "" {
			line += "  (" + ev.Note + ")"
		}
		if ev.Err != nil {
			line += "  error: " + ev.Err.Error()
		}
		fmt.Fprintln(o.w, line)
	}
}

func percent(p drain.Progress) string {
	if p.Total == 0 {
		return "100%"
	}
	return fmt.Sprintf("%d%%", (p.Total-p.Left)*100/p.Total)
}

func remaining(p drain.Progress) string {
	if p.Remaining < 0 {
		return "?"
	}
	if p.Remaining < 10*time.Second {
		return p.Remaining.Round(100 * time.Millisecond).String()
	}
	return p.Remaining.Round(time.Second).String()
}

// draw redraws the progress bar in place.
func (o *drainOutput) draw() {
	p := o.last.Progress
	const barWidth = 24
	done := barWidth
	if p.Total > 0 {
		done = (p.Total - p.Left) * barWidth / p.Total
	}
	line := fmt.Sprintf("[%s%s] %d/%d %s  %.0f/s  %s left", strings.Repeat("#", done), strings.Repeat("-", barWidth-done),
		p.Closed, p.Total, percent(p), p.Rate, remaining(p))
	if o.last.Kind == drain.EventBatch {
		line += fmt.Sprintf("  batch %d: %d", o.last.Batch, o.last.Size)
	}
	if p.New > 0 {
		line += fmt.Sprintf("  +%d new", p.New)
	}
	if o.waiting != "" {
		line += "  waiting: " + o.waiting
	}
	if o.width > 0 && len(line) > o.width-1 {
		line = line[:o.width-1]
	}
	fmt.Fprintf(o.w, "\r\x1b[K%s", line)
	o.drawn = true
}

// finish ends the bar's line.
func (o *drainOutput) finish() {
	if o.drawn {
		fmt.Fprintln(o.w)
	}
}

// summary prints how the drain ended.
func (o *drainOutput) summary(s drain.Summary, code int) {
	if o.format == "json" {
		m := map[string]any{"schema": drainSchema, "event": "done", "end": string(s.End), "exit_code": code,
			"elapsed_seconds": round3(s.Elapsed.Seconds()), "listeners": listenerNames(s.Listeners)}
		if s.Err != nil {
			m["error"] = s.Err.Error()
		}
		progressJSON(m, s.Progress)
		_ = json.NewEncoder(o.w).Encode(m) // the drain goes on whoever reads its log
		return
	}
	names := strings.Join(listenerNames(s.Listeners), ", ")
	took := s.Elapsed.Round(100 * time.Millisecond)
	var line string
	switch s.End {
	case drain.EndDrained:
		line = fmt.Sprintf("drained %s: closed %d connections in %v (%d batches, %.0f/s)", names, s.Closed, took, s.Batches, s.Rate)
	case drain.EndMax:
		line = fmt.Sprintf("stopped at --max %d: closed %d of %d connections of %s in %v; %d left untouched", o.f.max, s.Closed, s.Total, names, took, s.Left)
	case drain.EndStopped:
		line = fmt.Sprintf("stopped by a signal after %d batches: closed %d of %d connections of %s; %d left untouched", s.Batches, s.Closed, s.Total, names, s.Left)
	case drain.EndPacingTimeout:
		line = fmt.Sprintf("refused by pacing beyond --timeout %v: closed %d of %d connections of %s; %d left untouched (%v)", o.f.timeout, s.Closed, s.Total, names, s.Left, s.Err)
	default:
		line = fmt.Sprintf("failed after closing %d of %d connections of %s: %v; %d left untouched", s.Closed, s.Total, names, s.Err, s.Left)
	}
	var extra []string
	if s.Gone > 0 {
		extra = append(extra, fmt.Sprintf("%d closed by themselves", s.Gone))
	}
	if s.New > 0 {
		extra = append(extra, fmt.Sprintf("%d arrived during the drain", s.New))
	}
	if s.Skipped > 0 {
		extra = append(extra, fmt.Sprintf("%d skipped by the method", s.Skipped))
	}
	if s.Unaccepted > 0 {
		extra = append(extra, fmt.Sprintf("%d not yet accepted by the server, left alone", s.Unaccepted))
	}
	if s.Waited > 0 {
		extra = append(extra, fmt.Sprintf("waited %v for the receivers", s.Waited.Round(100*time.Millisecond)))
	}
	if len(extra) > 0 {
		line += "; " + strings.Join(extra, ", ")
	}
	fmt.Fprintln(o.w, line)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// termWidth is w's terminal width, 0 if unknown.
func termWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

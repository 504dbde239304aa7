package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/headroom"
	"github.com/stormwatch/stormwatch/metrics"
)

// daemonFlags are the flags of `stormwatch run`.
type daemonFlags struct {
	collect     collectFlags
	configFile  string
	web         *web.FlagConfig
	metricsPath string
	maxRequests int

	alertmanagerURLs       []string
	alertmanagerResend     time.Duration
	alertmanagerTimeout    time.Duration
	alertmanagerHTTPConfig string
	alertmanagerInstance   string

	enableLifecycle bool
	headroomMin     float64
}

// runDaemon samples until SIGTERM or SIGINT and serves the results.
func runDaemon(f *daemonFlags, logger *slog.Logger) int {
	// SIGHUP's default action ends the process: catch it before anything
	// slow, so a reload sent during startup is not fatal.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := f.collect.config()
	if err != nil {
		logger.Error("invalid flags", "err", oneLine(err))
		return exitUnknown
	}
	if f.web.WebConfigFile != nil && *f.web.WebConfigFile != "" {
		if err := web.Validate(*f.web.WebConfigFile); err != nil {
			logger.Error("invalid --web.config.file", "err", oneLine(err))
			return exitUnknown
		}
	}
	conf, err := loadConfig(f.configFile)
	if err != nil {
		logger.Error("invalid configuration", "file", f.configFile, "err", oneLine(err))
		return exitUnknown
	}
	rules := conf.rules
	cfg.Valkey = conf.valkey
	sm, failed, err := openSampling(cfg)
	if err != nil {
		logger.Error(failed, "err", oneLine(err))
		return exitUnknown
	}
	defer sm.close()
	schema, targets := sm.schema, sm.targets
	history := collector.NewHistory(f.collect.retention(rules))
	sampler, err := collector.NewSampler(schema, sm.sources, targets, history)
	if err != nil {
		logger.Error("cannot start sampling", "err", oneLine(err))
		return exitUnknown
	}
	sampler.Timeout = max(f.collect.interval, time.Second)
	engine := alerts.NewEngine(rules, alerts.Options{})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	notifier, err := newNotifier(f, logger)
	if err != nil {
		logger.Error("invalid Alertmanager settings", "err", oneLine(err))
		return exitUnknown
	}

	rl := &reloader{configFile: f.configFile, collect: &f.collect, engine: engine, history: history, targets: sm.targetSources, logger: logger}
	rl.succeeded(time.Now())

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.NewExporter(schema, sampler.Latest, metrics.BuildInfo{Version: version.Version, Revision: version.GetRevision()}),
		metrics.NewAlertsExporter(engine.Active),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "stormwatch"}),
		collectors.NewGoCollector(),
		rl,
	)
	hr := newHeadroomGauge(history, engine, f)
	loop := &sampleLoop{sampler: sampler, engine: engine, notifier: notifier, interval: f.collect.interval,
		stormInterval: f.collect.storm(), logger: logger, headroom: hr}
	reg.MustRegister(loop, hr.exporter())
	if notifier != nil {
		reg.MustRegister(notifierCollector{notifier})
	}
	handler, err := newHandler(reg, f, engine, rl)
	if err != nil {
		logger.Error("cannot build the web handler", "err", oneLine(err))
		return exitUnknown
	}
	server := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	logger.Info("starting stormwatch", "version", version.Info(), "interval", f.collect.interval,
		"rules", len(rules), "history", history.Retention().Host)
	// Bind first: a port already taken ends the start before systemd is
	// told the daemon is ready.
	listeners, err := bindWeb(f.web)
	if err != nil {
		logger.Error("cannot listen", "err", oneLine(err))
		return exitUnknown
	}
	// The first sample runs before the server starts, so no scrape sees an
	// empty exposition. Sampling has a context of its own: it stops first
	// on shutdown, before the notifier's last flush.
	loopCtx, stopLoop := context.WithCancel(context.Background())
	defer stopLoop()
	targets.Start(loopCtx)
	defer targets.Stop()
	loop.tick(loopCtx)

	var wg sync.WaitGroup
	if notifier != nil {
		wg.Go(func() { notifier.Run(context.Background()) })
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ServeMultiple(listeners, server, f.web, logger) }()
	var loopWG sync.WaitGroup
	loopWG.Go(func() { loop.run(loopCtx) })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = rl.reload() // a failed reload is logged and keeps the running rules
			}
		}
	})
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		logger.Warn("cannot notify systemd", "err", oneLine(err))
	}

	code := exitOK
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			logger.Error("web server failed", "err", oneLine(err))
			code = exitUnknown
		}
		stop()
	}
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping) // best effort: the process exits anyway
	// Sampling stops first: nothing evaluated from here on, and nothing
	// resolved because the daemon is stopping.
	if notifier != nil {
		notifier.Freeze()
	}
	stopLoop()
	loopWG.Wait()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		logger.Warn("web server did not stop cleanly", "err", oneLine(err))
	}
	if notifier != nil {
		// Then what is queued is delivered, within one notify timeout.
		fctx, fcancel := context.WithTimeout(context.Background(), f.alertmanagerTimeout)
		if err := notifier.Flush(fctx); err != nil {
			logger.Warn("alerts not delivered before shutdown", "err", oneLine(err))
		}
		fcancel()
		notifier.Stop()
	}
	wg.Wait()
	return code
}

// newNotifier returns the Alertmanager notifier the flags ask for, nil
// without --alertmanager.url.
func newNotifier(f *daemonFlags, logger *slog.Logger) (*alerts.Notifier, error) {
	if len(f.alertmanagerURLs) == 0 {
		return nil, nil
	}
	var client *http.Client
	if f.alertmanagerHTTPConfig != "" {
		var err error
		if client, err = alerts.HTTPClientFromFile(f.alertmanagerHTTPConfig); err != nil {
			return nil, fmt.Errorf("--alertmanager.http-config-file: %w", err)
		}
	}
	instance := f.alertmanagerInstance
	if instance == "" {
		var err error
		if f.web.WebListenAddresses == nil || len(*f.web.WebListenAddresses) == 0 {
			err = errors.New("no --web.listen-address")
		} else {
			instance, err = alerts.DefaultInstance((*f.web.WebListenAddresses)[0])
		}
		if err != nil {
			instance, _ = os.Hostname()
			logger.Warn("cannot derive the instance label from the listen address; using the hostname (set --alertmanager.instance)", "err", oneLine(err))
		}
	}
	amLog := logger.With("component", "notifier")
	n, err := alerts.NewNotifier(alerts.NotifierOptions{
		URLs:        f.alertmanagerURLs,
		ResendDelay: f.alertmanagerResend,
		Timeout:     f.alertmanagerTimeout,
		Client:      client,
		Instance:    instance,
		OnError: func(url string, err error, failures uint64) {
			amLog.Warn("alertmanager delivery failing", "url", url, "err", oneLine(err), "failures", failures)
		},
		OnRecover: func(url string, failures uint64, down time.Duration) {
			amLog.Info("alertmanager delivery recovered", "url", url, "failures", failures, "down", down.Round(time.Second))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("--alertmanager.url: %w", err)
	}
	return n, nil
}

// retention sizes the History: host values for what the flag asks and at
// least what the rules' longest host window needs; each entity kind's for
// the longest window of the rules over it.
func (f *collectFlags) retention(rules []*alerts.Rule) collector.Retention {
	r := alerts.Retention(rules, f.interval)
	r.Host = max(r.Host, time.Duration(f.historySize)*f.interval)
	return headroom.Retention(collector.DefaultSchema(), r, headroom.DefaultTrendWindow)
}

func newHandler(reg *prometheus.Registry, f *daemonFlags, engine *alerts.Engine, rl *reloader) (http.Handler, error) {
	mux := http.NewServeMux()
	mux.Handle(f.metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		MaxRequestsInFlight: f.maxRequests,
		Timeout:             10 * time.Second,
		EnableOpenMetrics:   true,
		Registry:            reg,
	}))
	mux.HandleFunc("GET /api/v1/alerts", func(w http.ResponseWriter, r *http.Request) {
		active := engine.Active()
		if active == nil {
			active = []alerts.Alert{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{ // an error: the client went away
			"status": "success",
			"data":   map[string]any{"alerts": active},
		})
	})
	if f.enableLifecycle {
		mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, r *http.Request) {
			err := rl.tryReload()
			var busy *reloadBusyError
			switch {
			case errors.As(err, &busy):
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(busy.wait.Seconds()))))
				http.Error(w, err.Error(), http.StatusTooManyRequests)
			case err != nil:
				http.Error(w, "reload failed, the running rules are kept: "+err.Error(), http.StatusInternalServerError)
			default:
				fmt.Fprintln(w, "reloaded")
			}
		})
		mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "reload with POST", http.StatusMethodNotAllowed)
		})
	} else {
		mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Lifecycle API is not enabled: start with --web.enable-lifecycle, or send SIGHUP.", http.StatusForbidden)
		})
	}
	mux.Handle(headroom.Path, newHeadroomAPI(rl.history, engine, f))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	if f.metricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "stormwatch",
			Description: "Connection-storm early warning for Linux hosts",
			Version:     version.Info(),
			Profiling:   "false", // no /debug/pprof here
			Links: []web.LandingLinks{
				{Address: f.metricsPath, Text: "Metrics"},
				{Address: "/api/v1/alerts", Text: "Active alerts (JSON)"},
				{Address: headroom.Path, Text: "Headroom (JSON)"},
			},
		})
		if err != nil {
			return nil, fmt.Errorf("landing page: %w", err)
		}
		mux.Handle("/", landing)
	}
	return mux, nil
}

// reloader re-reads the config file and rules on SIGHUP or POST
// /-/reload. A file that does not load keeps the running rules.
type reloader struct {
	configFile string
	collect    *collectFlags
	engine     *alerts.Engine
	history    *collector.History
	targets    []collector.TargetSource
	logger     *slog.Logger

	reloading   sync.Mutex // held for a whole reload
	lastAttempt time.Time  // when the last reload started (under reloading)
	mu          sync.Mutex // guards ok and lastSuccess, read by scrapes
	ok          bool
	lastSuccess time.Time
}

var (
	reloadOKDesc = prometheus.NewDesc("stormwatch_config_last_reload_successful",
		"1 if the last reload of the config and rules succeeded, 0 if it failed (the previous rules are still running).", nil, nil)
	reloadTimeDesc = prometheus.NewDesc("stormwatch_config_last_reload_success_timestamp_seconds",
		"When the config and rules were last loaded successfully.", nil, nil)
	rulesDesc = prometheus.NewDesc("stormwatch_rules",
		"Alerting rules the daemon is running.", nil, nil)
)

func (rl *reloader) succeeded(t time.Time) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.ok, rl.lastSuccess = true, t
}

// minReloadInterval is the least time between two reloads: a client
// hammering POST /-/reload must not burn a core.
const minReloadInterval = time.Second

// reloadBusyError is a reload refused because another runs or one ran
// less than minReloadInterval ago.
type reloadBusyError struct{ wait time.Duration }

func (e *reloadBusyError) Error() string {
	return fmt.Sprintf("a reload ran or is running: try again in %s", e.wait.Round(10*time.Millisecond))
}

// reload re-reads the config (SIGHUP): it waits for a reload under way
// and keeps reloads minReloadInterval apart.
func (rl *reloader) reload() error {
	rl.reloading.Lock() // one reload at a time (SIGHUP and HTTP)
	defer rl.reloading.Unlock()
	if wait := minReloadInterval - time.Since(rl.lastAttempt); wait > 0 {
		time.Sleep(wait)
	}
	return rl.reloadLocked()
}

// tryReload re-reads the config (POST /-/reload), refusing at once when a
// reload is under way or ran less than minReloadInterval ago.
func (rl *reloader) tryReload() error {
	if !rl.reloading.TryLock() {
		return &reloadBusyError{wait: minReloadInterval}
	}
	defer rl.reloading.Unlock()
	if wait := minReloadInterval - time.Since(rl.lastAttempt); wait > 0 {
		return &reloadBusyError{wait: wait}
	}
	return rl.reloadLocked()
}

func (rl *reloader) reloadLocked() error {
	rl.lastAttempt = time.Now()
	conf, err := loadConfig(rl.configFile)
	if err == nil {
		err = rl.setTargets(conf.valkey)
	}
	if err != nil {
		rl.mu.Lock()
		rl.ok = false
		rl.mu.Unlock()
		rl.logger.Error("reload failed: keeping the running rules", "file", rl.configFile, "err", oneLine(err))
		return err
	}
	rl.engine.SetRules(conf.rules)
	rl.history.SetRetention(rl.collect.retention(conf.rules))
	rl.succeeded(time.Now())
	rl.logger.Info("reloaded", "file", rl.configFile, "rules", len(conf.rules))
	return nil
}

// setTargets gives the target sources their new configuration.
func (rl *reloader) setTargets(vk collector.ValkeyConfig) error {
	for _, t := range rl.targets {
		if v, ok := t.(*collector.ValkeySource); ok {
			if err := v.SetConfig(vk); err != nil {
				return err
			}
		}
	}
	return nil
}

// Describe and Collect make the reloader export its state.
func (rl *reloader) Describe(ch chan<- *prometheus.Desc) {
	ch <- reloadOKDesc
	ch <- reloadTimeDesc
	ch <- rulesDesc
}

func (rl *reloader) Collect(ch chan<- prometheus.Metric) {
	rl.mu.Lock()
	ok, t := rl.ok, rl.lastSuccess
	rl.mu.Unlock()
	v := 0.0
	if ok {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(reloadOKDesc, prometheus.GaugeValue, v)
	ch <- prometheus.MustNewConstMetric(reloadTimeDesc, prometheus.GaugeValue, float64(t.UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(rulesDesc, prometheus.GaugeValue, float64(len(rl.engine.Rules())))
}

// sampleLoop runs the sampler and the rules on a ticker, logs sources as
// they fail and recover and alerts as they change, hands the alerts to the
// notifier, and pings the systemd watchdog after each sample.
//
// Storm mode: while a cheap storm signal is active (the listeners source's
// storm_signal: what also runs its SYN_RECV dump) or an alert is pending
// or firing, the loop ticks every stormInterval, and goes back to interval
// after stormCalm without either. Rules see the finer samples: their
// "for" and windows are in seconds, and the History keeps samples by age.
type sampleLoop struct {
	sampler       *collector.Sampler
	engine        *alerts.Engine
	notifier      *alerts.Notifier // nil without --alertmanager.url
	headroom      *headroomGauge   // nil: no headroom metric
	interval      time.Duration
	stormInterval time.Duration // at most interval; equal: no storm mode
	logger        *slog.Logger

	lastErr      map[string]string // source name → last error text ("" when fine)
	lastPartErr  string            // the listeners' SYN_RECV part error ("" when fine)
	capWarned    bool              // the listener cap was hit last cycle
	lastEvalErr  string
	evalFailures atomic.Uint64

	stormUntil time.Time     // the storm interval holds until then
	inStorm    bool          // as of the last tick
	current    atomic.Int64  // the interval in force, for the gauge (0: interval)
	samples    atomic.Uint64 // cycles sampled
}

// stormCalm is how long the storm interval holds after the last storm
// signal or active alert. A storm comes in waves: clients whose SYN or
// final ACK was dropped retransmit after 1 s, 3 s and 7 s (the kernel's
// initial RTO of 1 s, doubled each time), and pooled clients reconnect
// with backoffs of that order. 10 s keeps the fine interval across those
// gaps, so a second wave is sampled finely from its first packet, and it
// costs little: a cheap cycle is about 0.3 ms.
const stormCalm = 10 * time.Second

var (
	evalFailDesc = prometheus.NewDesc("stormwatch_rule_evaluation_failures_total",
		"Evaluations in which at least one rule failed (its alerts were left as they were).", nil, nil)
	intervalDesc = prometheus.NewDesc("stormwatch_sample_interval_seconds",
		"The sampling interval in force: --collect.storm-interval while a storm signal or an alert is active and for 10 s after, --collect.interval otherwise.", nil, nil)
	samplesDesc = prometheus.NewDesc("stormwatch_samples_total",
		"Sampling cycles run (its rate is the sampling frequency).", nil, nil)
)

func (l *sampleLoop) run(ctx context.Context) {
	watchdog, _ := daemon.SdWatchdogEnabled(false)
	var lastPing time.Time
	cur := l.intervalNow()
	t := time.NewTicker(cur)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Ping only after a sample that read something: a daemon whose
		// every source fails (a wedged kernel interface) gets restarted.
		// The pings go by the clock, whatever the interval.
		if l.tick(ctx) && watchdog > 0 && time.Since(lastPing) >= watchdog/2 {
			// Not under systemd, or its socket gone: nothing to do.
			_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			lastPing = time.Now()
		}
		if next := l.intervalNow(); next != cur {
			cur = next
			t.Reset(cur) // the next tick comes cur from now
		}
	}
}

// intervalNow is the interval in force after the last tick.
func (l *sampleLoop) intervalNow() time.Duration {
	if l.inStorm {
		return l.stormInterval
	}
	return l.interval
}

// observeStorm turns storm mode on while a storm signal is active in snap
// or an alert that reads a measurement is pending or firing, and off
// stormCalm after the last.
func (l *sampleLoop) observeStorm(now time.Time, snap *collector.Snapshot) {
	if l.stormInterval <= 0 || l.stormInterval >= l.interval {
		l.current.Store(int64(l.interval))
		return
	}
	why := ""
	if snap.Get("storm_signal") == 1 {
		why = "storm signal"
	} else if names := l.engine.ActiveMeasuring(); len(names) > 0 {
		// An alert on settings alone (SyncookiesDisabled) is a standing
		// configuration, not a storm: it does not hold storm mode.
		why = "alert " + strings.Join(names, ", ")
	}
	if why != "" {
		l.stormUntil = now.Add(stormCalm)
	}
	was := l.inStorm
	l.inStorm = now.Before(l.stormUntil)
	switch {
	case l.inStorm && !was:
		l.logger.Info("storm mode: sampling faster", "interval", l.stormInterval, "because", why)
	case !l.inStorm && was:
		l.logger.Info("calm again: sampling at the usual interval", "interval", l.interval, "calm_for", stormCalm)
	}
	l.current.Store(int64(l.intervalNow()))
}

// tick samples once, evaluates the rules and notifies. It reports whether
// any source read something.
func (l *sampleLoop) tick(ctx context.Context) bool {
	now := time.Now()
	snap := l.sampler.Sample(ctx, now)
	l.samples.Add(1)
	if ctx.Err() != nil {
		return false // cut short by shutdown: judge nothing from it
	}
	l.logSources(snap)
	trs, err := l.engine.Eval(now, l.sampler.History())
	l.logEval(err)
	l.headroom.update(now)
	for _, tr := range trs {
		l.logTransition(tr)
	}
	l.observeStorm(now, snap)
	if l.notifier != nil {
		l.notifier.Send(now, l.engine.Alerts())
	}
	for _, r := range snap.Sources {
		if r.Success {
			return true
		}
	}
	return false
}

func (l *sampleLoop) logSources(snap *collector.Snapshot) {
	perTarget := map[string]bool{}
	for _, r := range snap.Sources {
		if r.Target != "" {
			perTarget[r.Name] = true
		}
	}
	if l.lastErr == nil {
		l.lastErr = map[string]string{}
		for _, r := range snap.Sources {
			if r.NoData && r.Target == "" && !perTarget[r.Name] {
				l.logger.Info("source has no data on this host", "collector", r.Name)
			}
		}
	}
	for _, r := range snap.Sources {
		if r.Target == "" && perTarget[r.Name] {
			continue // the summary of its targets, logged one by one
		}
		msg := ""
		if r.Err != nil && !r.NoData {
			msg = r.Err.Error()
		}
		key, attrs := r.Name, []any{"collector", r.Name}
		if r.Target != "" {
			key += "\xff" + r.Target
			attrs = append(attrs, "target", r.Target)
		}
		prev, seen := l.lastErr[key]
		switch {
		case msg != "" && msg != prev:
			l.logger.Warn("source failed", append(attrs, "err", oneLine(r.Err))...)
		case msg == "" && prev != "" && seen:
			l.logger.Info("source recovered", attrs...)
		}
		l.lastErr[key] = msg
	}
	// The listeners' SYN_RECV part can fail alone (its dump ran out of
	// time): the source succeeded, the part is no data.
	if partErr := snap.HostAttr("syn_recv_error"); partErr != l.lastPartErr {
		if partErr != "" {
			l.logger.Warn("source part failed: its values are no data", "collector", "listeners", "part", "syn_recv", "err", partErr)
		} else {
			l.logger.Info("source part recovered", "collector", "listeners", "part", "syn_recv")
		}
		l.lastPartErr = partErr
	}
	dropped := snap.Get("listeners_dropped")
	if dropped > 0 && !l.capWarned {
		l.logger.Warn("listener cap reached: the least busy listeners are not exported; raise --collect.listeners.max or filter ports",
			"exported", snap.Get("listeners"), "dropped", dropped)
	}
	l.capWarned = dropped > 0
}

func (l *sampleLoop) logEval(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
		l.evalFailures.Add(1)
	}
	if msg != l.lastEvalErr {
		if err != nil {
			l.logger.Warn("rule evaluation failed", "err", oneLine(err))
		} else {
			l.logger.Info("rule evaluation recovered")
		}
	}
	l.lastEvalErr = msg
}

func (l *sampleLoop) logTransition(tr alerts.Transition) {
	a := tr.Alert
	attrs := []any{"alertname", a.Name(), "from", tr.From.String(), "to", tr.To.String()}
	keys := make([]string, 0, len(a.Labels))
	for k := range a.Labels {
		if k != "alertname" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		attrs = append(attrs, k, a.Labels[k])
	}
	if !math.IsNaN(a.Value) {
		attrs = append(attrs, "value", a.Value)
	}
	if s := a.Annotations["summary"]; s != "" {
		attrs = append(attrs, "summary", s)
	}
	level := slog.LevelInfo
	if tr.To == alerts.StateFiring {
		level = slog.LevelWarn
	}
	l.logger.Log(context.Background(), level, "alert", attrs...)
}

// Describe and Collect export the loop's own counters and the interval in
// force.
func (l *sampleLoop) Describe(ch chan<- *prometheus.Desc) {
	ch <- evalFailDesc
	ch <- intervalDesc
	ch <- samplesDesc
}

func (l *sampleLoop) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(evalFailDesc, prometheus.CounterValue, float64(l.evalFailures.Load()))
	cur := time.Duration(l.current.Load())
	if cur == 0 {
		cur = l.interval
	}
	ch <- prometheus.MustNewConstMetric(intervalDesc, prometheus.GaugeValue, cur.Seconds())
	ch <- prometheus.MustNewConstMetric(samplesDesc, prometheus.CounterValue, float64(l.samples.Load()))
}

// notifierCollector exports the Alertmanager notifier's counters.
type notifierCollector struct{ n *alerts.Notifier }

var (
	notifySentDesc    = prometheus.NewDesc("stormwatch_notifications_sent_total", "Alerts an Alertmanager accepted (once per Alertmanager).", nil, nil)
	notifyFailedDesc  = prometheus.NewDesc("stormwatch_notifications_failed_total", "Alerts whose POST to an Alertmanager failed.", nil, nil)
	notifyDroppedDesc = prometheus.NewDesc("stormwatch_notifications_dropped_total", "Alerts dropped, oldest first, because the notification queue was full.", nil, nil)
	notifyQueueDesc   = prometheus.NewDesc("stormwatch_notifications_queue_length", "Alerts waiting to be sent to Alertmanager.", nil, nil)
)

func (c notifierCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- notifySentDesc
	ch <- notifyFailedDesc
	ch <- notifyDroppedDesc
	ch <- notifyQueueDesc
}

func (c notifierCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Stats()
	ch <- prometheus.MustNewConstMetric(notifySentDesc, prometheus.CounterValue, float64(s.Sent))
	ch <- prometheus.MustNewConstMetric(notifyFailedDesc, prometheus.CounterValue, float64(s.Failed))
	ch <- prometheus.MustNewConstMetric(notifyDroppedDesc, prometheus.CounterValue, float64(s.Dropped))
	ch <- prometheus.MustNewConstMetric(notifyQueueDesc, prometheus.GaugeValue, float64(s.Queued))
}

// sampling is what the daemon and check sample with: cfg's kernel
// sources, its target sources and the Targets running them, over the
// default schema.
type sampling struct {
	sources       []collector.Source
	targetSources []collector.TargetSource
	schema        *collector.Schema
	targets       *collector.Targets
}

// openSampling opens cfg's sources. On an error, failed says in words
// which step failed (for the daemon's log line); what it opened is closed.
func openSampling(cfg collector.Config) (s *sampling, failed string, err error) {
	s = &sampling{schema: collector.DefaultSchema()}
	if s.sources, err = collector.NewSources(cfg); err != nil {
		return nil, "cannot open the kernel sources", err
	}
	if s.targetSources, err = collector.NewTargetSources(cfg); err != nil {
		s.close()
		return nil, "invalid target configuration", err
	}
	if s.targets, err = collector.NewTargets(s.schema, s.targetSources...); err != nil {
		s.close()
		return nil, "cannot start the target sources", err
	}
	return s, "", nil
}

// close closes the sources.
func (s *sampling) close() {
	collector.CloseSources(s.sources)
	collector.CloseTargetSources(s.targetSources)
}

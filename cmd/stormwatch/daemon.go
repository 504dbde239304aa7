package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/metrics"
)

// daemonFlags are the flags of `stormwatch run`.
type daemonFlags struct {
	collect     collectFlags
	web         *web.FlagConfig
	metricsPath string
	maxRequests int
}

// runDaemon samples until SIGTERM or SIGINT and serves the results.
func runDaemon(f *daemonFlags, logger *slog.Logger) int {
	cfg, err := f.collect.config()
	if err != nil {
		logger.Error("invalid flags", "err", err)
		return exitUnknown
	}
	if f.web.WebConfigFile != nil && *f.web.WebConfigFile != "" {
		if err := web.Validate(*f.web.WebConfigFile); err != nil {
			logger.Error("invalid --web.config.file", "err", err)
			return exitUnknown
		}
	}
	sources, err := collector.NewSources(cfg)
	if err != nil {
		logger.Error("cannot open the kernel sources", "err", err)
		return exitUnknown
	}
	defer collector.CloseSources(sources)
	sampler := collector.NewSampler(sources, collector.NewHistory(f.collect.historySize))
	sampler.Timeout = max(f.collect.interval, time.Second)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.NewExporter(sampler.Latest, metrics.BuildInfo{Version: version.Version, Revision: version.GetRevision()}),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "stormwatch"}),
		collectors.NewGoCollector(),
	)
	handler, err := newHandler(reg, f)
	if err != nil {
		logger.Error("cannot build the web handler", "err", err)
		return exitUnknown
	}
	server := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	logger.Info("starting stormwatch", "version", version.Info(), "interval", f.collect.interval)
	loop := &sampleLoop{sampler: sampler, interval: f.collect.interval, logger: logger}
	// The first sample runs before the server starts, so no scrape sees an
	// empty exposition.
	loop.sample(ctx)

	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ListenAndServe(server, f.web, logger) }()
	loopDone := make(chan struct{})
	go func() { loop.run(ctx); close(loopDone) }()
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		logger.Warn("cannot notify systemd", "err", err)
	}

	code := exitOK
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			logger.Error("web server failed", "err", err)
			code = exitUnknown
		}
		stop()
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		logger.Warn("web server did not stop cleanly", "err", err)
	}
	<-loopDone
	return code
}

func newHandler(reg *prometheus.Registry, f *daemonFlags) (http.Handler, error) {
	mux := http.NewServeMux()
	mux.Handle(f.metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		MaxRequestsInFlight: f.maxRequests,
		Timeout:             10 * time.Second,
		EnableOpenMetrics:   true,
		Registry:            reg,
	}))
	if f.metricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "stormwatch",
			Description: "Connection-storm early warning for Linux hosts",
			Version:     version.Info(),
			Links:       []web.LandingLinks{{Address: f.metricsPath, Text: "Metrics"}},
		})
		if err != nil {
			return nil, fmt.Errorf("landing page: %w", err)
		}
		mux.Handle("/", landing)
	}
	return mux, nil
}

// sampleLoop runs the sampler on a ticker, logs sources as they fail and
// recover, and pings the systemd watchdog after each sample that ran.
type sampleLoop struct {
	sampler  *collector.Sampler
	interval time.Duration
	logger   *slog.Logger

	lastErr   map[string]string // source name → last error text ("" when fine)
	capWarned bool              // the listener cap was hit last cycle
}

func (l *sampleLoop) run(ctx context.Context) {
	watchdog, _ := daemon.SdWatchdogEnabled(false)
	var lastPing time.Time
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.sample(ctx)
		if watchdog > 0 && time.Since(lastPing) >= watchdog/2 {
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			lastPing = time.Now()
		}
	}
}

func (l *sampleLoop) sample(ctx context.Context) *collector.Snapshot {
	snap := l.sampler.Sample(ctx, time.Now())
	if l.lastErr == nil {
		l.lastErr = map[string]string{}
		for _, r := range snap.Sources {
			if r.NoData {
				l.logger.Info("source has no data on this host", "collector", r.Name)
			}
		}
	}
	for _, r := range snap.Sources {
		msg := ""
		if r.Err != nil {
			msg = r.Err.Error()
		}
		prev, seen := l.lastErr[r.Name]
		switch {
		case msg != "" && msg != prev:
			l.logger.Warn("source failed", "collector", r.Name, "err", r.Err)
		case msg == "" && prev != "" && seen:
			l.logger.Info("source recovered", "collector", r.Name)
		}
		l.lastErr[r.Name] = msg
	}
	if snap.ListenersDropped > 0 && !l.capWarned {
		l.logger.Warn("listener cap reached: the least busy listeners are not exported; raise --collect.listeners.max or filter ports",
			"exported", len(snap.Listeners), "dropped", snap.ListenersDropped)
	}
	l.capWarned = snap.ListenersDropped > 0
	return snap
}

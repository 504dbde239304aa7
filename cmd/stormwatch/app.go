package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/stormwatch/stormwatch/collector"
)

// Exit codes, as monitoring plugins use them.
const (
	exitOK       = 0 // healthy, or the daemon stopped cleanly
	exitWarning  = 1 // a warning-level finding
	exitCritical = 2 // a critical finding
	exitUnknown  = 3 // could not run or collect: bad flags, config, kernel
)

// defaultListenAddress is stormwatch's port in the Prometheus exporter
// port list range it shares with other exporters.
const defaultListenAddress = ":9955"

// collectFlags are the flags shared by every command that samples.
type collectFlags struct {
	root            string
	interval        time.Duration
	includePorts    string
	excludePorts    string
	maxListeners    int
	synRecvInterval time.Duration
	historySize     int
}

func (f *collectFlags) register(cmd *kingpin.CmdClause) {
	cmd.Flag("collect.interval", "How often to sample the kernel.").
		Default("1s").DurationVar(&f.interval)
	cmd.Flag("collect.listeners.include-ports", "Only report listeners on these ports (e.g. 6379,7000-7010). Empty: all.").
		Default("").StringVar(&f.includePorts)
	cmd.Flag("collect.listeners.exclude-ports", "Never report listeners on these ports.").
		Default("").StringVar(&f.excludePorts)
	cmd.Flag("collect.listeners.max", "Most listeners exported; the busiest are kept (0: no cap).").
		Default("500").IntVar(&f.maxListeners)
	cmd.Flag("collect.syn-recv-interval", "Slow cadence of the SYN_RECV dump, which walks every socket on the host; it runs every cycle while a storm signal moves.").
		Default("5s").DurationVar(&f.synRecvInterval)
	cmd.Flag("collect.history", "Samples to keep for the rules; at least what their longest window needs is always kept (0: just that).").
		Default("0").IntVar(&f.historySize)
	cmd.Flag("path.root", "Directory holding proc/ to read the kernel from.").
		Default("/").StringVar(&f.root)
}

func (f *collectFlags) config() (collector.Config, error) {
	if f.interval < 10*time.Millisecond {
		return collector.Config{}, fmt.Errorf("--collect.interval %s: must be at least 10ms", f.interval)
	}
	if f.synRecvInterval < 0 {
		return collector.Config{}, fmt.Errorf("--collect.syn-recv-interval %s: must not be negative", f.synRecvInterval)
	}
	if f.maxListeners < 0 {
		return collector.Config{}, fmt.Errorf("--collect.listeners.max %d: must not be negative", f.maxListeners)
	}
	if f.historySize < 0 {
		return collector.Config{}, fmt.Errorf("--collect.history %d: must not be negative", f.historySize)
	}
	inc, err := parsePortRanges(f.includePorts)
	if err != nil {
		return collector.Config{}, fmt.Errorf("--collect.listeners.include-ports: %w", err)
	}
	exc, err := parsePortRanges(f.excludePorts)
	if err != nil {
		return collector.Config{}, fmt.Errorf("--collect.listeners.exclude-ports: %w", err)
	}
	return collector.Config{
		Root: f.root,
		Listeners: collector.ListenerConfig{
			Include:         inc,
			Exclude:         exc,
			Max:             f.maxListeners,
			SynRecvInterval: f.synRecvInterval,
		},
	}, nil
}

func init() {
	// A build without the Makefile's -ldflags still says what it is.
	if version.Version == "" {
		version.Version = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version.Version = bi.Main.Version
		}
	}
}

// run parses args and runs the chosen command, returning its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("stormwatch", "Watches a Linux host's connection queues (conntrack, SYN queue, accept queue) for TCP connection storms and exports them as Prometheus metrics.")
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	terminated := -1
	app.Terminate(func(code int) { terminated = code })
	app.UsageWriter(stdout)
	app.Version(version.Print("stormwatch"))
	app.HelpFlag.Short('h')

	logCfg := &promslog.Config{Writer: stderr}
	promslogflag.AddFlags(app, logCfg)

	d := &daemonFlags{}
	runCmd := app.Command("run", "Run the daemon (the default command).").Default()
	d.collect.register(runCmd)
	d.web = kingpinflag.AddFlags(runCmd, defaultListenAddress)
	runCmd.Flag("web.telemetry-path", "Path under which to expose metrics.").
		Default("/metrics").StringVar(&d.metricsPath)
	runCmd.Flag("web.max-requests", "Most concurrent scrapes; more get 503 (0: no limit).").
		Default("10").IntVar(&d.maxRequests)
	runCmd.Flag("config", "Config file (rules to load); without it the built-in rules run.").
		PlaceHolder("FILE").StringVar(&d.configFile)
	runCmd.Flag("alertmanager.url", "Alertmanager to send alerts to, e.g. http://127.0.0.1:9093 (repeatable).").
		StringsVar(&d.alertmanagerURLs)
	runCmd.Flag("alertmanager.resend-delay", "How often a firing alert is sent again.").
		Default("1m").DurationVar(&d.alertmanagerResend)
	runCmd.Flag("alertmanager.timeout", "Timeout of one send to Alertmanager.").
		Default("10s").DurationVar(&d.alertmanagerTimeout)

	cf := &checkFlags{}
	checkCmd := app.Command("check", "One-shot diagnostic: sample twice, judge with the rules and print a checklist. "+
		"Exit codes: 0 OK, 1 warning, 2 critical, 3 unknown (nothing could be read, bad flags or config).")
	checkCmd.Flag("window", "Time between the two samples, over which counters are rated (0: one sample, no counters).").
		Default("2s").DurationVar(&cf.window)
	checkCmd.Flag("format", "Output format: text or json.").Default("text").EnumVar(&cf.format, "text", "json")
	checkCmd.Flag("port", "Only check listeners on this port (repeatable).").Uint16ListVar(&cf.ports)
	checkCmd.Flag("quiet", "Print only what is not OK.").Short('q').BoolVar(&cf.quiet)
	checkCmd.Flag("config", "Config file, as for run.").PlaceHolder("FILE").StringVar(&cf.configFile)
	checkCmd.Flag("path.root", "Directory holding proc/ to read the kernel from.").Default("/").StringVar(&cf.root)

	rf := &rulesFlags{}
	rulesCmd := app.Command("rules", "Print the effective rules (built-in, or as --config makes them), or validate rules files with --check. Exit 0 valid, 3 invalid.")
	rulesCmd.Flag("config", "Config file, as for run.").PlaceHolder("FILE").StringVar(&rf.configFile)
	rulesCmd.Flag("check", "Validate the rules files given as arguments instead.").BoolVar(&rf.checkMode)
	rulesCmd.Arg("files", "Rules files to validate with --check.").StringsVar(&rf.check)

	df := &drainFlags{}
	drainCmd := df.register(app)

	cmd, err := app.Parse(args)
	if terminated >= 0 { // --help or --version was handled
		if terminated != 0 {
			return exitUnknown
		}
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v (try --help)\n", err)
		return exitUnknown
	}
	logger := promslog.New(logCfg)
	switch cmd {
	case runCmd.FullCommand():
		return runDaemon(d, logger)
	case checkCmd.FullCommand():
		return runCheck(cf, stdout, stderr)
	case rulesCmd.FullCommand():
		return runRules(rf, stdout, stderr)
	case drainCmd.FullCommand():
		return runDrain(df, stdout, stderr)
	}
	return exitUnknown
}

package main

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/errtext"
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
	stormInterval   time.Duration
	includePorts    []collector.PortRange
	excludePorts    []collector.PortRange
	maxListeners    int
	synRecvInterval time.Duration
	historySize     int
	nicInclude      []string
	nicExclude      []string
}

// minInterval is the shortest --collect.interval.
const minInterval = 10 * time.Millisecond

func (f *collectFlags) register(cmd *kingpin.CmdClause) {
	durationFlag(cmd.Flag("collect.interval", "How often to sample the kernel.").Default("1s"),
		&f.interval, minInterval, false, "1s")
	durationFlag(cmd.Flag("collect.storm-interval", "How often to sample while a storm signal or an alert is active (at most --collect.interval); back to --collect.interval after 10s of calm.").Default("250ms"),
		&f.stormInterval, minInterval, false, "250ms")
	portRangesFlag(cmd.Flag("collect.listeners.include-ports", "Only report listeners on these ports (e.g. 6379,7000-7010). Empty: all.").Default(""),
		&f.includePorts)
	portRangesFlag(cmd.Flag("collect.listeners.exclude-ports", "Never report listeners on these ports.").Default(""),
		&f.excludePorts)
	intFlag(cmd.Flag("collect.listeners.max", "Most listeners exported; the busiest are kept (0: no cap).").Default("500"),
		&f.maxListeners, 0, "500")
	durationFlag(cmd.Flag("collect.syn-recv-interval", "Slow cadence of the SYN_RECV dump, which walks every socket on the host; it runs every cycle while a storm signal moves (0: every cycle).").Default("5s"),
		&f.synRecvInterval, 0, false, "5s")
	globsFlag(cmd.Flag("collect.nic.include", "Only report network interfaces whose name matches one of these glob patterns (e.g. eth*,ens*). Empty: all but loopback.").Default(""),
		&f.nicInclude)
	globsFlag(cmd.Flag("collect.nic.exclude", "Never report network interfaces whose name matches one of these glob patterns (e.g. veth*,docker*).").Default(""),
		&f.nicExclude)
	intFlag(cmd.Flag("collect.history", "Samples to keep for the rules; at least what their longest window needs is always kept (0: just that).").Default("0"),
		&f.historySize, 0, "900")
	dirFlag(cmd.Flag("path.root", "Directory holding proc/ to read the kernel from.").Default("/"),
		&f.root, "the directory holding proc/", "/")
}

// storm returns the interval in force during a storm: --collect.storm-interval,
// never slower than --collect.interval (0, set by code: the same).
func (f *collectFlags) storm() time.Duration {
	if f.stormInterval <= 0 {
		return f.interval
	}
	return min(f.stormInterval, f.interval)
}

// synRecvWait bounds how long a cycle waits for a SYN_RECV dump: half a
// storm interval, after which a later cycle takes it, so that the LISTEN
// dump and the counters keep the storm interval however long the dump
// takes. The LISTEN dump itself runs under the sampler's timeout.
func (f *collectFlags) synRecvWait() time.Duration { return f.storm() / 2 }

// config returns the collector's configuration. The flags' values were
// checked as they were parsed; config checks again for flags set by code.
func (f *collectFlags) config() (collector.Config, error) {
	if f.interval < minInterval {
		return collector.Config{}, &flagError{flag: "--collect.interval", msg: fmt.Sprintf("%s is below the minimum of %s", f.interval, minInterval)}
	}
	if f.stormInterval != 0 && f.stormInterval < minInterval {
		return collector.Config{}, &flagError{flag: "--collect.storm-interval", msg: fmt.Sprintf("%s is below the minimum of %s", f.stormInterval, minInterval)}
	}
	if f.synRecvInterval < 0 || f.maxListeners < 0 || f.historySize < 0 {
		return collector.Config{}, errors.New("--collect.syn-recv-interval, --collect.listeners.max and --collect.history must not be negative")
	}
	return collector.Config{
		Root: f.root,
		Listeners: collector.ListenerConfig{
			Include:         f.includePorts,
			Exclude:         f.excludePorts,
			Max:             f.maxListeners,
			SynRecvInterval: f.synRecvInterval,
			SynRecvWait:     f.synRecvWait(),
		},
		NIC: collector.NICConfig{Include: f.nicInclude, Exclude: f.nicExclude},
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
	c := newCLI(stdout, stderr)
	cmd, err := c.parse(args)
	if c.terminated >= 0 { // --help or --version was handled
		if c.terminated != 0 {
			return exitUnknown
		}
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	logger := promslog.New(c.logCfg)
	switch cmd {
	case c.runCmd.FullCommand():
		return runDaemon(c.daemon, logger)
	case c.checkCmd.FullCommand():
		return runCheck(c.check, stdout, stderr)
	case c.rulesCmd.FullCommand():
		return runRules(c.rules, stdout, stderr)
	case c.drainCmd.FullCommand():
		return runDrain(c.drain, stdout, stderr)
	case c.headroomCmd.FullCommand():
		return runHeadroom(c.headroom, stdout, stderr)
	}
	return exitUnknown
}

// cli is the command line: the kingpin application and the values its
// flags fill.
type cli struct {
	app        *kingpin.Application
	terminated int // exit code of --help or --version; -1 when not handled
	logCfg     *promslog.Config

	runCmd, checkCmd, rulesCmd, drainCmd, headroomCmd *kingpin.CmdClause
	daemon                                            *daemonFlags
	check                                             *checkFlags
	rules                                             *rulesFlags
	drain                                             *drainFlags
	headroom                                          *headroomFlags
}

// newCLI declares the commands and their flags.
func newCLI(stdout, stderr io.Writer) *cli {
	app := kingpin.New("stormwatch", "Watches a Linux host's connection queues (conntrack, SYN queue, accept queue) for TCP connection storms and exports them as Prometheus metrics.")
	c := &cli{app: app, terminated: -1}
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	app.Terminate(func(code int) { c.terminated = code })
	app.UsageWriter(stdout)
	app.UsageTemplate(usageTemplate)
	app.UsageFuncs(usageFuncs)
	app.Version(version.Print("stormwatch"))
	app.HelpFlag.Short('h')

	c.logCfg = &promslog.Config{Writer: stderr, Level: promslog.NewLevel(), Format: promslog.NewFormat()}
	wrapFlag(app.Flag(promslogflag.LevelFlagName, promslogflag.LevelFlagHelp).Default("info"),
		c.logCfg.Level, "a log level", promslog.LevelFlagOptions...)
	wrapFlag(app.Flag(promslogflag.FormatFlagName, promslogflag.FormatFlagHelp).Default("logfmt"),
		c.logCfg.Format, "a log format", promslog.FormatFlagOptions...)

	d := &daemonFlags{}
	c.daemon = d
	runCmd := app.Command("run", "Run the daemon (the default command: `stormwatch` alone runs it).").Default()
	c.runCmd = runCmd
	d.collect.register(runCmd)
	d.web = kingpinflag.AddFlags(runCmd, defaultListenAddress)
	urlPathFlag(runCmd.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics"),
		&d.metricsPath, "/metrics")
	intFlag(runCmd.Flag("web.max-requests", "Most concurrent scrapes; more get 503 (0: no limit).").Default("10"),
		&d.maxRequests, 0, "10")
	runCmd.Flag("config", "Config file (rules to load); without it the built-in rules run.").
		PlaceHolder("FILE").StringVar(&d.configFile)
	httpURLsFlag(runCmd.Flag("alertmanager.url", "Alertmanager to send alerts to, e.g. http://127.0.0.1:9093 (repeatable)."),
		&d.alertmanagerURLs, "an Alertmanager URL", "http://127.0.0.1:9093")
	durationFlag(runCmd.Flag("alertmanager.resend-delay", "How often a firing alert is sent again.").Default("1m"),
		&d.alertmanagerResend, 0, true, "1m")
	durationFlag(runCmd.Flag("alertmanager.timeout", "Timeout of one send to Alertmanager.").Default("10s"),
		&d.alertmanagerTimeout, 0, true, "10s")
	runCmd.Flag("alertmanager.http-config-file", "HTTP client configuration towards Alertmanager (TLS, basic auth, bearer token), in Prometheus's http_config format.").
		PlaceHolder("FILE").StringVar(&d.alertmanagerHTTPConfig)
	runCmd.Flag("alertmanager.instance", "instance label of the alerts sent to Alertmanager (default: the first --web.listen-address, an empty or wildcard host replaced by the hostname).").
		StringVar(&d.alertmanagerInstance)
	runCmd.Flag("web.enable-lifecycle", "Enable POST /-/reload (off: reload with SIGHUP).").BoolVar(&d.enableLifecycle)
	ratioFlag(runCmd.Flag("headroom.min", "Least headroom GET /api/v1/headroom calls ok (?min= overrides it).").Default("0.3"),
		&d.headroomMin, "0.3")

	cf := &checkFlags{}
	c.check = cf
	c.checkCmd = app.Command("check", "One-shot diagnostic: sample twice, judge with the rules and print a checklist. "+
		"Exit codes: 0 OK, 1 warning, 2 critical, 3 unknown (nothing could be read, bad flags or config).")
	durationFlag(c.checkCmd.Flag("window", "Time between the two samples, over which counters are rated (0: one sample, no counters).").Default("2s"),
		&cf.window, 0, false, "2s")
	enumFlag(c.checkCmd.Flag("format", "Output format: text or json.").Default("text"),
		&cf.format, "a format", "text", "json")
	portsFlag(c.checkCmd.Flag("port", "Only check listeners on this port (repeatable)."), &cf.ports)
	c.checkCmd.Flag("valkey", "Also check the Valkey/Redis server at host:port (repeatable; servers listening here are found by themselves where their process can be seen).").
		PlaceHolder("ADDR").StringsVar(&cf.valkey)
	c.checkCmd.Flag("quiet", "Print only what is not OK.").Short('q').BoolVar(&cf.quiet)
	c.checkCmd.Flag("config", "Config file, as for run.").PlaceHolder("FILE").StringVar(&cf.configFile)
	dirFlag(c.checkCmd.Flag("path.root", "Directory holding proc/ to read the kernel from.").Default("/"),
		&cf.root, "the directory holding proc/", "/")
	cf.registerClients(c.checkCmd)

	rf := &rulesFlags{}
	c.rules = rf
	c.rulesCmd = app.Command("rules", "Print the effective rules (built-in, or as --config makes them), or validate rules files with --check. Exit 0 valid, 3 invalid.")
	c.rulesCmd.Flag("config", "Config file, as for run.").PlaceHolder("FILE").StringVar(&rf.configFile)
	c.rulesCmd.Flag("check", "Validate the rules files given as arguments instead.").BoolVar(&rf.checkMode)
	c.rulesCmd.Flag("vocabulary", "Print what rule conditions may name instead: every scope, value and function.").BoolVar(&rf.vocabulary)
	c.rulesCmd.Arg("files", "Rules files to validate with --check.").StringsVar(&rf.check)

	c.drain = &drainFlags{}
	c.drainCmd = c.drain.register(app)
	c.headroom = &headroomFlags{}
	c.headroomCmd = c.headroom.register(app)
	return c
}

// parse parses args into the flag values and returns the command chosen.
// Its errors name the flag, the bad value and what is accepted.
func (c *cli) parse(args []string) (string, error) {
	ix := newFlagIndex(c.app)
	args, selected, err := ix.normalizeArgs(args)
	if err != nil {
		return "", err
	}
	cmd, err := c.app.Parse(args)
	if err != nil {
		return "", ix.explainParseError(err, selected)
	}
	if cmd == c.runCmd.FullCommand() {
		// exporter-toolkit's flags, checked as bindWeb and the web server
		// will use them.
		for _, addr := range *c.daemon.web.WebListenAddresses {
			if err := checkListenAddress(addr); err != nil {
				return "", err
			}
		}
		if f := *c.daemon.web.WebConfigFile; f != "" {
			if err := web.Validate(f); err != nil {
				return "", &flagError{flag: "--web.config.file", msg: fmt.Sprintf("%s: %s", quote(f), errtext.OneLine(err, errtext.MaxErrorLen))}
			}
		}
	}
	return cmd, nil
}

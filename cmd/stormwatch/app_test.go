package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/clients"
)

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		args    []string
		code    int
		wantOut string
	}{
		{[]string{"--help"}, exitOK, "connection storms"},
		{[]string{"run", "--help"}, exitOK, "--collect.interval"},
		{[]string{"--version"}, exitOK, "stormwatch, version"},
		{[]string{"--bogus"}, exitUnknown, "--bogus: unknown flag"},
		{[]string{"run", "--collect.interval=1ms"}, exitUnknown, `"1ms" is not a duration ≥ 10ms`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			if code := run(tt.args, &out, &out); code != tt.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tt.code, out.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}

// TestFlagErrors gives every flag of run, check and rules (and the global
// ones) bad values, and the command line misused: each is refused with exit
// 3 and one line that names the flag, the bad value and what is accepted.
func TestFlagErrors(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	badWeb := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(badWeb, []byte("tls_server_config:\n  cert_file: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		// Global flags.
		{[]string{"--log.level=bogus"}, `--log.level: "bogus" is not a log level (debug, info, warn or error)`},
		{[]string{"--log.format=xml"}, `--log.format: "xml" is not a log format (logfmt or json)`},
		{[]string{"--version=maybe"}, `--version: "maybe" is not a boolean (true or false); or write --version or --no-version`},

		// run.
		{[]string{"run", "--collect.interval=x"}, `--collect.interval: "x" is not a duration ≥ 10ms (e.g. 1s)`},
		{[]string{"run", "--collect.interval=5ms"}, `--collect.interval: "5ms" is not a duration ≥ 10ms (e.g. 1s)`},
		{[]string{"run", "--collect.interval", "-1s"}, `--collect.interval: "-1s" is not a duration ≥ 10ms (e.g. 1s)`},
		{[]string{"run", "--collect.listeners.include-ports=70000"}, `--collect.listeners.include-ports: "70000" is not a port (1-65535)`},
		{[]string{"run", "--collect.listeners.include-ports=0"}, `--collect.listeners.include-ports: "0" is not a port (1-65535)`},
		{[]string{"run", "--collect.listeners.include-ports=6379,x"}, `--collect.listeners.include-ports: "x" is not a port (1-65535)`},
		{[]string{"run", "--collect.listeners.include-ports=1,,2"}, `--collect.listeners.include-ports: "1,,2" has an empty item (want ports and ranges like 6379,7000-7010)`},
		{[]string{"run", "--collect.listeners.exclude-ports=10-5"}, `--collect.listeners.exclude-ports: "10-5" is not a port range: it ends below its start (want low-high, e.g. 7000-7010)`},
		{[]string{"run", "--collect.listeners.exclude-ports=1-"}, `--collect.listeners.exclude-ports: "1-" is not a port range (want low-high, each 1-65535, e.g. 7000-7010)`},
		{[]string{"run", "--collect.listeners.max=x"}, `--collect.listeners.max: "x" is not a whole number ≥ 0 (e.g. 500)`},
		{[]string{"run", "--collect.listeners.max", "-1"}, `--collect.listeners.max: "-1" is not a whole number ≥ 0 (e.g. 500)`},
		{[]string{"run", "--collect.syn-recv-interval=-5s"}, `--collect.syn-recv-interval: "-5s" is not a duration ≥ 0 (e.g. 5s)`},
		{[]string{"run", "--collect.history=1.5"}, `--collect.history: "1.5" is not a whole number ≥ 0 (e.g. 900)`},
		{[]string{"run", "--collect.nic.include=eth[0-"}, `--collect.nic.include: "eth[0-" is not a glob pattern: a [...] class unclosed, empty or with a bad range, or a \ at the end (want glob patterns like eth*,ens[0-9]*)`},
		{[]string{"run", "--collect.nic.exclude=veth*,,docker*"}, `--collect.nic.exclude: "veth*,,docker*" has an empty item (want glob patterns like eth*,ens[0-9]*)`},
		{[]string{"run", "--collect.nic.exclude=net/eth0"}, `--collect.nic.exclude: "net/eth0" can match no interface: names have no / (want glob patterns like eth*,ens[0-9]*)`},
		{[]string{"run", "--collect.nic.include"}, `--collect.nic.include: missing value; want glob patterns, e.g. --collect.nic.include=eth*,ens*`},
		{[]string{"run", "--path.root=" + filepath.Join(dir, "nope")}, `--path.root: "` + filepath.Join(dir, "nope") + `" does not exist; want the directory holding proc/ (e.g. /)`},
		{[]string{"run", "--path.root=" + badWeb}, `--path.root: "` + badWeb + `" is not a directory; want the directory holding proc/ (e.g. /)`},
		{[]string{"run", "--web.systemd-socket=maybe"}, `--web.systemd-socket: "maybe" is not a boolean (true or false); or write --web.systemd-socket or --no-web.systemd-socket`},
		{[]string{"run", "--web.listen-address=9955"}, `--web.listen-address: "9955" is not an address to listen on ([host]:port or vsock://:port, e.g. :9955 or 127.0.0.1:9955)`},
		{[]string{"run", "--web.listen-address=:99999"}, `--web.listen-address: ":99999" is not an address to listen on ([host]:port or vsock://:port, e.g. :9955 or 127.0.0.1:9955)`},
		{[]string{"run", "--web.listen-address=vsock://:x"}, `--web.listen-address: "vsock://:x" is not an address to listen on ([host]:port or vsock://:port, e.g. :9955 or 127.0.0.1:9955)`},
		{[]string{"run", "--web.config.file=" + badWeb}, `--web.config.file: "` + badWeb + `": missing one of key or key_file`},
		{[]string{"run", "--web.telemetry-path=metrics"}, `--web.telemetry-path: "metrics" is not a URL path starting with / (e.g. /metrics)`},
		{[]string{"run", "--web.telemetry-path=GET /x"}, `--web.telemetry-path: "GET /x" is not a URL path starting with / (e.g. /metrics)`},
		{[]string{"run", "--web.telemetry-path=/{x}"}, `--web.telemetry-path: "/{x}" is not a URL path starting with / (e.g. /metrics)`},
		{[]string{"run", "--web.max-requests=-5"}, `--web.max-requests: "-5" is not a whole number ≥ 0 (e.g. 10)`},
		{[]string{"run", "--config"}, `--config: missing value; write --config=FILE`},
		{[]string{"run", "--alertmanager.url=::bad"}, `--alertmanager.url: "::bad" is not an Alertmanager URL (http:// or https:// and a host) (e.g. http://127.0.0.1:9093)`},
		{[]string{"run", "--alertmanager.url=127.0.0.1:9093"}, `--alertmanager.url: "127.0.0.1:9093" is not an Alertmanager URL (http:// or https:// and a host) (e.g. http://127.0.0.1:9093)`},
		{[]string{"run", "--alertmanager.resend-delay=0"}, `--alertmanager.resend-delay: "0" is not a duration > 0 (e.g. 1m)`},
		{[]string{"run", "--alertmanager.timeout", "-1s"}, `--alertmanager.timeout: "-1s" is not a duration > 0 (e.g. 10s)`},

		// check.
		{[]string{"check", "--window", "-1s"}, `--window: "-1s" is not a duration ≥ 0 (e.g. 2s)`},
		{[]string{"check", "--window=-1s"}, `--window: "-1s" is not a duration ≥ 0 (e.g. 2s)`},
		{[]string{"check", "--window=abc"}, `--window: "abc" is not a duration ≥ 0 (e.g. 2s)`},
		{[]string{"check", "--window"}, `--window: missing value; want a duration ≥ 0, e.g. --window=2s`},
		{[]string{"check", "--format=xml"}, `--format: "xml" is not a format (text or json)`},
		{[]string{"check", "--clients.prefix4=33"}, `--clients.prefix4: "33" is not a prefix length from 0 to 32 (e.g. 24)`},
		{[]string{"check", "--clients.prefix4", "-1"}, `--clients.prefix4: "-1" is not a prefix length from 0 to 32 (e.g. 24)`},
		{[]string{"check", "--clients.prefix6=/64"}, `--clients.prefix6: "/64" is not a prefix length from 0 to 128 (e.g. 64)`},
		{[]string{"check", "--clients.prefix6=129"}, `--clients.prefix6: "129" is not a prefix length from 0 to 128 (e.g. 64)`},
		{[]string{"check", "--clients.top=ten"}, `--clients.top: "ten" is not a number of prefixes from 0 to 1000 (e.g. 10)`},
		{[]string{"check", "--clients.top=1001"}, `--clients.top: "1001" is not a number of prefixes from 0 to 1000 (e.g. 10)`},
		{[]string{"check", "--clients.top"}, `--clients.top: missing value; want a number of prefixes from 0 to 1000, e.g. --clients.top=10`},
		{[]string{"check", "--port", "abc"}, `--port: "abc" is not a port (1-65535)`},
		{[]string{"check", "--port=0"}, `--port: "0" is not a port (1-65535)`},
		{[]string{"check", "--port", "6379", "--port=70000"}, `--port: "70000" is not a port (1-65535)`},
		{[]string{"check", "--port", "-1"}, `--port: "-1" is not a port (1-65535)`},
		{[]string{"check", "--quiet=maybe"}, `--quiet: "maybe" is not a boolean (true or false); or write --quiet or --no-quiet`},
		{[]string{"check", "--config", "-x.yml"}, `--config: missing value: "-x.yml" starts with "-", so it is read as a flag; if it is the value, write --config=-x.yml`},
		{[]string{"check", "--path.root=" + fifo}, `--path.root: "` + fifo + `" is not a directory; want the directory holding proc/ (e.g. /)`},

		// rules.
		{[]string{"rules", "--config"}, `--config: missing value; write --config=FILE`},
		{[]string{"rules", "--check=maybe", "x.yml"}, `--check: "maybe" is not a boolean (true or false); or write --check or --no-check`},

		// The command line misused.
		{[]string{"check", "--windw=1s"}, `--windw: unknown flag; did you mean --window?`},
		{[]string{"--window=1s"}, `--window: not a flag of run (the default command); it is a flag of check (stormwatch check --window=…)`},
		{[]string{"rules", "--port=1"}, `--port: not a flag of rules; it is a flag of check, drain or headroom (stormwatch check --port=…)`},
		{[]string{"--bogus"}, `--bogus: unknown flag (stormwatch run --help lists them)`},
		{[]string{"check", "-x"}, `-x: unknown flag (stormwatch check --help lists them)`},
		{[]string{"check", "--window=1s", "--window=2s"}, `--window: given more than once; give it once`},
		{[]string{"chek"}, `"chek" is not a command; did you mean check? (commands: run, check, rules, drain, headroom)`},
		{[]string{"check", "now"}, `unexpected argument "now": check takes no arguments (commands: run, check, rules, drain, headroom; stormwatch --help)`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != exitUnknown {
				t.Errorf("exit code %d, want %d", code, exitUnknown)
			}
			if diff := cmp.Diff("stormwatch: "+tt.want+"\n", stderr.String()); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

// TestFlagErrorsFromFiles covers the flags whose value is a file read by
// the command: the error names the file and what is wrong with it.
func TestFlagErrorsFromFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yml")
	tests := []struct {
		args   []string
		stdout string
		stderr string
	}{
		{[]string{"rules", "--config=" + missing}, "", "stormwatch: config file " + missing + ": no such file or directory\n"},
		{[]string{"rules", "--config=" + fifo}, "", "stormwatch: config file " + fifo + ": not a regular file: it is a FIFO (named pipe)\n"},
		{[]string{"rules", "--config=" + dir}, "", "stormwatch: config file " + dir + ": not a regular file: it is a directory\n"},
		{[]string{"check", "--window=0", "--config=" + missing}, "", "stormwatch: config file " + missing + ": no such file or directory\n"},
		{[]string{"rules", "--check", fifo}, "", fifo + ": INVALID\n" + fifo + ": not a regular file: it is a FIFO (named pipe)\n"},
		{[]string{"rules", "--check", "/dev/null"}, "", "/dev/null: INVALID\n/dev/null: not a regular file: it is a character device\n"},
		{[]string{"rules", "--check", missing}, "", missing + ": INVALID\n" + missing + ": no such file or directory\n"},
		{[]string{"rules", "--check"}, "", "stormwatch: rules files are validated with --check FILE... (try --help)\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := run(tt.args, &stdout, &stderr)
			if code != exitUnknown {
				t.Errorf("exit code %d, want %d", code, exitUnknown)
			}
			if diff := cmp.Diff(tt.stderr, stderr.String()); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.stdout, stdout.String()); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			t.Logf("answered in %v", time.Since(start))
		})
	}
}

// TestFlagValues parses good values into the flags.
func TestFlagValues(t *testing.T) {
	c := newCLI(&bytes.Buffer{}, &bytes.Buffer{})
	cmd, err := c.parse([]string{"run", "--collect.interval", "250ms", "--collect.listeners.include-ports=6379,7000-7010",
		"--collect.nic.include=ens*, eth[0-9]", "--collect.nic.exclude", "veth*",
		"--collect.listeners.exclude-ports", "7005", "--collect.syn-recv-interval=0", "--collect.listeners.max=0",
		"--alertmanager.url=http://a:9093", "--alertmanager.url", "https://b/am", "--alertmanager.resend-delay=1d",
		"--web.listen-address=127.0.0.1:0", "--web.listen-address=[::1]:http", "--web.telemetry-path=/x/metrics", "--log.level=debug"})
	if err != nil {
		t.Fatal(err)
	}
	if cmd != "run" {
		t.Errorf("command %q", cmd)
	}
	d := c.daemon
	if d.collect.interval != 250*time.Millisecond || d.collect.synRecvInterval != 0 || d.collect.maxListeners != 0 ||
		d.alertmanagerResend != 24*time.Hour || d.metricsPath != "/x/metrics" {
		t.Errorf("flags: %+v", d)
	}
	if diff := cmp.Diff([]collector.PortRange{{Lo: 6379, Hi: 6379}, {Lo: 7000, Hi: 7010}}, d.collect.includePorts); diff != "" {
		t.Errorf("include-ports (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"http://a:9093", "https://b/am"}, d.alertmanagerURLs); diff != "" {
		t.Errorf("alertmanager.url (-want +got):\n%s", diff)
	}
	cfg, err := d.collect.config()
	if err != nil {
		t.Errorf("config(): %v", err)
	}
	if diff := cmp.Diff(collector.NICConfig{Include: []string{"ens*", "eth[0-9]"}, Exclude: []string{"veth*"}}, cfg.NIC); diff != "" {
		t.Errorf("nic patterns (-want +got):\n%s", diff)
	}

	c = newCLI(&bytes.Buffer{}, &bytes.Buffer{})
	if _, err := c.parse([]string{"check", "--port", "6379", "--port=6380", "--quiet=true", "--window", "0", "--format=json"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint16{6379, 6380}, c.check.ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	if !c.check.quiet || c.check.window != 0 || c.check.format != "json" {
		t.Errorf("check flags: %+v", c.check)
	}
	if want := clients.DefaultConfig(); c.check.clients != want {
		t.Errorf("clients defaults %+v, want %+v", c.check.clients, want)
	}
	c = newCLI(&bytes.Buffer{}, &bytes.Buffer{})
	if _, err := c.parse([]string{"check", "--clients.top=3", "--clients.prefix4", "16", "--clients.prefix6=48"}); err != nil {
		t.Fatal(err)
	}
	want := clients.DefaultConfig()
	want.Top, want.Prefix4, want.Prefix6 = 3, 16, 48
	if c.check.clients != want {
		t.Errorf("clients flags %+v, want %+v", c.check.clients, want)
	}
	c = newCLI(&bytes.Buffer{}, &bytes.Buffer{})
	if _, err := c.parse([]string{"check", "--quiet=false"}); err != nil {
		t.Fatal(err)
	}
	if c.check.quiet {
		t.Error("--quiet=false set quiet")
	}
}

// TestHelp: `stormwatch --help` shows the daemon's flags (stormwatch alone
// runs it) and says where the other commands' flags are.
func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"--help"}, []string{"Flags of run, the default command", "--collect.interval=1s", "--web.listen-address", "stormwatch check --help, stormwatch rules --help", "man stormwatch"}, []string{"--window"}},
		{[]string{"help"}, []string{"Flags of run, the default command", "--collect.interval=1s"}, nil},
		{[]string{"run", "--help"}, []string{"usage: stormwatch run", "--collect.interval=1s", "--alertmanager.url=URL ..."}, []string{"Flags of run"}},
		{[]string{"check", "--help"}, []string{"usage: stormwatch check", "--window=2s", "--port=PORT ...", "--format=text"}, []string{"--collect.interval"}},
		{[]string{"rules", "--help"}, []string{"usage: stormwatch rules", "--[no-]check", "[<files>...]"}, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			if code := run(tt.args, &out, &out); code != exitOK {
				t.Errorf("exit %d", code)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("lacks %q:\n%s", w, out.String())
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out.String(), n) {
					t.Errorf("shows %q:\n%s", n, out.String())
				}
			}
		})
	}
}

func TestParsePortRanges(t *testing.T) {
	got, err := parsePortRanges(" 6379, 7000-7010 ,1")
	if err != nil {
		t.Fatal(err)
	}
	want := []collector.PortRange{{Lo: 6379, Hi: 6379}, {Lo: 7000, Hi: 7010}, {Lo: 1, Hi: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"0", "x", "1-", "-5", "65536", "5-1", "1,,2"} {
		if _, err := parsePortRanges(bad); err == nil {
			t.Errorf("parsePortRanges(%q) accepted", bad)
		}
	}
}

func TestNearest(t *testing.T) {
	fields := []string{"default_rules", "disabled_rules", "rule_files"}
	for name, want := range map[string]string{
		"disabled_rule":  "disabled_rules",
		"disable_rules":  "disabled_rules",
		"rules_files":    "rule_files",
		"rule-files":     "rule_files",
		"RuleFiles":      "rule_files",
		"defualt_rules":  "default_rules",
		"valkey":         "",
		"rules":          "",
		"x":              "",
		"default_rules_": "default_rules",
	} {
		if got := nearest(name, fields); got != want {
			t.Errorf("nearest(%q) = %q, want %q", name, got, want)
		}
	}
}

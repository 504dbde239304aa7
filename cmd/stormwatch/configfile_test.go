package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/promslog"
	"gopkg.in/yaml.v3"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/internal/fileread"
)

// TestConfigInvalid loads each testdata/config/invalid-*.yml and compares
// the error with its exact expected text: every problem, with its
// file:line:col.
func TestConfigInvalid(t *testing.T) {
	tests := map[string][]string{
		"invalid-typo.yml": {`3:1: unknown field "disabled_rule"; did you mean "disabled_rules"?`},
		"invalid-bool.yml": {`1:16: default_rules: "maybe" is not a boolean (true or false)`},
		"invalid-list-scalar.yml": {
			`1:13: rule_files: "rules/*.yml" is not a list; write ["rules/*.yml"]`,
		},
		"invalid-list-item.yml":     {`3:5: disabled_rules[1]: want a string, not a mapping`},
		"invalid-repeated.yml":      {`2:1: default_rules: repeated (first at 1:1)`},
		"invalid-two-documents.yml": {`2:1: only one YAML document is allowed`},
		"invalid-syntax.yml":        {`1: syntax error: did not find expected ',' or ']'`},
		"invalid-not-mapping.yml": {
			`1:1: want a mapping with the fields default_rules, disabled_rules, rule_files, valkey, not a list`,
		},
		"invalid-rules-inline.yml": {
			"1:1: unknown field \"rules\": rules go in a rules file of their own, named in rule_files (`stormwatch rules --check FILE` validates one)",
		},
		"invalid-unknown-rule.yml": {
			`1:18: disabled_rules[0]: no built-in rule is named "SyncookieDisabled"; did you mean "SyncookiesDisabled"?`,
			"1:37: disabled_rules[1]: no built-in rule is named \"NoSuchThing\" (`stormwatch rules` lists them)",
		},
		"invalid-no-match.yml": {
			`3:5: rule_files[1]: "nope/*.yml" matches no file (looked for testdata/config/nope/*.yml)`,
		},
		"invalid-disabled-without-defaults.yml": {
			`2:17: disabled_rules: is set but default_rules is false: there are no built-in rules to leave out`,
		},
		"invalid-merge.yml": {
			`1:1: unknown field "defaults" (known fields: default_rules, disabled_rules, rule_files, valkey)`,
			`2:1: merge keys (<<) are not supported`,
		},
		"invalid-many.yml": {
			`2:16: default_rules: "1.5" is not a boolean (true or false)`,
			`3:17: disabled_rules: "SyncookiesDisabled" is not a list; write ["SyncookiesDisabled"]`,
			`4:1: unknown field "rule_file"; did you mean "rule_files"?`,
			`5:1: unknown field "redis" (known fields: default_rules, disabled_rules, rule_files, valkey)`,
		},
	}
	files, err := filepath.Glob("testdata/config/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := tests[filepath.Base(f)]; !ok && filepath.Base(f) != "invalid-bad-rule-file.yml" {
			t.Errorf("%s has no expected message", f)
		}
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "config", name)
			rules, err := loadRules(path)
			if rules != nil || err == nil {
				t.Fatalf("loaded %d rules from an invalid file", len(rules))
			}
			var lines []string
			for _, w := range want {
				lines = append(lines, path+":"+w)
			}
			if diff := cmp.Diff(strings.Join(lines, "\n"), err.Error()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// A rules file's problems come with the rules file's own positions.
	t.Run("invalid-bad-rule-file.yml", func(t *testing.T) {
		_, err := loadRules("testdata/config/invalid-bad-rule-file.yml")
		want := `testdata/config/bad-rules/bad.yml:3:5: rule "A": unknown field "expr": use "condition"` + "\n" +
			`testdata/config/bad-rules/bad.yml:4:15: rule "A": severity "page": must be info, warning or critical`
		if err == nil {
			t.Fatal("loaded")
		}
		if diff := cmp.Diff(want, err.Error()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if !errors.Is(err, alerts.ErrInvalidRules) {
			t.Errorf("error does not match alerts.ErrInvalidRules")
		}
	})
}

func TestConfigValid(t *testing.T) {
	rules, err := loadRules("testdata/config/valid.yml")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range alerts.DefaultRules() {
		if r.Name != "BacklogCappedBySomaxconn" {
			want = append(want, r.Name+"/"+string(r.Severity))
		}
	}
	want = append(want, "ValkeyAcceptQueueBusy/warning")
	if diff := cmp.Diff(want, names(rules)); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
}

// TestConfigFileKinds points --config and rule_files at what is not a
// regular file, and at files over the limits: each fails at once (never by
// a timeout, never hanging), naming the path and what it is.
func TestConfigFileKinds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	rulesDir := filepath.Join(dir, "rules.d")
	if err := os.MkdirAll(filepath.Join(rulesDir, "sub.yml"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(rulesDir, "pipe.yml"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, rulesDir, "ok.yml", customRules)
	sock := filepath.Join(dir, "sock.yml")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// 50 MB, sparse: failing on its size reads none of it.
	big := filepath.Join(dir, "big.yml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(50 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	bigConfig := filepath.Join(dir, "big-config.yml")
	if err := os.WriteFile(bigConfig, bytes.Repeat([]byte("# padding\n"), 110_000), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		config string // the --config file; "" writes one holding body
		body   string
		want   string
		is     error
	}{
		{name: "config is a FIFO", config: fifo,
			want: "config file " + fifo + ": not a regular file: it is a FIFO (named pipe)", is: fileread.ErrNotRegular},
		{name: "config is a directory", config: dir,
			want: "config file " + dir + ": not a regular file: it is a directory", is: fileread.ErrNotRegular},
		{name: "config is a device", config: "/dev/null",
			want: "config file /dev/null: not a regular file: it is a character device", is: fileread.ErrNotRegular},
		{name: "config is a socket", config: sock,
			want: "config file " + sock + ": not a regular file: it is a socket", is: fileread.ErrNotRegular},
		{name: "config over 1 MiB", config: bigConfig,
			want: "config file " + bigConfig + ": file too large: 1,100,000 bytes, over the limit of 1 MiB", is: fileread.ErrTooLarge},
		{name: "rules glob matching a FIFO and a directory", body: "rule_files: [rules.d/*.yml]\n",
			want: "CONFIG:1:14: rule_files[0]: " + filepath.Join(rulesDir, "pipe.yml") + ": not a regular file: it is a FIFO (named pipe)\n" +
				"CONFIG:1:14: rule_files[0]: " + filepath.Join(rulesDir, "sub.yml") + ": not a regular file: it is a directory", is: fileread.ErrNotRegular},
		{name: "rules file over 4 MiB", body: "rule_files: [big.yml]\n",
			want: "CONFIG:1:14: rule_files[0]: " + big + ": file too large: 52,428,800 bytes, over the limit of 4 MiB", is: fileread.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.config
			if path == "" {
				path = writeFile(t, dir, "stormwatch.yml", tt.body)
			}
			done := make(chan error, 1)
			start := time.Now()
			go func() { _, err := loadRules(path); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("loadRules still blocked after 30s")
			}
			t.Logf("failed in %v", time.Since(start))
			if err == nil {
				t.Fatal("loaded")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error does not match %v", tt.is)
			}
			if errors.Is(err, fileread.ErrTimeout) {
				t.Errorf("failed by the timeout, not at once")
			}
			want := strings.ReplaceAll(tt.want, "CONFIG", path)
			if diff := cmp.Diff(want, err.Error()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestConfigErrorsCapped: 10,000 mistakes give ten lines and a count, in
// the config file and in the rules files it names.
func TestConfigErrorsCapped(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&b, "field_%d: x\n", i)
	}
	cfg := writeFile(t, dir, "many-fields.yml", b.String())
	_, err := loadRules(cfg)
	if err == nil {
		t.Fatal("loaded")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 11 || lines[10] != "… and 9,990 more" {
		t.Errorf("%d lines, last %q; want 11, the last \"… and 9,990 more\"", len(lines), lines[len(lines)-1])
	}
	if want := cfg + `:1:1: unknown field "field_0" (known fields: default_rules, disabled_rules, rule_files, valkey)`; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}

	b.Reset()
	b.WriteString("rules:\n")
	for i := range 10000 {
		fmt.Fprintf(&b, "  - name: R%d\n    expr: up\n", i)
	}
	writeFile(t, dir, "bad-rules.yml", b.String())
	cfg = writeFile(t, dir, "stormwatch.yml", "rule_files: [bad-rules.yml]\n")
	_, err = loadRules(cfg)
	if err == nil {
		t.Fatal("loaded")
	}
	lines = strings.Split(err.Error(), "\n")
	if len(lines) != 11 || lines[10] != "… and 9,990 more" {
		t.Errorf("%d lines, last %q; want 11, the last \"… and 9,990 more\"", len(lines), lines[len(lines)-1])
	}
	if want := filepath.Join(dir, "bad-rules.yml") + `:3:5: rule "R0": unknown field "expr": use "condition"`; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
}

// TestOneLineLogged logs a config error the way the daemon does, with the
// logfmt handler it uses: one line, no escaped newline inside, the count
// of what is not shown.
func TestOneLineLogged(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := range 25 {
		fmt.Fprintf(&b, "field_%d: x\n", i)
	}
	cfg := writeFile(t, dir, "stormwatch.yml", b.String())
	_, err := loadRules(cfg)
	if err == nil {
		t.Fatal("loaded")
	}
	var out bytes.Buffer
	logger := promslog.New(&promslog.Config{Writer: &out})
	logger.Error("reload failed: keeping the running rules", "file", cfg, "err", oneLine(err))
	line := out.String()
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Errorf("not one line:\n%s", line)
	}
	if strings.Contains(line, `\n`) {
		t.Errorf(`log line holds a literal \n: %s`, line)
	}
	for _, want := range []string{
		`:1:1: unknown field \"field_0\" (known fields: default_rules, disabled_rules, rule_files, valkey); `,
		`; … and 15 more"`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s:\n%s", want, line)
		}
	}
}

// address is a value with rules of its own, as a new section's field
// would have: its error is reported at its node.
type address string

func (a *address) UnmarshalYAML(n *yaml.Node) error {
	if _, _, err := net.SplitHostPort(n.Value); err != nil {
		return fmt.Errorf("%q is not host:port", n.Value)
	}
	*a = address(n.Value)
	return nil
}

// sectionConfig is fileConfig with a new section: one field.
type sectionConfig struct {
	Valkey struct {
		Targets []struct {
			Address address       `yaml:"address"`
			Timeout time.Duration `yaml:"timeout"`
			Labels  map[string]string
		} `yaml:"targets"`
		Discover *bool `yaml:"discover"`
	} `yaml:"valkey"`
	RuleFiles []string `yaml:"rule_files"`
}

// TestDecodeNewSection shows a new section decoded strictly: nested
// structs, lists of structs, durations, maps, a custom type — each
// problem with its line:col and field path.
func TestDecodeNewSection(t *testing.T) {
	good := `valkey:
  discover: true
  targets:
    - address: 127.0.0.1:6379
      timeout: 2s
      labels: {shard: a}
    - address: "[::1]:6380"
rule_files: [x.yml]
`
	var c sectionConfig
	c.Valkey.Targets = nil
	doc := decodeConfig("good.yml", []byte(good), &c)
	if err := doc.errs.err(); err != nil {
		t.Fatal(err)
	}
	if len(c.Valkey.Targets) != 2 || c.Valkey.Targets[0].Address != "127.0.0.1:6379" || c.Valkey.Targets[0].Timeout != 2*time.Second ||
		c.Valkey.Targets[0].Labels["shard"] != "a" || c.Valkey.Targets[1].Address != "[::1]:6380" ||
		c.Valkey.Discover == nil || !*c.Valkey.Discover || len(c.RuleFiles) != 1 {
		t.Errorf("decoded %+v", c)
	}
	if p := doc.pos["valkey.targets[1].address"]; p != (position{7, 16}) {
		t.Errorf("position of valkey.targets[1].address = %v", p)
	}

	bad := `valkey:
  discover: sometimes
  target: []
  targets:
    - address: localhost
      timeout: soon
    - adress: 127.0.0.1:6379
      labels: [a]
`
	doc = decodeConfig("bad.yml", []byte(bad), &sectionConfig{})
	want := strings.Join([]string{
		`bad.yml:2:13: valkey.discover: "sometimes" is not a boolean (true or false)`,
		`bad.yml:3:3: valkey: unknown field "target"; did you mean "targets"?`,
		`bad.yml:5:16: valkey.targets[0].address: "localhost" is not host:port`,
		`bad.yml:6:16: valkey.targets[0].timeout: "soon" is not a duration (e.g. 30s)`,
		`bad.yml:7:7: valkey.targets[1]: unknown field "adress"; did you mean "address"?`,
		`bad.yml:8:15: valkey.targets[1].labels: want a mapping of names to strings, not a list`,
	}, "\n")
	err := doc.errs.err()
	if err == nil {
		t.Fatal("decoded")
	}
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestDecodeAliasBomb: aliases that expand a 1,000-label target 200 times
// (200,000 nodes from a file of 20 KB) fail on the node budget instead of
// being walked.
func TestDecodeAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("valkey:\n  targets:\n    - &t {address: \"a:1\", labels: {")
	for i := range 1000 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "k%d: v", i)
	}
	b.WriteString("}}\n")
	for range 200 {
		b.WriteString("    - *t\n")
	}
	start := time.Now()
	doc := decodeConfig("bomb.yml", []byte(b.String()), &sectionConfig{})
	t.Logf("%d bytes decoded in %v", b.Len(), time.Since(start))
	want := `bomb.yml:3:6205: valkey.targets[99].labels.k697: too many YAML nodes (over 100,000, aliases expanded)`
	err := doc.errs.err()
	if err == nil {
		t.Fatal("decoded")
	}
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// FuzzDecodeConfig: any input decodes or fails with positioned errors,
// never panics; errors stay within their length cap.
func FuzzDecodeConfig(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/config/*.yml")
	seeds = append(seeds, "../../deploy/stormwatch.yml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("valkey:\n  targets:\n    - address: a:1\n      timeout: 1s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return // over the fuzz size cap: larger inputs only slow the fuzzer
		}
		doc := decodeConfig("fuzz.yml", data, &sectionConfig{})
		for _, e := range doc.errs.list {
			var ce *configError
			if !errors.As(e, &ce) || ce.File != "fuzz.yml" {
				t.Errorf("error %v is not a configError of fuzz.yml", e)
			}
		}
		if err := doc.errs.err(); err != nil {
			if n := len(err.Error()); n > 12*1024 {
				t.Errorf("error text of %d bytes", n)
			}
		}
	})
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/collector"
)

// FuzzLoadConfig decodes a config file as the daemon does (readConfig,
// then loadRules with the rule files it names): it either loads rules or
// returns an error naming the file at fault, never both, and never panics. Rule
// file patterns are followed only inside the file's own directory, which
// holds one valid rules file.
func FuzzLoadConfig(f *testing.F) {
	shipped, err := os.ReadFile("../../deploy/stormwatch.yml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(shipped),
		"",
		"default_rules: false\nrule_files: [rules.yml]\n",
		"disabled_rules: [ConntrackTableNearFull, NoSuchRule]\n",
		"default_rules: false\ndisabled_rules: [X]\n",
		"rule_files: ['*.yml', '[']\n",
		"rule_files: [rules.yml, rules.yml]\n",
		"unknown_field: 1\n",
		"default_rules: maybe\n",
		"- a\n- b\n",
		"{{{",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			return // over the 16 KiB size cap: larger inputs only slow the fuzzer
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(customRules), 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "stormwatch.yml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := readConfig(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("readConfig error does not name the file: %v", err)
			}
			return
		}
		for _, p := range cfg.RuleFiles {
			if filepath.IsAbs(p) || strings.Contains(p, "..") {
				return // would read files outside the test's directory
			}
		}
		rules, err := loadRules(path)
		switch {
		case err != nil && rules != nil:
			t.Fatalf("loadRules returned rules and an error: %v", err)
		case err != nil && !strings.Contains(err.Error(), dir):
			// The config file, a rules file or what a pattern matched.
			t.Fatalf("loadRules error names no file it read: %v", err)
		}
	})
}

// FuzzParsePortRanges checks parsePortRanges (the --collect.listeners
// port flags): a result holds valid ranges and survives formatting and
// parsing again; an error says which part was wrong.
func FuzzParsePortRanges(f *testing.F) {
	for _, s := range []string{"6379", "6379,7000-7010", " 1 , 65535 ", "0", "65536", "10-1", "1-2-3", ",", "", "a-b", "-5", "5-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4<<10 {
			return // over the 4 KiB size cap: larger inputs only slow the fuzzer
		}
		ranges, err := parsePortRanges(s)
		if err != nil {
			if ranges != nil {
				t.Fatalf("parsePortRanges(%q) = %v and error %v", s, ranges, err)
			}
			if !strings.Contains(err.Error(), "port") {
				t.Fatalf("parsePortRanges(%q) error does not say it is about a port: %v", s, err)
			}
			return
		}
		var parts []string
		for _, r := range ranges {
			if r.Lo == 0 || r.Lo > r.Hi {
				t.Fatalf("parsePortRanges(%q) gave the invalid range %+v", s, r)
			}
			parts = append(parts, r.String())
		}
		again, err := parsePortRanges(strings.Join(parts, ","))
		if err != nil {
			t.Fatalf("parsePortRanges(%q) = %v, whose text %q does not parse: %v", s, ranges, strings.Join(parts, ","), err)
		}
		if diff := cmp.Diff(ranges, again, cmp.Comparer(func(a, b collector.PortRange) bool { return a == b })); diff != "" {
			t.Fatalf("parsePortRanges(%q) does not survive a round trip (-first +again):\n%s", s, diff)
		}
	})
}

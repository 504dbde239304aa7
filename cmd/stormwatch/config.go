package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/fileread"
)

// Size limits of the files the daemon reads (README, Alerts section). A
// file over its limit is refused on its size, unread.
const (
	// maxConfigFileSize is the most the --config file may hold: it is a
	// few lines naming rules files.
	maxConfigFileSize = 1 << 20
)

// fileConfig is the --config file. Every field is optional; a field left
// out (or written with no value) keeps its default. See
// deploy/stormwatch.yml for the documented example.
//
// A new section is one field here, with its yaml tag: decodeConfig checks
// it strictly (unknown fields, types) and reports problems with their
// line:col. A value with rules of its own (an address, a duration ≥ 0)
// gets a type with UnmarshalYAML, whose error is reported at its node;
// checks across fields go in loadConfig with doc.errorf(path, …), which
// finds the field's position.
type fileConfig struct {
	// DefaultRules loads the built-in connection-storm checklist (default
	// true).
	DefaultRules *bool `yaml:"default_rules"`
	// DisabledRules names built-in rules to leave out.
	DisabledRules []string `yaml:"disabled_rules"`
	// RuleFiles are more rules files (glob patterns, relative to the config
	// file's directory). A rule named like a built-in one replaces every
	// built-in rule of that name.
	RuleFiles []string `yaml:"rule_files"`
	// Valkey says which Valkey/Redis servers to poll, and how.
	Valkey valkeyFileConfig `yaml:"valkey"`
}

// config is what a config file (or none) makes the daemon run.
type config struct {
	rules  []*alerts.Rule
	valkey collector.ValkeyConfig
}

// fieldHints answers the mistakes a nearest-name suggestion would not.
func (*fileConfig) fieldHints() map[string]string {
	const rulesElsewhere = "rules go in a rules file of their own, named in rule_files (`stormwatch rules --check FILE` validates one)"
	return map[string]string{
		"rules":  rulesElsewhere,
		"groups": rulesElsewhere,
	}
}

// defaultConfig is the configuration without a file, and what a file's
// fields start from: defaults first, then the file, then the checks.
func defaultConfig() fileConfig { return fileConfig{} }

// readConfig reads and strictly decodes the config file at path. The
// configDoc it returns holds the fields' positions and the problems found
// so far; err is set when the file could not be read or decoded.
func readConfig(path string) (fileConfig, *configDoc, error) {
	c := defaultConfig()
	data, err := fileread.Read(path, maxConfigFileSize)
	if err != nil {
		return c, nil, fmt.Errorf("config file %w", err)
	}
	doc := decodeConfig(path, data, &c)
	return c, doc, doc.errs.err()
}

// loadRules returns the effective rules: the built-in ones, unless the
// config file at path (may be empty: no file) turns them off or replaces
// them, plus the rules of the files it names. Every problem is reported,
// with its file:line:col (the first errtext.MaxErrors of them in the
// error's text, which counts the rest).
func loadRules(path string) ([]*alerts.Rule, error) {
	c, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	return c.rules, nil
}

// loadConfig returns the configuration the file at path (may be empty: no
// file, the defaults) makes. Every problem is reported.
func loadConfig(path string) (*config, error) {
	if path == "" {
		return &config{rules: alerts.DefaultRules(), valkey: collector.ValkeyConfig{Discover: true}}, nil
	}
	cfg, doc, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	vk := valkeyConfig(cfg.Valkey, filepath.Dir(path), doc)
	errs := &doc.errs
	var extra []*alerts.Rule
	for i, pattern := range cfg.RuleFiles {
		field := fmt.Sprintf("rule_files[%d]", i)
		resolved := pattern
		if !filepath.IsAbs(resolved) {
			resolved = filepath.Join(filepath.Dir(path), resolved)
		}
		files, err := filepath.Glob(resolved)
		if err != nil {
			doc.errorf(field, "%s is not a glob pattern: %v", quote(pattern), err)
			continue
		}
		if len(files) == 0 {
			doc.errorf(field, "%s matches no file (looked for %s)", quote(pattern), resolved)
		}
		for _, f := range files {
			rules, err := loadRulesFile(f)
			var es alerts.Errors
			switch {
			case errors.As(err, &es):
				for _, e := range es {
					errs.add(e)
				}
				continue
			case err != nil:
				doc.errorf(field, "%w", err)
				continue
			}
			extra = append(extra, rules...)
		}
	}
	var rules []*alerts.Rule
	if cfg.DefaultRules == nil || *cfg.DefaultRules {
		builtin := alerts.DefaultRules()
		var names []string
		for _, r := range builtin {
			if !slices.Contains(names, r.Name) {
				names = append(names, r.Name)
			}
		}
		for i, name := range cfg.DisabledRules {
			if !slices.Contains(names, name) {
				msg := fmt.Sprintf("no built-in rule is named %s", quote(name))
				if near := nearest(name, names); near != "" {
					msg += fmt.Sprintf("; did you mean %q?", near)
				} else {
					msg += " (`stormwatch rules` lists them)"
				}
				doc.errorf(fmt.Sprintf("disabled_rules[%d]", i), "%s", msg)
			}
		}
		for _, r := range builtin {
			replaced := slices.ContainsFunc(extra, func(x *alerts.Rule) bool { return x.Name == r.Name })
			if !replaced && !slices.Contains(cfg.DisabledRules, r.Name) {
				rules = append(rules, r)
			}
		}
	} else if len(cfg.DisabledRules) > 0 {
		doc.errorf("disabled_rules", "is set but default_rules is false: there are no built-in rules to leave out")
	}
	rules = append(rules, extra...)
	seen := map[string]bool{}
	for _, r := range rules {
		k := r.Key()
		if seen[k] {
			doc.errorf("rule_files", "rule %q with severity %s and labels %v is defined twice across the rule files", r.Name, r.Severity, r.Labels)
		}
		seen[k] = true
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return &config{rules: rules, valkey: vk}, nil
}

// loadRulesFile loads the rules file at path (alerts.LoadFile: regular
// files only, at most alerts.MaxFileSize, with a timeout). Its problems
// are alerts.Errors with path as their file.
func loadRulesFile(path string) ([]*alerts.Rule, error) { return alerts.LoadFile(path) }

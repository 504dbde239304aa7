package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/stormwatch/stormwatch/alerts"
)

// fileConfig is the --config file. Every field is optional; a missing file
// option means its default. See deploy/stormwatch.yml for the documented
// example.
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
}

// readConfig reads and strictly decodes the config file at path.
func readConfig(path string) (fileConfig, error) {
	var c fileConfig
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// loadRules returns the effective rules: the built-in ones, unless the
// config file at path (may be empty: no file) turns them off or replaces
// them, plus the rules of the files it names. Every problem is reported.
func loadRules(path string) ([]*alerts.Rule, error) {
	if path == "" {
		return alerts.DefaultRules(), nil
	}
	cfg, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	var errs []error
	var extra []*alerts.Rule
	for _, pattern := range cfg.RuleFiles {
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(filepath.Dir(path), pattern)
		}
		files, err := filepath.Glob(pattern)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: rule_files: %q: %w", path, pattern, err))
			continue
		}
		if len(files) == 0 {
			errs = append(errs, fmt.Errorf("%s: rule_files: %q matches no file", path, pattern))
		}
		for _, f := range files {
			rules, err := alerts.LoadFile(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			extra = append(extra, rules...)
		}
	}
	var rules []*alerts.Rule
	if cfg.DefaultRules == nil || *cfg.DefaultRules {
		builtin := alerts.DefaultRules()
		for _, name := range cfg.DisabledRules {
			if !slices.ContainsFunc(builtin, func(r *alerts.Rule) bool { return r.Name == name }) {
				errs = append(errs, fmt.Errorf("%s: disabled_rules: no built-in rule is named %q", path, name))
			}
		}
		for _, r := range builtin {
			replaced := slices.ContainsFunc(extra, func(x *alerts.Rule) bool { return x.Name == r.Name })
			if !replaced && !slices.Contains(cfg.DisabledRules, r.Name) {
				rules = append(rules, r)
			}
		}
	} else if len(cfg.DisabledRules) > 0 {
		errs = append(errs, fmt.Errorf("%s: disabled_rules is set but default_rules is false", path))
	}
	rules = append(rules, extra...)
	seen := map[string]bool{}
	for _, r := range rules {
		k := r.Key()
		if seen[k] {
			errs = append(errs, fmt.Errorf("%s: rule %q with severity %s and labels %v is defined twice across the rule files", path, r.Name, r.Severity, r.Labels))
		}
		seen[k] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rules, nil
}

package main

import (
	"fmt"
	"io"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/internal/errtext"
)

// rulesFlags are the flags of `stormwatch rules`.
type rulesFlags struct {
	configFile string
	checkMode  bool
	check      []string
	vocabulary bool
}

// runRules prints the effective rules, or with --check validates rules
// files with the daemon's loader: exit 0 when every file is valid, 3
// (exitUnknown: bad config) otherwise, every problem printed with its line.
func runRules(f *rulesFlags, stdout, stderr io.Writer) int {
	if f.vocabulary {
		if err := writeVocabulary(stdout, defaultVocabulary()); err != nil {
			fmt.Fprintf(stderr, "stormwatch: %v\n", err)
			return exitUnknown
		}
		return exitOK
	}
	if f.checkMode != (len(f.check) > 0) {
		fmt.Fprintln(stderr, "stormwatch: rules files are validated with --check FILE... (try --help)")
		return exitUnknown
	}
	if f.checkMode {
		code := exitOK
		for _, path := range f.check {
			rules, err := loadRulesFile(path)
			if err != nil {
				fmt.Fprintf(stderr, "%s: INVALID\n%v\n", path, err)
				code = exitUnknown
				continue
			}
			fmt.Fprintf(stdout, "%s: %s, valid\n", path, errtext.Plural(len(rules), "rule", "rules"))
		}
		return code
	}
	rules, err := loadRules(f.configFile)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	out, err := alerts.Marshal(rules)
	if err != nil {
		fmt.Fprintf(stderr, "stormwatch: %v\n", err)
		return exitUnknown
	}
	stdout.Write(out)
	return exitOK
}

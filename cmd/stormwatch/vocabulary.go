package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/stormwatch/stormwatch/alerts"
)

// functionHelp documents the functions conditions may call.
var functionHelp = [][2]string{
	{`increase("counter", "10s")`, "how much a counter rose over the window (restarts handled)"},
	{`rate("counter", "10s")`, "increase per second"},
	{`max_over_time("name", "10s")`, "highest value over the window"},
	{`min_over_time("name", "10s")`, "lowest value over the window"},
	{`time_to_limit("name", limit, "15s")`, "seconds until a least-squares line through the window reaches limit (+Inf: not rising)"},
	{`baseline_rate("counter", "15m", "1m")`, "median per-second rate over the window, leaving out the most recent part"},
	{`sysctl("net.core.somaxconn")`, "any sysctl the sources read, by its sysctl(8) name"},
	{`present("valkey.tcp_backlog")`, "true when the named value is known now (never no data: tells a known server from a guess)"},
}

// writeVocabulary prints what rule conditions may name, scope by scope,
// as the sources declare it.
func writeVocabulary(w io.Writer, vb *alerts.Vocabulary) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, scope := range vb.Scopes() {
		k, _ := vb.Schema().Kind(string(scope))
		title := "scope " + string(scope) + ": " + k.Help
		if scope == alerts.ScopeHost {
			title = "scope host: evaluated once per sample (host values are visible in every scope)"
		} else {
			var labels []string
			for _, l := range k.Labels {
				labels = append(labels, l.Name)
			}
			title += ", evaluated once per " + string(scope) + ", alerts labelled " + strings.Join(labels, ", ")
		}
		fmt.Fprintln(tw, title)
		fmt.Fprintln(tw, "  NAME\tKIND\tUNIT\tWHAT")
		for _, v := range vb.Variables(scope) {
			if scope != alerts.ScopeHost && v.Scope == alerts.ScopeHost {
				continue // listed once, under host
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", v.Name, v.Kind, v.Unit, v.Help)
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintln(tw, "functions (windows are quoted durations; series are quoted names):")
	for _, f := range functionHelp {
		fmt.Fprintf(tw, "  %s\t%s\n", f[0], f[1])
	}
	return tw.Flush()
}

// defaultVocabulary is the vocabulary of the built-in sources.
func defaultVocabulary() *alerts.Vocabulary { return alerts.DefaultVocabulary() }

package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/stormwatch/stormwatch/internal/errtext"
)

// TextOptions shape the text report.
type TextOptions struct {
	// Color uses ANSI colours and symbols (a terminal that wants them).
	Color bool
	// Quiet prints only the items that are not OK.
	Quiet bool
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiPurple = "\x1b[35m"
)

var (
	statusColor  = [...]string{ansiGreen, ansiYellow, ansiRed, ansiPurple}
	statusSymbol = [...]string{"✓", "!", "✗", "?"}
)

// WriteText writes the checklist for a person.
func (r *Report) WriteText(w io.Writer, o TextOptions) error {
	p := &printer{w: w, color: o.Color}
	window := "instant check (no counters)"
	if r.WindowSeconds > 0 {
		window = "window " + strconv.FormatFloat(r.WindowSeconds, 'f', 1, 64) + "s"
	}
	p.printf("%s %s, %s, %s\n", p.style(ansiBold, "stormwatch check:"), r.Host, r.Time.UTC().Format("2006-01-02 15:04:05 UTC"), window)
	for _, sec := range r.Sections {
		var items []Item
		for _, it := range sec.Items {
			if !o.Quiet || it.Status != OK {
				items = append(items, it)
			}
		}
		if len(items) == 0 {
			continue
		}
		p.printf("\n%s\n", p.style(ansiBold, strings.ToUpper(sec.Title)))
		prev := ""
		for _, it := range items {
			// One failed source makes several items unknown: its reason,
			// often long, is printed once.
			p.item(it, it.Reason != "" && it.Reason == prev)
			prev = it.Reason
		}
	}
	p.printf("\n%s %s\n", p.style(ansiBold, "Result:"), p.status(r.Status, r.String()+" (exit "+strconv.Itoa(r.ExitCode)+")"))
	return p.err
}

type printer struct {
	w     io.Writer
	color bool
	err   error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *printer) style(code, s string) string {
	if !p.color {
		return s
	}
	return code + s + ansiReset
}

func (p *printer) status(s Status, text string) string {
	if !p.color {
		return text
	}
	return statusColor[s] + text + ansiReset
}

func (p *printer) item(it Item, sameReason bool) {
	tag := fmt.Sprintf("%-7s", it.Status)
	if p.color {
		tag = statusSymbol[it.Status] + " " + tag
	}
	p.printf("  %s %-36s %s\n", p.status(it.Status, tag), it.What, strings.TrimRight(figures(it), " "))
	indent := "          "
	if p.color {
		indent += "  "
	}
	for _, a := range it.Alerts {
		if a.Summary != "" {
			p.printf("%s%s\n", indent, p.style(ansiDim, a.Name+": "+a.Summary))
		}
	}
	if it.Detail != "" {
		p.printf("%s%s\n", indent, it.Detail)
	}
	if it.Clients != nil {
		p.clients(indent, it.Clients)
	}
	for _, adv := range it.Advice {
		p.printf("%s→ %s\n", indent, adv)
	}
	switch {
	case sameReason:
		p.printf("%s%s\n", indent, p.style(ansiDim, "(the same reason as above)"))
	case it.Reason != "":
		p.printf("%s%s\n", indent, p.style(ansiDim, it.Reason))
	}
	if len(it.NotJudged) > 0 {
		p.printf("%s%s\n", indent, p.style(ansiDim, "not judged, needs more history than a check has: "+strings.Join(it.NotJudged, ", ")))
	}
}

// figures renders value, limit, % used and rate in fixed columns.
func figures(it Item) string {
	var val, pct string
	switch {
	case it.RatePerSecond != nil:
		val = strconv.FormatFloat(*it.RatePerSecond, 'f', 1, 64) + "/s"
	case it.Value != nil && it.Limit != nil:
		val = num(*it.Value) + " / " + num(*it.Limit)
	case it.Value != nil:
		val = num(*it.Value)
	default:
		val = "—"
	}
	if it.UsedRatio != nil {
		pct = strconv.FormatFloat(*it.UsedRatio*100, 'f', 0, 64) + "%"
	}
	return fmt.Sprintf("%-21s %5s", val, pct)
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// WriteJSON writes the report for scripts (see the README for the
// schema).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// clients renders who connects to a listener:
//
//	clients by /24 (IPv4) and /64 (IPv6) prefix:
//	  half-open    470 from 37 prefixes
//	    198.51.100.0/24            120
//	    35 more prefixes           270
//	  established  none
func (p *printer) clients(indent string, c *Clients) {
	if c.Error != "" {
		p.printf("%s%s\n", indent, p.style(ansiDim, "clients not read: "+c.Error))
		return
	}
	p.printf("%sclients by /%d (IPv4) and /%d (IPv6) prefix:\n", indent, c.PrefixIPv4, c.PrefixIPv6)
	for _, st := range []struct {
		name string
		c    *ClientCounts
	}{{"half-open", c.HalfOpen}, {"established", c.Established}} {
		if st.c == nil {
			continue
		}
		if st.c.Total == 0 {
			p.printf("%s  %-12s none\n", indent, st.name)
			continue
		}
		from := "from " + errtext.Plural(st.c.Prefixes, "prefix", "prefixes")
		if st.c.Approximate {
			from = "from more than " + errtext.Plural(st.c.Prefixes, "prefix", "prefixes") + " (counts are upper bounds)"
		}
		p.printf("%s  %-12s %d %s\n", indent, st.name, st.c.Total, from)
		for _, t := range st.c.Top {
			line := fmt.Sprintf("%s    %-28s %7d", indent, t.Prefix, t.Count)
			if t.Overcount > 0 {
				line += fmt.Sprintf("  (up to %d fewer)", t.Overcount)
			}
			p.printf("%s\n", line)
		}
		if more := st.c.Prefixes - len(st.c.Top); more > 0 || st.c.Other > 0 {
			what := "other prefixes"
			if more > 0 && !st.c.Approximate {
				what = errtext.Plural(more, "more prefix", "more prefixes")
			}
			p.printf("%s    %-28s %7d\n", indent, what, st.c.Other)
		}
	}
}

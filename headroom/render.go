package headroom

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteText writes r as a short table for people, under a title naming
// the host (a URL, "this host"):
//
//	http://10.0.0.7:9955/api/v1/headroom: NOT OK, headroom 15% (minimum 30%), limiting: accept queue 0.0.0.0:6379
//	  QUEUE                      USED   LIMIT    FREE  USED%  TREND   FULL IN
//	  accept queue 0.0.0.0:6379   109     128      19    85%  +12/s   1.6s
//	  …
//	  not ok: accept queue of 0.0.0.0:6379 at 85% (limit 128)
func WriteText(w io.Writer, title string, r *Report) error {
	var b strings.Builder
	verdict := "OK"
	if !r.OK {
		verdict = "NOT OK"
	}
	head := "none"
	if r.Headroom != nil {
		// Rounded down: 99.6% free is not all the room.
		head = strconv.FormatFloat(math.Floor(*r.Headroom*100), 'f', -1, 64) + "%"
	}
	fmt.Fprintf(&b, "%s: %s, headroom %s (minimum %s)", title, verdict, head, pct(r.Min))
	if r.Limiting != nil {
		fmt.Fprintf(&b, ", limiting: %s", r.Limiting.Name)
	}
	if len(r.Ports) > 0 {
		ps := make([]string, len(r.Ports))
		for i, p := range r.Ports {
			ps[i] = strconv.Itoa(int(p))
		}
		fmt.Fprintf(&b, ", ports %s", strings.Join(ps, ","))
	}
	b.WriteString("\n")
	if len(r.Queues) > 0 {
		rows := [][]string{{"QUEUE", "USED", "LIMIT", "FREE", "USED%", "TREND", "FULL IN"}}
		for _, q := range r.Queues {
			trend, full := "-", "-"
			if q.Trend != nil {
				trend = signed(q.Trend.PerSecond) + "/s"
				if q.Trend.SecondsToFull != nil {
					full = seconds(*q.Trend.SecondsToFull)
				}
			}
			used := optPct(q.UsedRatio)
			if q.Note != "" {
				used = q.Note
			}
			rows = append(rows, []string{q.Name, optNum(q.Used), optNum(q.Limit), optNum(q.Free), used, trend, full})
		}
		writeTable(&b, rows)
	}
	if n := r.QueuesTotal - len(r.Queues); n > 0 {
		fmt.Fprintf(&b, "  (%d more queues not listed)\n", n)
	}
	for _, a := range r.Alerts {
		fmt.Fprintf(&b, "  alert: %s %s (%s)%s", a.Name, a.State, a.Severity, labelText(a.Labels))
		if a.Summary != "" {
			fmt.Fprintf(&b, ": %s", a.Summary)
		}
		b.WriteString("\n")
	}
	for _, reason := range r.Reasons {
		fmt.Fprintf(&b, "  not ok: %s\n", reason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTable writes rows indented by two spaces, the first column
// aligned left and the others right.
func writeTable(b *strings.Builder, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			width[i] = max(width[i], utf8.RuneCountInString(cell))
		}
	}
	for _, row := range rows {
		b.WriteString("  ")
		for i, cell := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell))
			if i == 0 {
				b.WriteString(cell + pad)
			} else {
				b.WriteString("  " + pad + cell)
			}
		}
		b.WriteString("\n")
	}
}

func labelText(l map[string]string) string {
	if len(l) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return " " + strings.Join(parts, " ")
}

func optPct(p *float64) string {
	if p == nil {
		return "none"
	}
	return pct(*p)
}

func optNum(p *float64) string {
	if p == nil {
		return "-"
	}
	return num(*p)
}

// signed renders a rate with its sign and two significant decimals.
func signed(x float64) string {
	s := strconv.FormatFloat(math.Round(x*10)/10, 'f', -1, 64)
	if x >= 0.05 {
		s = "+" + s
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// seconds renders a time to full: "1.6s", "2m30s".
func seconds(s float64) string {
	switch {
	case s < 60:
		return strconv.FormatFloat(math.Round(s*10)/10, 'f', -1, 64) + "s"
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", int(s)/60, int(s)%60)
	}
	return fmt.Sprintf("%dh%02dm", int(s)/3600, int(s)%3600/60)
}

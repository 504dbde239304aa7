package errtext

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits the project uses for error text.
const (
	// MaxErrors is how many errors a list shows before "… and N more".
	MaxErrors = 10
	// MaxErrorLen caps one error's text, in bytes.
	MaxErrorLen = 512
	// MaxLineLen caps a whole error rendered as one log line, in bytes.
	MaxLineLen = 4096
)

// Truncate returns s if it fits in n bytes, and otherwise its longest
// prefix that ends on a rune boundary and leaves room for a marker saying
// how many bytes were cut: "… (+52,428,790 bytes)". The result is never
// longer than n, except that the marker alone is always kept.
func Truncate(s string, n int) string { return truncate(s, n, 0) }

// truncate is Truncate of a text whose last extra bytes were already cut.
func truncate(s string, n, extra int) string {
	if len(s) <= n && extra == 0 {
		return s
	}
	marker := func(keep int) string { return "… (+" + Count(len(s)-keep+extra) + " bytes)" }
	keep := min(len(s), max(0, n-len(marker(min(n, len(s))))))
	for keep > 0 && (keep+len(marker(keep)) > n || (keep < len(s) && !utf8.RuneStart(s[keep]))) {
		keep--
	}
	return s[:keep] + marker(keep)
}

// Join formats errs one per sep, each truncated to maxLen bytes, showing at
// most maxErrors of them followed by "… and N more". Nil errors are
// skipped. Error is called only on the errors shown.
func Join(errs []error, sep string, maxErrors, maxLen int) string {
	var b strings.Builder
	shown, total := 0, 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		total++
		if shown == maxErrors {
			continue
		}
		if shown > 0 {
			b.WriteString(sep)
		}
		b.WriteString(Truncate(err.Error(), maxLen))
		shown++
	}
	if more := total - shown; more > 0 {
		if shown > 0 {
			b.WriteString(sep)
		}
		b.WriteString("… and " + Count(more) + " more")
	}
	return b.String()
}

// OneLine renders err as one line of at most maxLen bytes: line breaks in
// its text — the errors of an errors.Join, the lines of a multi-line
// message — become "; ", other control characters become spaces, blank
// parts are dropped. A nil err is the empty string. An error type that
// caps its own list (alerts.Errors: "… and N more") keeps its count.
func OneLine(err error, maxLen int) string {
	if err == nil {
		return ""
	}
	// A text longer than the line cannot all be shown: cut it first, so a
	// 50 MB message is not split and joined whole.
	s, extra := err.Error(), 0
	if limit := 4 * maxLen; len(s) > limit {
		for limit > 0 && !utf8.RuneStart(s[limit]) {
			limit--
		}
		s, extra = s[:limit], len(s)-limit
	}
	parts := strings.Split(s, "\n")
	out := parts[:0]
	for _, p := range parts {
		p = strings.TrimSpace(strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return ' '
			}
			return r
		}, p))
		if p != "" {
			out = append(out, p)
		}
	}
	return truncate(strings.Join(out, "; "), maxLen, extra)
}

// Count formats n with a comma between thousands: 9990 → "9,990".
func Count(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Plural says n of a thing: "1 rule", "3 rules" (one and many are the
// singular and plural words).
func Plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

package errtext

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestTruncate(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{strings.Repeat("a", 100), 30, strings.Repeat("a", 15) + "… (+85 bytes)"},
		// A cut inside a multi-byte rune backs up to its start.
		{strings.Repeat("é", 50), 30, strings.Repeat("é", 7) + "… (+86 bytes)"},
		{strings.Repeat("x", 52428800), 40, strings.Repeat("x", 17) + "… (+52,428,783 bytes)"},
		// Too small for anything but the marker.
		{"abcdef", 2, "… (+6 bytes)"},
	}
	for _, tt := range tests {
		got := Truncate(tt.s, tt.n)
		if got != tt.want {
			t.Errorf("Truncate(%.20q…, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
		if len(tt.s) > tt.n && len(got) > tt.n && !strings.HasPrefix(got, "…") {
			t.Errorf("Truncate(…, %d) is %d bytes long", tt.n, len(got))
		}
		if !utf8.ValidString(got) {
			t.Errorf("Truncate(…, %d) = %q is not valid UTF-8", tt.n, got)
		}
	}
}

type countingErr struct {
	msg   string
	calls *int
}

func (e countingErr) Error() string { *e.calls++; return e.msg }

func TestJoin(t *testing.T) {
	calls := 0
	var errs []error
	for i := range 10000 {
		errs = append(errs, countingErr{fmt.Sprintf("e%d", i), &calls})
	}
	got := Join(errs, "\n", 10, 100)
	want := "e0\ne1\ne2\ne3\ne4\ne5\ne6\ne7\ne8\ne9\n… and 9,990 more"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if calls != 10 {
		t.Errorf("Error called %d times, want 10 (only the errors shown)", calls)
	}
	if got := Join([]error{errors.New("a"), nil, errors.New(strings.Repeat("b", 50))}, "; ", 10, 20); got != "a; bbbbb… (+45 bytes)" {
		t.Errorf("Join = %q", got)
	}
	if got := Join(nil, "; ", 10, 20); got != "" {
		t.Errorf("Join(nil) = %q", got)
	}
	if got := Join([]error{errors.New("a"), errors.New("b")}, "; ", 0, 20); got != "… and 2 more" {
		t.Errorf("Join(max 0) = %q", got)
	}
}

// capped is a multi-error that caps its own text, as alerts.Errors does.
type capped []error

func (c capped) Error() string   { return Join(c, "\n", MaxErrors, MaxErrorLen) }
func (c capped) Unwrap() []error { return c }

func TestOneLine(t *testing.T) {
	many := make([]error, 25)
	for i := range many {
		many[i] = fmt.Errorf("f.yml:%d:1: bad", i+1)
	}
	tests := []struct {
		name string
		err  error
		max  int
		want string
	}{
		{"nil", nil, 100, ""},
		{"plain", errors.New("plain"), 100, "plain"},
		{"joined", errors.Join(errors.New("a.yml:1:1: one"), errors.New("a.yml:2:1: two")), 100, "a.yml:1:1: one; a.yml:2:1: two"},
		{"lines in a message", errors.New("x: INVALID\n  first\r\n\n  second\tthing\n"), 100, "x: INVALID; first; second thing"},
		{"wrapped join", fmt.Errorf("reload: %w", errors.Join(errors.New("a"), errors.New("b"))), 100, "reload: a; b"},
		{"capped list", capped(many), 1000,
			"f.yml:1:1: bad; f.yml:2:1: bad; f.yml:3:1: bad; f.yml:4:1: bad; f.yml:5:1: bad; f.yml:6:1: bad; f.yml:7:1: bad; f.yml:8:1: bad; f.yml:9:1: bad; f.yml:10:1: bad; … and 15 more"},
		{"long join", errors.Join(many...), 60, "f.yml:1:1: bad; f.yml:2:1: bad; f.yml:3:1: b… (+361 bytes)"},
		{"capped length", errors.New(strings.Repeat("z", 1000)), 30, strings.Repeat("z", 14) + "… (+986 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := OneLine(tt.err, tt.max)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if strings.ContainsAny(got, "\n\r\t") {
				t.Errorf("OneLine = %q holds a control character", got)
			}
		})
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 9990: "9,990", 52428800: "52,428,800", -1234: "-1,234"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}

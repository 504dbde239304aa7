package alerts

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/internal/errtext"
)

// TestErrorsCapped loads a rules file with 10,000 mistakes: every one is
// kept for errors.As, but the text shows the first ten and counts the rest.
func TestErrorsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range 10000 {
		fmt.Fprintf(&b, "  - name: R%d\n    expr: up\n", i)
	}
	_, err := Load([]byte(b.String()))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Load: %v, want Errors", err)
	}
	if len(es) != 10000 {
		t.Fatalf("%d errors, want all 10000 kept", len(es))
	}
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf(`%d:5: rule "R%d": unknown field "expr": use "condition"`, 3+2*i, i))
	}
	want = append(want, "… and 9,990 more")
	if diff := cmp.Diff(strings.Join(want, "\n"), err.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestErrorTruncated: a field name of 1 MB is quoted, cut to
// errtext.MaxErrorLen bytes with the count of what was left out.
func TestErrorTruncated(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	// An explicit key ("? "): YAML limits implicit keys to 1024 characters.
	_, err := Load([]byte("rules:\n  - name: A\n    ? " + huge + "\n    : 1\n"))
	if err == nil {
		t.Fatal("a 1 MB unknown field loaded")
	}
	msg := err.Error()
	if len(msg) > errtext.MaxErrorLen {
		t.Errorf("error is %d bytes, want at most %d", len(msg), errtext.MaxErrorLen)
	}
	wantPrefix := `3:7: rule "A": unknown field "xxx`
	if !strings.HasPrefix(msg, wantPrefix) || !strings.HasSuffix(msg, " bytes)") {
		t.Errorf("error = %.80q…%q, want %q… and a cut marker", msg, msg[max(0, len(msg)-30):], wantPrefix)
	}
	var one *Error
	if !errors.As(err, &one) || len(one.Msg) < 1<<20 {
		t.Errorf("the Error itself must keep the whole message for errors.As")
	}
}

// TestErrorsFewUnchanged: under the cap, every problem is listed.
func TestErrorsFewUnchanged(t *testing.T) {
	es := Errors{
		{File: "a.yml", Line: 1, Column: 2, Msg: "one"},
		{File: "a.yml", Line: 3, Rule: "R", Msg: "two"},
		{Msg: "three"},
	}
	want := "a.yml:1:2: one\na.yml:3: rule \"R\": two\nthree"
	if diff := cmp.Diff(want, es.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

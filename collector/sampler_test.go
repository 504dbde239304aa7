package collector

import (
	"context"
	"testing"
	"time"
)

// deadlineSource records how long its Collect was given.
type deadlineSource struct {
	decl  *Declaration
	given *time.Duration
}

func (d deadlineSource) Declaration() *Declaration { return d.decl }
func (d deadlineSource) Collect(ctx context.Context, w *Writer) error {
	dl, _ := ctx.Deadline()
	*d.given = time.Until(dl)
	return nil
}

// TestSamplerTimeouts: each source gets Timeout, counted from its own
// start.
func TestSamplerTimeouts(t *testing.T) {
	a, b := fakeDecl("a"), fakeDecl("b")
	var gotA, gotB time.Duration
	s, err := NewSampler(MustSchema(a, b), []Source{deadlineSource{a, &gotA}, deadlineSource{b, &gotB}}, nil, NewHistory(Retention{}))
	if err != nil {
		t.Fatal(err)
	}
	s.Timeout = time.Hour
	s.Sample(context.Background(), time.Now())
	// What is left of each bound when the source looked: all of it, less
	// the moment it took to get there.
	for name, got := range map[string]time.Duration{"a": gotA, "b": gotB} {
		if got <= 59*time.Minute || got > time.Hour {
			t.Errorf("source %s had %v left, want about Timeout (1h)", name, got)
		}
	}
}

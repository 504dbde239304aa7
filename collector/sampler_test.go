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

// TestSamplerTimeouts: each source gets its own bound, Timeout unless
// Timeouts names it, counted from its own start.
func TestSamplerTimeouts(t *testing.T) {
	a, b := fakeDecl("a"), fakeDecl("b")
	var gotA, gotB time.Duration
	s, err := NewSampler(MustSchema(a, b), []Source{deadlineSource{a, &gotA}, deadlineSource{b, &gotB}}, nil, NewHistory(Retention{}))
	if err != nil {
		t.Fatal(err)
	}
	s.Timeout = time.Hour
	s.Timeouts = map[string]time.Duration{"b": 125 * time.Millisecond}
	s.Sample(context.Background(), time.Now())
	// What is left of each bound when the source looked: all of it, less
	// the moment it took to get there.
	if gotA <= 59*time.Minute || gotA > time.Hour {
		t.Errorf("source a had %v left, want about Timeout (1h)", gotA)
	}
	if gotB <= 0 || gotB > 125*time.Millisecond {
		t.Errorf("source b had %v left, want about its own 125ms", gotB)
	}
}

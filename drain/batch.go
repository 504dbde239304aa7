package drain

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Batch is how many connections one batch closes: a count, or a share of
// what is left.
type Batch struct {
	// Count, when positive, is the batch size.
	Count int
	// Percent, when positive, is the share of the connections left, in
	// percent, rounded up (so a batch is never empty).
	Percent float64
}

// ParseBatch reads "100" (a count) or "10%" (a share of what is left).
func ParseBatch(s string) (Batch, error) {
	t := strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(t, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || v <= 0 || v > 100 {
			return Batch{}, fmt.Errorf("%w %q: want a share above 0%% and at most 100%%, e.g. 10%%", ErrBadBatch, s)
		}
		return Batch{Percent: v}, nil
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return Batch{}, fmt.Errorf("%w %q: want a count above 0 (e.g. 100) or a share of what is left (e.g. 10%%)", ErrBadBatch, s)
	}
	return Batch{Count: n}, nil
}

// String formats b as ParseBatch reads it.
func (b Batch) String() string {
	if b.Percent > 0 {
		return strconv.FormatFloat(b.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(b.Count)
}

// Size is the size of a batch when left connections are left: at least 1
// (when any is left), at most left.
func (b Batch) Size(left int) int {
	if left <= 0 {
		return 0
	}
	n := b.Count
	if b.Percent > 0 {
		n = int(math.Ceil(float64(left) * b.Percent / 100))
	}
	return min(max(n, 1), left)
}

// Order is the order in which connections are closed.
type Order int

const (
	// Oldest closes the connections the server accepted first, first.
	Oldest Order = iota
	// Random closes them in random order.
	Random
)

// ParseOrder reads "oldest" or "random".
func ParseOrder(s string) (Order, error) {
	switch s {
	case "oldest":
		return Oldest, nil
	case "random":
		return Random, nil
	}
	return 0, fmt.Errorf("order %q: want oldest or random", s)
}

// String is the order's name.
func (o Order) String() string {
	if o == Random {
		return "random"
	}
	return "oldest"
}

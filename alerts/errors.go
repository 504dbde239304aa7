package alerts

import (
	"errors"
	"fmt"
	"strings"

	"github.com/stormwatch/stormwatch/internal/errtext"
)

// ErrInvalidRules is matched (errors.Is) by every error Load and LoadFile
// return for a rules file that does not validate.
var ErrInvalidRules = errors.New("invalid rules")

// ErrNotCompiled is returned by Eval for a Rule that was not made by Load,
// LoadFile or DefaultRules.
var ErrNotCompiled = errors.New("rule not compiled: make rules with Load")

// Error is one problem in a rules file, at the line and column (both
// 1-based) of the YAML node it concerns.
type Error struct {
	// File is the rules file's path, empty for Load.
	File string
	// Line is the 1-based line, 0 when unknown.
	Line int
	// Column is the 1-based column, 0 when the YAML parser did not say
	// (syntax errors).
	Column int
	// Rule is the name of the rule the problem is in, empty outside one or
	// before its name is known.
	Rule string
	// Msg says what is wrong.
	Msg string
}

// Error formats e as "file:line:col: rule "name": msg", leaving out the
// parts that are unknown, in at most errtext.MaxErrorLen bytes (a message
// quoting a huge field is cut, saying how much was left out).
func (e *Error) Error() string { return errtext.Truncate(e.text(), errtext.MaxErrorLen) }

func (e *Error) text() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, "%d:", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", e.Rule)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes every Error match ErrInvalidRules.
func (e *Error) Is(target error) bool { return target == ErrInvalidRules }

// Errors is every problem found in a rules file, in file order.
type Errors []*Error

// Error puts each problem on its own line: the first errtext.MaxErrors of
// them, then "… and N more" for the rest, so a file with 10,000 mistakes
// gives a readable answer, not a 10,000-line log entry.
func (es Errors) Error() string {
	return errtext.Join(es.Unwrap(), "\n", errtext.MaxErrors, errtext.MaxErrorLen)
}

// Is makes Errors match ErrInvalidRules.
func (es Errors) Is(target error) bool { return target == ErrInvalidRules }

// Unwrap returns the problems, for errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

package clients

import "errors"

// ErrConfig: a Config field is out of range. The error wrapping it names
// the field, the bad value and what is accepted.
var ErrConfig = errors.New("invalid client grouping")

// ErrTooManyListeners: Dump was asked about more listeners than
// Config.MaxListeners.
var ErrTooManyListeners = errors.New("too many listeners for one dump")

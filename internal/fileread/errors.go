package fileread

import "errors"

var (
	// ErrNotRegular is matched by the error for a path that is not a
	// regular file: a FIFO, a device, a socket or a directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge is matched by the error for a file over the size limit.
	ErrTooLarge = errors.New("file too large")
	// ErrTimeout is matched by the error for a read that took longer than
	// its timeout.
	ErrTimeout = errors.New("read timed out")
)

// Error is a failure to read the file at Path.
type Error struct {
	// Path is the file's path, as given.
	Path string
	// Err says what went wrong: one of the sentinels above, wrapped with
	// details, or the kernel's error (an errno, matching fs.ErrNotExist
	// and the like).
	Err error
}

// Error formats e as "path: what went wrong".
func (e *Error) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the cause, for errors.Is.
func (e *Error) Unwrap() error { return e.Err }

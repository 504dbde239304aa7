package fileread

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/errtext"
)

// DefaultTimeout bounds Read: open, checks and read together.
const DefaultTimeout = 5 * time.Second

// Read returns the contents of the regular file at path, which must hold at
// most max bytes, giving up after DefaultTimeout. See the package
// documentation for what it refuses and why.
func Read(path string, max int64) ([]byte, error) {
	return ReadTimeout(path, max, DefaultTimeout)
}

// ReadTimeout is Read with a timeout of the caller's choosing.
func ReadTimeout(path string, max int64, timeout time.Duration) ([]byte, error) {
	return readTimeout(path, max, timeout, read)
}

// readTimeout runs readFn on its own goroutine and waits for it at most
// timeout. The tests give it a readFn that blocks, as a read on a hung file
// system does.
func readTimeout(path string, max int64, timeout time.Duration, readFn func(string, int64) ([]byte, error)) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1) // buffered: a late reader never blocks
	go func() {
		data, err := readFn(path, max)
		done <- result{data, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.data, r.err
	case <-t.C:
		return nil, &Error{Path: path, Err: fmt.Errorf("%w after %s (a hung file system?)", ErrTimeout, timeout)}
	}
}

// read checks path with stat, opens it without blocking, checks the opened
// file with fstat and reads it.
func read(path string, max int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &Error{Path: path, Err: cause(err)}
	}
	if err := check(fi, max); err != nil {
		return nil, &Error{Path: path, Err: err}
	}
	// O_NONBLOCK: should the path have become a FIFO since the stat, the
	// open does not wait for a writer. O_NOCTTY: should it have become a
	// terminal, it does not become ours.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Path: path, Err: cause(err)}
	}
	defer f.Close()
	data, err := readOpen(f, max)
	if err != nil {
		return nil, &Error{Path: path, Err: err}
	}
	return data, nil
}

// readOpen reads the open file f after checking with fstat that it is a
// regular file within max bytes.
func readOpen(f *os.File, max int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, cause(err)
	}
	if err := check(fi, max); err != nil {
		return nil, err
	}
	return readLimited(f, max)
}

// readLimited reads r to its end, failing once it has read more than max
// bytes: it never reads more than max+1.
func readLimited(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, cause(err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: more than %s (the limit)", ErrTooLarge, Size(max))
	}
	return data, nil
}

// check refuses what is not a regular file, and a regular file whose size
// is over max.
func check(fi fs.FileInfo, max int64) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: it is %s", ErrNotRegular, kind(fi.Mode()))
	}
	if fi.Size() > max {
		return fmt.Errorf("%w: %s bytes, over the limit of %s", ErrTooLarge, errtext.Count(int(fi.Size())), Size(max))
	}
	return nil
}

// kind names a file type for an error message.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "of mode " + m.String()
}

// cause strips the operation and path from a *fs.PathError: Error adds the
// path itself, and "stat"/"open" say nothing a reader needs.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Size formats a byte count for a person: "1 MiB", "4 MiB", "512 KiB", or
// bytes.
func Size(n int64) string {
	const ki, mi, gi = 1 << 10, 1 << 20, 1 << 30
	switch {
	case n >= gi && n%gi == 0:
		return strconv.FormatInt(n/gi, 10) + " GiB"
	case n >= mi && n%mi == 0:
		return strconv.FormatInt(n/mi, 10) + " MiB"
	case n >= ki && n%ki == 0:
		return strconv.FormatInt(n/ki, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

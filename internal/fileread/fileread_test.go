package fileread

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ok.yml")
	want := []byte("rules: []\n")
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yml")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, link} {
		got, err := Read(p, int64(len(want)))
		if err != nil {
			t.Fatalf("Read(%s): %v", p, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Read(%s) (-want +got):\n%s", p, diff)
		}
	}
	// One byte over the limit.
	if _, err := Read(path, int64(len(want))-1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Read with a limit one byte short: %v, want ErrTooLarge", err)
	}
	empty := filepath.Join(dir, "empty.yml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(empty, 10); err != nil || len(got) != 0 {
		t.Errorf("Read(empty) = %q, %v", got, err)
	}
}

// TestReadRefused tries every kind of path that is not a regular file: each
// must fail at once, naming the path and what it is, never by the timeout.
func TestReadRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "rules.yml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	fifoLink := filepath.Join(dir, "link-to-fifo.yml")
	if err := os.Symlink(fifo, fifoLink); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := os.Stat("/dev/null"); err != nil {
		t.Fatalf("/dev/null: %v", err)
	}
	tests := []struct {
		path string
		want string
		is   error
	}{
		{fifo, fifo + ": not a regular file: it is a FIFO (named pipe)", ErrNotRegular},
		{fifoLink, fifoLink + ": not a regular file: it is a FIFO (named pipe)", ErrNotRegular},
		{dir, dir + ": not a regular file: it is a directory", ErrNotRegular},
		{"/dev/null", "/dev/null: not a regular file: it is a character device", ErrNotRegular},
		{sock, sock + ": not a regular file: it is a socket", ErrNotRegular},
		{filepath.Join(dir, "missing.yml"), filepath.Join(dir, "missing.yml") + ": no such file or directory", fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			start := time.Now()
			_, err := Read(tt.path, 1<<20)
			took := time.Since(start)
			if err == nil {
				t.Fatal("read")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v does not match %v", err, tt.is)
			}
			if errors.Is(err, ErrTimeout) {
				t.Errorf("failed by the timeout, not at once: %v", err)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			t.Logf("failed in %v", took)
		})
	}
}

// TestReadOpenFIFO checks the fstat after open: a FIFO opened (as a FIFO
// swapped in after the stat would be) is refused without a read, which
// would block with a writer that writes nothing.
func TestReadOpenFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A writer that never writes: a read would wait for it forever.
	w, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	done := make(chan error, 1)
	go func() { _, err := readOpen(f, 1<<20); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) {
			t.Errorf("readOpen(FIFO) = %v, want ErrNotRegular", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("readOpen blocked on a FIFO for 30s")
	}
}

// TestReadOversized: a 50 MB file fails on its size, and is not read: the
// file is sparse, and its one written byte is at its end.
func TestReadOversized(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 50<<20-1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Read(path, 4<<20)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Read(50 MB, limit 4 MiB) = %v, want ErrTooLarge", err)
	}
	want := path + ": file too large: 52,428,800 bytes, over the limit of 4 MiB"
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// endless is /dev/zero that counts what was read from it.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	clear(p)
	e.n += int64(len(p))
	return len(p), nil
}

// TestReadLimitedEndless: a file that says it is small but never ends (a
// procfs file reports size 0) is read only up to the limit.
func TestReadLimitedEndless(t *testing.T) {
	src := &endless{}
	_, err := readLimited(src, 1<<20)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("readLimited(endless) = %v, want ErrTooLarge", err)
	}
	if src.n > 1<<20+1 {
		t.Errorf("read %d bytes for a limit of %d", src.n, 1<<20)
	}
	if err.Error() != "file too large: more than 1 MiB (the limit)" {
		t.Errorf("error = %q", err)
	}
	data, err := readLimited(bytes.NewReader(make([]byte, 1<<20)), 1<<20)
	if err != nil || len(data) != 1<<20 {
		t.Errorf("readLimited(exactly the limit) = %d bytes, %v", len(data), err)
	}
}

// TestReadTimeout gives the reader a read that blocks, as one on a hung NFS
// or FUSE mount does: the caller gets ErrTimeout after the timeout.
func TestReadTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	blocking := func(string, int64) ([]byte, error) { <-release; return nil, nil }
	start := time.Now()
	_, err := readTimeout("/mnt/hung/stormwatch.yml", 1<<20, 100*time.Millisecond, blocking)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("returned after %v, before the timeout", took)
	}
	want := "/mnt/hung/stormwatch.yml: read timed out after 100ms (a hung file system?)"
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{1 << 20: "1 MiB", 4 << 20: "4 MiB", 512 << 10: "512 KiB", 1000: "1000 bytes", 1 << 30: "1 GiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
	if !strings.HasSuffix(Size(3), "bytes") {
		t.Error(Size(3))
	}
}

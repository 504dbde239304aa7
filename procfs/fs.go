package procfs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	promfs "github.com/prometheus/procfs"
)

// maxFileSize caps every read: the files read here are a few KiB, except
// nf_conntrack stats which grow by ~150 bytes per CPU.
const maxFileSize = 1 << 20

// FS reads files under a root directory that holds proc/.
type FS struct {
	proc string
	lib  promfs.FS
}

// NewFS returns an FS reading root/proc. root is "/" in production.
func NewFS(root string) (FS, error) {
	proc := filepath.Join(root, "proc")
	lib, err := promfs.NewFS(proc)
	if err != nil {
		return FS{}, fmt.Errorf("procfs at %s: %w", proc, err)
	}
	return FS{proc: proc, lib: lib}, nil
}

// Path returns the path of a file relative to proc/.
func (fs FS) Path(elem ...string) string {
	return filepath.Join(append([]string{fs.proc}, elem...)...)
}

// readFile reads path whole with one open and reads of up to maxFileSize, no
// stat (procfs files report size 0).
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: %w (over %d bytes)", path, ErrFileTooLarge, maxFileSize)
	}
	return b, nil
}

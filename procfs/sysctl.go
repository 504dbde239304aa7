package procfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Sysctl reads the integer sysctl name (dotted, as sysctl(8) names it, e.g.
// "net.core.somaxconn") and returns its fields: one for most, two for
// net.ipv4.ip_local_port_range. An absent sysctl wraps os.ErrNotExist.
func (fs FS) Sysctl(name string) ([]int64, error) {
	path, err := fs.sysctlPath(name)
	if err != nil {
		return nil, err
	}
	b, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", name, err)
	}
	v, err := parseSysctlBytes(b, nil)
	if err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", name, err)
	}
	return v, nil
}

// sysctlPath checks name and returns its file under fs.
func (fs FS) sysctlPath(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || strings.Contains(name, "..") {
		return "", fmt.Errorf("sysctl %q: %w: invalid name", name, ErrFileParse)
	}
	return fs.Path(append([]string{"sys"}, strings.Split(name, ".")...)...), nil
}

// SysctlReader reads the same sysctls cycle after cycle, as FS.Sysctl
// does, with a few allocations per read instead of a dozen: each name's
// path is built once, and one buffer and one slice of values serve every
// read. It is not safe for concurrent use.
type SysctlReader struct {
	fs    FS
	paths map[string]string
	buf   []byte
	vals  []int64
}

// sysctlReadSize is the buffer of a SysctlReader: integer sysctls are a
// few dozen bytes; a longer one is read by FS.Sysctl.
const sysctlReadSize = 512

// NewSysctlReader returns a SysctlReader over fs.
func (fs FS) NewSysctlReader() *SysctlReader {
	return &SysctlReader{fs: fs, paths: map[string]string{}, buf: make([]byte, sysctlReadSize)}
}

// Read returns what FS.Sysctl(name) returns, in a slice that is valid
// until the next Read.
func (r *SysctlReader) Read(name string) ([]int64, error) {
	path, ok := r.paths[name]
	if !ok {
		var err error
		if path, err = r.fs.sysctlPath(name); err != nil {
			return nil, err
		}
		r.paths[name] = path
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", name, err)
	}
	n, err := readFull(f, r.buf)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", name, err)
	}
	if n == len(r.buf) {
		return r.fs.Sysctl(name) // longer than any integer sysctl: the general path
	}
	r.vals, err = parseSysctlBytes(r.buf[:n], r.vals[:0])
	if err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", name, err)
	}
	return r.vals, nil
}

// readFull reads f into buf until EOF or buf is full, and returns how many
// bytes it read.
func readFull(f *os.File, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := f.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// parseSysctlBytes parses b's whitespace-separated integers (as
// strings.Fields and strconv.ParseInt would), appending them to dst.
func parseSysctlBytes(b []byte, dst []int64) ([]int64, error) {
	out := dst
	field := 0
	for i := 0; i < len(b); {
		if isSpace(b[i]) {
			i++
			continue
		}
		j := i
		for j < len(b) && !isSpace(b[j]) {
			j++
		}
		v, ok := parseDecimal(b[i:j])
		if !ok {
			var err error
			if v, err = strconv.ParseInt(string(b[i:j]), 10, 64); err != nil {
				return nil, fmt.Errorf("%w: field %d %q is not an integer", ErrFileParse, field, b[i:j])
			}
		}
		out = append(out, v)
		field++
		i = j
	}
	if field == 0 {
		return nil, fmt.Errorf("%w: empty sysctl", ErrFileParse)
	}
	return out, nil
}

// isSpace is ASCII white space, as the kernel writes it between fields.
// Other bytes strings.Fields would take as space (Unicode spaces) end up
// in a field, which then fails to parse, as it would have anyway.
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// parseDecimal parses an optionally signed decimal integer that fits an
// int64 without allocating; ok is false for anything else, which the
// caller hands to strconv.
func parseDecimal(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 { // 18 digits cannot overflow
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

package procfs

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Sysctl reads the integer sysctl name (dotted, as sysctl(8) names it, e.g.
// "net.core.somaxconn") and returns its fields: one for most, two for
// net.ipv4.ip_local_port_range. An absent sysctl wraps os.ErrNotExist.
func (fs FS) Sysctl(name string) ([]int64, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || strings.Contains(name, "..") {
		return nil, fmt.Errorf("sysctl %q: %w: invalid name", name, ErrFileParse)
	}
	b, err := readFile(fs.Path(append([]string{"sys"}, strings.Split(name, ".")...)...))
	if err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", name, err)
	}
	v, err := parseSysctl(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("sysctl %s: %w", name, err)
	}
	return v, nil
}

// parseSysctl parses a sysctl file holding whitespace-separated integers.
func parseSysctl(r io.Reader) ([]int64, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxFileSize))
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: empty sysctl", ErrFileParse)
	}
	out := make([]int64, len(fields))
	for i, f := range fields {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: field %d %q is not an integer", ErrFileParse, i, f)
		}
		out[i] = v
	}
	return out, nil
}

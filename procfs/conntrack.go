package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// ConntrackStat is /proc/net/stat/nf_conntrack: the per-CPU counters summed
// over CPUs, read by column name. A column the kernel does not print is NaN
// (clashres and chainlength, the chaintoolong counter, appeared in 5.x;
// search_restart in 4.10;
// searched and delete_list vanished in 4.x).
type ConntrackStat struct {
	// Entries is the table's entry count (the same on every CPU row).
	Entries       float64
	Found         float64
	Invalid       float64
	Insert        float64
	InsertFailed  float64
	Drop          float64
	EarlyDrop     float64
	ICMPError     float64
	SearchRestart float64
	ClashResolve  float64
	ChainTooLong  float64
	// CPUs is the number of per-CPU rows summed.
	CPUs int
}

// ConntrackStat reads /proc/net/stat/nf_conntrack. The file is absent on
// hosts without conntrack and on kernels built without
// CONFIG_NF_CONNTRACK_PROCFS; the error then wraps os.ErrNotExist.
func (fs FS) ConntrackStat() (ConntrackStat, error) {
	path := fs.Path("net", "stat", "nf_conntrack")
	b, err := readFile(path)
	if err != nil {
		return ConntrackStat{}, err
	}
	st, err := parseConntrackStat(bytes.NewReader(b))
	if err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// parseConntrackStat parses the nf_conntrack stat file: a header of column
// names, then one row of hexadecimal counters per possible CPU.
func parseConntrackStat(r io.Reader) (ConntrackStat, error) {
	nan := math.NaN()
	st := ConntrackStat{nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0}
	sc := bufio.NewScanner(io.LimitReader(r, maxFileSize))
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return st, err
		}
		return st, fmt.Errorf("%w: nf_conntrack stats: empty", ErrFileParse)
	}
	header := strings.Fields(sc.Text())
	if len(header) == 0 {
		return st, fmt.Errorf("%w: nf_conntrack stats: empty header", ErrFileParse)
	}
	// dst[i] is where column i goes, nil for columns we do not keep.
	dst := make([]*float64, len(header))
	for i, name := range header {
		switch name {
		case "entries":
			dst[i] = &st.Entries
		case "found":
			dst[i] = &st.Found
		case "invalid":
			dst[i] = &st.Invalid
		case "insert":
			dst[i] = &st.Insert
		case "insert_failed":
			dst[i] = &st.InsertFailed
		case "drop":
			dst[i] = &st.Drop
		case "early_drop":
			dst[i] = &st.EarlyDrop
		case "icmp_error":
			dst[i] = &st.ICMPError
		case "search_restart":
			dst[i] = &st.SearchRestart
		case "clashres":
			dst[i] = &st.ClashResolve
		case "chainlength", "chaintoolong": // 6.x prints the chaintoolong counter as "chainlength"
			dst[i] = &st.ChainTooLong
		}
	}
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != len(header) {
			return st, fmt.Errorf("%w: nf_conntrack stats: row %d has %d fields, header %d",
				ErrFileParse, st.CPUs+1, len(fields), len(header))
		}
		for i, f := range fields {
			v, err := strconv.ParseUint(f, 16, 64)
			if err != nil {
				return st, fmt.Errorf("%w: nf_conntrack stats: row %d column %s: %q is not hexadecimal",
					ErrFileParse, st.CPUs+1, header[i], f)
			}
			p := dst[i]
			switch {
			case p == nil:
			case p == &st.Entries:
				// A global count printed on every row: keep it once.
				*p = float64(v)
			case st.CPUs == 0:
				*p = float64(v)
			default:
				*p += float64(v)
			}
		}
		st.CPUs++
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("%w: nf_conntrack stats: %w", ErrFileParse, err)
	}
	if st.CPUs == 0 {
		return st, fmt.Errorf("%w: nf_conntrack stats: no CPU rows", ErrFileParse)
	}
	return st, nil
}

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

// Indexes of the per-CPU conntrack counters in a ConntrackStat row.
const (
	CTFound = iota
	CTInvalid
	CTInsert
	CTInsertFailed
	CTDrop
	CTEarlyDrop
	CTICMPError
	CTSearchRestart
	CTClashResolve
	CTChainTooLong
	// NumCTCounters is the length of a row.
	NumCTCounters
)

// ConntrackRow is one CPU's conntrack counters. The kernel keeps them as
// 32-bit unsigned integers that wrap: sum rows only through a wrap-aware
// accumulator when following them over time.
type ConntrackRow [NumCTCounters]uint32

// ConntrackStat is /proc/net/stat/nf_conntrack, read by column name.
// Columns vary with the kernel: clashres and chainlength (the chaintoolong
// counter) appeared in 5.x, search_restart in 4.10, and searched and
// delete_list are gone; Has says which this kernel prints.
type ConntrackStat struct {
	// Entries is the table's entry count (the same on every CPU row).
	Entries float64
	// Has is true for the counters the kernel prints.
	Has [NumCTCounters]bool
	// CPUs holds one row per possible CPU.
	CPUs []ConntrackRow
}

// Sum returns counter c summed over the CPUs as they stand (NaN when the
// kernel does not print it). The per-CPU counters wrap at 2^32, so a sum
// can fall between two reads.
func (s ConntrackStat) Sum(c int) float64 {
	if !s.Has[c] {
		return math.NaN()
	}
	var v float64
	for _, row := range s.CPUs {
		v += float64(row[c])
	}
	return v
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
// names, then one row of 32-bit hexadecimal counters per possible CPU.
func parseConntrackStat(r io.Reader) (ConntrackStat, error) {
	st := ConntrackStat{Entries: math.NaN()}
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
	// col[i] is where column i goes: a counter index, entriesCol, or -1.
	const entriesCol = -2
	col := make([]int, len(header))
	for i, name := range header {
		col[i] = -1
		switch name {
		case "entries":
			col[i] = entriesCol
		case "found":
			col[i] = CTFound
		case "invalid":
			col[i] = CTInvalid
		case "insert":
			col[i] = CTInsert
		case "insert_failed":
			col[i] = CTInsertFailed
		case "drop":
			col[i] = CTDrop
		case "early_drop":
			col[i] = CTEarlyDrop
		case "icmp_error":
			col[i] = CTICMPError
		case "search_restart":
			col[i] = CTSearchRestart
		case "clashres":
			col[i] = CTClashResolve
		case "chainlength", "chaintoolong": // 6.x prints the chaintoolong counter as "chainlength"
			col[i] = CTChainTooLong
		}
		if col[i] >= 0 {
			st.Has[col[i]] = true
		}
	}
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != len(header) {
			return st, fmt.Errorf("%w: nf_conntrack stats: row %d has %d fields, header %d",
				ErrFileParse, len(st.CPUs)+1, len(fields), len(header))
		}
		var row ConntrackRow
		for i, f := range fields {
			v, err := strconv.ParseUint(f, 16, 32)
			if err != nil {
				return st, fmt.Errorf("%w: nf_conntrack stats: row %d column %s: %q is not a 32-bit hexadecimal number",
					ErrFileParse, len(st.CPUs)+1, header[i], f)
			}
			switch c := col[i]; {
			case c == entriesCol:
				st.Entries = float64(v) // a global count printed on every row
			case c >= 0:
				row[c] = uint32(v)
			}
		}
		st.CPUs = append(st.CPUs, row)
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("%w: nf_conntrack stats: %w", ErrFileParse, err)
	}
	if len(st.CPUs) == 0 {
		return st, fmt.Errorf("%w: nf_conntrack stats: no CPU rows", ErrFileParse)
	}
	return st, nil
}

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

// Indexes of the per-CPU counters in a SoftnetRow.
const (
	// SoftnetProcessed counts packets taken off the CPU's backlog and
	// handed to the protocol layers ("total" before 3.11).
	SoftnetProcessed = iota
	// SoftnetDropped counts packets dropped because the CPU's backlog held
	// net.core.netdev_max_backlog packets already.
	SoftnetDropped
	// SoftnetTimeSqueeze counts NAPI polling rounds (net_rx_action) that
	// ended with work left because net.core.netdev_budget or
	// netdev_budget_usecs ran out.
	SoftnetTimeSqueeze
	// SoftnetCPUCollision counted transmit-lock collisions; the kernel has
	// printed 0 in its place since 4.x.
	SoftnetCPUCollision
	// SoftnetReceivedRPS counts inter-processor interrupts that woke this
	// CPU to process packets steered to it by RPS (2.6.35+).
	SoftnetReceivedRPS
	// SoftnetFlowLimit counts packets dropped by the flow limit
	// (net.core.flow_limit_cpu_bitmap) (3.11+).
	SoftnetFlowLimit
	// NumSoftnetCounters is the length of a SoftnetRow.
	NumSoftnetCounters
)

// SoftnetRow is one CPU's softnet counters, by Softnet* index. The kernel
// keeps them as 32-bit unsigned integers that wrap (processed wraps within
// hours on a busy host): follow them over time through SoftnetTotals.
type SoftnetRow [NumSoftnetCounters]uint32

// SoftnetCPU is one row of /proc/net/softnet_stat.
type SoftnetCPU struct {
	// CPU is the CPU's index as the kernel prints it (5.10+), or -1 on
	// older kernels, which print one row per online CPU in order but not
	// the index: with a CPU offline, the row number is not the CPU number.
	CPU int
	// Counters holds the cumulative counters, by Softnet* index.
	Counters SoftnetRow
	// BacklogLen is the number of packets waiting in the CPU's backlog
	// (input_pkt_queue plus process_queue) when the file was read (5.10+).
	BacklogLen uint32
	// InputQueueLen and ProcessQueueLen are BacklogLen's two parts
	// (6.4+).
	InputQueueLen, ProcessQueueLen uint32
}

// SoftnetStat is /proc/net/softnet_stat: the per-CPU packet backlog
// counters. The file has no header, and its column count grew with the
// kernel:
//
//	columns  kernels       adds
//	9        ≤ 2.6.34      processed, dropped, time_squeeze, 5 zeros, cpu_collision
//	10       2.6.35–3.10   received_rps
//	11       3.11–5.9      flow_limit_count
//	13       5.10–6.3      backlog length, CPU index
//	15       6.4+          input_pkt_queue and process_queue lengths
//
// Columns are read by position; columns past the 15th (a later kernel) are
// ignored.
type SoftnetStat struct {
	// Columns is the number of columns the kernel prints.
	Columns int
	// Has is true for the counters the kernel prints.
	Has [NumSoftnetCounters]bool
	// HasBacklogLen is true when the rows carry BacklogLen and CPU (5.10+).
	HasBacklogLen bool
	// HasQueueLens is true when the rows carry InputQueueLen and
	// ProcessQueueLen (6.4+).
	HasQueueLens bool
	// CPUs holds one row per online CPU.
	CPUs []SoftnetCPU
}

// Column positions of the values stormwatch reads (0-based).
const (
	snColCPUCollision = 8
	snColReceivedRPS  = 9
	snColFlowLimit    = 10
	snColBacklogLen   = 11
	snColCPU          = 12
	snColInputQueue   = 13
	snColProcessQueue = 14
	snMinColumns      = 9
)

// Sum returns counter c summed over the CPUs as they stand (NaN when the
// kernel does not print it). The per-CPU counters wrap at 2^32, so a sum
// can fall between two reads; SoftnetTotals follows them without falling.
func (s SoftnetStat) Sum(c int) float64 {
	if !s.Has[c] {
		return math.NaN()
	}
	var v float64
	for _, row := range s.CPUs {
		v += float64(row.Counters[c])
	}
	return v
}

// SoftnetStat reads /proc/net/softnet_stat. The file is the same in every
// network namespace (the backlogs are per CPU, not per namespace).
//
// prometheus/procfs has a parser for this file (FS.NetSoftnetStat), but it
// cannot serve here: it is reachable only through its own file read, which
// truncates at 1 MiB without an error instead of taking an io.Reader; on
// kernels before 5.10 it numbers CPUs by row, which is wrong as soon as a
// CPU is offline (the kernel skips offline CPUs); and it drops the 6.4+
// queue lengths. The tests check that both parsers agree on every fixture.
func (fs FS) SoftnetStat() (SoftnetStat, error) {
	path := fs.Path("net", "softnet_stat")
	b, err := readFile(path)
	if err != nil {
		return SoftnetStat{}, err
	}
	st, err := parseSoftnetStat(bytes.NewReader(b))
	if err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// parseSoftnetStat parses the softnet_stat file: one row per online CPU of
// 32-bit hexadecimal numbers, every row as wide as the first.
func parseSoftnetStat(r io.Reader) (SoftnetStat, error) {
	var st SoftnetStat
	sc := bufio.NewScanner(io.LimitReader(r, maxFileSize))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		row := len(st.CPUs) + 1
		if st.Columns == 0 {
			if len(fields) < snMinColumns {
				return st, fmt.Errorf("%w: softnet_stat: row 1 has %d columns, want at least %d",
					ErrFileParse, len(fields), snMinColumns)
			}
			st.setColumns(len(fields))
		} else if len(fields) != st.Columns {
			return st, fmt.Errorf("%w: softnet_stat: row %d has %d columns, row 1 has %d",
				ErrFileParse, row, len(fields), st.Columns)
		}
		cpu := SoftnetCPU{CPU: -1}
		for i, f := range fields[:min(len(fields), snColProcessQueue+1)] {
			v, err := strconv.ParseUint(f, 16, 32)
			if err != nil {
				return st, fmt.Errorf("%w: softnet_stat: row %d column %d: %q is not a 32-bit hexadecimal number",
					ErrFileParse, row, i+1, f)
			}
			u := uint32(v)
			switch i {
			case 0:
				cpu.Counters[SoftnetProcessed] = u
			case 1:
				cpu.Counters[SoftnetDropped] = u
			case 2:
				cpu.Counters[SoftnetTimeSqueeze] = u
			case snColCPUCollision:
				cpu.Counters[SoftnetCPUCollision] = u
			case snColReceivedRPS:
				cpu.Counters[SoftnetReceivedRPS] = u
			case snColFlowLimit:
				cpu.Counters[SoftnetFlowLimit] = u
			case snColBacklogLen:
				if st.HasBacklogLen {
					cpu.BacklogLen = u
				}
			case snColCPU:
				if st.HasBacklogLen {
					cpu.CPU = int(u)
				}
			case snColInputQueue:
				if st.HasQueueLens {
					cpu.InputQueueLen = u
				}
			case snColProcessQueue:
				if st.HasQueueLens {
					cpu.ProcessQueueLen = u
				}
			}
		}
		if n := len(st.CPUs); n > 0 && cpu.CPU >= 0 && cpu.CPU <= st.CPUs[n-1].CPU {
			return st, fmt.Errorf("%w: softnet_stat: row %d is CPU %d after CPU %d (the kernel prints CPUs in increasing order)",
				ErrFileParse, row, cpu.CPU, st.CPUs[n-1].CPU)
		}
		st.CPUs = append(st.CPUs, cpu)
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("%w: softnet_stat: %w", ErrFileParse, err)
	}
	if len(st.CPUs) == 0 {
		return st, fmt.Errorf("%w: softnet_stat: no CPU rows", ErrFileParse)
	}
	return st, nil
}

// setColumns records which values a row of n columns carries.
func (st *SoftnetStat) setColumns(n int) {
	st.Columns = n
	st.Has[SoftnetProcessed] = true
	st.Has[SoftnetDropped] = true
	st.Has[SoftnetTimeSqueeze] = true
	st.Has[SoftnetCPUCollision] = true
	st.Has[SoftnetReceivedRPS] = n > snColReceivedRPS
	st.Has[SoftnetFlowLimit] = n > snColFlowLimit
	st.HasBacklogLen = n > snColCPU
	st.HasQueueLens = n > snColProcessQueue
}

// SoftnetTotals follows the kernel's per-CPU softnet counters, 32-bit and
// wrapping, and turns them into host totals that only grow: each CPU's
// change since the previous read is taken modulo 2^32.
//
// The totals start at the kernel's sums on the first read. Afterwards a CPU
// seen for the first time (brought online) only sets its baseline, since
// its counts may date from before; so does every row when rows cannot be
// matched to the previous read's (the layout changed, or, on kernels that
// do not print the CPU index, the number of rows changed). A CPU that goes
// offline keeps its baseline: the kernel keeps its counters.
//
// The zero value is ready to use. It is not safe for concurrent use.
type SoftnetTotals struct {
	started bool
	columns int
	rows    int
	prev    map[int]SoftnetRow // by CPU index, or by row number (CPU -1)
	total   [NumSoftnetCounters]float64
}

// Update adds a read to the totals and returns them, by Softnet* index;
// counters the kernel does not print are NaN.
func (t *SoftnetTotals) Update(s SoftnetStat) [NumSoftnetCounters]float64 {
	if t.prev == nil {
		t.prev = make(map[int]SoftnetRow, len(s.CPUs))
	}
	key := func(i int, c SoftnetCPU) int {
		if c.CPU >= 0 {
			return c.CPU
		}
		return i
	}
	matched := t.started && s.Columns == t.columns && (s.HasBacklogLen || len(s.CPUs) == t.rows)
	if !matched {
		clear(t.prev)
	}
	for i, c := range s.CPUs {
		k := key(i, c)
		if prev, ok := t.prev[k]; ok {
			for j, v := range c.Counters {
				t.total[j] += float64(v - prev[j]) // uint32: wraps like the kernel's
			}
		} else if !t.started {
			for j, v := range c.Counters {
				t.total[j] += float64(v)
			}
		}
		t.prev[k] = c.Counters
	}
	t.started, t.columns, t.rows = true, s.Columns, len(s.CPUs)
	out := t.total
	for j := range out {
		if !s.Has[j] {
			out[j] = math.NaN()
		}
	}
	return out
}

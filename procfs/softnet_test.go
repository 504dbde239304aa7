package procfs

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	promfs "github.com/prometheus/procfs"

	"github.com/stormwatch/stormwatch/internal/testenv"
)

// softnetLayouts are the per-layout fixtures of testdata/softnet_stat (see
// testdata/README.md) and the softnet_stat files of the fixture trees.
var softnetLayouts = map[string]string{
	"2.6.32": "../testdata/linux-2.6.32/proc/4242/net/softnet_stat",
	"3.10":   "testdata/softnet_stat/linux-3.10",
	"4.19":   "testdata/softnet_stat/linux-4.19",
	"5.10":   "testdata/softnet_stat/linux-5.10",
	"6.18":   "../testdata/linux-6.18/proc/1/net/softnet_stat",
}

func readFixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSoftnetStatLayouts(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		layout  string
		columns int
		cpus    []int // CPU of each row
		backlog []uint32
		sums    [NumSoftnetCounters]float64
	}{
		{"2.6.32", 9, []int{-1, -1}, []uint32{0, 0}, [NumSoftnetCounters]float64{
			0x8f3c21a7 + 0x7d2e9b10, 0x1b2c4 + 0x9e5d, 0x3a71 + 0x29c2, 0x12 + 0x7, nan, nan}},
		{"3.10", 10, []int{-1, -1, -1, -1}, []uint32{0, 0, 0, 0}, [NumSoftnetCounters]float64{
			0x3c1a88f2 + 0x2b9e0d13 + 0x2a70c4e1 + 0x29f1b6a0, 3, 0xf1e + 0xb07 + 0xc52 + 0xa9d, 0, 0, nan}},
		{"4.19", 11, []int{-1, -1, -1, -1}, []uint32{0, 0, 0, 0}, [NumSoftnetCounters]float64{
			0xd41e0b77 + 0x9a8c12f0 + 0x97b3a215 + 0x96e0ff42, 0x2f1a9 + 0xe0c1 + 0xd7aa + 0xcc03,
			0xc3e2 + 0x81d4 + 0x7f31 + 0x7c98, 0, 0, 0}},
		// CPU 2 is offline: the kernel skips it and says which CPU each
		// row is.
		{"5.10", 13, []int{0, 1, 3}, []uint32{0, 3, 0}, [NumSoftnetCounters]float64{
			0x0a1b2c3d + 0x09f8e7d6 + 0x0a0b0c0d, 0x412, 0x217 + 0x1c9 + 0x1f0, 0, 0x3a0f1 + 0x3977e + 0x39b20, 0}},
		{"6.18", 15, []int{0, 1}, []uint32{0, 0}, [NumSoftnetCounters]float64{
			0x22fbb + 0x1c22c, 0, 1, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.layout, func(t *testing.T) {
			st, err := parseSoftnetStat(bytes.NewReader(readFixture(t, softnetLayouts[tt.layout])))
			if err != nil {
				t.Fatal(err)
			}
			if st.Columns != tt.columns {
				t.Errorf("Columns = %d, want %d", st.Columns, tt.columns)
			}
			var cpus []int
			var backlog []uint32
			for _, c := range st.CPUs {
				cpus = append(cpus, c.CPU)
				backlog = append(backlog, c.BacklogLen)
			}
			if diff := cmp.Diff(tt.cpus, cpus); diff != "" {
				t.Errorf("CPUs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.backlog, backlog); diff != "" {
				t.Errorf("BacklogLen (-want +got):\n%s", diff)
			}
			var sums [NumSoftnetCounters]float64
			for c := range sums {
				sums[c] = st.Sum(c)
			}
			if diff := cmp.Diff(tt.sums, sums, nanEqual); diff != "" {
				t.Errorf("sums (-want +got):\n%s", diff)
			}
			if st.HasBacklogLen != (tt.columns >= 13) || st.HasQueueLens != (tt.columns >= 15) {
				t.Errorf("HasBacklogLen %v, HasQueueLens %v for %d columns", st.HasBacklogLen, st.HasQueueLens, tt.columns)
			}
		})
	}
}

// TestSoftnetStatAgreesWithPrometheusProcfs checks the parser against
// prometheus/procfs's on every layout: the same values where both read
// them, and the CPU index where the kernel prints it.
func TestSoftnetStatAgreesWithPrometheusProcfs(t *testing.T) {
	for layout, path := range softnetLayouts {
		t.Run(layout, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "net"), 0o755); err != nil {
				t.Fatal(err)
			}
			b := readFixture(t, path)
			if err := os.WriteFile(filepath.Join(dir, "net", "softnet_stat"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			lib, err := promfs.NewFS(dir)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := lib.NetSoftnetStat()
			if err != nil {
				t.Fatal(err)
			}
			ours, err := parseSoftnetStat(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if len(theirs) != len(ours.CPUs) {
				t.Fatalf("%d rows, prometheus/procfs %d", len(ours.CPUs), len(theirs))
			}
			for i, th := range theirs {
				o := ours.CPUs[i]
				want := promfs.SoftnetStat{
					Processed:      o.Counters[SoftnetProcessed],
					Dropped:        o.Counters[SoftnetDropped],
					TimeSqueezed:   o.Counters[SoftnetTimeSqueeze],
					CPUCollision:   o.Counters[SoftnetCPUCollision],
					ReceivedRps:    o.Counters[SoftnetReceivedRPS],
					FlowLimitCount: o.Counters[SoftnetFlowLimit],
					Width:          ours.Columns,
				}
				if ours.HasBacklogLen {
					want.SoftnetBacklogLen, want.Index = o.BacklogLen, uint32(o.CPU)
				} else {
					want.Index = th.Index // numbered by row: not compared
				}
				if diff := cmp.Diff(want, th); diff != "" {
					t.Errorf("row %d: (-ours +prometheus/procfs):\n%s", i+1, diff)
				}
			}
		})
	}
}

func TestSoftnetStatQueueLens(t *testing.T) {
	in := "00000010 00000001 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 0000000a 00000000 00000004 00000006\n" +
		"00000020 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000005 00000000 00000000\n"
	st, err := parseSoftnetStat(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []SoftnetCPU{
		{CPU: 0, Counters: SoftnetRow{SoftnetProcessed: 0x10, SoftnetDropped: 1, SoftnetTimeSqueeze: 2}, BacklogLen: 10, InputQueueLen: 4, ProcessQueueLen: 6},
		{CPU: 5, Counters: SoftnetRow{SoftnetProcessed: 0x20}},
	}
	if diff := cmp.Diff(want, st.CPUs); diff != "" {
		t.Errorf("CPUs (-want +got):\n%s", diff)
	}
}

func TestSoftnetStatTrees(t *testing.T) {
	tests := []struct {
		tree    string
		cpus    int
		wantErr error
	}{
		{tree: "linux-6.18", cpus: 2},
		{tree: "linux-2.6.32", cpus: 2},
		{tree: "no-conntrack", cpus: 2},
		{tree: "empty", wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			st, err := fixture(t, tt.tree).SoftnetStat()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if len(st.CPUs) != tt.cpus {
				t.Errorf("%d CPUs, want %d", len(st.CPUs), tt.cpus)
			}
		})
	}
}

func TestBacklogSysctls(t *testing.T) {
	tests := []struct {
		tree, name string
		want       int64
		wantErr    error
	}{
		{"linux-6.18", "net.core.netdev_max_backlog", 1000, nil},
		{"linux-6.18", "net.core.netdev_budget", 300, nil},
		{"linux-6.18", "net.core.netdev_budget_usecs", 8000, nil},
		{"linux-2.6.32", "net.core.netdev_max_backlog", 1000, nil},
		{"linux-2.6.32", "net.core.netdev_budget", 300, nil},
		// netdev_budget_usecs appeared in 4.12.
		{"linux-2.6.32", "net.core.netdev_budget_usecs", 0, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.tree+"/"+tt.name, func(t *testing.T) {
			v, err := fixture(t, tt.tree).Sysctl(tt.name)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (len(v) != 1 || v[0] != tt.want) {
				t.Errorf("%s = %v, want [%d]", tt.name, v, tt.want)
			}
		})
	}
}

func TestParseSoftnetStatErrors(t *testing.T) {
	row := func(n int) string { return strings.TrimSpace(strings.Repeat("00000001 ", n)) }
	tests := map[string]struct {
		in   string
		want string
	}{
		"empty":          {"", "no CPU rows"},
		"blank lines":    {"\n\n", "no CPU rows"},
		"too few":        {row(8) + "\n", "row 1 has 8 columns, want at least 9"},
		"ragged":         {row(13) + "\n" + row(11) + "\n", "row 2 has 11 columns, row 1 has 13"},
		"not hex":        {row(10) + " zz\n", `row 1 column 11: "zz" is not a 32-bit hexadecimal number`},
		"over 32 bits":   {"100000000 " + row(10) + "\n", `row 1 column 1: "100000000"`},
		"negative":       {"-1 " + row(10) + "\n", `row 1 column 1: "-1"`},
		"bad cpu column": {row(12) + " x\n", `row 1 column 13: "x"`},
		"cpu repeated":   {row(13) + "\n" + row(13) + "\n", "row 2 is CPU 1 after CPU 1"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseSoftnetStat(strings.NewReader(tt.in))
			if !errors.Is(err, ErrFileParse) {
				t.Fatalf("error = %v, want ErrFileParse", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

// softnet builds a SoftnetStat of the given layout from (CPU, processed,
// dropped) triples.
func softnet(columns int, rows ...[3]int) SoftnetStat {
	var st SoftnetStat
	st.setColumns(columns)
	for _, r := range rows {
		c := SoftnetCPU{CPU: r[0]}
		if !st.HasBacklogLen {
			c.CPU = -1
		}
		c.Counters[SoftnetProcessed] = uint32(r[1])
		c.Counters[SoftnetDropped] = uint32(r[2])
		st.CPUs = append(st.CPUs, c)
	}
	return st
}

func TestSoftnetTotals(t *testing.T) {
	const top = 1<<32 - 1
	steps := []struct {
		name               string
		read               SoftnetStat
		processed, dropped float64
	}{
		{"first read: the kernel's sums", softnet(15, [3]int{0, 100, 1}, [3]int{1, 200, 2}), 300, 3},
		{"growth", softnet(15, [3]int{0, 150, 1}, [3]int{1, 260, 5}), 410, 6},
		{"CPU 1 wraps", softnet(15, [3]int{0, 150, 1}, [3]int{1, top - 9, 5}), 410 + (top - 9 - 260), 6},
		{"after the wrap", softnet(15, [3]int{0, 150, 1}, [3]int{1, 20, 5}), 410 + (top - 9 - 260) + 30, 6},
		{"CPU 1 offline", softnet(15, [3]int{0, 160, 1}), 410 + (top - 9 - 260) + 40, 6},
		{"CPU 1 back, grown; CPU 7 new: baseline only", softnet(15, [3]int{0, 160, 1}, [3]int{1, 25, 5}, [3]int{7, 5000, 50}),
			410 + (top - 9 - 260) + 45, 6},
		{"CPU 7 grows", softnet(15, [3]int{0, 160, 1}, [3]int{1, 25, 5}, [3]int{7, 5001, 52}), 410 + (top - 9 - 260) + 46, 8},
		{"layout change: new baselines", softnet(13, [3]int{0, 1, 1}, [3]int{1, 1, 1}), 410 + (top - 9 - 260) + 46, 8},
		{"after the change", softnet(13, [3]int{0, 3, 1}, [3]int{1, 1, 4}), 410 + (top - 9 - 260) + 48, 11},
	}
	var tot SoftnetTotals
	for _, s := range steps {
		got := tot.Update(s.read)
		if got[SoftnetProcessed] != s.processed || got[SoftnetDropped] != s.dropped {
			t.Fatalf("%s: processed %v dropped %v, want %v %v", s.name, got[SoftnetProcessed], got[SoftnetDropped], s.processed, s.dropped)
		}
		if !math.IsNaN(got[SoftnetFlowLimit]) != s.read.Has[SoftnetFlowLimit] {
			t.Fatalf("%s: flow limit %v with Has %v", s.name, got[SoftnetFlowLimit], s.read.Has[SoftnetFlowLimit])
		}
	}
}

// On kernels that do not print the CPU index, rows are matched by position
// only while their number stays the same.
func TestSoftnetTotalsByRow(t *testing.T) {
	var tot SoftnetTotals
	steps := []struct {
		read      SoftnetStat
		processed float64
	}{
		{softnet(11, [3]int{0, 10, 0}, [3]int{0, 20, 0}, [3]int{0, 30, 0}), 60},
		{softnet(11, [3]int{0, 11, 0}, [3]int{0, 22, 0}, [3]int{0, 33, 0}), 66},
		// A CPU went offline: the rows shifted, nothing can be added.
		{softnet(11, [3]int{0, 12, 0}, [3]int{0, 34, 0}), 66},
		{softnet(11, [3]int{0, 13, 0}, [3]int{0, 36, 0}), 69},
	}
	for i, s := range steps {
		got := tot.Update(s.read)
		if got[SoftnetProcessed] != s.processed {
			t.Fatalf("step %d: processed %v, want %v", i, got[SoftnetProcessed], s.processed)
		}
		if got[SoftnetReceivedRPS] != 0 {
			t.Fatalf("step %d: received_rps %v, want 0 (printed, never moved)", i, got[SoftnetReceivedRPS])
		}
	}
}

func FuzzParseSoftnetStat(f *testing.F) {
	for _, path := range softnetLayouts {
		f.Add(readFixture(f, path))
	}
	f.Add([]byte("00000001 00000002 00000003 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"))
	f.Add([]byte("1 2 3 4 5 6 7 8 9\n1 2 3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return // over the fuzz size cap: larger inputs only slow the fuzzer
		}
		st, err := parseSoftnetStat(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(st.CPUs) == 0 || st.Columns < 9 {
			t.Fatalf("no error but %d rows of %d columns for %q", len(st.CPUs), st.Columns, b)
		}
		for _, c := range st.CPUs {
			if (c.CPU >= 0) != st.HasBacklogLen {
				t.Fatalf("CPU %d with HasBacklogLen %v", c.CPU, st.HasBacklogLen)
			}
		}
		var tot SoftnetTotals
		a := tot.Update(st)
		bb := tot.Update(st)
		if diff := cmp.Diff(a, bb, nanEqual); diff != "" {
			t.Fatalf("the same read twice moved the totals (-first +second):\n%s", diff)
		}
	})
}

// BenchmarkSoftnetStat reads this host's /proc/net/softnet_stat and
// follows its totals, as a collector cycle does.
func BenchmarkSoftnetStat(b *testing.B) {
	fs, err := NewFS("/")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fs.SoftnetStat(); err != nil {
		testenv.Require(b, "/proc/net/softnet_stat", err)
	}
	var tot SoftnetTotals
	b.ReportAllocs()
	for b.Loop() {
		st, err := fs.SoftnetStat()
		if err != nil {
			b.Fatal(err)
		}
		tot.Update(st)
	}
}

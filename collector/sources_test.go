package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/procfs"
)

func fixtureFS(t testing.TB, tree string) procfs.FS {
	t.Helper()
	fs, err := procfs.NewFS(filepath.Join("..", "testdata", tree))
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestSysctlSource(t *testing.T) {
	snap := NewSnapshot(time.Time{})
	if err := (&sysctlSource{fs: fixtureFS(t, "linux-2.6.32")}).Collect(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	want := []Sysctl{
		{"net.core.somaxconn", 128},
		{"net.ipv4.tcp_max_syn_backlog", 2048},
		{"net.ipv4.tcp_syncookies", 1},
		{"net.ipv4.tcp_abort_on_overflow", 0},
		{"net.ipv4.tcp_synack_retries", 5},
		{"net.ipv4.ip_local_port_range.min", 32768},
		{"net.ipv4.ip_local_port_range.max", 61000},
	}
	if diff := cmp.Diff(want, snap.Sysctls); diff != "" {
		t.Errorf("Sysctls (-want +got):\n%s", diff)
	}
	if v, ok := snap.Sysctl("net.core.somaxconn"); !ok || v != 128 {
		t.Errorf("Sysctl(somaxconn) = %d, %v", v, ok)
	}
}

func TestSysctlSourceNothingReadable(t *testing.T) {
	err := (&sysctlSource{fs: fixtureFS(t, "empty")}).Collect(context.Background(), NewSnapshot(time.Time{}))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error = %v, want one wrapping os.ErrNotExist", err)
	}
}

func TestConntrackSources(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		tree          string
		want          Conntrack
		tableErr      error
		statsErr      error
		skipNetlinkAs bool
	}{
		{tree: "linux-2.6.32", want: Conntrack{
			Entries: 62882, Limit: 65536, Buckets: 16384, StatsVia: "procfs",
			Found: 0x12a4b1 + 0x13b5c2, Invalid: 0xc1 + 0xd2, Insert: 0x3fa112 + 0x40b223,
			InsertFailed: 4, Drop: 0x15, EarlyDrop: 0, ICMPError: 0,
			SearchRestart: nan, ClashResolve: nan, ChainTooLong: nan,
		}},
		{tree: "no-conntrack", tableErr: ErrNoData, statsErr: ErrNoData, want: Conntrack{
			Entries: nan, Limit: nan, Buckets: nan,
			Found: nan, Invalid: nan, Insert: nan, InsertFailed: nan, Drop: nan,
			EarlyDrop: nan, ICMPError: nan, SearchRestart: nan, ClashResolve: nan, ChainTooLong: nan,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			fs := fixtureFS(t, tt.tree)
			snap := NewSnapshot(time.Time{})
			if err := (&conntrackSource{fs: fs}).Collect(context.Background(), snap); !errors.Is(err, tt.tableErr) {
				t.Fatalf("conntrack error = %v, want %v", err, tt.tableErr)
			}
			stats := newConntrackStatsSource(fs, nil)
			defer stats.Close()
			if err := stats.Collect(context.Background(), snap); !errors.Is(err, tt.statsErr) {
				t.Fatalf("conntrack_stats error = %v, want %v", err, tt.statsErr)
			}
			if diff := cmp.Diff(tt.want, snap.Conntrack, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("Conntrack (-want +got):\n%s", diff)
			}
		})
	}
}

// invalidSegments is how many invalid TCP segments the fallback test sends.
const invalidSegments = 5

// TestConntrackStatsNetlinkFallback: on a kernel without
// /proc/net/stat/nf_conntrack the source asks ctnetlink. In a namespace
// that tracks traffic, its counters must match the namespace's own
// stat file read just before and after.
func TestConntrackStatsNetlinkFallback(t *testing.T) {
	ns := netnstest.New(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft (package nftables) is needed to make the namespace track flows")
	}
	if out, err := ns.Exec(context.Background(), "nft", "add table inet swct; add chain inet swct in { type filter hook input priority 0; }; add rule inet swct in ct state new counter"); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	// A root whose proc/net is the calling thread's: read inside ns.Do it
	// is the namespace's own stat file, the one ctnetlink must agree with.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/thread-self/net", filepath.Join(root, "proc", "net")); err != nil {
		t.Fatal(err)
	}
	nsFS, err := procfs.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	var snap *Snapshot
	var before, after procfs.ConntrackStat
	src := newConntrackStatsSource(fixtureFS(t, "no-conntrack-procfs"), nil)
	defer src.Close()
	err = ns.Do(func() error {
		// 6.x counts only trouble (invalid, drop, …), so make some: TCP
		// segments with SYN and FIN both set are invalid to conntrack.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		seg := make([]byte, 20)
		binary.BigEndian.PutUint16(seg[0:], 1234) // source port
		binary.BigEndian.PutUint16(seg[2:], 5555) // destination port
		seg[12], seg[13] = 5<<4, 0x03             // data offset; SYN|FIN
		for range invalidSegments {
			if err := unix.Sendto(fd, seg, 0, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				return err
			}
		}
		if before, err = nsFS.ConntrackStat(); err != nil {
			return err
		}
		snap = NewSnapshot(time.Time{})
		snap.Conntrack.Entries = 1 // the table source found conntrack
		if err := src.Collect(context.Background(), snap); err != nil {
			return err
		}
		after, err = nsFS.ConntrackStat()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Conntrack.StatsVia != "ctnetlink" {
		t.Fatalf("StatsVia = %q, want ctnetlink", snap.Conntrack.StatsVia)
	}
	if snap.Conntrack.Invalid < invalidSegments {
		t.Errorf("invalid = %v via ctnetlink, want at least the %d invalid segments sent", snap.Conntrack.Invalid, invalidSegments)
	}
	for _, c := range []struct {
		name string
		i    int
		got  float64
	}{
		{"found", procfs.CTFound, snap.Conntrack.Found},
		{"insert", procfs.CTInsert, snap.Conntrack.Insert},
		{"insert_failed", procfs.CTInsertFailed, snap.Conntrack.InsertFailed},
		{"drop", procfs.CTDrop, snap.Conntrack.Drop},
		{"early_drop", procfs.CTEarlyDrop, snap.Conntrack.EarlyDrop},
		{"invalid", procfs.CTInvalid, snap.Conntrack.Invalid},
	} {
		if lo, hi := before.Sum(c.i), after.Sum(c.i); c.got < lo || c.got > hi {
			t.Errorf("%s via ctnetlink = %v, the namespace's stat file said %v before and %v after", c.name, c.got, lo, hi)
		}
	}
	if !math.IsNaN(snap.Conntrack.ClashResolve) {
		t.Errorf("ClashResolve = %v via ctnetlink, which does not carry it; want NaN", snap.Conntrack.ClashResolve)
	}
}

// TestConntrackTotalsWrap: the kernel's per-CPU counters are 32-bit and
// wrap; the totals must keep growing by the real change.
func TestConntrackTotalsWrap(t *testing.T) {
	var has [procfs.NumCTCounters]bool
	has[procfs.CTInsert] = true
	row := func(v uint32) procfs.ConntrackRow {
		var r procfs.ConntrackRow
		r[procfs.CTInsert] = v
		return r
	}
	var a ctTotals
	var c Conntrack
	steps := []struct {
		via  string
		rows []procfs.ConntrackRow
		want float64
	}{
		{"procfs", []procfs.ConntrackRow{row(3_000_000_000), row(4_294_967_000)}, 3_000_000_000 + 4_294_967_000},
		// CPU 1 wraps: +296 to 2^32, then to 100.
		{"procfs", []procfs.ConntrackRow{row(3_000_000_005), row(100)}, 3_000_000_000 + 4_294_967_000 + 5 + 396},
		{"procfs", []procfs.ConntrackRow{row(3_000_000_005), row(101)}, 3_000_000_000 + 4_294_967_000 + 5 + 397},
		// A CPU comes online: start again from the sums.
		{"procfs", []procfs.ConntrackRow{row(1), row(2), row(3)}, 6},
		// The path changes: start again too.
		{"ctnetlink", []procfs.ConntrackRow{row(10), row(20), row(30)}, 60},
	}
	for i, st := range steps {
		a.update(st.via, has, st.rows, &c)
		if c.Insert != st.want || c.StatsVia != st.via {
			t.Errorf("step %d: insert %v via %q, want %v via %q", i, c.Insert, c.StatsVia, st.want, st.via)
		}
		if !math.IsNaN(c.Drop) {
			t.Errorf("step %d: drop %v for a counter the kernel does not print, want NaN", i, c.Drop)
		}
	}
}

type fakeSource struct {
	name string
	err  error
	fill func(*Snapshot)
}

func (f fakeSource) Name() string { return f.name }
func (f fakeSource) Collect(ctx context.Context, s *Snapshot) error {
	if f.fill != nil {
		f.fill(s)
	}
	return f.err
}

func TestSamplerDegradesOneSourceAtATime(t *testing.T) {
	h := NewHistory(3)
	s := NewSampler([]Source{
		fakeSource{name: "a", err: errors.New("broken")},
		fakeSource{name: "b", err: ErrNoData},
		fakeSource{name: "c", fill: func(s *Snapshot) { s.TCP.PassiveOpens = 7 }},
	}, h)
	at := time.Unix(100, 0)
	snap := s.Sample(context.Background(), at)
	got := make(map[string][2]bool)
	for _, r := range snap.Sources {
		got[r.Name] = [2]bool{r.Success, r.NoData}
	}
	want := map[string][2]bool{"a": {false, false}, "b": {false, true}, "c": {true, false}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("source results (-want +got):\n%s", diff)
	}
	if snap.TCP.PassiveOpens != 7 || s.Latest() != snap || h.Latest() != snap || !snap.Time.Equal(at) {
		t.Errorf("snapshot not filled and published: %+v", snap.TCP)
	}
	if r, _ := snap.Source("a"); r.Err == nil {
		t.Error("source a lost its error")
	}
}

func TestHistoryRing(t *testing.T) {
	h := NewHistory(3)
	if h.Latest() != nil || h.Len() != 0 {
		t.Fatal("new history not empty")
	}
	for i := 1; i <= 5; i++ {
		h.Add(NewSnapshot(time.Unix(int64(i), 0)))
	}
	var got []int64
	for _, s := range h.All() {
		got = append(got, s.Time.Unix())
	}
	if diff := cmp.Diff([]int64{3, 4, 5}, got); diff != "" {
		t.Errorf("All (-want +got):\n%s", diff)
	}
	if n := len(h.Since(time.Unix(4, 0))); n != 2 {
		t.Errorf("Since(4) has %d snapshots, want 2", n)
	}
	if h.Latest().Time.Unix() != 5 || h.Len() != 3 || h.Cap() != 3 {
		t.Errorf("Latest %v Len %d Cap %d", h.Latest().Time, h.Len(), h.Cap())
	}
}

func TestHistoryResize(t *testing.T) {
	h := NewHistory(4)
	for i := 1; i <= 6; i++ {
		h.Add(NewSnapshot(time.Unix(int64(i), 0)))
	}
	times := func() (out []int64) {
		for _, s := range h.All() {
			out = append(out, s.Time.Unix())
		}
		return out
	}
	h.Resize(2)
	if diff := cmp.Diff([]int64{5, 6}, times()); diff != "" {
		t.Errorf("after shrinking (-want +got):\n%s", diff)
	}
	h.Resize(5)
	h.Add(NewSnapshot(time.Unix(7, 0)))
	if diff := cmp.Diff([]int64{5, 6, 7}, times()); diff != "" {
		t.Errorf("after growing (-want +got):\n%s", diff)
	}
	if h.Cap() != 5 {
		t.Errorf("Cap = %d, want 5", h.Cap())
	}
}

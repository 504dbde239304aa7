package collector

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

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

// TestConntrackStatsNetlinkFallback points the procfs root at a tree whose
// kernel lacks /proc/net/stat/nf_conntrack, so the source must ask
// ctnetlink, and checks its counters against the real file of this host
// read before and after.
func TestConntrackStatsNetlinkFallback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ctnetlink stats need CAP_NET_ADMIN: run the tests as root")
	}
	host, err := procfs.NewFS("/")
	if err != nil {
		t.Fatal(err)
	}
	before, err := host.ConntrackStat()
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("this kernel has no /proc/net/stat/nf_conntrack to compare with (nf_conntrack not loaded)")
	}
	if err != nil {
		t.Fatal(err)
	}
	snap := NewSnapshot(time.Time{})
	snap.Conntrack.Entries = 1 // the table source found conntrack
	src := newConntrackStatsSource(fixtureFS(t, "no-conntrack-procfs"), nil)
	defer src.Close()
	if err := src.Collect(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	after, err := host.ConntrackStat()
	if err != nil {
		t.Fatal(err)
	}
	if snap.Conntrack.StatsVia != "ctnetlink" {
		t.Fatalf("StatsVia = %q, want ctnetlink", snap.Conntrack.StatsVia)
	}
	for _, c := range []struct {
		name        string
		lo, got, hi float64
	}{
		{"found", before.Found, snap.Conntrack.Found, after.Found},
		{"insert", before.Insert, snap.Conntrack.Insert, after.Insert},
		{"insert_failed", before.InsertFailed, snap.Conntrack.InsertFailed, after.InsertFailed},
		{"drop", before.Drop, snap.Conntrack.Drop, after.Drop},
		{"early_drop", before.EarlyDrop, snap.Conntrack.EarlyDrop, after.EarlyDrop},
		{"invalid", before.Invalid, snap.Conntrack.Invalid, after.Invalid},
	} {
		if c.got < c.lo || c.got > c.hi {
			t.Errorf("%s via ctnetlink = %v, procfs read %v before and %v after", c.name, c.got, c.lo, c.hi)
		}
	}
	if !math.IsNaN(snap.Conntrack.ClashResolve) {
		t.Errorf("ClashResolve = %v via ctnetlink, which does not carry it; want NaN", snap.Conntrack.ClashResolve)
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

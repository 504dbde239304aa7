package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/testenv"
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

// sampleOnce runs sources (in the default layout) once at t.
func sampleOnce(t testing.TB, at time.Time, sources ...Source) *Snapshot {
	t.Helper()
	s, err := NewSampler(DefaultSchema(), sources, nil, NewHistory(Retention{}))
	if err != nil {
		t.Fatal(err)
	}
	return s.Sample(context.Background(), at)
}

// values returns the named host values of s.
func values(s *Snapshot, names ...string) map[string]float64 {
	out := map[string]float64{}
	for _, n := range names {
		out[n] = s.Get(n)
	}
	return out
}

func TestSysctlSource(t *testing.T) {
	snap := sampleOnce(t, time.Unix(1, 0), &sysctlSource{fs: fixtureFS(t, "linux-2.6.32")})
	if r := snap.Sources[0]; !r.Success {
		t.Fatalf("sysctl source: %+v", r)
	}
	want := map[string]float64{
		"somaxconn": 128, "tcp_max_syn_backlog": 2048, "syncookies": 1, "tcp_abort_on_overflow": 0,
		"tcp_synack_retries": 5, "ip_local_port_range_min": 32768, "ip_local_port_range_max": 61000,
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	if diff := cmp.Diff(want, values(snap, names...)); diff != "" {
		t.Errorf("sysctls (-want +got):\n%s", diff)
	}
}

func TestSysctlSourceNothingReadable(t *testing.T) {
	snap := sampleOnce(t, time.Unix(1, 0), &sysctlSource{fs: fixtureFS(t, "empty")})
	if err := snap.Sources[0].Err; err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error = %v, want one wrapping os.ErrNotExist", err)
	}
}

func TestTCPStatSource(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		tree string
		want map[string]float64
	}{
		{"linux-6.18", map[string]float64{
			"listen_overflows": 0, "listen_drops": 0, "syncookies_sent": 0, "syncookies_recv": 0, "syncookies_failed": 0,
			"syn_queue_drops": 0, "syn_queue_cookies": 0,
			"active_opens": 24, "passive_opens": 2, "attempt_fails": 0, "estab_resets": 0, "established": 0,
		}},
		// The older layout has no TCPReqQFull* fields: they stay no data.
		{"linux-2.6.32", map[string]float64{
			"listen_overflows": 52311, "listen_drops": 52311, "syncookies_sent": 1843, "syncookies_recv": 1702, "syncookies_failed": 96,
			"syn_queue_drops": nan, "syn_queue_cookies": nan,
			"active_opens": 1203312, "passive_opens": 88412300, "attempt_fails": 2231, "estab_resets": 901223, "established": 10231,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			snap := sampleOnce(t, time.Unix(1, 0), &tcpstatSource{fs: fixtureFS(t, tt.tree)})
			if r := snap.Sources[0]; !r.Success {
				t.Fatalf("tcpstat: %+v", r)
			}
			var names []string
			for n := range tt.want {
				names = append(names, n)
			}
			if diff := cmp.Diff(tt.want, values(snap, names...), cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
	// Every declared value is one the source reads.
	if len(tcpstatFields) != len(tcpstatDecl.Values) {
		t.Errorf("%d fields, %d declared values", len(tcpstatFields), len(tcpstatDecl.Values))
	}
}

func TestTCPStatSourceMissing(t *testing.T) {
	snap := sampleOnce(t, time.Unix(1, 0), &tcpstatSource{fs: fixtureFS(t, "empty")})
	if err := snap.Sources[0].Err; !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error = %v, want os.ErrNotExist", err)
	}
	if v := snap.Get("listen_overflows"); !math.IsNaN(v) {
		t.Errorf("missing files gave listen_overflows %v", v)
	}
}

var conntrackNames = []string{
	"conntrack_entries", "conntrack_limit", "conntrack_buckets", "nf_conntrack_max",
	"conntrack_found", "conntrack_invalid", "conntrack_insert", "conntrack_insert_failed", "conntrack_drop",
	"conntrack_early_drop", "conntrack_icmp_error", "conntrack_search_restart", "conntrack_clash_resolve", "conntrack_chain_too_long",
}

func TestConntrackSources(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		tree     string
		want     map[string]float64
		tableErr error
		statsErr error
	}{
		{tree: "linux-2.6.32", want: map[string]float64{
			"conntrack_entries": 62882, "conntrack_limit": 65536, "conntrack_buckets": 16384, "nf_conntrack_max": 65536,
			"conntrack_found": 0x12a4b1 + 0x13b5c2, "conntrack_invalid": 0xc1 + 0xd2, "conntrack_insert": 0x3fa112 + 0x40b223,
			"conntrack_insert_failed": 4, "conntrack_drop": 0x15, "conntrack_early_drop": 0, "conntrack_icmp_error": 0,
			"conntrack_search_restart": nan, "conntrack_clash_resolve": nan, "conntrack_chain_too_long": nan,
		}},
		{tree: "no-conntrack", tableErr: ErrNoData, statsErr: ErrNoData, want: map[string]float64{
			"conntrack_entries": nan, "conntrack_limit": nan, "conntrack_buckets": nan, "nf_conntrack_max": nan,
			"conntrack_found": nan, "conntrack_invalid": nan, "conntrack_insert": nan, "conntrack_insert_failed": nan,
			"conntrack_drop": nan, "conntrack_early_drop": nan, "conntrack_icmp_error": nan,
			"conntrack_search_restart": nan, "conntrack_clash_resolve": nan, "conntrack_chain_too_long": nan,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			fs := fixtureFS(t, tt.tree)
			stats := newConntrackStatsSource(fs, nil)
			defer stats.Close()
			snap := sampleOnce(t, time.Unix(1, 0), &conntrackSource{fs: fs}, stats)
			for i, want := range []error{tt.tableErr, tt.statsErr} {
				r := snap.Sources[i]
				if want == nil && !r.Success || want != nil && (!r.NoData || !errors.Is(want, ErrNoData)) {
					t.Errorf("%s: %+v, want error %v", r.Name, r, want)
				}
			}
			if diff := cmp.Diff(tt.want, values(snap, conntrackNames...), cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("conntrack (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConntrackUnlimited: nf_conntrack_max 0 means no limit to the kernel.
// The table has no fill then (conntrack_limit no data), while the sysctl
// is still exported as it is.
func TestConntrackUnlimited(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "proc", "sys", "net", "netfilter")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"nf_conntrack_count": "1200\n", "nf_conntrack_max": "0\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := procfs.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	snap := sampleOnce(t, time.Unix(1, 0), &conntrackSource{fs: fs})
	want := map[string]float64{"conntrack_entries": 1200, "conntrack_limit": math.NaN(), "nf_conntrack_max": 0}
	if diff := cmp.Diff(want, values(snap, "conntrack_entries", "conntrack_limit", "nf_conntrack_max"), cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
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
	testenv.Tool(t, "nft") // to make the namespace track flows
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
	fixture := fixtureFS(t, "no-conntrack-procfs")
	src := newConntrackStatsSource(fixture, nil)
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
		// The table source (on the fixture) finds conntrack, the stats
		// file is absent: the stats come from ctnetlink.
		snap = sampleOnce(t, time.Unix(1, 0), &conntrackSource{fs: fixture}, src)
		if r := snap.Sources[1]; !r.Success {
			return fmt.Errorf("conntrack_stats: %+v", r)
		}
		after, err = nsFS.ConntrackStat()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if src.totals.via != "ctnetlink" {
		t.Fatalf("read via %q, want ctnetlink", src.totals.via)
	}
	if v := snap.Get("conntrack_invalid"); v < invalidSegments {
		t.Errorf("invalid = %v via ctnetlink, want at least the %d invalid segments sent", v, invalidSegments)
	}
	for _, c := range []struct {
		name string
		i    int
		got  float64
	}{
		{"found", procfs.CTFound, snap.Get("conntrack_found")},
		{"insert", procfs.CTInsert, snap.Get("conntrack_insert")},
		{"insert_failed", procfs.CTInsertFailed, snap.Get("conntrack_insert_failed")},
		{"drop", procfs.CTDrop, snap.Get("conntrack_drop")},
		{"early_drop", procfs.CTEarlyDrop, snap.Get("conntrack_early_drop")},
		{"invalid", procfs.CTInvalid, snap.Get("conntrack_invalid")},
	} {
		if lo, hi := before.Sum(c.i), after.Sum(c.i); c.got < lo || c.got > hi {
			t.Errorf("%s via ctnetlink = %v, the namespace's stat file said %v before and %v after", c.name, c.got, lo, hi)
		}
	}
	if v := snap.Get("conntrack_clash_resolve"); !math.IsNaN(v) {
		t.Errorf("clash_resolve = %v via ctnetlink, which does not carry it; want NaN", v)
	}
}

// TestConntrackTotalsWrap: the kernel's per-CPU counters are 32-bit and
// wrap; the totals must keep growing by the real change, and never fall
// back when the read path or the number of CPUs changes (rules would take
// the fall for a counter restart and count the whole sum again).
func TestConntrackTotalsWrap(t *testing.T) {
	var has [procfs.NumCTCounters]bool
	has[procfs.CTInsert] = true
	row := func(v uint32) procfs.ConntrackRow {
		var r procfs.ConntrackRow
		r[procfs.CTInsert] = v
		return r
	}
	var a ctTotals
	const start = 3_000_000_000 + 4_294_967_000
	steps := []struct {
		via  string
		rows []procfs.ConntrackRow
		want float64
	}{
		{"procfs", []procfs.ConntrackRow{row(3_000_000_000), row(4_294_967_000)}, start},
		// CPU 1 wraps: +296 to 2^32, then to 100.
		{"procfs", []procfs.ConntrackRow{row(3_000_000_005), row(100)}, start + 5 + 396},
		{"procfs", []procfs.ConntrackRow{row(3_000_000_005), row(101)}, start + 5 + 397},
		// A CPU comes online: the rows cannot be matched; the totals go on.
		{"procfs", []procfs.ConntrackRow{row(1), row(2), row(3)}, start + 5 + 397},
		{"procfs", []procfs.ConntrackRow{row(2), row(2), row(3)}, start + 5 + 398},
		// The path changes: likewise.
		{"ctnetlink", []procfs.ConntrackRow{row(10), row(20), row(30)}, start + 5 + 398},
		{"ctnetlink", []procfs.ConntrackRow{row(10), row(20), row(32)}, start + 5 + 400},
	}
	si, _ := DefaultSchema().SourceIndex("conntrack_stats")
	for i, st := range steps {
		s := newSnapshot(DefaultSchema(), time.Unix(int64(i), 0))
		a.update(st.via, has, st.rows, s.writer(si))
		if got := s.Get("conntrack_insert"); got != st.want || a.via != st.via {
			t.Errorf("step %d: insert %v via %q, want %v via %q", i, got, a.via, st.want, st.via)
		}
		if v := s.Get("conntrack_drop"); !math.IsNaN(v) {
			t.Errorf("step %d: drop %v for a counter the kernel does not print, want NaN", i, v)
		}
	}
}

// fakeDecl declares a source of one host counter and one gauge.
func fakeDecl(name string) *Declaration {
	return &Declaration{Name: name, Values: []Value{
		{Name: name + "_count", Kind: Counter, Help: "a count"},
		{Name: name + "_level", Kind: Gauge, Help: "a level"},
	}}
}

type fakeSource struct {
	decl *Declaration
	err  error
	fill func(*Writer)
}

func (f fakeSource) Declaration() *Declaration { return f.decl }
func (f fakeSource) Collect(ctx context.Context, w *Writer) error {
	if f.fill != nil {
		f.fill(w)
	}
	return f.err
}

func TestSamplerDegradesOneSourceAtATime(t *testing.T) {
	a, b, c := fakeDecl("a"), fakeDecl("b"), fakeDecl("c")
	sc := MustSchema(a, b, c)
	h := NewHistory(Retention{Host: time.Minute})
	s, err := NewSampler(sc, []Source{
		fakeSource{decl: a, err: errors.New("broken")},
		fakeSource{decl: b, err: ErrNoData},
		fakeSource{decl: c, fill: func(w *Writer) { w.Set(0, 7) }},
	}, nil, h)
	if err != nil {
		t.Fatal(err)
	}
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
	if snap.Get("c_count") != 7 || s.Latest() != snap || h.Latest() != snap || !snap.Time.Equal(at) {
		t.Errorf("snapshot not filled and published: %v", snap.Get("c_count"))
	}
	if r, _ := snap.Source("a"); r.Err == nil {
		t.Error("source a lost its error")
	}
	if _, err := NewSampler(DefaultSchema(), []Source{fakeSource{decl: a}}, nil, h); err == nil {
		t.Error("a source outside the schema was accepted")
	}
}

func TestSchemaRejectsBadDeclarations(t *testing.T) {
	tests := map[string][]*Declaration{
		"duplicate source":   {fakeDecl("a"), fakeDecl("a")},
		"bad value name":     {{Name: "x", Values: []Value{{Name: "Bad-Name"}}}},
		"unknown kind":       {{Name: "x", Values: []Value{{Name: "v", Entity: "nope"}}}},
		"duplicate value":    {{Name: "x", Values: []Value{{Name: "v"}, {Name: "v"}}}},
		"kind of another":    {{Name: "x", Kinds: []EntityKind{{Name: "k", Labels: []Label{{Name: "l"}}}}}, {Name: "y", Values: []Value{{Name: "v", Entity: "k"}}}},
		"kind without label": {{Name: "x", Kinds: []EntityKind{{Name: "k"}}}},
		"metric exported twice differently": {{Name: "x", Values: []Value{
			{Name: "a", Kind: Counter, Metric: "m_total"}, {Name: "b", Kind: Gauge, Metric: "m_total"}}}},
		"item in no section": {{Name: "x", Values: []Value{{Name: "v"}}, Items: []Item{{ID: "i", Section: "nowhere", Value: "v"}}}},
		"item of no value":   {{Name: "x", Sections: []Section{{Name: "s"}}, Items: []Item{{ID: "i", Section: "s", Value: "nope"}}}},
	}
	for name, decls := range tests {
		if _, err := NewSchema(decls...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewSchema(DefaultSchema().Sources()...); err != nil {
		t.Errorf("the built-in declarations: %v", err)
	}
}

// historyTimes returns the times of the Snapshots h holds, in seconds.
func historyTimes(h *History) (out []int64) {
	for _, s := range h.All() {
		out = append(out, s.Time.Unix())
	}
	return out
}

// listenerLabelSets are label values shared between Snapshots, as the
// listeners source shares them.
var listenerLabelSets [][]string

// listenerSnapshot returns a Snapshot at second sec with n listeners,
// written as the listeners source writes them.
func listenerSnapshot(sec, n int) *Snapshot {
	for len(listenerLabelSets) < n {
		listenerLabelSets = append(listenerLabelSets, []string{"0.0.0.0", strconv.Itoa(1000 + len(listenerLabelSets))})
	}
	sc := DefaultSchema()
	s := newSnapshot(sc, time.Unix(int64(sec), 0))
	ref, _ := sc.Lookup(HostKind, "passive_opens")
	s.host[ref.Slot] = float64(sec)
	si, _ := sc.SourceIndex("listeners")
	w := s.writer(si)
	t := w.Table(KindListener, n)
	for i := range n {
		row := t.Add(listenerLabelSets[i]...)
		t.Set(row, lsnAcceptQueue, float64(i))
		t.Set(row, lsnAcceptLimit, 511)
		t.Set(row, lsnSockets, 1)
		t.SetAttr(row, attrProcess, "redis-server")
		t.SetAttr(row, attrPID, "4242")
		t.SetAttr(row, attrState, "sleeping")
	}
	w.finish()
	s.finish()
	return s
}

func TestHistoryRetention(t *testing.T) {
	h := NewHistory(Retention{Host: 3 * time.Second, Kinds: map[string]time.Duration{KindListener: time.Second}})
	if h.Latest() != nil || h.Len() != 0 {
		t.Fatal("new history not empty")
	}
	var held []*Snapshot
	for i := 1; i <= 10; i++ {
		s := listenerSnapshot(i, 3)
		held = append(held, s)
		h.Add(s)
	}
	if diff := cmp.Diff([]int64{7, 8, 9, 10}, historyTimes(h)); diff != "" {
		t.Errorf("All (-want +got):\n%s", diff)
	}
	if n := len(h.Since(time.Unix(9, 0))); n != 2 {
		t.Errorf("Since(9) has %d snapshots, want 2", n)
	}
	var withListeners []int64
	for _, s := range h.All() {
		if s.TableOf(KindListener) != nil {
			withListeners = append(withListeners, s.Time.Unix())
		}
		if s.Get("passive_opens") != float64(s.Time.Unix()) {
			t.Errorf("snapshot %v lost its host values", s.Time.Unix())
		}
	}
	if diff := cmp.Diff([]int64{9, 10}, withListeners); diff != "" {
		t.Errorf("snapshots still holding listeners (-want +got):\n%s", diff)
	}
	// A reader holding an old Snapshot still sees all of it.
	if held[6].TableOf(KindListener).Len() != 3 {
		t.Error("trimming changed a Snapshot a reader holds")
	}
	// Longer retention keeps more from now on.
	h.SetRetention(Retention{Host: time.Hour, Kinds: map[string]time.Duration{KindListener: time.Hour}})
	h.Add(listenerSnapshot(11, 3))
	if diff := cmp.Diff([]int64{7, 8, 9, 10, 11}, historyTimes(h)); diff != "" {
		t.Errorf("after a longer retention (-want +got):\n%s", diff)
	}
	// At least two Snapshots are kept whatever the retention.
	h.SetRetention(Retention{})
	if h.Len() != 2 {
		t.Errorf("Len = %d with no retention, want 2", h.Len())
	}
}

// TestHistoryMemoryBoundedByRules: with the built-in rules' retention, a
// History after 15 minutes at one sample a second holds listeners only for
// the last seconds, so its heap hardly depends on how many listeners there
// are; without it (every listener of every sample kept, as before) it
// grows with them.
func TestHistoryMemoryBoundedByRules(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 15 minutes of samples")
	}
	// What the built-in rules ask for (alerts.Retention), and the same
	// keeping every value of every Snapshot.
	ret := Retention{Host: 15*time.Minute + 2*time.Second, Kinds: map[string]time.Duration{KindListener: 17 * time.Second},
		Values: map[string][]string{HostKind: {"passive_opens", "listen_overflows"}, KindListener: {"accept_queue", "accept_queue_fill"}}}
	whole := ret
	whole.Values = nil
	heap := func(n int, r Retention) float64 {
		h := NewHistory(r)
		for sec := range 900 {
			h.Add(listenerSnapshot(sec, n))
		}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		runtime.KeepAlive(h)
		return float64(m.HeapAlloc) / (1 << 20)
	}
	base := heap(0, ret)
	for _, n := range []int{500, 2000, 5000} {
		got := heap(n, ret) - base
		all := heap(n, whole) - base
		t.Logf("%d listeners, 15 min: %.1f MiB above an empty history (%.1f MiB keeping every value)", n, got, all)
		if limit := 10.0 * float64(n) / 2000; got > max(limit, 2) {
			t.Errorf("%d listeners: %.1f MiB, want at most %.1f", n, got, limit)
		}
		if n > 0 && got >= all {
			t.Errorf("%d listeners: %.1f MiB keeping the windows' series, no less than %.1f keeping everything", n, got, all)
		}
	}
}

// TestHistoryThin: once a newer Snapshot is added, an older one keeps only
// the values Retention.Values names (the others read NaN), no attributes,
// no source results and no table of a kind with none named; the newest
// keeps everything, and a Snapshot handed out before is not changed.
func TestHistoryThin(t *testing.T) {
	ret := Retention{Host: time.Minute, Kinds: map[string]time.Duration{KindListener: time.Minute},
		Values: map[string][]string{HostKind: {"passive_opens"}, KindListener: {"accept_queue"}}}
	h := NewHistory(ret)
	first := listenerSnapshot(1, 3)
	first.Sources = []SourceResult{{Name: "listeners", Success: true}}
	h.Add(first)
	if h.Latest() != first {
		t.Fatal("the newest Snapshot is not kept as it is")
	}
	h.Add(listenerSnapshot(2, 3))
	old := h.All()[0]
	if old == first {
		t.Fatal("the older Snapshot was not thinned")
	}
	sc := DefaultSchema()
	opens, _ := sc.Lookup(HostKind, "passive_opens")
	overflows, _ := sc.Lookup(HostKind, "listen_overflows")
	queue, _ := sc.Lookup(KindListener, "accept_queue")
	limit, _ := sc.Lookup(KindListener, "accept_queue_limit")
	procSlot := slices.Index(sc.Attrs(KindListener), attrProcess)
	lt := old.Table(queue.KindIndex)
	if lt == nil || lt.Len() != 3 {
		t.Fatalf("older listener table %v, want 3 rows", lt)
	}
	got := []float64{old.Value(opens, -1), old.Value(queue, 2), lt.Value(2, queue.Slot)}
	if diff := cmp.Diff([]float64{1, 2, 2}, got); diff != "" {
		t.Errorf("kept values (-want +got):\n%s", diff)
	}
	for what, v := range map[string]float64{"listen_overflows": old.Value(overflows, -1), "accept_queue_limit": old.Value(limit, 1)} {
		if Present(v) {
			t.Errorf("older Snapshot keeps %s = %v, want NaN", what, v)
		}
	}
	if a := lt.Attr(0, procSlot); a != "" || old.Sources != nil {
		t.Errorf("older Snapshot keeps attribute %q and sources %v", a, old.Sources)
	}
	if row, ok := lt.Find([]string{"0.0.0.0", "1001"}); !ok || row != 1 {
		t.Errorf("Find in a thinned table = %d, %v", row, ok)
	}
	// The Snapshot handed out is whole.
	if v := first.Value(limit, 1); v != 511 || first.Table(queue.KindIndex).Attr(0, procSlot) != "redis-server" || first.Sources == nil {
		t.Errorf("the first Snapshot was changed: limit %v", v)
	}
	if v := h.Latest().Value(limit, 1); v != 511 {
		t.Errorf("newest accept_queue_limit %v, want 511", v)
	}
	// A kind no rule reads over a window has no table in older Snapshots.
	h.SetRetention(Retention{Host: time.Minute, Kinds: ret.Kinds, Values: map[string][]string{HostKind: {"passive_opens"}}})
	h.Add(listenerSnapshot(3, 3))
	if tb := h.All()[1].Table(queue.KindIndex); tb != nil {
		t.Errorf("listener table kept in an older Snapshot with no listener series named: %d rows", tb.Len())
	}
}

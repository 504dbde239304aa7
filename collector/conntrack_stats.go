package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/procfs"
)

// ConntrackDialFunc opens a ctnetlink connection.
type ConntrackDialFunc func() (*conntrack.Conn, error)

// conntrackStatsDecl declares the per-CPU counters summed, by their
// procfs.CT* index.
var conntrackStatsDecl = &Declaration{
	Name: "conntrack_stats",
	Values: []Value{
		procfs.CTFound:   {Name: "conntrack_found", Kind: Counter, Unit: "lookups", Help: "conntrack lookups that found an entry"},
		procfs.CTInvalid: {Name: "conntrack_invalid", Kind: Counter, Unit: "packets", Metric: "conntrack_invalid_total", Help: "Packets conntrack could not track (invalid state)."},
		procfs.CTInsert:  {Name: "conntrack_insert", Kind: Counter, Unit: "entries", Help: "conntrack entries inserted"},
		procfs.CTInsertFailed: {Name: "conntrack_insert_failed", Kind: Counter, Unit: "entries", Metric: "conntrack_insert_failures_total",
			Help: "Flows that could not be inserted into the conntrack table."},
		procfs.CTDrop: {Name: "conntrack_drop", Kind: Counter, Unit: "packets", Metric: "conntrack_drops_total",
			Help: "Packets dropped because a new flow could not be tracked, summed over CPUs."},
		procfs.CTEarlyDrop: {Name: "conntrack_early_drop", Kind: Counter, Unit: "entries", Metric: "conntrack_early_drops_total",
			Help: "Tracked flows evicted to make room for new ones while the table was full."},
		procfs.CTICMPError: {Name: "conntrack_icmp_error", Kind: Counter, Unit: "packets", Help: "ICMP errors conntrack could not match"},
		procfs.CTSearchRestart: {Name: "conntrack_search_restart", Kind: Counter, Unit: "lookups", Metric: "conntrack_search_restarts_total",
			Help: "conntrack table lookups restarted because of a concurrent resize."},
		procfs.CTClashResolve: {Name: "conntrack_clash_resolve", Kind: Counter, Unit: "entries", Help: "conntrack insert clashes resolved"},
		procfs.CTChainTooLong: {Name: "conntrack_chain_too_long", Kind: Counter, Unit: "entries", Help: "conntrack inserts refused for a too long hash chain"},
	},
	Items: []Item{
		{ID: "conntrack_drops", Section: "conntrack", What: "conntrack drops", Unit: "flows/s",
			Rate: []string{"conntrack_drop", "conntrack_early_drop", "conntrack_insert_failed"}},
	},
	Privilege: "conntrack stats need CAP_NET_ADMIN (this kernel has no /proc/net/stat/nf_conntrack): run as root",
}

// conntrackStatsSource reads the conntrack per-CPU counters (drop,
// early_drop, insert_failed, …) from /proc/net/stat/nf_conntrack, which
// needs no privilege, and where that file is absent (kernels built without
// CONFIG_NF_CONNTRACK_PROCFS) from ctnetlink, which needs CAP_NET_ADMIN.
//
// It never calls conntrack's StatsGlobal: with mdlayher/netlink ≥ v1.10 it
// waits forever for a DONE the kernel does not send. Count and limit come
// from the sysctls (conntrackSource) instead.
type conntrackStatsSource struct {
	fs   procfs.FS
	dial ConntrackDialFunc

	mu   sync.Mutex
	conn *conntrack.Conn // dialled on first need, dropped after an error

	totals ctTotals // only touched by Collect, which the sampler runs serially
}

func newConntrackStatsSource(fs procfs.FS, dial ConntrackDialFunc) *conntrackStatsSource {
	if dial == nil {
		dial = func() (*conntrack.Conn, error) { return conntrack.Dial(nil) }
	}
	return &conntrackStatsSource{fs: fs, dial: dial}
}

func (s *conntrackStatsSource) Declaration() *Declaration { return conntrackStatsDecl }

func (s *conntrackStatsSource) Collect(ctx context.Context, w *Writer) error {
	st, err := s.fs.ConntrackStat()
	if err == nil {
		s.totals.update("procfs", st.Has, st.CPUs, w)
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if !Present(w.Get("conntrack_entries")) {
		// No conntrack at all (the table source found no module).
		return ErrNoData
	}
	return s.collectNetlink(ctx, w)
}

// collectNetlink asks ctnetlink for the per-CPU stats. The call cannot take
// a deadline, so it runs aside and the connection is closed (which ends the
// call) when ctx is done first.
func (s *conntrackStatsSource) collectNetlink(ctx context.Context, w *Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		c, err := s.dial()
		if err != nil {
			return fmt.Errorf("ctnetlink: %w", classifyNetlinkErr(err))
		}
		s.conn = c
	}
	type result struct {
		stats []conntrack.Stats
		err   error
	}
	done := make(chan result, 1)
	conn := s.conn
	go func() {
		st, err := conn.Stats()
		done <- result{st, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		s.drop()
		return fmt.Errorf("ctnetlink stats: %w", ctx.Err())
	}
	if r.err != nil {
		s.drop()
		return fmt.Errorf("ctnetlink stats: %w", classifyNetlinkErr(r.err))
	}
	if len(r.stats) == 0 {
		return fmt.Errorf("ctnetlink stats: kernel returned no CPU rows")
	}
	slices.SortFunc(r.stats, func(a, b conntrack.Stats) int { return cmp.Compare(a.CPUID, b.CPUID) })
	rows := make([]procfs.ConntrackRow, len(r.stats))
	for i, st := range r.stats {
		row := &rows[i]
		row[procfs.CTFound], row[procfs.CTInvalid], row[procfs.CTInsert] = st.Found, st.Invalid, st.Insert
		row[procfs.CTInsertFailed], row[procfs.CTDrop], row[procfs.CTEarlyDrop] = st.InsertFailed, st.Drop, st.EarlyDrop
		row[procfs.CTICMPError], row[procfs.CTSearchRestart] = st.Error, st.SearchRestart
	}
	s.totals.update("ctnetlink", ctnetlinkHas, rows, w)
	return nil
}

// ctnetlinkHas are the counters ctnetlink's per-CPU stats carry.
var ctnetlinkHas = func() (has [procfs.NumCTCounters]bool) {
	for c := range has {
		has[c] = c != procfs.CTClashResolve && c != procfs.CTChainTooLong
	}
	return has
}()

// ctTotals turns the kernel's per-CPU conntrack counters, 32-bit and
// wrapping (on a busy NAT host found and insert wrap within hours), into
// running totals that only grow: each CPU's change since the last read is
// taken modulo 2^32. The totals start at the sums of the first read. When
// the read path or the number of CPUs changes, the rows cannot be matched
// to the last read: that read adds nothing, and the totals go on from it
// (never falling back, which rules would take for a counter restart).
type ctTotals struct {
	started bool
	via     string
	prev    []procfs.ConntrackRow
	total   [procfs.NumCTCounters]float64
}

// update adds a read to the totals and writes them through w.
func (a *ctTotals) update(via string, has [procfs.NumCTCounters]bool, rows []procfs.ConntrackRow, w *Writer) {
	switch {
	case !a.started:
		for _, row := range rows {
			for i, v := range row {
				a.total[i] += float64(v)
			}
		}
	case via == a.via && len(rows) == len(a.prev):
		for r, row := range rows {
			for i, v := range row {
				a.total[i] += float64(v - a.prev[r][i]) // uint32: wraps like the kernel's
			}
		}
	}
	a.started, a.via, a.prev = true, via, append(a.prev[:0], rows...)
	for i := range a.total {
		if has[i] {
			w.Set(i, a.total[i])
		}
	}
}

func (s *conntrackStatsSource) drop() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// Close releases the ctnetlink connection, if any.
func (s *conntrackStatsSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop()
	return nil
}

// classifyNetlinkErr wraps a permission failure in ErrPermission with the
// capability it needs, so a reader knows what to grant.
func classifyNetlinkErr(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w: needs CAP_NET_ADMIN: %w", ErrPermission, err)
	}
	return err
}

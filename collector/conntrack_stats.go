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

func (s *conntrackStatsSource) Name() string { return "conntrack_stats" }

func (s *conntrackStatsSource) Collect(ctx context.Context, snap *Snapshot) error {
	st, err := s.fs.ConntrackStat()
	if err == nil {
		s.totals.update("procfs", st.Has, st.CPUs, &snap.Conntrack)
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if !Present(snap.Conntrack.Entries) {
		// No conntrack at all (the table source found no module).
		return ErrNoData
	}
	return s.collectNetlink(ctx, snap)
}

// collectNetlink asks ctnetlink for the per-CPU stats. The call cannot take
// a deadline, so it runs aside and the connection is closed (which ends the
// call) when ctx is done first.
func (s *conntrackStatsSource) collectNetlink(ctx context.Context, snap *Snapshot) error {
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
	s.totals.update("ctnetlink", ctnetlinkHas, rows, &snap.Conntrack)
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
// taken modulo 2^32. The totals start at the sums of the first read, and
// again whenever the path or the number of CPUs changes.
type ctTotals struct {
	via   string
	prev  []procfs.ConntrackRow
	total [procfs.NumCTCounters]float64
}

// update adds a read to the totals and writes them into c.
func (a *ctTotals) update(via string, has [procfs.NumCTCounters]bool, rows []procfs.ConntrackRow, c *Conntrack) {
	if via != a.via || len(rows) != len(a.prev) {
		a.total = [procfs.NumCTCounters]float64{}
		for _, row := range rows {
			for i, v := range row {
				a.total[i] += float64(v)
			}
		}
	} else {
		for r, row := range rows {
			for i, v := range row {
				a.total[i] += float64(v - a.prev[r][i]) // uint32: wraps like the kernel's
			}
		}
	}
	a.via, a.prev = via, append(a.prev[:0], rows...)
	v := func(i int) float64 {
		if !has[i] {
			return NaN
		}
		return a.total[i]
	}
	c.StatsVia = via
	c.Found, c.Invalid, c.Insert, c.InsertFailed = v(procfs.CTFound), v(procfs.CTInvalid), v(procfs.CTInsert), v(procfs.CTInsertFailed)
	c.Drop, c.EarlyDrop, c.ICMPError = v(procfs.CTDrop), v(procfs.CTEarlyDrop), v(procfs.CTICMPError)
	c.SearchRestart, c.ClashResolve, c.ChainTooLong = v(procfs.CTSearchRestart), v(procfs.CTClashResolve), v(procfs.CTChainTooLong)
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

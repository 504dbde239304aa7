package collector

import (
	"context"
	"errors"
	"fmt"
	"os"
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
		c := &snap.Conntrack
		c.StatsVia = "procfs"
		c.Found, c.Invalid, c.Insert, c.InsertFailed = st.Found, st.Invalid, st.Insert, st.InsertFailed
		c.Drop, c.EarlyDrop, c.ICMPError, c.SearchRestart = st.Drop, st.EarlyDrop, st.ICMPError, st.SearchRestart
		c.ClashResolve, c.ChainTooLong = st.ClashResolve, st.ChainTooLong
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
	c := &snap.Conntrack
	c.StatsVia = "ctnetlink"
	c.Found, c.Invalid, c.Insert, c.InsertFailed, c.Drop, c.EarlyDrop, c.ICMPError, c.SearchRestart = 0, 0, 0, 0, 0, 0, 0, 0
	for _, st := range r.stats {
		c.Found += float64(st.Found)
		c.Invalid += float64(st.Invalid)
		c.Insert += float64(st.Insert)
		c.InsertFailed += float64(st.InsertFailed)
		c.Drop += float64(st.Drop)
		c.EarlyDrop += float64(st.EarlyDrop)
		c.ICMPError += float64(st.Error)
		c.SearchRestart += float64(st.SearchRestart)
	}
	return nil
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

package collector

import (
	"context"
	"errors"
	"os"

	"github.com/stormwatch/stormwatch/procfs"
)

// conntrackSource reads the conntrack table's fill from the sysctls: the
// table itself is never dumped to count it.
type conntrackSource struct{ fs procfs.FS }

func (s *conntrackSource) Name() string { return "conntrack" }

func (s *conntrackSource) Collect(_ context.Context, snap *Snapshot) error {
	count, err := s.fs.Sysctl("net.netfilter.nf_conntrack_count")
	if errors.Is(err, os.ErrNotExist) {
		return ErrNoData // no conntrack module: nothing tracked, nothing to fill
	}
	if err != nil {
		return err
	}
	max, err := s.fs.Sysctl("net.netfilter.nf_conntrack_max")
	if err != nil {
		return err
	}
	snap.Conntrack.Entries = float64(count[0])
	snap.Conntrack.Limit = float64(max[0])
	snap.Sysctls = append(snap.Sysctls, Sysctl{"net.netfilter.nf_conntrack_max", max[0]})
	// Buckets is informative only: a kernel without it is no failure.
	if b, err := s.fs.Sysctl("net.netfilter.nf_conntrack_buckets"); err == nil {
		snap.Conntrack.Buckets = float64(b[0])
		snap.Sysctls = append(snap.Sysctls, Sysctl{"net.netfilter.nf_conntrack_buckets", b[0]})
	}
	return nil
}

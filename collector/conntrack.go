package collector

import (
	"context"
	"errors"
	"os"

	"github.com/stormwatch/stormwatch/procfs"
)

// The conntrack source's values, by index.
const (
	ctEntries = iota
	ctLimit
	ctBuckets
	ctMax
)

var conntrackDecl = &Declaration{
	Name: "conntrack",
	Values: []Value{
		ctEntries: {Name: "conntrack_entries", Kind: Gauge, Unit: "entries", Metric: "conntrack_entries",
			Help: "Entries in the conntrack table (net.netfilter.nf_conntrack_count)."},
		ctLimit: {Name: "conntrack_limit", Kind: Gauge, Setting: true, Unit: "entries", Metric: "conntrack_entries_limit",
			Help: "Size of the conntrack table (net.netfilter.nf_conntrack_max); new flows are dropped beyond it. No data when the table is unlimited (nf_conntrack_max 0)."},
		ctBuckets: sysctlValue("conntrack_buckets", "net.netfilter.nf_conntrack_buckets", "conntrack hash buckets"),
		ctMax:     sysctlValue("nf_conntrack_max", "net.netfilter.nf_conntrack_max", "conntrack table size, 0 for no limit"),
	},
	Sections: []Section{{Name: "conntrack", Title: "Conntrack", Order: 20}},
	Items: []Item{
		{ID: "conntrack_table", Section: "conntrack", What: "conntrack table", Unit: "entries",
			Value: "conntrack_entries", Limit: "conntrack_limit", Related: []string{"conntrack_buckets", "nf_conntrack_max"},
			Absent: "conntrack is not loaded: no flow is tracked", Queue: true},
	},
}

// conntrackSource reads the conntrack table's fill from the sysctls: the
// table itself is never dumped to count it.
type conntrackSource struct {
	fs      procfs.FS
	sysctls *procfs.SysctlReader
}

func (s *conntrackSource) Declaration() *Declaration { return conntrackDecl }

func (s *conntrackSource) Collect(_ context.Context, w *Writer) error {
	if s.sysctls == nil {
		s.sysctls = s.fs.NewSysctlReader()
	}
	count, err := s.sysctls.Read("net.netfilter.nf_conntrack_count")
	if errors.Is(err, os.ErrNotExist) {
		return ErrNoData // no conntrack module: nothing tracked, nothing to fill
	}
	if err != nil {
		return err
	}
	entries := count[0] // the next Read reuses count
	limit, err := s.sysctls.Read("net.netfilter.nf_conntrack_max")
	if err != nil {
		return err
	}
	w.Set(ctEntries, float64(entries))
	w.Set(ctMax, float64(limit[0]))
	// 0 means no limit to the kernel: no table can fill up, so no fill.
	if limit[0] > 0 {
		w.Set(ctLimit, float64(limit[0]))
	}
	// Buckets is informative only: a kernel without it is no failure.
	if b, err := s.sysctls.Read("net.netfilter.nf_conntrack_buckets"); err == nil {
		w.Set(ctBuckets, float64(b[0]))
	}
	return nil
}

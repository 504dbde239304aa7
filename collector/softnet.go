package collector

import (
	"context"
	"errors"
	"os"

	"github.com/stormwatch/stormwatch/procfs"
)

// The softnet source's values, by index.
const (
	snProcessed = iota
	snDropped
	snSqueezed
	snMaxBacklog
	snBudget
)

// softnetCounters maps the summed counters to their procfs.Softnet*
// index.
var softnetCounters = []struct{ value, counter int }{
	{snProcessed, procfs.SoftnetProcessed},
	{snDropped, procfs.SoftnetDropped},
	{snSqueezed, procfs.SoftnetTimeSqueeze},
}

// softnetSysctls are the sysctls read, by value index.
var softnetSysctls = []struct {
	value int
	name  string
}{
	{snMaxBacklog, "net.core.netdev_max_backlog"},
	{snBudget, "net.core.netdev_budget"},
}

var softnetDecl = &Declaration{
	Name: "softnet",
	Values: []Value{
		snProcessed: {Name: "softnet_processed", Kind: Counter, Unit: "packets",
			Help: "packets taken off the per-CPU backlogs and handed to the protocols, summed over CPUs (/proc/net/softnet_stat)"},
		snDropped: {Name: "softnet_dropped", Kind: Counter, Unit: "packets", Metric: "softnet_dropped_total",
			Help: "Packets dropped before the protocols saw them because a CPU's backlog held net.core.netdev_max_backlog packets already (flow-limit drops included), summed over CPUs (/proc/net/softnet_stat)."},
		snSqueezed: {Name: "softnet_times_squeezed", Kind: Counter, Unit: "rounds", Metric: "softnet_times_squeezed_total",
			Help: "Packet polling rounds (NAPI) that stopped with packets left because net.core.netdev_budget or netdev_budget_usecs ran out (time_squeeze), summed over CPUs."},
		snMaxBacklog: sysctlValue("netdev_max_backlog", "net.core.netdev_max_backlog", "packets each CPU's backlog holds before dropping"),
		snBudget:     sysctlValue("netdev_budget", "net.core.netdev_budget", "packets one polling round processes before yielding the CPU"),
	},
	Sections: []Section{{Name: "backlog", Title: "Packet backlog", Order: 15}},
	Items: []Item{
		{ID: "backlog_drops", Section: "backlog", What: "packet backlog drops", Unit: "packets/s", Rate: []string{"softnet_dropped"}},
		{ID: "backlog_squeezed", Section: "backlog", What: "budget ran out (time_squeeze)", Unit: "rounds/s",
			Rate: []string{"softnet_times_squeezed"}},
		{ID: "sysctl_netdev_max_backlog", Section: "sysctl", What: "net.core.netdev_max_backlog", Value: "netdev_max_backlog"},
		{ID: "sysctl_netdev_budget", Section: "sysctl", What: "net.core.netdev_budget", Value: "netdev_budget"},
	},
}

// softnetSource reads the per-CPU packet backlog counters of
// /proc/net/softnet_stat, summed into host totals that only grow (the
// kernel's are 32-bit and wrap), and the sysctls that size the backlog and
// the polling budget. The file is the same in every network namespace.
type softnetSource struct {
	fs      procfs.FS
	totals  procfs.SoftnetTotals // only touched by Collect, which the sampler runs serially
	sysctls *procfs.SysctlReader // likewise
}

func (s *softnetSource) Declaration() *Declaration { return softnetDecl }

func (s *softnetSource) Collect(_ context.Context, w *Writer) error {
	var errs []error
	absent := 0
	st, err := s.fs.SoftnetStat()
	if err == nil {
		sums := s.totals.Update(st)
		for _, c := range softnetCounters {
			w.Set(c.value, sums[c.counter]) // NaN when the kernel does not print it
		}
	} else {
		if errors.Is(err, os.ErrNotExist) {
			absent++
		}
		errs = append(errs, err)
	}
	for _, sc := range softnetSysctls {
		if s.sysctls == nil {
			s.sysctls = s.fs.NewSysctlReader()
		}
		v, err := s.sysctls.Read(sc.name)
		if err != nil {
			// These sysctls are the host's, shown in the initial network
			// namespace only: in a container's own namespace they are
			// absent, which is no data, not a failure.
			if errors.Is(err, os.ErrNotExist) {
				absent++
				continue
			}
			errs = append(errs, err)
			continue
		}
		w.Set(sc.value, float64(v[0]))
	}
	if absent == 1+len(softnetSysctls) {
		return ErrNoData // no /proc/net at all: nothing to report
	}
	return errors.Join(errs...)
}

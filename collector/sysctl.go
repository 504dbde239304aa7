package collector

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/stormwatch/stormwatch/procfs"
)

// sysctlMetricHelp is the HELP of the stormwatch_sysctl family, which
// several sources export into.
const sysctlMetricHelp = "Kernel parameter that sizes a connection queue or table, by sysctl name."

// sysctlValue declares a sysctl as a host gauge exported in the sysctl
// family.
func sysctlValue(name, sysctl, help string) Value {
	return Value{Name: name, Kind: Gauge, Help: sysctl + ": " + help, Setting: true,
		Metric: "sysctl", MetricHelp: sysctlMetricHelp, MetricLabels: []string{"name", sysctl}}
}

// The sysctl source's values, by index.
const (
	sysctlSomaxconn = iota
	sysctlMaxSynBacklog
	sysctlSyncookies
	sysctlAbortOnOverflow
	sysctlSynackRetries
	sysctlPortRangeMin
	sysctlPortRangeMax
)

// sysctlNames are the sysctls read, by value index (the port range holds
// both of its values).
var sysctlNames = []string{
	sysctlSomaxconn:       "net.core.somaxconn",
	sysctlMaxSynBacklog:   "net.ipv4.tcp_max_syn_backlog",
	sysctlSyncookies:      "net.ipv4.tcp_syncookies",
	sysctlAbortOnOverflow: "net.ipv4.tcp_abort_on_overflow",
	sysctlSynackRetries:   "net.ipv4.tcp_synack_retries",
	sysctlPortRangeMin:    "net.ipv4.ip_local_port_range",
}

var sysctlDecl = &Declaration{
	Name: "sysctl",
	Values: []Value{
		sysctlSomaxconn:       sysctlValue("somaxconn", "net.core.somaxconn", "the cap on every listen backlog (accept queue limit)"),
		sysctlMaxSynBacklog:   sysctlValue("tcp_max_syn_backlog", "net.ipv4.tcp_max_syn_backlog", "SYN queue sizing when SYN cookies are off"),
		sysctlSyncookies:      sysctlValue("syncookies", "net.ipv4.tcp_syncookies", "0 off, 1 on SYN queue overflow, 2 always"),
		sysctlAbortOnOverflow: sysctlValue("tcp_abort_on_overflow", "net.ipv4.tcp_abort_on_overflow", "1 resets a connection the accept queue has no room for"),
		sysctlSynackRetries:   sysctlValue("tcp_synack_retries", "net.ipv4.tcp_synack_retries", "SYN-ACK retransmissions before a half-open handshake is dropped"),
		sysctlPortRangeMin:    sysctlValue("ip_local_port_range_min", "net.ipv4.ip_local_port_range.min", "lowest local port of outgoing connections"),
		sysctlPortRangeMax:    sysctlValue("ip_local_port_range_max", "net.ipv4.ip_local_port_range.max", "highest local port of outgoing connections"),
	},
	Sections: []Section{{Name: "sysctl", Title: "Sysctl sizing", Order: 90}},
	Items: []Item{
		{ID: "sysctl_somaxconn", Section: "sysctl", What: "net.core.somaxconn", Value: "somaxconn"},
		{ID: "sysctl_max_syn_backlog", Section: "sysctl", What: "net.ipv4.tcp_max_syn_backlog", Value: "tcp_max_syn_backlog"},
		{ID: "sysctl_syncookies", Section: "sysctl", What: "net.ipv4.tcp_syncookies", Value: "syncookies"},
		{ID: "sysctl_abort_on_overflow", Section: "sysctl", What: "net.ipv4.tcp_abort_on_overflow", Value: "tcp_abort_on_overflow"},
	},
}

// sysctlSource reads the sysctls that size the SYN and accept queues.
type sysctlSource struct {
	fs      procfs.FS
	sysctls *procfs.SysctlReader
}

func (s *sysctlSource) Declaration() *Declaration { return sysctlDecl }

func (s *sysctlSource) Collect(_ context.Context, w *Writer) error {
	var missing []string
	var errs []error
	for i, name := range sysctlNames {
		if s.sysctls == nil {
			s.sysctls = s.fs.NewSysctlReader()
		}
		v, err := s.sysctls.Read(name)
		if err != nil {
			missing = append(missing, name)
			errs = append(errs, err)
			continue
		}
		if i == sysctlPortRangeMin {
			if len(v) != 2 {
				errs = append(errs, fmt.Errorf("sysctl %s: %w: %d fields, want 2", name, procfs.ErrFileParse, len(v)))
				continue
			}
			w.Set(sysctlPortRangeMin, float64(v[0]))
			w.Set(sysctlPortRangeMax, float64(v[1]))
			continue
		}
		w.Set(i, float64(v[0]))
	}
	if len(missing) == len(sysctlNames) {
		return fmt.Errorf("no sysctl readable (%s): %w", strings.Join(missing, ", "), errors.Join(errs...))
	}
	return errors.Join(errs...)
}

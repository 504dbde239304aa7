package collector

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/stormwatch/stormwatch/procfs"
)

// SysctlNames are the queue-sizing sysctls the sysctl source reads, in the
// order they appear in Snapshot.Sysctls. net.ipv4.ip_local_port_range holds
// two numbers, reported as ".min" and ".max".
var SysctlNames = []string{
	"net.core.somaxconn",
	"net.ipv4.tcp_max_syn_backlog",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.tcp_abort_on_overflow",
	"net.ipv4.tcp_synack_retries",
	"net.ipv4.ip_local_port_range",
}

// sysctlSource reads the sysctls that size the SYN and accept queues.
type sysctlSource struct{ fs procfs.FS }

func (s *sysctlSource) Name() string { return "sysctl" }

func (s *sysctlSource) Collect(_ context.Context, snap *Snapshot) error {
	var missing []string
	var errs []error
	for _, name := range SysctlNames {
		v, err := s.fs.Sysctl(name)
		if err != nil {
			missing = append(missing, name)
			errs = append(errs, err)
			continue
		}
		if name == "net.ipv4.ip_local_port_range" {
			if len(v) != 2 {
				errs = append(errs, fmt.Errorf("sysctl %s: %w: %d fields, want 2", name, procfs.ErrFileParse, len(v)))
				continue
			}
			snap.Sysctls = append(snap.Sysctls, Sysctl{name + ".min", v[0]}, Sysctl{name + ".max", v[1]})
			continue
		}
		snap.Sysctls = append(snap.Sysctls, Sysctl{name, v[0]})
	}
	if len(missing) == len(SysctlNames) {
		return fmt.Errorf("no sysctl readable (%s): %w", strings.Join(missing, ", "), errors.Join(errs...))
	}
	return errors.Join(errs...)
}

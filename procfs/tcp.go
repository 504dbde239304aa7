package procfs

import (
	"errors"
	"fmt"

	promfs "github.com/prometheus/procfs"
)

// Netstat holds the TcpExt (/proc/net/netstat) and Tcp (/proc/net/snmp)
// counters of the reader's network namespace, as github.com/prometheus/procfs
// parses them: a field the kernel does not print is nil. A file that could
// not be read leaves its part nil.
type Netstat struct {
	TcpExt *promfs.TcpExt //nolint:revive // the kernel's name
	Tcp    *promfs.Tcp    //nolint:revive // the kernel's name
}

// Netstat reads the TcpExt and Tcp counters through prometheus/procfs (as
// the proc/self view, which is the reader's network namespace). It returns
// whatever it could read together with an error naming what it could not.
func (fs FS) Netstat() (Netstat, error) {
	var out Netstat
	self, err := fs.lib.Self()
	if err != nil {
		return out, fmt.Errorf("proc/self: %w", err)
	}
	var errs []error
	if ns, err := self.Netstat(); err != nil {
		errs = append(errs, fmt.Errorf("net/netstat: %w", err))
	} else {
		out.TcpExt = &ns.TcpExt
	}
	if sn, err := self.Snmp(); err != nil {
		errs = append(errs, fmt.Errorf("net/snmp: %w", err))
	} else {
		out.Tcp = &sn.Tcp
	}
	return out, errors.Join(errs...)
}

package procfs

import (
	"errors"
	"fmt"
	"math"
)

// TCP holds the TcpExt (/proc/net/netstat) and Tcp (/proc/net/snmp)
// counters that describe a connection storm, for the reader's network
// namespace. A field the kernel does not provide is NaN.
type TCP struct {
	ListenOverflows      float64
	ListenDrops          float64
	SyncookiesSent       float64
	SyncookiesRecv       float64
	SyncookiesFailed     float64
	TCPReqQFullDrop      float64
	TCPReqQFullDoCookies float64

	ActiveOpens  float64
	PassiveOpens float64
	AttemptFails float64
	EstabResets  float64
	CurrEstab    float64
}

// TCPStats reads the TcpExt and Tcp counters through prometheus/procfs (as
// the proc/self view, which is the reader's network namespace). It returns
// whatever it could read together with an error naming what it could not.
func (fs FS) TCPStats() (TCP, error) {
	nan := math.NaN()
	t := TCP{nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan}
	self, err := fs.lib.Self()
	if err != nil {
		return t, fmt.Errorf("proc/self: %w", err)
	}
	var errs []error
	if ns, err := self.Netstat(); err != nil {
		errs = append(errs, fmt.Errorf("net/netstat: %w", err))
	} else {
		x := ns.TcpExt
		set(&t.ListenOverflows, x.ListenOverflows)
		set(&t.ListenDrops, x.ListenDrops)
		set(&t.SyncookiesSent, x.SyncookiesSent)
		set(&t.SyncookiesRecv, x.SyncookiesRecv)
		set(&t.SyncookiesFailed, x.SyncookiesFailed)
		set(&t.TCPReqQFullDrop, x.TCPReqQFullDrop)
		set(&t.TCPReqQFullDoCookies, x.TCPReqQFullDoCookies)
	}
	if sn, err := self.Snmp(); err != nil {
		errs = append(errs, fmt.Errorf("net/snmp: %w", err))
	} else {
		x := sn.Tcp
		set(&t.ActiveOpens, x.ActiveOpens)
		set(&t.PassiveOpens, x.PassiveOpens)
		set(&t.AttemptFails, x.AttemptFails)
		set(&t.EstabResets, x.EstabResets)
		set(&t.CurrEstab, x.CurrEstab)
	}
	return t, errors.Join(errs...)
}

func set(dst *float64, v *float64) {
	if v != nil {
		*dst = *v
	}
}

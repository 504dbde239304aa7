package drain

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

// Fate is what became of one connection a Method was asked to close.
type Fate uint8

const (
	// Unknown: the method cannot tell (an answer was lost, or it failed
	// before reaching the connection). The connection stays eligible: if
	// it still exists, a later batch closes it.
	Unknown Fate = iota
	// Closed by the method.
	Closed
	// Gone: it no longer existed.
	Gone
	// Skipped: the method never closes it (a Valkey method's own
	// connection, a replication link). It is left out from then on.
	Skipped
	// Failed: the method tried and was refused.
	Failed
)

// String names the fate.
func (f Fate) String() string {
	switch f {
	case Closed:
		return "closed"
	case Gone:
		return "gone"
	case Skipped:
		return "skipped"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Method closes connections. The drain lists connections itself (Source)
// and hands each batch to the method, oldest first.
type Method interface {
	// Name is the method's name, as --method spells it.
	Name() string
	// Check says, before anything is closed, why the method cannot run
	// here (a missing privilege or kernel feature), with an error naming
	// what is missing.
	Check(ctx context.Context) error
	// Disconnect closes the connections of one batch and records each
	// one's fate in fates (as long as conns). An error that would recur
	// for every connection (a refusal, a lost link to the server) is
	// returned; the fates say how far it got.
	Disconnect(ctx context.Context, conns []Conn, fates []Fate) error
	// Close releases what the method holds.
	Close() error
}

// Orderer is a Method that knows the connections' age better than the
// kernel does (a server's own list of its clients). For Order Oldest, Run
// and Plan ask it to order the connections left instead of ordering them
// by inode.
type Orderer interface {
	// Order sorts conns in place: first the connections the method will
	// skip (never close), then the others oldest first; it returns how
	// many it put first. A batch then takes the skipped ones along with
	// its planned size, so they never take a closable connection's place.
	// On an error Run falls back to the inode order; Plan fails with it.
	Order(ctx context.Context, conns []Conn) (skip int, err error)
}

// ServerMethod is a Method that talks to the server behind the drained
// listeners rather than to the kernel (CLIENT KILL). Run and Plan hand it
// the listeners found before they call anything else; Run lists the
// connections again after Check, so that the method's own connection to
// the server is among those there at the start (and skipped), not counted
// as one that arrived during the drain.
type ServerMethod interface {
	Method
	// UseListeners tells the method which listeners are drained.
	UseListeners(ls []Listener)
}

// Destroy is the "destroy" method: the kernel's SOCK_DESTROY, for any TCP
// server. The client gets an RST (ECONNRESET on its next read or write);
// the server's socket is aborted with ECONNABORTED, which its next read,
// write or poll reports. It needs CAP_NET_ADMIN and a kernel built with
// CONFIG_INET_DIAG_DESTROY.
type Destroy struct {
	// Dial opens the destroyer; nil: sockdiag.DialDestroyer, in the
	// calling thread's network namespace.
	Dial func() (*sockdiag.Destroyer, error)
	// HasCapNetAdmin reports whether the process may destroy sockets;
	// nil: CAP_NET_ADMIN in the effective set (capget).
	HasCapNetAdmin func() (bool, error)

	d *sockdiag.Destroyer
}

// Name implements Method.
func (m *Destroy) Name() string { return "destroy" }

// Check implements Method: CAP_NET_ADMIN in the effective set, then a
// request naming no socket that tells whether the kernel supports
// SOCK_DESTROY.
func (m *Destroy) Check(ctx context.Context) error {
	has := m.HasCapNetAdmin
	if has == nil {
		has = effectiveCapNetAdmin
	}
	ok, err := has()
	if err != nil {
		return fmt.Errorf("reading this process's capabilities: %w", err)
	}
	if !ok {
		return sockdiag.ErrNoCapNetAdmin
	}
	if err := m.open(); err != nil {
		return err
	}
	return m.d.Supported(ctx)
}

func (m *Destroy) open() error {
	if m.d != nil {
		return nil
	}
	dial := m.Dial
	if dial == nil {
		dial = sockdiag.DialDestroyer
	}
	d, err := dial()
	if err != nil {
		return err
	}
	m.d = d
	return nil
}

// Disconnect implements Method.
func (m *Destroy) Disconnect(ctx context.Context, conns []Conn, fates []Fate) error {
	if err := m.open(); err != nil {
		return err
	}
	ids := make([]sockdiag.ID, len(conns))
	for i, c := range conns {
		ids[i] = c.ID()
		fates[i] = Unknown
	}
	_, err := m.d.Destroy(ctx, ids, func(i int, err error) {
		switch {
		case err == nil:
			fates[i] = Closed
		case errors.Is(err, sockdiag.ErrGone):
			fates[i] = Gone
		case errors.Is(err, sockdiag.ErrAckLost):
			fates[i] = Unknown
		default:
			fates[i] = Failed
		}
	})
	if err != nil && !errors.Is(err, sockdiag.ErrNoCapNetAdmin) && !errors.Is(err, sockdiag.ErrDestroyUnsupported) {
		// The connection is in an unknown state: start afresh next time.
		m.Close()
	}
	return err
}

// Close implements Method.
func (m *Destroy) Close() error {
	if m.d == nil {
		return nil
	}
	err := m.d.Close()
	m.d = nil
	return err
}

// effectiveCapNetAdmin reads the calling thread's effective capabilities.
func effectiveCapNetAdmin() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, err
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0, nil
}

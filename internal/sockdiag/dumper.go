package sockdiag

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// MaxDumpAttempts bounds the restarts of an interrupted or overrun dump.
const MaxDumpAttempts = 3

// ErrDumpInterrupted: the kernel kept flagging a dump inconsistent
// (NLM_F_DUMP_INTR) through MaxDumpAttempts attempts.
var ErrDumpInterrupted = errors.New("the dump kept being interrupted (NLM_F_DUMP_INTR)")

// Dumper runs dumps of both address families on one connection, dialled
// on first use and again after a failure. A dump the kernel flags
// interrupted, or whose replies overran the receive buffer (ENOBUFS), is
// restarted, at most MaxDumpAttempts times in all. A kernel without IPv6
// is dumped for IPv4 only. It is not safe for concurrent use.
type Dumper struct {
	// Dial opens the connection; nil: Dial, in the calling thread's
	// network namespace.
	Dial func() (Conn, error)
	// Filter, when set, is a program (PortFilter) every dump carries.
	Filter []byte

	conn       Conn
	v6Disabled bool
}

// Close releases the connection.
func (d *Dumper) Close() error {
	if d.conn == nil {
		return nil
	}
	err := d.conn.Close()
	d.conn = nil
	return err
}

// Dump dumps the TCP sockets in states, IPv4 then IPv6, calling fn with
// each. Before every attempt it calls reset, which clears what fn
// gathered.
func (d *Dumper) Dump(ctx context.Context, states uint32, reset func(), fn func(Msg)) error {
	for attempt := 1; ; attempt++ {
		reset()
		interrupted, err := d.dumpFamilies(ctx, states, fn)
		switch {
		case err == nil && !interrupted:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			d.Close()
		case err != nil:
			d.Close()
			return err
		}
		if attempt == MaxDumpAttempts {
			if err != nil {
				return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			return fmt.Errorf("gave up after %d attempts: %w", attempt, ErrDumpInterrupted)
		}
	}
}

func (d *Dumper) dumpFamilies(ctx context.Context, states uint32, fn func(Msg)) (bool, error) {
	interrupted := false
	for _, fam := range [...]uint8{unix.AF_INET, unix.AF_INET6} {
		if fam == unix.AF_INET6 && d.v6Disabled {
			continue
		}
		if d.conn == nil {
			dial := d.Dial
			if dial == nil {
				dial = func() (Conn, error) { return Dial() }
			}
			c, err := dial()
			if err != nil {
				return false, fmt.Errorf("sock_diag: %w", err)
			}
			d.conn = c
		}
		res, err := DumpFiltered(ctx, d.conn, fam, states, d.Filter, fn)
		if err != nil {
			if fam == unix.AF_INET6 && Unsupported(err) {
				d.v6Disabled = true // a kernel without IPv6
				d.Close()
				continue
			}
			return false, err
		}
		interrupted = interrupted || res.Interrupted
	}
	return interrupted, nil
}

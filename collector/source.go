package collector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stormwatch/stormwatch/procfs"
)

// A Source reads one part of the kernel's state into a Snapshot.
//
// Collect fills the Source's part of s and returns nil, ErrNoData when the
// subsystem is absent from the host, or an error describing what failed
// (having filled whatever it could). Sources run one after another in table
// order, so a Source may read what an earlier one put into s this cycle.
// Collect must return promptly once ctx is done.
type Source interface {
	Name() string
	Collect(ctx context.Context, s *Snapshot) error
}

// Config configures the sources.
type Config struct {
	// Root is the directory holding proc/: "/" in production, a fixture
	// tree in tests.
	Root string
	// Listeners configures the sock_diag listener source.
	Listeners ListenerConfig
	// Conntrack configures the conntrack stats source.
	Conntrack ConntrackConfig
}

// ListenerConfig configures which listeners are reported and how often the
// SYN_RECV dump runs.
type ListenerConfig struct {
	// Include, when not empty, keeps only listeners on these ports.
	Include []PortRange
	// Exclude drops listeners on these ports (applied after Include).
	Exclude []PortRange
	// Max caps the number of listeners kept per Snapshot (0 = no cap).
	// The busiest listeners are kept; Snapshot.ListenersDropped counts
	// the rest.
	Max int
	// SynRecvInterval is the slow cadence of the SYN_RECV dump: it runs at
	// least this often, and on every cycle while a cheap storm signal moves.
	// 0 dumps every cycle.
	SynRecvInterval time.Duration
	// Dial opens the sock_diag netlink connection; nil dials
	// NETLINK_SOCK_DIAG in the caller's network namespace.
	Dial DialFunc
}

// ConntrackConfig configures the conntrack stats source.
type ConntrackConfig struct {
	// Dial opens the ctnetlink connection used when
	// /proc/net/stat/nf_conntrack is absent; nil dials in the caller's
	// network namespace.
	Dial ConntrackDialFunc
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// Contains reports whether p is in r.
func (r PortRange) Contains(p uint16) bool { return p >= r.Lo && p <= r.Hi }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return fmt.Sprint(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// NewSources returns every source in the order they run. This table is the
// one place a source is added. Sources holding kernel handles are closed by
// CloseSources.
func NewSources(cfg Config) ([]Source, error) {
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	fs, err := procfs.NewFS(cfg.Root)
	if err != nil {
		return nil, err
	}
	listeners, err := newListenerSource(cfg.Listeners)
	if err != nil {
		return nil, fmt.Errorf("listeners: %w", err)
	}
	return []Source{
		&sysctlSource{fs: fs},
		&tcpstatSource{fs: fs},
		&conntrackSource{fs: fs},
		newConntrackStatsSource(fs, cfg.Conntrack.Dial),
		// After tcpstat: its SYN_RECV cadence reads this cycle's counters.
		listeners,
	}, nil
}

// CloseSources releases the kernel handles some sources hold.
func CloseSources(sources []Source) error {
	var errs []error
	for _, s := range sources {
		if c, ok := s.(interface{ Close() error }); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}

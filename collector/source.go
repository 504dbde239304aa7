package collector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stormwatch/stormwatch/procfs"
)

// A Source reads one part of the kernel's state, on the sampling tick.
//
// Collect fills the Source's values through w and returns nil, ErrNoData
// when the subsystem is absent from the host, or an error describing what
// failed (having filled whatever it could: what it did not fill stays NaN,
// no data). Sources run one after another in table order, so a Source may
// read what an earlier one set this cycle (Writer.Get). Collect must
// return promptly once ctx is done.
type Source interface {
	// Declaration returns what the source measures. It is the same value
	// at every call.
	Declaration() *Declaration
	Collect(ctx context.Context, w *Writer) error
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
	// NIC configures the network interface source.
	NIC NICConfig
	// Valkey configures the valkey target source.
	Valkey ValkeyConfig
}

// ListenerConfig configures which listeners are reported and how often the
// SYN_RECV dump runs.
type ListenerConfig struct {
	// Include, when not empty, keeps only listeners on these ports.
	Include []PortRange
	// Exclude drops listeners on these ports (applied after Include).
	Exclude []PortRange
	// Max caps the number of listeners kept per Snapshot (0 = no cap).
	// The busiest listeners are kept; the listeners_dropped value counts
	// the rest.
	Max int
	// SynRecvInterval is the slow cadence of the SYN_RECV dump: it runs at
	// least this often, and on every cycle while a cheap storm signal moves.
	// 0 dumps every cycle. Counts older than twice this (at least two
	// cycles) are no data.
	SynRecvInterval time.Duration
	// SynRecvWait bounds how long a cycle waits for a SYN_RECV dump, from
	// the cycle's start; a dump that takes longer is taken by a later
	// cycle (its own 2 s deadline still applies). The LISTEN dump and the
	// rest of the cycle run under the sampler's timeout, not this one.
	// 0 waits as long as the cycle's context allows.
	SynRecvWait time.Duration
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

// table lists every kernel source in the order they run, with its
// declaration. It is the one place a source is added.
var table = []struct {
	decl *Declaration
	open func(cfg Config, fs procfs.FS) (Source, error)
}{
	{sysctlDecl, func(_ Config, fs procfs.FS) (Source, error) { return &sysctlSource{fs: fs}, nil }},
	{tcpstatDecl, func(_ Config, fs procfs.FS) (Source, error) { return &tcpstatSource{fs: fs}, nil }},
	{conntrackDecl, func(_ Config, fs procfs.FS) (Source, error) { return &conntrackSource{fs: fs}, nil }},
	{conntrackStatsDecl, func(cfg Config, fs procfs.FS) (Source, error) {
		return newConntrackStatsSource(fs, cfg.Conntrack.Dial), nil
	}},
	// After tcpstat and sysctl: its SYN_RECV cadence and SYN queue limit
	// read this cycle's counters and sysctls.
	{listenersDecl, func(cfg Config, fs procfs.FS) (Source, error) { return newListenerSource(cfg.Listeners, &fs) }},
	// Packets meet the NIC and the backlog before the queues above, but
	// these two run last: nothing reads their values (Writer.Get), and the
	// nic source's ethtool requests wait for the kernel's RTNL lock while
	// interfaces change, a wait that must not delay the queue readings
	// past the cycle's time. The checklist orders its sections by
	// Section.Order, not by this table.
	{softnetDecl, func(_ Config, fs procfs.FS) (Source, error) { return &softnetSource{fs: fs}, nil }},
	{nicDecl, func(cfg Config, _ procfs.FS) (Source, error) {
		s, err := newNICSource(cfg.NIC)
		if err != nil {
			return nil, err
		}
		return s, nil
	}},
}

// targetTable lists every target source, after the kernel sources (their
// targets may be discovered in the kernel sources' results).
var targetTable = []struct {
	decl *Declaration
	open func(cfg Config) (TargetSource, error)
}{
	{valkeyDecl, func(cfg Config) (TargetSource, error) { return NewValkeySource(cfg.Valkey) }},
}

var (
	defaultSchemaOnce sync.Once
	defaultSchema     *Schema
)

// DefaultSchema is the Schema of the built-in sources (NewSources and
// NewTargetSources).
func DefaultSchema() *Schema {
	defaultSchemaOnce.Do(func() {
		var decls []*Declaration
		for _, e := range table {
			decls = append(decls, e.decl)
		}
		for _, e := range targetTable {
			decls = append(decls, e.decl)
		}
		defaultSchema = MustSchema(decls...)
	})
	return defaultSchema
}

// NewTargetSources returns every built-in target source, in the layout of
// DefaultSchema. Close them with CloseTargetSources.
func NewTargetSources(cfg Config) ([]TargetSource, error) {
	var out []TargetSource
	for _, e := range targetTable {
		s, err := e.open(cfg)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%s: %w", e.decl.Name, err), CloseTargetSources(out))
		}
		out = append(out, s)
	}
	return out, nil
}

// CloseTargetSources releases the connections target sources hold.
func CloseTargetSources(sources []TargetSource) error {
	var errs []error
	for _, s := range sources {
		if c, ok := s.(interface{ Close() error }); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.Declaration().Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// NewSources returns every built-in kernel source, in the order they run
// and in the layout of DefaultSchema. Sources holding kernel handles are
// closed by CloseSources.
func NewSources(cfg Config) ([]Source, error) {
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	fs, err := procfs.NewFS(cfg.Root)
	if err != nil {
		return nil, err
	}
	out := make([]Source, 0, len(table))
	for _, e := range table {
		s, err := e.open(cfg, fs)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%s: %w", e.decl.Name, err), CloseSources(out))
		}
		out = append(out, s)
	}
	return out, nil
}

// CloseSources releases the kernel handles some sources hold.
func CloseSources(sources []Source) error {
	var errs []error
	for _, s := range sources {
		if c, ok := s.(interface{ Close() error }); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.Declaration().Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

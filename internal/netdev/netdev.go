package netdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
)

// Counters are a link's standard statistics (struct rtnl_link_stats64,
// IFLA_STATS64 in the link dump), cumulative since the device was created.
type Counters struct {
	// RxPackets and TxPackets count packets received and sent.
	RxPackets, TxPackets uint64
	// RxBytes and TxBytes count bytes received and sent.
	RxBytes, TxBytes uint64
	// RxErrors and TxErrors count bad packets (all error kinds).
	RxErrors, TxErrors uint64
	// RxDropped counts packets received and then dropped by the driver or
	// the stack (no buffer, no handler, a full backlog on some drivers).
	RxDropped uint64
	// TxDropped counts packets dropped on the way out.
	TxDropped uint64
	// RxMissedErrors counts packets the NIC itself missed because the host
	// did not take them off its receive ring in time.
	RxMissedErrors uint64
	// RxFifoErrors counts receive FIFO overruns.
	RxFifoErrors uint64
}

// Link is one network interface as the rtnetlink link dump shows it.
type Link struct {
	// Name is the interface's name ("eth0").
	Name string
	// Index is the interface's index in its namespace.
	Index int
	// Kind is the link kind ("veth", "bridge", "vlan", "bond", …), empty
	// for a device without one: a hardware NIC, loopback.
	Kind string
	// Loopback is true for a loopback interface (IFF_LOOPBACK).
	Loopback bool
	// HasCounters is false when the dump carried no statistics for the
	// link; Counters are then zero.
	HasCounters bool
	// Counters are the link's standard statistics.
	Counters Counters
}

// Stat is an optional driver statistic.
type Stat struct {
	// Value is the statistic's value.
	Value uint64
	// Present is false when the driver does not report the statistic.
	Present bool
}

// DriverStats are all of a device's ethtool driver statistics ("ethtool
// -S"), in the driver's order.
type DriverStats struct {
	// Names are the statistics' names. A Read never modifies them: when the
	// driver's set changes, Names is a new slice.
	Names []string
	// Values are the statistics' values, Values[i] for Names[i]. The next
	// Read overwrites them.
	Values []uint64
}

// Device is one interface's counters from one Read.
type Device struct {
	Link
	// Driver is the device's driver ("ena", "virtio_net", "veth"), from
	// ETHTOOL_GDRVINFO; empty when the device has none, or with
	// Options.SkipDriverStats.
	Driver string
	// HasDriverStats is true when the driver answered the statistics
	// request: DriverStats, AllowanceExceeded and
	// ConntrackAllowanceAvailable come from that answer.
	HasDriverStats bool
	// DriverStats are the driver's statistics when HasDriverStats.
	DriverStats DriverStats
	// AllowanceExceeded holds, by Allowance, the number of packets the
	// AWS hypervisor queued or dropped because the instance exceeded that
	// allowance (cumulative counters, ENA driver 2.2.10+). Not present on
	// other drivers.
	AllowanceExceeded [NumAllowances]Stat
	// ConntrackAllowanceAvailable is the number of tracked connections the
	// instance can still open before reaching its conntrack allowance (a
	// gauge). Present with ENA driver 2.8.1+ on Nitro instances only.
	ConntrackAllowanceAvailable Stat
	// DriverErr is why the driver statistics could not be read; nil when
	// they were read, or the driver has none. It wraps ErrDriverStats and
	// is also part of Read's error.
	DriverErr error
}

// Options select the interfaces a Reader reports and what it reads.
type Options struct {
	// Include, when not empty, keeps only interfaces whose name matches one
	// of these patterns (path.Match syntax: "eth*", "ens[0-9]*").
	Include []string
	// Exclude drops interfaces whose name matches one of these patterns;
	// it wins over Include.
	Exclude []string
	// Loopback keeps loopback interfaces, which are dropped by default
	// whatever Include says.
	Loopback bool
	// SkipDriverStats reads the standard counters only: no ethtool
	// request is made.
	SkipDriverStats bool
	// Kernel answers the reader's requests; nil opens the kernel of the
	// calling thread's network namespace. Tests pass a fake (netdevtest).
	Kernel Kernel
}

// Kernel is what a Reader asks of the kernel: one link dump per Read, then
// per kept device its driver statistics. Its methods are called from one
// goroutine at a time.
type Kernel interface {
	// Links appends every link of the namespace to dst, with its standard
	// counters, from one rtnetlink RTM_GETLINK dump, and returns the
	// extended slice.
	Links(ctx context.Context, dst []Link) ([]Link, error)
	// DriverName returns the driver of the named interface
	// (ETHTOOL_GDRVINFO). Read asks once per device.
	DriverName(ifname string) (string, error)
	// DriverStats returns the named interface's driver statistics as the
	// ethtool ioctl returns them: the values (ETHTOOL_GSTATS) and, when
	// withNames, the ETH_SS_STATS string set naming them (ETHTOOL_GSTRINGS),
	// GStringLen bytes per name, one name per value. Both stay valid until
	// the next call. A driver without statistics yields an error wrapping
	// ErrNoDriverStats; a vanished interface, ErrNoDevice; a set that
	// changed between the requests, ErrStatsChanged.
	DriverStats(ifname string, withNames bool) (names []byte, values []uint64, err error)
	// Close releases the kernel handles.
	Close() error
}

// Reader reads the network interfaces of one namespace, over and over, at
// little cost per Read: one link dump for all interfaces, then two ethtool
// requests per device (the number of statistics, their values). A driver's
// statistic names are read when its count of statistics changes and every
// NamesMaxAge Reads, and parsed only when they changed; slices and
// per-device tables are reused.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	opts  Options
	k     Kernel
	links []Link
	devs  []Device
	state map[int]*devState // by interface index
	gen   uint64
}

// NamesMaxAge is the number of Reads after which a device's statistic
// names are read again although their count did not change: a driver
// renaming its statistics in place (none is known to) is noticed within it.
const NamesMaxAge = 64

// devState is what a Reader keeps about one device between Reads.
type devState struct {
	gen         uint64 // the Read that last saw the device
	name        string
	driver      string
	driverKnown bool
	raw         []byte   // the string set as last read
	names       []string // raw, parsed; nil until read
	namesAge    int      // Reads since the names were read
	ena         enaIndex
	values      []uint64
}

// Open returns a Reader for the network namespace of the calling thread
// (the kernel handles are opened now and keep that namespace), or for
// opts.Kernel. A pattern that path.Match rejects is an error wrapping
// ErrBadOption.
func Open(opts Options) (*Reader, error) {
	for _, set := range []struct {
		field    string
		patterns []string
	}{{"Include", opts.Include}, {"Exclude", opts.Exclude}} {
		for _, p := range set.patterns {
			if p == "" {
				return nil, fmt.Errorf("netdev: %w: %s: empty interface name pattern", ErrBadOption, set.field)
			}
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("netdev: %w: %s: interface name pattern %q: %w (want a glob such as \"eth*\")",
					ErrBadOption, set.field, p, err)
			}
		}
	}
	k := opts.Kernel
	if k == nil {
		var err error
		if k, err = OpenKernel(!opts.SkipDriverStats); err != nil {
			return nil, fmt.Errorf("netdev: %w", err)
		}
	}
	return &Reader{opts: opts, k: k, state: map[int]*devState{}}, nil
}

// Read returns the kept interfaces of the namespace, in index order, with
// their counters. The slice and the Devices' DriverStats.Values are reused:
// they are valid until the next Read.
//
// A failed link dump returns no devices and the error. A device whose
// driver statistics could not be read is still returned, with its standard
// counters and DriverErr set, and the error joins every DriverErr (each
// wraps ErrDriverStats). A driver without statistics is not an error.
//
// ctx's deadline bounds the link dump. The ethtool requests take the
// kernel's RTNL lock and cannot be interrupted: ctx is checked between
// devices, and once it is done the remaining devices are returned without
// driver statistics.
func (r *Reader) Read(ctx context.Context) ([]Device, error) {
	if r.k == nil {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	links, err := r.k.Links(ctx, r.links[:0])
	r.links = links
	if err != nil {
		return nil, fmt.Errorf("netdev: rtnetlink link dump: %w", err)
	}
	r.gen++
	r.devs = r.devs[:0]
	var errs []error
	for i := range links {
		if !r.keep(&links[i]) {
			continue
		}
		r.devs = append(r.devs, Device{Link: links[i]})
		if r.opts.SkipDriverStats {
			continue
		}
		d := &r.devs[len(r.devs)-1]
		if err := ctx.Err(); err != nil {
			d.DriverErr = fmt.Errorf("%s: %w: %w", d.Name, ErrDriverStats, err)
		} else {
			r.readDriver(d)
		}
		if d.DriverErr != nil {
			errs = append(errs, d.DriverErr)
		}
	}
	for idx, st := range r.state {
		if st.gen != r.gen {
			delete(r.state, idx)
		}
	}
	return r.devs, errors.Join(errs...)
}

// keep reports whether the options keep l.
func (r *Reader) keep(l *Link) bool {
	if l.Loopback && !r.opts.Loopback {
		return false
	}
	if len(r.opts.Include) > 0 && !matchAny(r.opts.Include, l.Name) {
		return false
	}
	return !matchAny(r.opts.Exclude, l.Name)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok { // validated by Open
			return true
		}
	}
	return false
}

// readDriver fills d's driver name and statistics.
func (r *Reader) readDriver(d *Device) {
	st := r.state[d.Index]
	if st == nil || st.name != d.Name { // new, or another device under a reused index
		st = &devState{name: d.Name}
		r.state[d.Index] = st
	}
	st.gen = r.gen
	if !st.driverKnown {
		name, err := r.k.DriverName(d.Name)
		switch {
		case err == nil:
			st.driver, st.driverKnown = name, true
		case errors.Is(err, ErrNoDriverStats):
			st.driverKnown = true // the device has no driver to name
		}
		// Any other error: ask again next time.
	}
	d.Driver = st.driver

	withNames := st.names == nil || st.namesAge >= NamesMaxAge
	names, values, err := r.k.DriverStats(d.Name, withNames)
	if err == nil && !withNames && len(values) != len(st.names) {
		withNames = true // the count changed: so did the names
		names, values, err = r.k.DriverStats(d.Name, true)
	}
	if errors.Is(err, ErrStatsChanged) {
		withNames = true
		names, values, err = r.k.DriverStats(d.Name, true)
	}
	switch {
	case errors.Is(err, ErrNoDriverStats), errors.Is(err, ErrNoDevice):
		return
	case err != nil:
		d.DriverErr = fmt.Errorf("%s: %w: %w", d.Name, ErrDriverStats, err)
		return
	case withNames && len(names) != len(values)*GStringLen:
		d.DriverErr = fmt.Errorf("%s: %w: %d bytes of names for %d values", d.Name, ErrDriverStats, len(names), len(values))
		return
	}
	if withNames {
		if !bytes.Equal(names, st.raw) {
			parsed, err := parseStringSet(names)
			if err != nil {
				d.DriverErr = fmt.Errorf("%s: %w", d.Name, err)
				return
			}
			st.raw = append(st.raw[:0], names...)
			st.names, st.ena = parsed, indexENA(parsed)
		}
		st.namesAge = 0
	}
	st.namesAge++
	st.values = append(st.values[:0], values...)

	d.HasDriverStats = true
	d.DriverStats = DriverStats{Names: st.names, Values: st.values}
	for a, i := range st.ena.exceeded {
		if i >= 0 {
			d.AllowanceExceeded[a] = Stat{Value: st.values[i], Present: true}
		}
	}
	if i := st.ena.available; i >= 0 {
		d.ConntrackAllowanceAvailable = Stat{Value: st.values[i], Present: true}
	}
}

// Close releases the kernel handles. Read returns ErrClosed afterwards.
func (r *Reader) Close() error {
	if r.k == nil {
		return nil
	}
	err := r.k.Close()
	r.k = nil
	return err
}

// Package netdevtest fakes the kernel's side of package netdev for tests:
// links with their standard counters, and driver statistics in the form the
// SIOCETHTOOL ioctl returns them (the ETH_SS_STATS string set, 32 bytes per
// name, and the u64 values), so that a test's statistics go through the
// same parsing and ENA mapping as a live read.
//
// Recorded statistics ship with the package (directory ethtool/, see its
// README): a veth and a virtio_net device read on Linux 6.18, and the AWS
// ENA driver's set before (2.7.4) and after (2.8.1)
// conntrack_allowance_available.
//
//	rec := netdevtest.MustLoad("ena-2.8.1")
//	k := &netdevtest.Kernel{
//		Dump:  []netdev.Link{{Name: "eth0", Index: 2, HasCounters: true}},
//		Stats: map[string]netdevtest.Recording{"eth0": rec},
//	}
//	r, _ := netdev.Open(netdev.Options{Kernel: k})
//	k.Stats["eth0"] = rec.With("pps_allowance_exceeded", 3700) // next cycle
package netdevtest

import (
	"bytes"
	"context"
	"embed"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"

	"github.com/stormwatch/stormwatch/internal/netdev"
)

//go:embed ethtool/*.strings ethtool/*.stats
var recorded embed.FS

// Recording is one device's driver statistics as the ethtool ioctl returns
// them.
type Recording struct {
	// Driver is the device's driver ("ena").
	Driver string
	// Names is the ETH_SS_STATS string set: netdev.GStringLen bytes per
	// name, NUL-padded.
	Names []byte
	// Values holds one value per name.
	Values []uint64
}

// Load returns a recording shipped in ethtool/, by name ("ena-2.8.1"): the
// string set in <name>.strings and the values in <name>.stats (u64,
// little-endian, as an x86-64 or arm64 kernel writes them). The driver is
// the name up to its first "-".
func Load(name string) (Recording, error) {
	s, err := recorded.ReadFile("ethtool/" + name + ".strings")
	if err != nil {
		return Recording{}, fmt.Errorf("netdevtest: recording %s: %w", name, err)
	}
	v, err := recorded.ReadFile("ethtool/" + name + ".stats")
	if err != nil {
		return Recording{}, fmt.Errorf("netdevtest: recording %s: %w", name, err)
	}
	driver, _, _ := strings.Cut(name, "-")
	return Decode(driver, s, v)
}

// MustLoad is Load for test setup: it panics on a missing recording.
func MustLoad(name string) Recording {
	r, err := Load(name)
	if err != nil {
		panic(err)
	}
	return r
}

// Decode builds a recording from the two ioctl buffers' contents: the
// string set and the values as little-endian u64.
func Decode(driver string, names, values []byte) (Recording, error) {
	if len(names)%netdev.GStringLen != 0 || len(values)%8 != 0 || len(names)/netdev.GStringLen != len(values)/8 {
		return Recording{}, fmt.Errorf("netdevtest: %d bytes of names and %d bytes of values do not make whole, matching statistics",
			len(names), len(values))
	}
	r := Recording{Driver: driver, Names: bytes.Clone(names), Values: make([]uint64, len(values)/8)}
	for i := range r.Values {
		r.Values[i] = binary.LittleEndian.Uint64(values[i*8:])
	}
	return r, nil
}

// New builds a recording from names and values, padding each name to
// netdev.GStringLen bytes as drivers do. It returns an error for a name
// too long for the string set or a count mismatch.
func New(driver string, names []string, values []uint64) (Recording, error) {
	if len(names) != len(values) {
		return Recording{}, fmt.Errorf("netdevtest: %d names, %d values", len(names), len(values))
	}
	r := Recording{Driver: driver, Names: make([]byte, len(names)*netdev.GStringLen), Values: append([]uint64(nil), values...)}
	for i, n := range names {
		if len(n) > netdev.GStringLen {
			return Recording{}, fmt.Errorf("netdevtest: statistic name %q is longer than %d bytes", n, netdev.GStringLen)
		}
		copy(r.Names[i*netdev.GStringLen:], n)
	}
	return r, nil
}

// Encode returns the recording's two buffers as Decode takes them.
func (r Recording) Encode() (names, values []byte) {
	values = make([]byte, 8*len(r.Values))
	for i, v := range r.Values {
		binary.LittleEndian.PutUint64(values[i*8:], v)
	}
	return bytes.Clone(r.Names), values
}

// StatNames returns the statistics' names, in order.
func (r Recording) StatNames() []string {
	out := make([]string, len(r.Names)/netdev.GStringLen)
	for i := range out {
		slot := r.Names[i*netdev.GStringLen : (i+1)*netdev.GStringLen]
		if n := bytes.IndexByte(slot, 0); n >= 0 {
			slot = slot[:n]
		}
		out[i] = string(slot)
	}
	return out
}

// Value returns the value of the named statistic.
func (r Recording) Value(name string) (uint64, bool) {
	for i, n := range r.StatNames() {
		if n == name {
			return r.Values[i], true
		}
	}
	return 0, false
}

// String renders the recording as "ethtool -S" prints it.
func (r Recording) String() string {
	var b strings.Builder
	b.WriteString("NIC statistics:\n")
	for i, n := range r.StatNames() {
		fmt.Fprintf(&b, "     %s: %d\n", n, r.Values[i])
	}
	return b.String()
}

// With returns a copy of r whose named statistic is v, for a test's next
// cycle. It panics if r has no such statistic: a test asking for one is
// wrong about its recording.
func (r Recording) With(name string, v uint64) Recording {
	for i, n := range r.StatNames() {
		if n == name {
			c := r
			c.Values = append([]uint64(nil), r.Values...)
			c.Values[i] = v
			return c
		}
	}
	panic(fmt.Sprintf("netdevtest: recording of %s has no statistic %q", r.Driver, name))
}

// Kernel is a fake netdev.Kernel. Set its fields between Reads to move to
// the next cycle; it is safe for use from the test and a reader at once.
type Kernel struct {
	mu sync.Mutex
	// Dump holds the links every link dump returns.
	Dump []netdev.Link
	// DumpErr, when set, fails the link dump.
	DumpErr error
	// Stats holds the driver statistics by interface name; an interface
	// without an entry has none (netdev.ErrNoDriverStats).
	Stats map[string]Recording
	// Errs, by interface name, fails DriverStats with that error.
	Errs map[string]error
	// DriverStatsCalls counts DriverStats calls, NamesCalls those asking
	// for the names too.
	DriverStatsCalls, NamesCalls int
	// Closed is set by Close.
	Closed bool

	names  []byte
	values []uint64
}

// Set runs fn with the fake locked, to change its fields while a reader
// may be using it.
func (k *Kernel) Set(fn func(k *Kernel)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fn(k)
}

// Links implements netdev.Kernel.
func (k *Kernel) Links(ctx context.Context, dst []netdev.Link) ([]netdev.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	if k.DumpErr != nil {
		return dst, k.DumpErr
	}
	return append(dst, k.Dump...), nil
}

// DriverName implements netdev.Kernel.
func (k *Kernel) DriverName(ifname string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r, ok := k.Stats[ifname]
	if !ok {
		return "", netdev.ErrNoDriverStats
	}
	return r.Driver, nil
}

// DriverStats implements netdev.Kernel: it copies the recording into
// buffers it reuses, as the kernel fills the reader's.
func (k *Kernel) DriverStats(ifname string, withNames bool) ([]byte, []uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.DriverStatsCalls++
	if withNames {
		k.NamesCalls++
	}
	if err := k.Errs[ifname]; err != nil {
		return nil, nil, err
	}
	r, ok := k.Stats[ifname]
	if !ok {
		return nil, nil, netdev.ErrNoDriverStats
	}
	k.values = append(k.values[:0], r.Values...)
	if !withNames {
		return nil, k.values, nil
	}
	k.names = append(k.names[:0], r.Names...)
	return k.names, k.values, nil
}

// Close implements netdev.Kernel.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.Closed = true
	return nil
}

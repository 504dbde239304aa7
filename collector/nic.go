package collector

import (
	"context"
	"fmt"

	"github.com/stormwatch/stormwatch/internal/netdev"
)

// The nic source: per network interface of the caller's namespace
// (loopback excluded), the standard counters from one rtnetlink link dump
// and the driver's ethtool statistics, of which the AWS ENA allowances are
// kept by their meaning (internal/netdev). A driver without them (veth,
// virtio_net) gives the standard counters only: that is not an error.

// KindInterface is the entity kind of network interfaces, labelled device.
const KindInterface = "interface"

// NICConfig configures the nic source.
type NICConfig struct {
	// Include, when not empty, keeps only interfaces whose name matches
	// one of these glob patterns (path.Match: "eth*", "ens[0-9]*").
	// Loopback is never reported.
	Include []string
	// Exclude drops interfaces whose name matches one of these patterns;
	// it wins over Include.
	Exclude []string
	// Kernel answers the source's link dumps and ethtool requests; nil
	// opens the kernel of the caller's network namespace when the source
	// is made. Tests pass a fake (internal/netdev/netdevtest).
	Kernel netdev.Kernel
}

// The nic source's values, by index. The allowance counters come first,
// in netdev.Allowance order, so that nicExceeded+a is allowance a's.
const nicExceeded = 0

const (
	nicAvailable = nicExceeded + int(netdev.NumAllowances) + iota
	nicExcess
	nicRxPackets
	nicTxPackets
	nicRxDropped
	nicRxMissed
	nicHostRxDropped
	nicHostRxMissed
	nicNumValues
)

// nicAllowanceHelp is the HELP of the stormwatch_nic_allowance_exceeded_total
// family, which one value per allowance exports into.
const nicAllowanceHelp = "Packets the AWS hypervisor queued or dropped because the instance exceeded one of its allowances " +
	"(ENA driver statistics *_allowance_exceeded), by allowance: bw_in, bw_out, pps, conntrack, linklocal."

var nicDecl = func() *Declaration {
	values := make([]Value, nicNumValues)
	for a := range netdev.NumAllowances {
		values[nicExceeded+int(a)] = Value{
			Name: a.StatName(), Entity: KindInterface, Kind: Counter, Unit: "packets",
			Help: fmt.Sprintf("packets the AWS hypervisor queued or dropped because the instance exceeded its %s allowance (ENA %s)",
				a.Describe(), a.StatName()),
			Metric: "nic_allowance_exceeded_total", MetricHelp: nicAllowanceHelp, MetricLabels: []string{"allowance", a.String()},
		}
	}
	values[nicAvailable] = Value{Name: "conntrack_allowance_available", Entity: KindInterface, Kind: Gauge, Unit: "connections",
		Metric: "nic_conntrack_allowance_available",
		Help: "Tracked connections the instance can still open before reaching its AWS conntrack allowance " +
			"(ENA conntrack_allowance_available, Nitro instances with driver 2.8.1+)."}
	values[nicExcess] = Value{Name: "conntrack_allowance_excess", Entity: KindInterface, Kind: Gauge, Unit: "connections",
		Help: "conntrack_allowance_available negated: tracked connections beyond the AWS conntrack allowance, below 0 while " +
			`there is room; time_to_limit("conntrack_allowance_excess", 0, w) is the time until the allowance runs out at the current fall`}
	values[nicRxPackets] = Value{Name: "receive_packets", Entity: KindInterface, Kind: Counter, Unit: "packets",
		Help: "packets received by the interface (rx_packets), for drop shares in rules"}
	values[nicTxPackets] = Value{Name: "transmit_packets", Entity: KindInterface, Kind: Counter, Unit: "packets",
		Help: "packets sent by the interface (tx_packets)"}
	values[nicRxDropped] = Value{Name: "receive_dropped", Entity: KindInterface, Kind: Counter, Unit: "packets",
		Metric: "nic_receive_dropped_total",
		Help:   "Packets the interface received and then dropped, in the driver or the stack (rx_dropped)."}
	values[nicRxMissed] = Value{Name: "receive_missed", Entity: KindInterface, Kind: Counter, Unit: "packets",
		Metric: "nic_receive_missed_total",
		Help:   "Packets the NIC itself missed because the host did not take them off its receive ring in time (rx_missed_errors)."}
	values[nicHostRxDropped] = Value{Name: "nic_receive_dropped", Kind: Counter, Unit: "packets",
		Help: "rx_dropped of the reported interfaces, summed (from the first read on; an interface that appears later adds what it drops after)"}
	values[nicHostRxMissed] = Value{Name: "nic_receive_missed", Kind: Counter, Unit: "packets",
		Help: "rx_missed_errors of the reported interfaces, summed (from the first read on; an interface that appears later adds what it misses after)"}
	return &Declaration{
		Name: "nic",
		Kinds: []EntityKind{{
			Name:   KindInterface,
			Help:   "a network interface of the namespace (loopback excluded)",
			Labels: []Label{{Name: "device", Help: `the interface's name (string, e.g. "eth0")`}},
		}},
		Values:   values,
		Sections: []Section{{Name: "nic", Title: "NIC", Order: 10}},
		Items: []Item{
			// On AWS the allowances come first: what they drop, nothing
			// on the host counts. Rules over the exceeded counters get
			// lines of their own in the section (they have no gauge to
			// show); the one gauge the driver gives is shown here.
			{ID: "nic_conntrack_allowance", Section: "nic", What: "AWS conntrack allowance left", Entity: KindInterface,
				Unit: "connections", Value: "conntrack_allowance_available", Related: []string{"conntrack_allowance_excess"}, Quiet: true},
			{ID: "nic_drops", Section: "nic", What: "NIC receive drops + misses", Unit: "packets/s",
				Rate: []string{"nic_receive_dropped", "nic_receive_missed"}},
		},
	}
}()

// nicSource reads the interfaces of the namespace it was made in, once per
// cycle, through one netdev.Reader opened at construction.
type nicSource struct {
	r      *netdev.Reader
	totals nicTotals // only touched by Collect, which the sampler runs serially
}

// newNICSource opens the reader: in the caller's network namespace, or
// over cfg.Kernel. A bad name pattern is an error wrapping
// netdev.ErrBadOption.
func newNICSource(cfg NICConfig) (*nicSource, error) {
	r, err := netdev.Open(netdev.Options{Include: cfg.Include, Exclude: cfg.Exclude, Kernel: cfg.Kernel})
	if err != nil {
		return nil, err
	}
	return &nicSource{r: r}, nil
}

func (s *nicSource) Declaration() *Declaration { return nicDecl }

// Collect writes one row per kept interface. A statistic the driver does
// not report is not written (no data). A failed link dump writes nothing
// and fails the source; a device whose driver statistics failed keeps its
// standard counters, and the source reports the failure.
func (s *nicSource) Collect(ctx context.Context, w *Writer) error {
	devs, err := s.r.Read(ctx)
	if devs == nil && err != nil {
		return err
	}
	t := w.Table(KindInterface, len(devs))
	for i := range devs {
		d := &devs[i]
		row := t.Add(d.Name)
		if d.HasCounters {
			c := &d.Counters
			t.Set(row, nicRxPackets, float64(c.RxPackets))
			t.Set(row, nicTxPackets, float64(c.TxPackets))
			t.Set(row, nicRxDropped, float64(c.RxDropped))
			t.Set(row, nicRxMissed, float64(c.RxMissedErrors))
		}
		for a, st := range d.AllowanceExceeded {
			if st.Present {
				t.Set(row, nicExceeded+a, float64(st.Value))
			}
		}
		if av := d.ConntrackAllowanceAvailable; av.Present {
			t.Set(row, nicAvailable, float64(av.Value))
			t.Set(row, nicExcess, -float64(av.Value))
		}
	}
	s.totals.update(devs)
	w.Set(nicHostRxDropped, s.totals.dropped)
	w.Set(nicHostRxMissed, s.totals.missed)
	return err
}

// Close releases the reader's kernel handles.
func (s *nicSource) Close() error { return s.r.Close() }

// nicTotals sums the interfaces' receive drops into host counters that
// only grow: each interface adds its rise since the previous read (a fall
// means its counters restarted, so the new value is the rise, as
// Prometheus reads a counter reset). The totals start at the sums of the
// first read; an interface first seen later (or again under a reused
// index) only sets its baseline, since its counts may date from before. An
// interface that vanishes takes nothing back.
type nicTotals struct {
	started         bool
	prev            map[nicKey][2]uint64
	seen            map[nicKey]bool
	dropped, missed float64
}

// nicKey identifies an interface across reads: a name can be reused by
// another device with another index, and an index by another name.
type nicKey struct {
	index int
	name  string
}

func (t *nicTotals) update(devs []netdev.Device) {
	if t.prev == nil {
		t.prev, t.seen = map[nicKey][2]uint64{}, map[nicKey]bool{}
	}
	clear(t.seen)
	for i := range devs {
		d := &devs[i]
		if !d.HasCounters {
			continue
		}
		k := nicKey{d.Index, d.Name}
		cur := [2]uint64{d.Counters.RxDropped, d.Counters.RxMissedErrors}
		if prev, ok := t.prev[k]; ok {
			t.dropped += float64(counterRise(prev[0], cur[0]))
			t.missed += float64(counterRise(prev[1], cur[1]))
		} else if !t.started {
			t.dropped += float64(cur[0])
			t.missed += float64(cur[1])
		}
		t.prev[k] = cur
		t.seen[k] = true
	}
	for k := range t.prev {
		if !t.seen[k] {
			delete(t.prev, k)
		}
	}
	t.started = true
}

// counterRise is how much a counter rose from a to b; a fall means it
// restarted from zero, so b is the rise.
func counterRise(a, b uint64) uint64 {
	if b < a {
		return b
	}
	return b - a
}

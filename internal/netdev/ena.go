package netdev

// Allowance is one of the per-instance allowances the AWS hypervisor
// enforces before the host sees a packet. The ENA driver (2.2.10+) counts
// the packets queued or dropped for exceeding each.
type Allowance int

// The allowances, in the order the ENA driver lists them.
const (
	// BWIn: inbound aggregate bandwidth above the instance's maximum.
	BWIn Allowance = iota
	// BWOut: outbound aggregate bandwidth above the instance's maximum.
	BWOut
	// PPS: bidirectional packets per second above the instance's maximum.
	PPS
	// Conntrack: tracked connections (security-group connection
	// tracking) above the instance's maximum; new flows are dropped.
	Conntrack
	// Linklocal: packets to link-local services (DNS resolver, instance
	// metadata, time sync) above their per-interface PPS maximum.
	Linklocal
	// NumAllowances is the number of allowances.
	NumAllowances
)

// ConntrackAvailableStatName is the name of the ENA ethtool statistic
// holding the number of tracked connections the instance can still open
// before reaching its allowance (a gauge). The driver reports it from 2.8.1
// (github.com/amzn/amzn-drivers; the in-tree driver since late 2024) on
// Nitro instances.
const ConntrackAvailableStatName = "conntrack_allowance_available"

// ena is the one table of the ENA driver's ethtool statistics stormwatch
// keeps, by meaning. The names are the driver's (ena_ethtool.c, in-tree
// and github.com/amzn/amzn-drivers); nothing else in stormwatch spells them.
var ena = struct {
	exceeded  [NumAllowances]allowanceInfo
	available string
}{
	exceeded: [NumAllowances]allowanceInfo{
		BWIn:      {"bw_in", "bw_in_allowance_exceeded", "inbound bandwidth"},
		BWOut:     {"bw_out", "bw_out_allowance_exceeded", "outbound bandwidth"},
		PPS:       {"pps", "pps_allowance_exceeded", "packets per second"},
		Conntrack: {"conntrack", "conntrack_allowance_exceeded", "tracked connections"},
		Linklocal: {"linklocal", "linklocal_allowance_exceeded", "link-local packets per second"},
	},
	available: ConntrackAvailableStatName,
}

type allowanceInfo struct {
	label, stat, what string
}

// String returns the allowance's label value in stormwatch's metrics:
// "bw_in", "bw_out", "pps", "conntrack" or "linklocal".
func (a Allowance) String() string {
	if a < 0 || a >= NumAllowances {
		return "unknown"
	}
	return ena.exceeded[a].label
}

// StatName returns the name of the ENA ethtool statistic counting the
// packets queued or dropped for exceeding a ("pps_allowance_exceeded").
func (a Allowance) StatName() string {
	if a < 0 || a >= NumAllowances {
		return ""
	}
	return ena.exceeded[a].stat
}

// Describe returns what the allowance limits, in a few words ("packets
// per second").
func (a Allowance) Describe() string {
	if a < 0 || a >= NumAllowances {
		return ""
	}
	return ena.exceeded[a].what
}

// enaIndex holds where each ENA statistic sits in a driver's string set,
// -1 where the driver does not report it.
type enaIndex struct {
	exceeded  [NumAllowances]int
	available int
}

// indexENA finds the ENA statistics in names, a driver's ETH_SS_STATS
// string set. A name the driver lists twice counts at its first place.
func indexENA(names []string) enaIndex {
	x := enaIndex{available: -1}
	for a := range x.exceeded {
		x.exceeded[a] = -1
	}
	for i, n := range names {
		if n == ena.available {
			if x.available < 0 {
				x.available = i
			}
			continue
		}
		for a := range x.exceeded {
			if n == ena.exceeded[a].stat && x.exceeded[a] < 0 {
				x.exceeded[a] = i
			}
		}
	}
	return x
}

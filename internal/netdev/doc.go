// Package netdev reads the network interfaces of one network namespace, per
// interface: the standard counters (packets, drops, NIC misses) and the
// driver's ethtool statistics, with the AWS ENA allowance statistics kept by
// their meaning.
//
//	r, err := netdev.Open(netdev.Options{Exclude: []string{"veth*"}})
//	...
//	defer r.Close()
//	devs, err := r.Read(ctx) // once per cycle; devs is reused by the next Read
//	for _, d := range devs {
//		dropped := d.Counters.RxDropped            // and RxMissedErrors, …
//		pps := d.AllowanceExceeded[netdev.PPS]     // netdev.Stat{Value, Present}
//		left := d.ConntrackAllowanceAvailable      // netdev.Stat{Value, Present}
//	}
//
// # Design
//
// Standard counters come from one rtnetlink link dump for every interface
// (github.com/vishvananda/netlink Handle.LinkList, IFLA_STATS64), on a
// handle opened once: one round trip instead of a sysfs file per counter per
// interface. Driver statistics come from the SIOCETHTOOL ioctl, the only
// interface carrying them (ethtool's netlink interface has standard groups
// only), on one socket opened once: per device and Read,
// ETHTOOL_GSSET_INFO for their number and ETHTOOL_GSTATS for their values;
// ETHTOOL_GSTRINGS for their names only when the number changed, on first
// sight, and every NamesMaxAge Reads. Both sockets resolve interfaces in
// the namespace they were opened in, and neither needs a privilege.
//
// The ioctl is made here rather than through github.com/safchain/ethtool:
// its StatsWithBuffer reuses the two buffers but asks for the names every
// time and returns a new map with a new string per statistic on every call
// (14 allocations per veth device and cycle; an ENA device has a hundred
// statistics or more: per-queue counters). Here the names and values land
// in buffers allocated once, names are compared with the previous read and
// parsed only when they changed, and the ENA statistics are found by name
// then and read by position afterwards: the driver statistics part of a
// Read allocates nothing (BenchmarkRead; the link dump still allocates per
// link). The tests check the values against ethtool(8) and
// safchain/ethtool.
//
// The kernel writes as many names and values as the driver counts at the
// time of each request, whatever size the request says; the buffers hold
// MaxDriverStats, and a driver counting more is refused before the requests
// that write them.
//
// The ENA statistic names appear in one table (ena.go); Allowance gives
// each its metric label and its statistic's name. A driver without them
// (veth, virtio_net) yields its other statistics only; a driver without
// statistics (loopback) or one refusing the request (EOPNOTSUPP) yields the
// standard counters only. Neither is an error.
//
// Kernel is the seam for tests: netdevtest fakes it with driver statistics
// recorded in the ioctl's own format, so that recorded ENA statistics go
// through the same parsing and mapping as live ones.
//
// # Limits
//
// Linux only. The ethtool ioctl takes the kernel's RTNL lock: while another
// task holds it (mass interface changes), Read waits, and no context can cut
// the wait short. The link dump is bounded by the context's deadline.
// Interface names are resolved twice (dump, then ioctl): an interface
// renamed in between is read under its new owner's name or reported without
// driver statistics.
package netdev

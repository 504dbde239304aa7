// Package clients answers "who is connecting?" for a listener in trouble:
// the client addresses of its half-open handshakes (SYN_RECV request
// sockets) and of its established connections, grouped by network prefix
// (/24 for IPv4, /64 for IPv6 by default), the busiest first.
//
// Dump reads them from sock_diag: one LISTEN dump to map local addresses
// to listeners (internal/sockdiag.Listeners, as the collector and drain
// map them), then one SYN_RECV|ESTABLISHED dump per address family, both
// filtered by the kernel to the listeners' ports (sockdiag.PortFilter).
// Sockets are counted as they are parsed, in place; none is kept.
//
// Its cost is bounded: the SYN_RECV and ESTABLISHED dump walks every TCP
// socket of the network namespace (the kernel's established hash), so it
// runs on demand only (`stormwatch check`, for listeners that are not OK),
// never on the daemon's tick. Each listener and state counts at most
// Config.MaxTracked distinct prefixes with the Space-Saving algorithm
// (Metwally, Agrawal, El Abbadi, "Efficient computation of frequent and
// top-k elements in data streams", 2005): exact while there are no more
// prefixes than that; beyond it, a prefix that is not tracked takes the
// place of the least counted one and inherits its count, so every count is
// an upper bound, off by at most its Overcount, and any prefix holding
// more than Total/MaxTracked of the sockets is certain to be tracked.
// Config.MaxListeners bounds the listeners of one Dump.
//
// Limits: the two dumps are not atomic (a connection can move from
// SYN_RECV to ESTABLISHED between the IPv4 and IPv6 dumps), and a
// listener that appears or goes between the LISTEN dump and the next is
// missed or empty.
package clients

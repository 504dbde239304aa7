package drain

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

// Listener is one listening address and port (all the sockets of an
// SO_REUSEPORT group together).
type Listener struct {
	// Addr is the bound address, unmapped (0.0.0.0 and :: for the
	// wildcards).
	Addr netip.Addr
	Port uint16
	// DualStack is true for a :: listener that takes IPv4 connections.
	DualStack bool
	// Sockets is the number of listening sockets (more than one with
	// SO_REUSEPORT).
	Sockets int
}

// String formats l as host:port.
func (l Listener) String() string {
	return net.JoinHostPort(l.Addr.String(), strconv.Itoa(int(l.Port)))
}

// Conn is one established, accepted, server-side connection of a drained
// listener.
type Conn struct {
	// Family is the socket's address family (an IPv4 client of a
	// dual-stack listener has an AF_INET6 socket).
	Family uint8
	// Local and Remote are the addresses as the kernel reports them: an
	// AF_INET6 socket may carry v4-mapped ones. Use Unmap to compare them
	// with what a server reports of its clients.
	Local, Remote netip.AddrPort
	IfIndex       uint32
	// Cookie is the kernel's identifier of the socket.
	Cookie uint64
	// Inode is the socket's inode: it orders connections by when the
	// server accepted them (see the package comment).
	Inode uint32
}

// ID is the socket's exact identity, for SOCK_DESTROY.
func (c Conn) ID() sockdiag.ID {
	return sockdiag.ID{Family: c.Family, SrcPort: c.Local.Port(), DstPort: c.Remote.Port(),
		Src: c.Local.Addr(), Dst: c.Remote.Addr(), IfIndex: c.IfIndex, Cookie: c.Cookie}
}

// String formats c as "remote -> local".
func (c Conn) String() string {
	return fmt.Sprintf("%v -> %v", unmap(c.Remote), unmap(c.Local))
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Listing is what one look at the kernel found.
type Listing struct {
	// Listeners are the listeners drained.
	Listeners []Listener
	// Conns are their established, accepted server-side connections.
	Conns []Conn
	// Unaccepted counts established connections with no inode: not yet
	// accepted (waiting in the accept queue) or orphaned (closed by the
	// server, still finishing). They are never touched.
	Unaccepted int
}

// Source lists the connections to drain.
type Source interface {
	List(ctx context.Context) (Listing, error)
}

// SockDiag lists a listener's connections with sock_diag dumps: one
// LISTEN dump per address family to find the listeners on Port, one
// ESTABLISHED dump per family for their connections, both filtered by the
// kernel to Port. A connection belongs to the listener a new connection to
// its local address would reach (sockdiag.Listeners), as the collector
// maps handshakes to listeners: the listener on exactly that address, else
// the family's wildcard (0.0.0.0 or ::), else, for IPv4, a dual-stack ::.
// Only sockets whose local port is Port are considered, so client sockets
// connecting to Port are never taken.
type SockDiag struct {
	// Port is the listening port.
	Port uint16
	// Addr, when valid, picks the listener bound to that address; else
	// every listener on Port is drained.
	Addr netip.Addr
	// Dial opens the sock_diag connection; nil: sockdiag.Dial, in the
	// calling thread's network namespace.
	Dial func() (sockdiag.Conn, error)

	dumper    *sockdiag.Dumper
	listeners sockdiag.Listeners
}

// Close releases the netlink connection.
func (s *SockDiag) Close() error {
	if s.dumper == nil {
		return nil
	}
	return s.dumper.Close()
}

// List implements Source.
func (s *SockDiag) List(ctx context.Context) (Listing, error) {
	var out Listing
	if s.dumper == nil {
		filter, err := sockdiag.PortFilter([]uint16{s.Port})
		if err != nil {
			return out, err
		}
		s.dumper = &sockdiag.Dumper{Dial: s.Dial, Filter: filter}
	}
	err := s.dumper.Dump(ctx, sockdiag.TCPFListen, s.listeners.Reset, func(m sockdiag.Msg) {
		if m.SrcPort == s.Port {
			s.listeners.Add(m)
		}
	})
	if err != nil {
		return out, fmt.Errorf("listing listeners: %w", err)
	}
	var all []Listener
	selected := make([]bool, s.listeners.Len())
	for i := range s.listeners.Len() {
		sl := s.listeners.At(i)
		l := Listener{Addr: sl.Addr, Port: sl.Port, DualStack: sl.DualStack, Sockets: sl.Sockets}
		all = append(all, l)
		if !s.Addr.IsValid() || l.Addr == s.Addr.Unmap() {
			selected[i] = true
			out.Listeners = append(out.Listeners, l)
		}
	}
	byAddr := func(x, y Listener) int { return x.Addr.Compare(y.Addr) }
	slices.SortFunc(all, byAddr)
	slices.SortFunc(out.Listeners, byAddr)
	if len(out.Listeners) == 0 {
		if len(all) == 0 || !s.Addr.IsValid() {
			return out, fmt.Errorf("%w on port %d", ErrNoListener, s.Port)
		}
		var others []string
		for _, l := range all {
			others = append(others, l.Addr.String())
		}
		return out, fmt.Errorf("%w on %s port %d (port %d listens on %s)", ErrNoListener, s.Addr, s.Port, s.Port, strings.Join(others, ", "))
	}

	err = s.dumper.Dump(ctx, sockdiag.TCPFEstablished, func() { out.Conns, out.Unaccepted = out.Conns[:0], 0 }, func(m sockdiag.Msg) {
		if m.State != sockdiag.TCPEstablished || m.SrcPort != s.Port {
			return
		}
		i, ok := s.listeners.Lookup(m.Src.Unmap(), m.SrcPort)
		if !ok || !selected[i] {
			return
		}
		if m.Inode == 0 {
			out.Unaccepted++
			return
		}
		out.Conns = append(out.Conns, Conn{
			Family: m.Family, Local: netip.AddrPortFrom(m.Src, m.SrcPort), Remote: netip.AddrPortFrom(m.Dst, m.DstPort),
			IfIndex: m.IfIndex, Cookie: m.Cookie, Inode: m.Inode,
		})
	})
	if err != nil {
		return out, fmt.Errorf("listing connections: %w", err)
	}
	return out, nil
}

// sortOldest orders conns by inode, then cookie.
func sortOldest(conns []Conn) {
	slices.SortFunc(conns, func(a, b Conn) int {
		return cmp.Or(cmp.Compare(a.Inode, b.Inode), cmp.Compare(a.Cookie, b.Cookie))
	})
}

package drain

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

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

// maxDumpAttempts bounds the restarts of an interrupted dump.
const maxDumpAttempts = 3

// SockDiag lists a listener's connections with sock_diag dumps: one
// LISTEN dump per address family to find the listeners on Port, one
// ESTABLISHED dump per family for their connections. A connection belongs
// to the listener a new connection to its local address would reach, as
// the collector maps handshakes to listeners: the listener on exactly that
// address, else the family's wildcard (0.0.0.0 or ::), else, for IPv4, a
// dual-stack ::. Only sockets whose local port is Port are considered, so
// client sockets connecting to Port are never taken.
type SockDiag struct {
	// Port is the listening port.
	Port uint16
	// Addr, when valid, picks the listener bound to that address; else
	// every listener on Port is drained.
	Addr netip.Addr
	// Dial opens the sock_diag connection; nil: sockdiag.Dial, in the
	// calling thread's network namespace.
	Dial func() (sockdiag.Conn, error)

	conn       sockdiag.Conn
	v6Disabled bool
	// scratch
	all   []Listener
	index map[netip.Addr]int
}

// Close releases the netlink connection.
func (s *SockDiag) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// List implements Source.
func (s *SockDiag) List(ctx context.Context) (Listing, error) {
	var out Listing
	if s.index == nil {
		s.index = make(map[netip.Addr]int)
	}
	s.all = s.all[:0]
	clear(s.index)
	err := s.dump(ctx, sockdiag.TCPFListen, func() { s.all = s.all[:0]; clear(s.index) }, s.addListener)
	if err != nil {
		return out, fmt.Errorf("listing listeners: %w", err)
	}
	slices.SortFunc(s.all, func(x, y Listener) int { return x.Addr.Compare(y.Addr) })
	for i, l := range s.all {
		s.index[l.Addr] = i
	}
	selected := make([]bool, len(s.all))
	for i, l := range s.all {
		if !s.Addr.IsValid() || l.Addr == s.Addr.Unmap() {
			selected[i] = true
			out.Listeners = append(out.Listeners, l)
		}
	}
	if len(out.Listeners) == 0 {
		if len(s.all) == 0 || !s.Addr.IsValid() {
			return out, fmt.Errorf("%w on port %d", ErrNoListener, s.Port)
		}
		var others []string
		for _, l := range s.all {
			others = append(others, l.Addr.String())
		}
		return out, fmt.Errorf("%w on %s port %d (port %d listens on %s)", ErrNoListener, s.Addr, s.Port, s.Port, strings.Join(others, ", "))
	}

	err = s.dump(ctx, sockdiag.TCPFEstablished, func() { out.Conns, out.Unaccepted = out.Conns[:0], 0 }, func(m sockdiag.Msg) {
		if m.State != sockdiag.TCPEstablished || m.SrcPort != s.Port {
			return
		}
		i, ok := s.listenerFor(m.Src.Unmap())
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

func (s *SockDiag) addListener(m sockdiag.Msg) {
	if m.State != sockdiag.TCPListen || m.SrcPort != s.Port {
		return
	}
	a := m.Src.Unmap()
	i, ok := s.index[a]
	if !ok {
		i = len(s.all)
		s.index[a] = i
		s.all = append(s.all, Listener{Addr: a, Port: m.SrcPort})
	}
	s.all[i].Sockets++
	if m.Family == unix.AF_INET6 && !m.V6Only && a == netip.IPv6Unspecified() {
		s.all[i].DualStack = true
	}
}

// listenerFor finds the listener a connection to addr on Port reaches.
func (s *SockDiag) listenerFor(addr netip.Addr) (int, bool) {
	if i, ok := s.index[addr]; ok {
		return i, true
	}
	if addr.Is4() {
		if i, ok := s.index[netip.IPv4Unspecified()]; ok {
			return i, true
		}
		if i, ok := s.index[netip.IPv6Unspecified()]; ok && s.all[i].DualStack {
			return i, true
		}
		return 0, false
	}
	i, ok := s.index[netip.IPv6Unspecified()]
	return i, ok
}

// dump runs the dump of states for both families, restarting (after
// reset) when the kernel flags it interrupted or the buffer overran.
func (s *SockDiag) dump(ctx context.Context, states uint32, reset func(), fn func(sockdiag.Msg)) error {
	for attempt := 1; ; attempt++ {
		reset()
		interrupted, err := s.dumpFamilies(ctx, states, fn)
		switch {
		case err == nil && !interrupted:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			s.Close()
		case err != nil:
			s.Close()
			return err
		}
		if attempt == maxDumpAttempts {
			if err != nil {
				return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			return fmt.Errorf("gave up after %d attempts: the dump kept being interrupted (NLM_F_DUMP_INTR)", attempt)
		}
	}
}

func (s *SockDiag) dumpFamilies(ctx context.Context, states uint32, fn func(sockdiag.Msg)) (bool, error) {
	interrupted := false
	for _, fam := range [...]uint8{unix.AF_INET, unix.AF_INET6} {
		if fam == unix.AF_INET6 && s.v6Disabled {
			continue
		}
		if s.conn == nil {
			dial := s.Dial
			if dial == nil {
				dial = func() (sockdiag.Conn, error) { return sockdiag.Dial() }
			}
			c, err := dial()
			if err != nil {
				return false, fmt.Errorf("sock_diag: %w", err)
			}
			s.conn = c
		}
		res, err := sockdiag.Dump(ctx, s.conn, fam, states, fn)
		if err != nil {
			if fam == unix.AF_INET6 && sockdiag.Unsupported(err) {
				s.v6Disabled = true // a kernel without IPv6
				s.Close()
				continue
			}
			return false, err
		}
		interrupted = interrupted || res.Interrupted
	}
	return interrupted, nil
}

// sortOldest orders conns by inode, then cookie.
func sortOldest(conns []Conn) {
	slices.SortFunc(conns, func(a, b Conn) int {
		return cmp.Or(cmp.Compare(a.Inode, b.Inode), cmp.Compare(a.Cookie, b.Cookie))
	})
}

package sockdiag

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// ListenKey identifies a listener: its bound address, unmapped (0.0.0.0
// and :: for the wildcards), and its port.
type ListenKey struct {
	Addr netip.Addr
	Port uint16
}

// Listener is one listening address and port: the sockets of a
// SO_REUSEPORT group together.
type Listener struct {
	ListenKey
	// DualStack is true for a :: listener that takes IPv4 connections.
	DualStack bool
	// Sockets is the number of listening sockets.
	Sockets int
}

// Listeners indexes the LISTEN sockets of a dump by address and port and
// finds the listener a connection to a local address reaches, as the
// kernel picks it: the listener on exactly that address, else its
// family's wildcard (0.0.0.0 or ::), else, for IPv4, a dual-stack ::. A
// connection's local address and port (Msg.Src, Msg.SrcPort of an
// ESTABLISHED or SYN_RECV socket) name the listener that took it. The zero
// value is empty and ready to use.
type Listeners struct {
	index map[ListenKey]int
	list  []Listener
}

// Reset empties l, keeping its memory.
func (l *Listeners) Reset() {
	clear(l.index)
	l.list = l.list[:0]
}

// Add records m, if it is a LISTEN socket, and returns the index of its
// listener; listeners are numbered in the order they first appear.
func (l *Listeners) Add(m Msg) (int, bool) {
	if m.State != TCPListen {
		return -1, false
	}
	if l.index == nil {
		l.index = make(map[ListenKey]int)
	}
	k := ListenKey{Addr: m.Src.Unmap(), Port: m.SrcPort}
	i, ok := l.index[k]
	if !ok {
		i = len(l.list)
		l.index[k] = i
		l.list = append(l.list, Listener{ListenKey: k})
	}
	l.list[i].Sockets++
	if m.Family == unix.AF_INET6 && !m.V6Only && k.Addr == netip.IPv6Unspecified() {
		l.list[i].DualStack = true
	}
	return i, true
}

// Len is the number of listeners.
func (l *Listeners) Len() int { return len(l.list) }

// At returns listener i.
func (l *Listeners) At(i int) Listener { return l.list[i] }

// Index returns the index of the listener k, if there is one.
func (l *Listeners) Index(k ListenKey) (int, bool) {
	i, ok := l.index[k]
	return i, ok
}

// Lookup returns the index of the listener a connection to addr:port
// reaches (addr unmapped).
func (l *Listeners) Lookup(addr netip.Addr, port uint16) (int, bool) {
	if i, ok := l.index[ListenKey{addr, port}]; ok {
		return i, true
	}
	if addr.Is4() {
		if i, ok := l.index[ListenKey{netip.IPv4Unspecified(), port}]; ok {
			return i, true
		}
		if i, ok := l.index[ListenKey{netip.IPv6Unspecified(), port}]; ok && l.list[i].DualStack {
			return i, true
		}
		return 0, false
	}
	i, ok := l.index[ListenKey{netip.IPv6Unspecified(), port}]
	return i, ok
}

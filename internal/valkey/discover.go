package valkey

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/stormwatch/stormwatch/procfs"
)

// ServerNames are the process names (comm) Discover takes for a Valkey or
// Redis server.
var ServerNames = []string{"valkey-server", "redis-server"}

// Listener is a listening TCP socket as sock_diag reports it.
type Listener struct {
	// Addr is the bound address: 0.0.0.0 or :: for a wildcard.
	Addr netip.Addr
	// Port is the listening port.
	Port uint16
	// Inode is the socket's inode (idiag_inode).
	Inode uint32
}

// Owners tells which process holds a socket; procfs.SocketOwners is one.
type Owners interface {
	Owner(inode uint32) (procfs.Process, error)
}

// Target is a server found on this host by Discover.
type Target struct {
	// Address is where to connect: a loopback address when the server
	// listens on one or on a wildcard, else its lowest bound address.
	Address string
	// Port is the port Address connects to.
	Port uint16
	// Process is the server's process.
	Process procfs.Process
	// Listeners are all the process's listening sockets (every address,
	// and other ports such as a cluster bus or TLS port).
	Listeners []Listener
}

// Discover picks the Valkey/Redis servers among listeners: one Target per
// server process whose name is in ServerNames, on its lowest listening
// port (a cluster bus listens 10000 above the client port; a TLS port is
// usually above the plain one), so that a server is polled over one
// connection however many sockets it listens on. The address prefers
// 127.0.0.1, then ::1; a wildcard listener (0.0.0.0, ::) maps to the
// loopback of its family; a server bound only elsewhere is reached at
// its lowest bound address. Targets are sorted by address.
//
// Listeners whose owner cannot be seen are skipped; the error then wraps
// procfs.ErrOwnerHidden and says how many (the targets found are still
// returned). A listener nobody owns is skipped silently.
func Discover(listeners []Listener, owners Owners) ([]Target, error) {
	byPID := map[int]*Target{}
	hidden := 0
	var reason error
	for _, l := range listeners {
		p, err := owners.Owner(l.Inode)
		if err != nil {
			if errors.Is(err, procfs.ErrOwnerHidden) {
				hidden++
				reason = err
			}
			continue
		}
		if !slices.Contains(ServerNames, p.Comm) {
			continue
		}
		t := byPID[p.PID]
		if t == nil {
			t = &Target{Process: p}
			byPID[p.PID] = t
		}
		t.Listeners = append(t.Listeners, l)
	}
	out := make([]Target, 0, len(byPID))
	for _, t := range byPID {
		slices.SortFunc(t.Listeners, func(a, b Listener) int {
			return cmp.Or(cmp.Compare(a.Port, b.Port), a.Addr.Compare(b.Addr))
		})
		t.Port = t.Listeners[0].Port
		best := netip.Addr{}
		for _, l := range t.Listeners {
			if l.Port != t.Port {
				continue
			}
			if a := dialAddr(l.Addr); !best.IsValid() || rank(a) < rank(best) || (rank(a) == rank(best) && a.Less(best)) {
				best = a
			}
		}
		t.Address = net.JoinHostPort(best.String(), strconv.Itoa(int(t.Port)))
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b Target) int { return strings.Compare(a.Address, b.Address) })
	if hidden > 0 {
		return out, fmt.Errorf("%d listener(s) skipped: %w", hidden, reason)
	}
	return out, nil
}

// dialAddr maps a bound address to the address to connect to.
func dialAddr(a netip.Addr) netip.Addr {
	a = a.Unmap()
	switch {
	case a == netip.IPv4Unspecified():
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case a == netip.IPv6Unspecified():
		return netip.IPv6Loopback()
	}
	return a
}

// rank orders the addresses to connect to: 127.0.0.1, ::1, other
// loopback, anything else.
func rank(a netip.Addr) int {
	switch {
	case a == netip.AddrFrom4([4]byte{127, 0, 0, 1}):
		return 0
	case a == netip.IPv6Loopback():
		return 1
	case a.IsLoopback():
		return 2
	}
	return 3
}

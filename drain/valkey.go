package drain

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/stormwatch/stormwatch/internal/valkey"
)

// ValkeyServer is what the Valkey method needs of a client of the server
// (*valkey.Client has it).
type ValkeyServer interface {
	// Clients lists the server's connections (CLIENT LIST), the caller's
	// own marked Self.
	Clients(ctx context.Context) ([]valkey.ClientInfo, error)
	// Kill closes the connections with these ids and returns how many
	// the server closed.
	Kill(ctx context.Context, ids ...int64) (int, error)
	// Close closes the client's connection.
	Close() error
}

// Valkey is the "valkey" method: the server closes its clients itself
// with CLIENT KILL ID, over one connection of its own protocol. The
// client sees a clean close (a FIN after whatever reply was under way;
// its next read returns EOF), and the server knows: it frees the client,
// counts nothing as an error, and unblocks nothing half-done.
//
// Which client is which connection: each batch, one CLIENT LIST gives
// every client's id, age, flags and both ends of its socket (addr, the
// peer; laddr, the server's side); a drained connection is the client
// whose laddr and addr are the connection's local and remote addresses,
// so only clients that came in through the drained listener are ever
// killed. It skips (never kills) its own connection, a replica's link to
// this server (flag S), this server's link to its primary (flag M), and a
// connection the server does not list (not one of its clients, or one it
// has just freed); Pub/Sub subscribers, MONITOR and blocked clients are
// clients like any other and are killed. Oldest first follows the
// server's own age (then id, which the server hands out in increasing
// order as it accepts), not the inode.
//
// A batch is one CLIENT KILL ID with all its ids on Valkey ≥ 8.1, one per
// id in a single pipeline on older servers (valkey.Client.Kill). When the
// server closed fewer than asked (some left by themselves meanwhile), one
// more CLIENT LIST tells which are gone.
//
// Cost on the server: CLIENT LIST is O(clients) and about 300 bytes per
// client (3 MiB at 10,000), once per batch; each CLIENT KILL ID walks
// the client list once (on Valkey 8.1, once per command whatever the
// number of ids).
type Valkey struct {
	// Address is the server's host:port. Empty: reached through the
	// drained listeners (127.0.0.1 through 0.0.0.0 or 127.0.0.1, ::1
	// through :: or ::1, else the listener's own address).
	Address string
	// Connect returns a client of the server at address, called once.
	Connect func(address string) (ValkeyServer, error)

	listeners []Listener
	srv       ValkeyServer
	addr      string
	// last is the CLIENT LIST Order read, for the Disconnect that
	// follows it.
	last map[clientKey]valkey.ClientInfo
}

// clientKey is a connection's two ends, unmapped.
type clientKey struct{ local, remote netip.AddrPort }

// Name implements Method.
func (m *Valkey) Name() string { return "valkey" }

// UseListeners implements ServerMethod.
func (m *Valkey) UseListeners(ls []Listener) { m.listeners = slices.Clone(ls) }

// ServerAddress is the address the method talks to ("" before it
// connected).
func (m *Valkey) ServerAddress() string { return m.addr }

// Check implements Method: the server answers CLIENT LIST, its answer
// shows the method's own connection arriving through a drained listener
// (it is the server behind them), and it lets this user kill (a CLIENT
// KILL ID of an id no client has).
func (m *Valkey) Check(ctx context.Context) error {
	if err := m.open(); err != nil {
		return err
	}
	list, err := m.srv.Clients(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(list, func(c valkey.ClientInfo) bool { return c.Self })
	if i < 0 {
		return fmt.Errorf("%w: the server at %s does not list the connection stormwatch uses (CLIENT ID)", ErrWrongServer, m.addr)
	}
	self := list[i]
	local, ok := parseAddrPort(self.LAddr)
	if !ok || !m.behindListener(local) {
		return fmt.Errorf("%w: stormwatch's own connection to %s arrived on %q, not through %s", ErrWrongServer, m.addr, self.LAddr, listenerList(m.listeners))
	}
	if _, err := m.srv.Kill(ctx, math.MaxInt64); err != nil {
		return fmt.Errorf("CLIENT KILL refused (an ACL user needs +client|kill): %w", err)
	}
	return nil
}

func (m *Valkey) open() error {
	if m.srv != nil {
		return nil
	}
	if m.Connect == nil {
		return errors.New("valkey method without Connect")
	}
	addr := m.Address
	if addr == "" {
		var err error
		if addr, err = serverAddress(m.listeners); err != nil {
			return err
		}
	}
	srv, err := m.Connect(addr)
	if err != nil {
		return err
	}
	m.srv, m.addr = srv, addr
	return nil
}

// serverAddress picks where to reach the server behind ls.
func serverAddress(ls []Listener) (string, error) {
	if len(ls) == 0 {
		return "", fmt.Errorf("%w to reach the server through: give its address", ErrNoListener)
	}
	port := strconv.Itoa(int(ls[0].Port))
	v4, v6 := false, false
	for _, l := range ls {
		switch {
		case l.Addr == netip.IPv4Unspecified() || l.Addr == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || (l.Addr == netip.IPv6Unspecified() && l.DualStack):
			v4 = true
		case l.Addr == netip.IPv6Unspecified() || l.Addr == netip.IPv6Loopback():
			v6 = true
		}
	}
	switch {
	case v4:
		return net.JoinHostPort("127.0.0.1", port), nil
	case v6:
		return net.JoinHostPort("::1", port), nil
	}
	return ls[0].String(), nil
}

// behindListener reports whether a connection to local reaches one of
// the drained listeners.
func (m *Valkey) behindListener(local netip.AddrPort) bool {
	a := local.Addr().Unmap()
	for _, l := range m.listeners {
		if l.Port != local.Port() {
			continue
		}
		switch {
		case l.Addr == a,
			l.Addr == netip.IPv4Unspecified() && a.Is4(),
			l.Addr == netip.IPv6Unspecified() && (a.Is6() || l.DualStack):
			return true
		}
	}
	return false
}

func listenerList(ls []Listener) string {
	if len(ls) == 0 {
		return "no listener"
	}
	s := ""
	for i, l := range ls {
		if i > 0 {
			s += ", "
		}
		s += l.String()
	}
	return s
}

// parseAddrPort reads a CLIENT LIST address ("127.0.0.1:6379",
// "[::1]:6379"), unmapped; false for anything else (a Unix socket path).
func parseAddrPort(s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), true
}

func keyOf(c Conn) clientKey {
	return clientKey{unmap(c.Local), unmap(c.Remote)}
}

// index lists the server's clients by their two ends.
func (m *Valkey) index(ctx context.Context) (map[clientKey]valkey.ClientInfo, error) {
	if err := m.open(); err != nil {
		return nil, err
	}
	list, err := m.srv.Clients(ctx)
	if err != nil {
		return nil, err
	}
	return indexClients(list), nil
}

// indexClients maps the TCP clients of a CLIENT LIST to their two ends
// (laddr, addr), unmapped; clients on a Unix socket are left out.
func indexClients(list []valkey.ClientInfo) map[clientKey]valkey.ClientInfo {
	idx := make(map[clientKey]valkey.ClientInfo, len(list))
	for _, c := range list {
		local, ok1 := parseAddrPort(c.LAddr)
		remote, ok2 := parseAddrPort(c.Addr)
		if ok1 && ok2 {
			idx[clientKey{local, remote}] = c
		}
	}
	return idx
}

// skips reports whether the method never kills the client behind a
// connection (ok false: the server does not list one).
func skips(c valkey.ClientInfo, ok bool) bool {
	return !ok || c.Self || c.Replica || c.Primary
}

// Order implements Orderer: one CLIENT LIST; the connections it skips
// first (in inode order), then the server's clients oldest first (age,
// then id).
func (m *Valkey) Order(ctx context.Context, conns []Conn) (int, error) {
	m.last = nil
	idx, err := m.index(ctx)
	if err != nil {
		return 0, err
	}
	m.last = idx
	type ranked struct {
		c    Conn
		info valkey.ClientInfo
		skip bool
	}
	rs := make([]ranked, len(conns))
	skip := 0
	for i, c := range conns {
		info, ok := idx[keyOf(c)]
		rs[i] = ranked{c, info, skips(info, ok)}
		if rs[i].skip {
			skip++
		}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		switch {
		case a.skip != b.skip:
			if a.skip {
				return -1
			}
			return 1
		case a.skip:
			return cmp.Or(cmp.Compare(a.c.Inode, b.c.Inode), cmp.Compare(a.c.Cookie, b.c.Cookie))
		}
		return cmp.Or(cmp.Compare(b.info.Age, a.info.Age), cmp.Compare(a.info.ID, b.info.ID))
	})
	for i, r := range rs {
		conns[i] = r.c
	}
	return skip, nil
}

// Disconnect implements Method.
func (m *Valkey) Disconnect(ctx context.Context, conns []Conn, fates []Fate) error {
	idx := m.last
	m.last = nil
	for i := range conns {
		fates[i] = Unknown
	}
	if idx == nil {
		var err error
		if idx, err = m.index(ctx); err != nil {
			return err
		}
	}
	ids := make([]int64, 0, len(conns))
	at := make([]int, 0, len(conns))
	for i, c := range conns {
		info, ok := idx[keyOf(c)]
		if skips(info, ok) {
			fates[i] = Skipped
			continue
		}
		ids = append(ids, info.ID)
		at = append(at, i)
	}
	if len(ids) == 0 {
		return nil
	}
	n, err := m.srv.Kill(ctx, ids...)
	if err != nil {
		return err
	}
	if n >= len(ids) {
		for _, i := range at {
			fates[i] = Closed
		}
		return nil
	}
	// Fewer than asked: the ones the server no longer lists were killed
	// or left by themselves (n of them killed); one it still lists was
	// not killed, unless the server frees killed clients late.
	after, err := m.srv.Clients(ctx)
	if err != nil {
		return nil // the fates stay unknown: the next listing tells
	}
	present := make(map[int64]bool, len(after))
	for _, c := range after {
		present[c.ID] = true
	}
	left := n
	for j, i := range at {
		if !present[ids[j]] {
			if left > 0 {
				fates[i], left = Closed, left-1
			} else {
				fates[i] = Gone
			}
		}
	}
	for j, i := range at {
		if present[ids[j]] {
			if left > 0 {
				fates[i], left = Closed, left-1
			} else {
				fates[i] = Failed
			}
		}
	}
	return nil
}

// Close implements Method.
func (m *Valkey) Close() error {
	m.last = nil
	if m.srv == nil {
		return nil
	}
	err := m.srv.Close()
	m.srv = nil
	return err
}

package clients_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/clients"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/sockdiag/sockdiagtest"
)

var equate = cmpopts.EquateComparable(netip.Prefix{}, netip.AddrPort{})

func listenSock(family uint8, addr string, port uint16, v6only bool) sockdiag.Msg {
	a := netip.MustParseAddr(addr)
	return sockdiag.Msg{Family: family, State: sockdiag.TCPListen, Src: a, Dst: unspecified(family), SrcPort: port, V6Only: v6only, Inode: 1}
}

func unspecified(family uint8) netip.Addr {
	if family == unix.AF_INET {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func conn(state uint8, local string, port uint16, remote string) sockdiag.Msg {
	l, r := netip.MustParseAddr(local), netip.MustParseAddr(remote)
	fam := uint8(unix.AF_INET)
	if l.Is6() {
		fam = unix.AF_INET6
	}
	return sockdiag.Msg{Family: fam, State: state, Src: l, SrcPort: port, Dst: r, DstPort: 40000}
}

// kernelTable: listeners on 0.0.0.0:6379 and 127.0.0.1:6379 (an exact
// address takes its own connections), a dual-stack [::]:6380, a v6-only
// [::1]:6381 beside 0.0.0.0:6381, and port 22, with clients of each.
func kernelTable() []sockdiag.Msg {
	syn, est := uint8(sockdiag.TCPSynRecv), uint8(sockdiag.TCPEstablished)
	return []sockdiag.Msg{
		listenSock(unix.AF_INET, "0.0.0.0", 6379, false),
		listenSock(unix.AF_INET, "0.0.0.0", 6379, false), // SO_REUSEPORT
		listenSock(unix.AF_INET, "127.0.0.1", 6379, false),
		listenSock(unix.AF_INET6, "::", 6380, false),
		listenSock(unix.AF_INET, "0.0.0.0", 6381, false),
		listenSock(unix.AF_INET6, "::1", 6381, true),
		listenSock(unix.AF_INET, "0.0.0.0", 22, false),

		conn(syn, "10.0.0.5", 6379, "198.51.100.7"),
		conn(syn, "10.0.0.5", 6379, "198.51.100.9"),
		conn(syn, "10.0.0.5", 6379, "203.0.113.1"),
		conn(est, "10.0.0.5", 6379, "198.51.100.7"),
		conn(est, "127.0.0.1", 6379, "127.0.0.1"), // the 127.0.0.1 listener's
		conn(est, "10.0.0.5", 22, "198.51.100.7"), // another port
		// Dual-stack: an IPv4 client arrives v4-mapped.
		conn(syn, "::ffff:10.0.0.5", 6380, "::ffff:192.0.2.44"),
		conn(est, "2001:db8::5", 6380, "2001:db8:aa:bb:1::1"),
		conn(est, "2001:db8::5", 6380, "2001:db8:aa:bb:2::2"),
		conn(est, "2001:db8::5", 6380, "2001:db8:aa:cc::1"),
		conn(est, "::1", 6381, "::1"),
		conn(est, "10.0.0.5", 6381, "192.0.2.1"),
		// A client socket whose local port happens to be 6379, on an
		// address no 6379 listener takes: not a connection of one.
		conn(est, "::1", 6379, "::1"),
	}
}

func TestDump(t *testing.T) {
	k := &sockdiagtest.Kernel{Sockets: kernelTable()}
	dial := func() (sockdiag.Conn, error) { return k.Dial(), nil }
	want := []netip.AddrPort{
		netip.MustParseAddrPort("0.0.0.0:6379"),
		netip.MustParseAddrPort("[::]:6380"),
		netip.MustParseAddrPort("[::ffff:127.0.0.1]:6379"), // unmapped
		netip.MustParseAddrPort("0.0.0.0:7000"),            // not listening
		netip.MustParseAddrPort("[::1]:6381"),
	}
	cfg := clients.DefaultConfig()
	cfg.Top = 2
	got, err := clients.Dump(context.Background(), cfg, dial, want)
	if err != nil {
		t.Fatal(err)
	}
	c := func(p string, n int) clients.Count { return clients.Count{Prefix: netip.MustParsePrefix(p), Count: n} }
	exp := []clients.Sources{
		{Listener: want[0], Found: true,
			HalfOpen:    clients.Counts{Total: 3, Prefixes: 2, Top: []clients.Count{c("198.51.100.0/24", 2), c("203.0.113.0/24", 1)}},
			Established: clients.Counts{Total: 1, Prefixes: 1, Top: []clients.Count{c("198.51.100.0/24", 1)}}},
		{Listener: want[1], Found: true,
			HalfOpen:    clients.Counts{Total: 1, Prefixes: 1, Top: []clients.Count{c("192.0.2.0/24", 1)}},
			Established: clients.Counts{Total: 3, Prefixes: 2, Top: []clients.Count{c("2001:db8:aa:bb::/64", 2), c("2001:db8:aa:cc::/64", 1)}}},
		{Listener: netip.MustParseAddrPort("127.0.0.1:6379"), Found: true,
			Established: clients.Counts{Total: 1, Prefixes: 1, Top: []clients.Count{c("127.0.0.0/24", 1)}}},
		{Listener: want[3]},
		{Listener: want[4], Found: true,
			Established: clients.Counts{Total: 1, Prefixes: 1, Top: []clients.Count{c("::/64", 1)}}},
	}
	if diff := cmp.Diff(exp, got, equate, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Dump (-want +got):\n%s", diff)
	}
	// Two dumps per family, each asking the kernel for the three ports
	// only.
	if len(k.Filters) != 4 {
		t.Fatalf("%d dump requests, want 4", len(k.Filters))
	}
	for _, f := range k.Filters {
		for port, pass := range map[uint16]bool{6379: true, 6380: true, 6381: true, 7000: true, 22: false} {
			if sockdiag.RunFilter(f, port) != pass {
				t.Errorf("the request's filter passes port %d: %v, want %v", port, !pass, pass)
			}
		}
	}
}

func TestDumpPrefixLengths(t *testing.T) {
	k := &sockdiagtest.Kernel{Sockets: kernelTable()}
	cfg := clients.Config{Prefix4: 16, Prefix6: 48, Top: 10, MaxTracked: 10, MaxListeners: 2}
	got, err := clients.Dump(context.Background(), cfg, func() (sockdiag.Conn, error) { return k.Dial(), nil },
		[]netip.AddrPort{netip.MustParseAddrPort("[::]:6380")})
	if err != nil {
		t.Fatal(err)
	}
	c := func(p string, n int) clients.Count { return clients.Count{Prefix: netip.MustParsePrefix(p), Count: n} }
	if diff := cmp.Diff([]clients.Count{c("2001:db8:aa::/48", 3)}, got[0].Established.Top, equate); diff != "" {
		t.Errorf("/48 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]clients.Count{c("192.0.0.0/16", 1)}, got[0].HalfOpen.Top, equate); diff != "" {
		t.Errorf("/16 (-want +got):\n%s", diff)
	}
}

func TestDumpErrors(t *testing.T) {
	one := []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:6379")}
	boom := errors.New("boom")
	for _, tt := range []struct {
		name string
		cfg  clients.Config
		dial func() (sockdiag.Conn, error)
		want []netip.AddrPort
		err  error
		msg  string
	}{
		{"prefix4", clients.Config{Prefix4: 33, Prefix6: 64, Top: 1, MaxTracked: 1, MaxListeners: 1}, nil, one, clients.ErrConfig,
			"invalid client grouping: IPv4 prefix length 33 is not from 0 to 32"},
		{"prefix6", clients.Config{Prefix4: 24, Prefix6: 129, Top: 1, MaxTracked: 1, MaxListeners: 1}, nil, one, clients.ErrConfig,
			"invalid client grouping: IPv6 prefix length 129 is not from 0 to 128"},
		{"top", clients.Config{Prefix4: 24, Prefix6: 64, Top: 0, MaxTracked: 1, MaxListeners: 1}, nil, one, clients.ErrConfig,
			"invalid client grouping: top 0 is not from 1 to 1000"},
		{"tracked", clients.Config{Prefix4: 24, Prefix6: 64, Top: 5, MaxTracked: 4, MaxListeners: 1}, nil, one, clients.ErrConfig,
			"invalid client grouping: 4 prefixes tracked, fewer than the top 5"},
		{"listeners", clients.Config{Prefix4: 24, Prefix6: 64, Top: 5, MaxTracked: 5, MaxListeners: 0}, nil, one, clients.ErrConfig,
			"invalid client grouping: at most 0 listeners, want at least 1"},
		{"too many", clients.Config{Prefix4: 24, Prefix6: 64, Top: 5, MaxTracked: 5, MaxListeners: 1}, nil,
			append(one, netip.MustParseAddrPort("0.0.0.0:6380")), clients.ErrTooManyListeners,
			"too many listeners for one dump: 2, at most 1"},
		{"dial", clients.DefaultConfig(), func() (sockdiag.Conn, error) { return nil, boom }, one, boom,
			"listing listeners: sock_diag: boom"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := clients.Dump(context.Background(), tt.cfg, tt.dial, tt.want)
			if !errors.Is(err, tt.err) || err.Error() != tt.msg {
				t.Errorf("error %v, want %q (%v)", err, tt.msg, tt.err)
			}
		})
	}
	got, err := clients.Dump(context.Background(), clients.DefaultConfig(), func() (sockdiag.Conn, error) {
		t.Error("dialled for no listener")
		return nil, boom
	}, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("no listeners: %v, %v", got, err)
	}
}

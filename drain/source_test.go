package drain_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/drain"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/sockdiag/sockdiagtest"
)

var equateAddr = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// kernelTable: two listeners on 6379 (the IPv4 wildcard and 10.0.0.5), a
// dual-stack :: on 7000, and around them the sockets a drain must and must
// not take.
func kernelTable() []sockdiag.Msg {
	est := func(fam uint8, local string, lport uint16, remote string, rport uint16, cookie uint64, inode uint32) sockdiag.Msg {
		return sockdiag.Msg{Family: fam, State: sockdiag.TCPEstablished, Src: addr(local), SrcPort: lport, Dst: addr(remote), DstPort: rport, Cookie: cookie, Inode: inode}
	}
	listen := func(fam uint8, local string, port uint16, cookie uint64, v6only bool) sockdiag.Msg {
		unspec := netip.IPv4Unspecified()
		if fam == unix.AF_INET6 {
			unspec = netip.IPv6Unspecified()
		}
		return sockdiag.Msg{Family: fam, State: sockdiag.TCPListen, Src: addr(local), SrcPort: port, Dst: unspec, Cookie: cookie, Inode: uint32(cookie), V6Only: v6only}
	}
	return []sockdiag.Msg{
		listen(unix.AF_INET, "0.0.0.0", 6379, 1, false),
		listen(unix.AF_INET, "10.0.0.5", 6379, 2, false),
		listen(unix.AF_INET6, "::", 7000, 3, false),
		listen(unix.AF_INET, "0.0.0.0", 8000, 4, false),
		// 6379 via the wildcard, and via 10.0.0.5
		est(unix.AF_INET, "10.0.0.6", 6379, "10.0.1.1", 40001, 101, 9001),
		est(unix.AF_INET, "127.0.0.1", 6379, "127.0.0.1", 40002, 102, 9000),
		est(unix.AF_INET, "10.0.0.5", 6379, "10.0.1.2", 40003, 103, 9002),
		// not accepted yet: no inode
		est(unix.AF_INET, "10.0.0.6", 6379, "10.0.1.3", 40004, 104, 0),
		// a client of this host connecting to 6379: its local port is ephemeral
		est(unix.AF_INET, "127.0.0.1", 40002, "127.0.0.1", 6379, 105, 9003),
		// another port's connection
		est(unix.AF_INET, "10.0.0.6", 8000, "10.0.1.4", 40005, 106, 9004),
		// 7000: IPv6 and v4-mapped on the dual-stack listener
		est(unix.AF_INET6, "2001:db8::1", 7000, "2001:db8::2", 40006, 107, 9005),
		est(unix.AF_INET6, "::ffff:10.0.0.6", 7000, "::ffff:10.0.1.5", 40007, 108, 9006),
		// a SYN_RECV request socket of 6379 (never in an ESTABLISHED dump)
		{Family: unix.AF_INET, State: sockdiag.TCPSynRecv, Src: addr("10.0.0.6"), SrcPort: 6379, Dst: addr("10.0.1.9"), DstPort: 40009, Cookie: 109},
	}
}

func conn(fam uint8, local string, lport uint16, remote string, rport uint16, cookie uint64, inode uint32) drain.Conn {
	return drain.Conn{Family: fam, Local: netip.AddrPortFrom(addr(local), lport), Remote: netip.AddrPortFrom(addr(remote), rport), Cookie: cookie, Inode: inode}
}

func TestSockDiagList(t *testing.T) {
	tests := []struct {
		name  string
		port  uint16
		addr  string
		want  drain.Listing
		wantE string
	}{
		{"every listener of the port", 6379, "", drain.Listing{
			Listeners: []drain.Listener{{Addr: addr("0.0.0.0"), Port: 6379, Sockets: 1}, {Addr: addr("10.0.0.5"), Port: 6379, Sockets: 1}},
			Conns: []drain.Conn{
				conn(unix.AF_INET, "10.0.0.6", 6379, "10.0.1.1", 40001, 101, 9001),
				conn(unix.AF_INET, "127.0.0.1", 6379, "127.0.0.1", 40002, 102, 9000),
				conn(unix.AF_INET, "10.0.0.5", 6379, "10.0.1.2", 40003, 103, 9002),
			},
			Unaccepted: 1,
		}, ""},
		{"the wildcard only", 6379, "0.0.0.0", drain.Listing{
			Listeners: []drain.Listener{{Addr: addr("0.0.0.0"), Port: 6379, Sockets: 1}},
			Conns: []drain.Conn{
				conn(unix.AF_INET, "10.0.0.6", 6379, "10.0.1.1", 40001, 101, 9001),
				conn(unix.AF_INET, "127.0.0.1", 6379, "127.0.0.1", 40002, 102, 9000),
			},
			Unaccepted: 1,
		}, ""},
		{"the exact address only", 6379, "10.0.0.5", drain.Listing{
			Listeners: []drain.Listener{{Addr: addr("10.0.0.5"), Port: 6379, Sockets: 1}},
			Conns:     []drain.Conn{conn(unix.AF_INET, "10.0.0.5", 6379, "10.0.1.2", 40003, 103, 9002)},
		}, ""},
		{"dual-stack", 7000, "::", drain.Listing{
			Listeners: []drain.Listener{{Addr: addr("::"), Port: 7000, DualStack: true, Sockets: 1}},
			Conns: []drain.Conn{
				conn(unix.AF_INET6, "2001:db8::1", 7000, "2001:db8::2", 40006, 107, 9005),
				conn(unix.AF_INET6, "::ffff:10.0.0.6", 7000, "::ffff:10.0.1.5", 40007, 108, 9006),
			},
		}, ""},
		{"no listener", 6380, "", drain.Listing{}, "no listener on port 6380"},
		{"no listener on that address", 6379, "10.0.0.9", drain.Listing{},
			"no listener on 10.0.0.9 port 6379 (port 6379 listens on 0.0.0.0, 10.0.0.5)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &sockdiagtest.Kernel{Sockets: kernelTable()}
			var a netip.Addr
			if tt.addr != "" {
				a = addr(tt.addr)
			}
			src := &drain.SockDiag{Port: tt.port, Addr: a, Dial: func() (sockdiag.Conn, error) { return k.Dial(), nil }}
			defer src.Close()
			got, err := src.List(context.Background())
			if tt.wantE != "" {
				if !errors.Is(err, drain.ErrNoListener) || !errors.Is(err, os.ErrNotExist) || err.Error() != tt.wantE {
					t.Errorf("err = %v, want %q", err, tt.wantE)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, equateAddr, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("listing (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDestroyMethod runs the destroy method against the fake kernel: a
// batch is destroyed, a connection that closed meanwhile is gone, and the
// refusals are reported before anything is closed.
func TestDestroyMethod(t *testing.T) {
	ctx := context.Background()
	k := &sockdiagtest.Kernel{Sockets: kernelTable()}
	m := &drain.Destroy{
		Dial:           func() (*sockdiag.Destroyer, error) { return sockdiag.NewDestroyer(k.Dial(), 64), nil },
		HasCapNetAdmin: func() (bool, error) { return true, nil },
	}
	defer m.Close()
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	conns := []drain.Conn{
		conn(unix.AF_INET, "10.0.0.6", 6379, "10.0.1.1", 40001, 101, 9001),
		conn(unix.AF_INET6, "::ffff:10.0.0.6", 7000, "::ffff:10.0.1.5", 40007, 108, 9006),
		conn(unix.AF_INET, "10.0.0.6", 6379, "10.0.1.7", 40011, 111, 9011), // closed since the listing
	}
	fates := make([]drain.Fate, len(conns))
	if err := m.Disconnect(ctx, conns, fates); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]drain.Fate{drain.Closed, drain.Closed, drain.Gone}, fates); diff != "" {
		t.Errorf("fates (-want +got):\n%s", diff)
	}
	if len(k.Destroyed) != 2 {
		t.Errorf("kernel destroyed %d", len(k.Destroyed))
	}
	if _, ok := k.Find(1); !ok {
		t.Error("the listener was destroyed")
	}

	noCap := &drain.Destroy{
		Dial:           func() (*sockdiag.Destroyer, error) { t.Error("dialled without the capability"); return nil, errBoom },
		HasCapNetAdmin: func() (bool, error) { return false, nil },
	}
	if err := noCap.Check(ctx); !errors.Is(err, sockdiag.ErrNoCapNetAdmin) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Errorf("without the capability: %v", err)
	}
	old := &sockdiagtest.Kernel{Sockets: kernelTable(), NoDestroy: true}
	oldKernel := &drain.Destroy{
		Dial:           func() (*sockdiag.Destroyer, error) { return sockdiag.NewDestroyer(old.Dial(), 64), nil },
		HasCapNetAdmin: func() (bool, error) { return true, nil },
	}
	if err := oldKernel.Check(ctx); !errors.Is(err, sockdiag.ErrDestroyUnsupported) || !strings.Contains(err.Error(), "CONFIG_INET_DIAG_DESTROY") {
		t.Errorf("old kernel: %v", err)
	}
}

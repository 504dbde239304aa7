//go:build linux

package sockdiag_test

// Tests of the dumps against the running kernel, in a network namespace of
// their own (netnstest), with ss(8) as ground truth. They need root, ip(8),
// ss(8) and nft(8).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

// nsDial opens a sock_diag connection inside ns.
func nsDial(t testing.TB, ns *netnstest.NS) *netlink.Conn {
	t.Helper()
	var c *netlink.Conn
	err := ns.Do(func() error {
		var err error
		c, err = sockdiag.Dial()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// socketIn opens a TCP socket of ap's family inside ns, closed when t ends.
func socketIn(t testing.TB, ap netip.AddrPort) (int, unix.Sockaddr, error) {
	fam := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
	if ap.Addr().Is4() {
		fam = unix.AF_INET
		sa = &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, err
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, sa, nil
}

// listenIn listens at ap inside ns; v6only sets IPV6_V6ONLY on an IPv6
// socket.
func listenIn(t testing.TB, ns *netnstest.NS, ap netip.AddrPort, v6only bool) {
	t.Helper()
	err := ns.Do(func() error {
		fd, sa, err := socketIn(t, ap)
		if err != nil {
			return err
		}
		if ap.Addr().Is6() {
			v := 0
			if v6only {
				v = 1
			}
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v); err != nil {
				return err
			}
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fmt.Errorf("bind %v: %w", ap, err)
		}
		return unix.Listen(fd, 1024)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// connectIn starts n connects to dst inside ns.
func connectIn(t testing.TB, ns *netnstest.NS, dst netip.AddrPort, n int) {
	t.Helper()
	err := ns.Do(func() error {
		for range n {
			fd, sa, err := socketIn(t, dst)
			if err != nil {
				return err
			}
			if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
				return fmt.Errorf("connect %v: %w", dst, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sockKey identifies a socket in a dump and in ss's output.
func sockKey(state uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) string {
	return fmt.Sprintf("%d %s %s", state, netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport))
}

func msgKey(m sockdiag.Msg) string { return sockKey(m.State, m.Src, m.SrcPort, m.Dst, m.DstPort) }

// ssKeys lists the sockets ss shows in state (ss's name for it), with the
// addresses as the kernel reports them (ss prints a v4-mapped address as
// such).
func ssKeys(t testing.TB, ns *netnstest.NS, state uint8, ssState string) []string {
	t.Helper()
	out, err := ns.Exec(context.Background(), "ss", "-Htn", "state", ssState)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		// ss writes a dual-stack [::] as "*" and a listener's peer port
		// as "*".
		fix := func(s string) string {
			if rest, ok := strings.CutPrefix(s, "*:"); ok {
				s = "[::]:" + rest
			}
			return strings.Replace(s, ":*", ":0", 1)
		}
		local, err1 := netip.ParseAddrPort(fix(f[2]))
		peer, err2 := netip.ParseAddrPort(fix(f[3]))
		if err1 != nil || err2 != nil {
			t.Fatalf("ss: unexpected line %q", line)
		}
		keys = append(keys, sockKey(state, local.Addr().WithZone(""), local.Port(), peer.Addr().WithZone(""), peer.Port()))
	}
	slices.Sort(keys)
	return keys
}

func dumpKeys(t testing.TB, fn func(func(sockdiag.Msg)) error) (keys []string, families map[uint8]int) {
	t.Helper()
	families = map[uint8]int{}
	err := fn(func(m sockdiag.Msg) {
		keys = append(keys, msgKey(m))
		families[m.Family]++
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys, families
}

// TestDumpInetMatchesV2 checks, on the running kernel, that one legacy
// dump returns the same sockets as the two per-family dumps and as ss:
// IPv4, IPv6 and v4-mapped (IPv4 handshakes to a dual-stack listener)
// request sockets, and listeners of every kind.
func TestDumpInetMatchesV2(t *testing.T) {
	testbin.RequireTools(t, "ss", "nft")
	ns := netnstest.New(t)
	listenIn(t, ns, netip.MustParseAddrPort("127.0.0.1:7001"), false)
	listenIn(t, ns, netip.MustParseAddrPort("[::]:7002"), false)
	listenIn(t, ns, netip.MustParseAddrPort("[::1]:7003"), true)
	listenIn(t, ns, netip.MustParseAddrPort("0.0.0.0:7004"), false)
	dropFinalACK(t, ns, "7001-7004")
	connectIn(t, ns, netip.MustParseAddrPort("127.0.0.1:7001"), 5)
	connectIn(t, ns, netip.MustParseAddrPort("127.0.0.1:7002"), 4) // v4-mapped
	connectIn(t, ns, netip.MustParseAddrPort("[::1]:7002"), 3)
	connectIn(t, ns, netip.MustParseAddrPort("[::1]:7003"), 2)
	connectIn(t, ns, netip.MustParseAddrPort("127.0.0.2:7004"), 1)
	c := nsDial(t, ns)
	ctx := context.Background()

	for _, tc := range []struct {
		name    string
		states  uint32
		state   uint8
		ssState string
		want    int
		wantFam map[uint8]int
	}{
		{"syn-recv", sockdiag.TCPFSynRecv, sockdiag.TCPSynRecv, "syn-recv", 15, map[uint8]int{unix.AF_INET: 6, unix.AF_INET6: 9}},
		{"listen", sockdiag.TCPFListen, sockdiag.TCPListen, "listening", 4, map[uint8]int{unix.AF_INET: 2, unix.AF_INET6: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var legacy, v2, ss []string
			var fams map[uint8]int
			deadline := time.Now().Add(5 * time.Second)
			for {
				legacy, fams = dumpKeys(t, func(fn func(sockdiag.Msg)) error {
					_, err := sockdiag.DumpInet(ctx, c, tc.states, fn)
					return err
				})
				v2, _ = dumpKeys(t, func(fn func(sockdiag.Msg)) error {
					for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
						if _, err := sockdiag.Dump(ctx, c, fam, tc.states, fn); err != nil {
							return err
						}
					}
					return nil
				})
				ss = ssKeys(t, ns, tc.state, tc.ssState)
				if len(legacy) == tc.want || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond) // handshakes still arriving
			}
			if len(legacy) != tc.want {
				t.Errorf("legacy dump: %d sockets, want %d: %q", len(legacy), tc.want, legacy)
			}
			if diff := cmp.Diff(v2, legacy); diff != "" {
				t.Errorf("legacy dump vs the two per-family dumps (-v2 +legacy):\n%s", diff)
			}
			if diff := cmp.Diff(ss, legacy); diff != "" {
				t.Errorf("legacy dump vs ss (-ss +legacy):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantFam, fams); diff != "" {
				t.Errorf("families (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLegacyRefusals records what this kernel answers when it refuses a
// legacy request (a type it does not know, a request too short for struct
// inet_diag_req): errors LegacyRefused recognises, after which the
// connection still serves dumps.
func TestLegacyRefusals(t *testing.T) {
	testbin.RequireTools(t, "ss")
	ns := netnstest.New(t)
	listenIn(t, ns, netip.MustParseAddrPort("127.0.0.1:7001"), false)
	c := nsDial(t, ns)
	for _, tc := range []struct {
		name string
		typ  netlink.HeaderType
		data []byte
		want unix.Errno
	}{
		{"unknown type", 17, make([]byte, sockdiag.ReqLen), unix.EINVAL},
		{"DCCPDIAG_GETSOCK", 19, make([]byte, sockdiag.ReqLen), unix.EINVAL},
		{"short request", sockdiag.TCPDiagGetSock, make([]byte, sockdiag.ReqLen-4), unix.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Execute(netlink.Message{
				Header: netlink.Header{Type: tc.typ, Flags: netlink.Request | netlink.Dump},
				Data:   tc.data,
			})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !sockdiag.LegacyRefused(err) {
				t.Errorf("LegacyRefused(%v) = false", err)
			}
			n := 0
			if _, err := sockdiag.DumpInet(context.Background(), c, sockdiag.TCPFListen, func(sockdiag.Msg) { n++ }); err != nil || n != 1 {
				t.Errorf("dump after the refusal: %d listeners, %v; want 1", n, err)
			}
		})
	}
}

// dropFinalACK makes handshakes to ports (nft syntax: "7001-7004") in ns
// stay half-open: the client's final ACK is dropped on input.
func dropFinalACK(t testing.TB, ns *netnstest.NS, ports string) {
	t.Helper()
	rules := "add table inet sockdiag_test\n" +
		"add chain inet sockdiag_test input { type filter hook input priority 0; }\n" +
		"add rule inet sockdiag_test input tcp dport " + ports + " tcp flags & (syn|ack|fin|rst) == ack drop\n"
	f := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Exec(context.Background(), "nft", "-f", f); err != nil {
		t.Fatalf("nft: %v", err)
	}
}

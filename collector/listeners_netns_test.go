//go:build linux

package collector

// Integration tests of the listeners source against the running kernel, each
// in a network namespace of its own (netnstest), with ss(8) as ground truth.
// They need root and skip otherwise.

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

var updateNetlinkFixtures = flag.Bool("update-netlink-fixtures", false,
	"rewrite internal/sockdiag/testdata/netlink/*.bin from dumps of the running kernel (needs root)")

// nsDial returns a DialFunc that opens the sock_diag connection inside ns.
func nsDial(ns *netnstest.NS) DialFunc {
	return func() (*netlink.Conn, error) {
		var c *netlink.Conn
		err := ns.Do(func() error {
			var err error
			c, err = sockdiag.Dial()
			return err
		})
		return c, err
	}
}

func sockaddr(ap netip.AddrPort) (int, unix.Sockaddr) {
	if ap.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// listenIn opens a listening TCP socket at ap inside ns and returns its
// port (ap's port, or the one the kernel chose when it is 0). For an IPv6
// address v6only sets IPV6_V6ONLY.
func listenIn(t testing.TB, ns *netnstest.NS, ap netip.AddrPort, backlog int, v6only bool) uint16 {
	t.Helper()
	var port uint16
	err := ns.Do(func() error {
		fam, sa := sockaddr(ap)
		fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		if fam == unix.AF_INET6 {
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
		if err := unix.Listen(fd, backlog); err != nil {
			return err
		}
		got, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		switch got := got.(type) {
		case *unix.SockaddrInet4:
			port = uint16(got.Port)
		case *unix.SockaddrInet6:
			port = uint16(got.Port)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listen in namespace: %v", err)
	}
	return port
}

// connectIn starts n non-blocking connects to dst from inside ns. The
// sockets are closed when t ends.
func connectIn(t testing.TB, ns *netnstest.NS, dst netip.AddrPort, n int) {
	t.Helper()
	err := ns.Do(func() error {
		fam, sa := sockaddr(dst)
		for range n {
			fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			t.Cleanup(func() { unix.Close(fd) })
			if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
				return fmt.Errorf("connect %v: %w", dst, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("connect in namespace: %v", err)
	}
}

// dropFinalACK makes handshakes to ports lo-hi in ns stay half-open: the
// client's final ACK (flags exactly ACK) is dropped on input.
func dropFinalACK(t testing.TB, ns *netnstest.NS, lo, hi uint16) {
	t.Helper()
	testenv.Tool(t, "nft") // to drop handshake ACKs
	rules := fmt.Sprintf("add table inet stormwatch_test\n"+
		"add chain inet stormwatch_test input { type filter hook input priority 0; }\n"+
		"add rule inet stormwatch_test input tcp dport %d-%d tcp flags & (syn|ack|fin|rst) == ack drop\n", lo, hi)
	f := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Exec(context.Background(), "nft", "-f", f); err != nil {
		t.Fatalf("nft: %v", err)
	}
}

// ssLines runs ss with args inside ns and returns its output lines.
func ssLines(t testing.TB, ns *netnstest.NS, args ...string) []string {
	t.Helper()
	out, err := ns.Exec(context.Background(), "ss", args...)
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// ssListenQueue returns Recv-Q and Send-Q of the one listener on port, as
// "ss -Hltn" shows them.
func ssListenQueue(t testing.TB, ns *netnstest.NS, port uint16) (recvQ, sendQ uint32) {
	t.Helper()
	lines := ssLines(t, ns, "-Hltn", fmt.Sprintf("( sport = :%d )", port))
	if len(lines) != 1 {
		t.Fatalf("ss -Hltn sport = :%d: want 1 line, got %q", port, lines)
	}
	f := strings.Fields(lines[0])
	if len(f) < 4 {
		t.Fatalf("ss -Hltn: unexpected line %q", lines[0])
	}
	r, err1 := strconv.ParseUint(f[1], 10, 32)
	s, err2 := strconv.ParseUint(f[2], 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("ss -Hltn: unexpected line %q", lines[0])
	}
	return uint32(r), uint32(s)
}

// ssSynRecv counts the request sockets on port, as ss sees them.
func ssSynRecv(t testing.TB, ns *netnstest.NS, port uint16) int {
	t.Helper()
	return len(ssLines(t, ns, "-Htn", "state", "syn-recv", fmt.Sprintf("( sport = :%d )", port)))
}

// collectOnce runs the cycle at now of src into a fresh Snapshot.
func collectOnce(t testing.TB, src *listenerSource, now time.Time, tcp signals) *Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := collectCtx(ctx, src, now, tcp)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return s
}

// newTickClock returns a clock for cycle times that advances one second per
// call, as the sampler's ticks do.
func newTickClock() func() time.Time {
	now := time.Now()
	return func() time.Time {
		now = now.Add(time.Second)
		return now
	}
}

func findListener(s *Snapshot, addr netip.Addr, port uint16) (Listener, bool) {
	for _, l := range Listeners(s) {
		if l.Addr == addr && l.Port == port {
			return l, true
		}
	}
	return Listener{}, false
}

func newNSSource(t testing.TB, ns *netnstest.NS, cfg ListenerConfig) *listenerSource {
	t.Helper()
	cfg.Dial = nsDial(ns)
	src, err := newListenerSource(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// eventually retries check until it returns "" or the tries run out, and
// fails with the last message.
func eventually(t testing.TB, check func() string) {
	t.Helper()
	var msg string
	for range 30 {
		if msg = check(); msg == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal(msg)
}

var (
	loopback4 = netip.MustParseAddr("127.0.0.1")
	loopback6 = netip.IPv6Loopback()
)

// familyCase is a listener and the clients of one address family.
type familyCase struct {
	name     string
	listen   netip.Addr // the listener's address
	v6only   bool
	dial     netip.Addr // the address clients connect to
	reported netip.Addr // the listener's address as reported
}

var familyCases = []familyCase{
	{name: "ipv4", listen: loopback4, dial: loopback4, reported: loopback4},
	{name: "ipv6", listen: loopback6, v6only: true, dial: loopback6, reported: loopback6},
	{name: "dual-stack", listen: netip.IPv6Unspecified(), dial: loopback4, reported: netip.IPv6Unspecified()},
}

// dumpPaths are the two ways the source asks the kernel: one legacy
// TCPDIAG_GETSOCK walk for both families, and the per-family
// SOCK_DIAG_BY_FAMILY dumps it falls back to where the kernel refuses that
// (forced here: this kernel answers both).
var dumpPaths = []struct {
	name   string
	legacy bool
}{{"legacy", true}, {"per-family", false}}

func TestListenersAcceptQueueMatchesSS(t *testing.T) {
	for _, tc := range familyCases {
		for _, path := range dumpPaths {
			t.Run(tc.name+"/"+path.name, func(t *testing.T) {
				testAcceptQueueMatchesSS(t, tc, path.legacy)
			})
		}
	}
}

func testAcceptQueueMatchesSS(t *testing.T, tc familyCase, legacy bool) {
	ns := netnstest.New(t)
	port := listenIn(t, ns, netip.AddrPortFrom(tc.listen, 0), 16, tc.v6only)
	connectIn(t, ns, netip.AddrPortFrom(tc.dial, port), 40)
	src := newNSSource(t, ns, ListenerConfig{})
	src.legacy = legacy

	eventually(t, func() string {
		recvQ, sendQ := ssListenQueue(t, ns, port)
		s := collectOnce(t, src, time.Now(), quietTCP())
		got, ok := findListener(s, tc.reported, port)
		if !ok {
			return fmt.Sprintf("no listener %v port %d in %+v", tc.reported, port, Listeners(s))
		}
		if got.AcceptQueue != recvQ || got.AcceptLimit != sendQ || recvQ != 17 {
			return fmt.Sprintf("accept queue %d/%d, ss Recv-Q/Send-Q %d/%d (want 17/16)",
				got.AcceptQueue, got.AcceptLimit, recvQ, sendQ)
		}
		if got.Sockets != 1 || got.MaxFill != 17.0/16 {
			return fmt.Sprintf("listener %+v: want 1 socket, MaxFill 17/16", got)
		}
		if src.legacy != legacy {
			return "the kernel refused the legacy request"
		}
		return ""
	})
}

func TestListenersSynRecvMatchesSS(t *testing.T) {
	const halfOpen = 8
	for _, tc := range familyCases {
		for _, path := range dumpPaths {
			t.Run(tc.name+"/"+path.name, func(t *testing.T) {
				testSynRecvMatchesSS(t, tc, path.legacy, halfOpen)
			})
		}
	}
}

func testSynRecvMatchesSS(t *testing.T, tc familyCase, legacy bool, halfOpen int) {
	ns := netnstest.New(t)
	port := listenIn(t, ns, netip.AddrPortFrom(tc.listen, 0), 128, tc.v6only)
	dropFinalACK(t, ns, port, port)
	connectIn(t, ns, netip.AddrPortFrom(tc.dial, port), halfOpen)
	src := newNSSource(t, ns, ListenerConfig{})
	src.legacy = legacy

	eventually(t, func() string {
		want := ssSynRecv(t, ns, port)
		s := collectOnce(t, src, time.Now(), quietTCP())
		got, ok := findListener(s, tc.reported, port)
		if !ok {
			return fmt.Sprintf("no listener %v port %d in %+v", tc.reported, port, Listeners(s))
		}
		if !SynRecvRan(s) {
			return "SYN_RECV dump did not run with SynRecvInterval 0"
		}
		if int(got.SynRecv) != want || want != halfOpen {
			return fmt.Sprintf("SynRecv %d, ss state syn-recv %d (want %d)", got.SynRecv, want, halfOpen)
		}
		if got.AcceptQueue != 0 {
			return fmt.Sprintf("accept queue %d, want 0: final ACKs got through", got.AcceptQueue)
		}
		if src.legacy != legacy {
			return "the kernel refused the legacy request"
		}
		return ""
	})
}

func TestListenersSynRecvCadence(t *testing.T) {
	ns := netnstest.New(t)
	// Backlog 16: the 4 half-opens below fill a quarter of its SYN queue.
	port := listenIn(t, ns, netip.AddrPortFrom(loopback4, 0), 16, false)
	src := newNSSource(t, ns, ListenerConfig{SynRecvInterval: time.Hour})
	// A fixed CPU cost per dump: the budget never holds back a signalled
	// dump in this test.
	src.cost = func(run func()) time.Duration { run(); return time.Millisecond }
	quiet := quietTCP()
	clock := newTickClock()

	s := collectOnce(t, src, clock(), quiet)
	if in := synInfoOf(s); !in.Ran || in.Reason != reasonInterval || in.Dumps != 1 {
		t.Fatalf("first cycle: %+v, want a dump for the interval", in)
	}
	first := synInfoOf(s).Time

	// Half-open handshakes appear, but no cheap signal moves.
	dropFinalACK(t, ns, port, port)
	connectIn(t, ns, netip.AddrPortFrom(loopback4, port), 4)
	eventually(t, func() string {
		if n := ssSynRecv(t, ns, port); n != 4 {
			return fmt.Sprintf("ss state syn-recv: %d, want 4", n)
		}
		return ""
	})
	tcp := quiet
	tcp.syncookiesSent = 100
	s = collectOnce(t, src, clock(), tcp)
	l, _ := findListener(s, loopback4, port)
	if in := synInfoOf(s); in.Ran || in.Dumps != 1 || !in.Time.Equal(first) || l.SynRecv != 0 {
		t.Fatalf("quiet cycle: %+v, listener %+v: want no dump and the old count carried", in, l)
	}

	// SYN cookies sent: the dump runs and finds them.
	tcp.syncookiesSent = 101
	s = collectOnce(t, src, clock(), tcp)
	l, _ = findListener(s, loopback4, port)
	if in := synInfoOf(s); !in.Ran || in.Reason != reasonSignal || in.Dumps != 2 || l.SynRecv != 4 {
		t.Fatalf("signal cycle: %+v, listener %+v: want a dump for the signal finding 4", in, l)
	}

	// It keeps running while the SYN queue stays a tenth full or more.
	s = collectOnce(t, src, clock(), tcp)
	if in := synInfoOf(s); !in.Ran || in.Reason != reasonSignal {
		t.Fatalf("follow-up cycle: %+v, want a dump while the SYN queue is filling", in)
	}
}

func TestListenersAcceptQueueSignal(t *testing.T) {
	ns := netnstest.New(t)
	port := listenIn(t, ns, netip.AddrPortFrom(loopback4, 0), 128, false)
	src := newNSSource(t, ns, ListenerConfig{SynRecvInterval: time.Hour})
	src.cost = func(run func()) time.Duration { run(); return time.Millisecond }
	quiet := quietTCP()
	clock := newTickClock()
	collectOnce(t, src, clock(), quiet)
	if s := collectOnce(t, src, clock(), quiet); SynRecvRan(s) {
		t.Fatalf("idle cycle ran the SYN_RECV dump: %+v", synInfoOf(s))
	}
	connectIn(t, ns, netip.AddrPortFrom(loopback4, port), 3)
	eventually(t, func() string {
		s := collectOnce(t, src, clock(), quiet)
		l, _ := findListener(s, loopback4, port)
		if l.AcceptQueue == 0 {
			return "accept queue still empty"
		}
		if in := synInfoOf(s); !in.Ran || in.Reason != reasonSignal {
			return fmt.Sprintf("accept queue %d: SYN_RECV %+v, want a dump for the signal", l.AcceptQueue, in)
		}
		return ""
	})
}

// TestCaptureNetlinkFixtures rewrites internal/sockdiag/testdata/netlink
// (the fixtures of the sock_diag parser) from this kernel when
// run with -update-netlink-fixtures.
func TestCaptureNetlinkFixtures(t *testing.T) {
	if !*updateNetlinkFixtures {
		testenv.Optional(t, "run with -update-netlink-fixtures to rewrite internal/sockdiag/testdata/netlink")
	}
	ns := netnstest.New(t)
	listenIn(t, ns, netip.MustParseAddrPort("127.0.0.1:7001"), 16, false)
	listenIn(t, ns, netip.MustParseAddrPort("[::]:7002"), 16, false)
	listenIn(t, ns, netip.MustParseAddrPort("[::1]:7003"), 16, true)
	listenIn(t, ns, netip.MustParseAddrPort("127.0.0.1:7004"), 16, false)
	dropFinalACK(t, ns, 7002, 7004)
	connectIn(t, ns, netip.MustParseAddrPort("127.0.0.1:7001"), 3)
	connectIn(t, ns, netip.MustParseAddrPort("127.0.0.1:7002"), 1)
	connectIn(t, ns, netip.MustParseAddrPort("[::1]:7003"), 1)
	connectIn(t, ns, netip.MustParseAddrPort("127.0.0.1:7004"), 1)
	time.Sleep(300 * time.Millisecond)

	c, err := nsDial(ns)()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	files := map[string][]byte{}
	for _, fam := range inetFamilies {
		for _, states := range []uint32{sockdiag.TCPFListen, sockdiag.TCPFSynRecv} {
			var req [sockdiag.ReqV2Len]byte
			sockdiag.PutReqV2(&req, fam, states)
			msgs, err := c.Execute(netlink.Message{
				Header: netlink.Header{Type: sockdiag.ByFamily, Flags: netlink.Request | netlink.Dump},
				Data:   req[:],
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				d, err := sockdiag.ParseMsg(m.Data)
				if err != nil {
					t.Fatal(err)
				}
				name := map[string]string{
					"10/7001": "listen-v4.bin",
					"10/7002": "listen-v6-dualstack.bin",
					"10/7003": "listen-v6only.bin",
					"3/7002":  "synrecv-v4mapped.bin",
					"3/7003":  "synrecv-v6.bin",
					"3/7004":  "synrecv-v4.bin",
				}[fmt.Sprintf("%d/%d", d.State, d.SrcPort)]
				if name != "" {
					files[name] = m.Data
				}
			}
		}
	}
	if len(files) != 6 {
		t.Fatalf("captured %d fixtures, want 6", len(files))
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join("..", "internal", "sockdiag", "testdata", "netlink", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

//go:build linux

package sockdiag_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

// pairs is a set of connections made and accepted inside a namespace.
type pairs struct {
	clients, servers []net.Conn
}

func (p *pairs) close() {
	for _, c := range append(p.clients, p.servers...) {
		c.Close()
	}
}

// connect makes n connections to ln from the calling thread (inside the
// namespace) to addr, and accepts them.
func (p *pairs) connect(ln net.Listener, addr string, n int) error {
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		p.clients = append(p.clients, c)
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		p.servers = append(p.servers, s)
	}
	return nil
}

// serverSockets dumps the namespace's established sockets whose local port
// is one of ports.
func serverSockets(ctx context.Context, ports ...int) ([]sockdiag.Msg, error) {
	c, err := sockdiag.Dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []sockdiag.Msg
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		_, err := sockdiag.Dump(ctx, c, fam, sockdiag.TCPFEstablished, func(m sockdiag.Msg) {
			for _, p := range ports {
				if int(m.SrcPort) == p {
					out = append(out, m)
				}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// requireDestroy skips t (fails it under CI) when the kernel has no
// SOCK_DESTROY.
func requireDestroy(t *testing.T, d *sockdiag.Destroyer) {
	t.Helper()
	err := d.Supported(context.Background())
	if errors.Is(err, sockdiag.ErrDestroyUnsupported) {
		testenv.Require(t, "SOCK_DESTROY (a kernel with CONFIG_INET_DIAG_DESTROY)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// TestDestroyInNamespace destroys the server ends of IPv4, IPv6 and
// v4-mapped connections: the clients get an RST (ECONNRESET), the server
// ends ECONNABORTED, the listeners keep listening; a second request for
// the same sockets is answered "gone" (ENOENT on 6.18; ESTALE on kernels
// whose lookup falls back to the listener, whose cookie differs), leaving
// the listeners alive.
func TestDestroyInNamespace(t *testing.T) {
	ns := netnstest.New(t)
	ctx := context.Background()
	var v4, dual net.Listener
	var p pairs
	var d *sockdiag.Destroyer
	if err := ns.Do(func() error {
		var err error
		if v4, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if dual, err = net.Listen("tcp", "[::]:0"); err != nil {
			return err
		}
		if err := p.connect(v4, v4.Addr().String(), 3); err != nil {
			return err
		}
		if err := p.connect(dual, fmt.Sprintf("127.0.0.1:%d", port(dual)), 2); err != nil {
			return err
		}
		if err := p.connect(dual, fmt.Sprintf("[::1]:%d", port(dual)), 2); err != nil {
			return err
		}
		d, err = sockdiag.DialDestroyer()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer p.close()
	defer v4.Close()
	defer dual.Close()
	defer d.Close()
	requireDestroy(t, d)
	t.Logf("destroy window %d", d.Window())

	var victims []sockdiag.Msg
	if err := ns.Do(func() error {
		var err error
		victims, err = serverSockets(ctx, port(v4), port(dual))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(victims) != 7 {
		t.Fatalf("dump found %d server sockets, want 7: %+v", len(victims), victims)
	}
	var mapped, v6 int
	for _, m := range victims {
		if m.Family == unix.AF_INET6 && m.Src.Is4In6() {
			mapped++
		} else if m.Family == unix.AF_INET6 {
			v6++
		}
	}
	if mapped != 2 || v6 != 2 {
		t.Errorf("%d v4-mapped and %d IPv6 sockets, want 2 and 2", mapped, v6)
	}

	st, err := d.Destroy(ctx, ids(victims), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st != (sockdiag.DestroyStats{Destroyed: 7}) {
		t.Errorf("stats %+v, want 7 destroyed", st)
	}
	for i, c := range p.clients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d read: %v, want ECONNRESET", i, err)
		}
	}
	for i, c := range p.servers {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
			t.Errorf("server end %d read: %v, want ECONNABORTED", i, err)
		}
	}

	got := outcomes{}
	st, err = d.Destroy(ctx, ids(victims), got.record)
	if err != nil {
		t.Fatal(err)
	}
	if st != (sockdiag.DestroyStats{Gone: 7}) {
		t.Errorf("second request: %+v, want 7 gone", st)
	}
	for i, err := range got {
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESTALE) {
			t.Errorf("second request %d: %v, want ENOENT or ESTALE", i, err)
		}
	}
	var after pairs
	defer after.close()
	if err := ns.Do(func() error {
		if err := after.connect(v4, v4.Addr().String(), 1); err != nil {
			return err
		}
		return after.connect(dual, fmt.Sprintf("[::1]:%d", port(dual)), 1)
	}); err != nil {
		t.Fatalf("listeners after the destroys: %v", err)
	}
}

// capNetAdmin is CAP_NET_ADMIN's bit in the first word of the sets.
const capNetAdmin = 1 << unix.CAP_NET_ADMIN

// withoutNetAdmin runs fn on the calling thread with CAP_NET_ADMIN out of
// its effective set (capabilities are per thread; the caller has locked
// it), and puts it back.
func withoutNetAdmin(fn func() error) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	if data[0].Effective&capNetAdmin == 0 {
		return errors.New("CAP_NET_ADMIN is not effective to begin with")
	}
	saved := data
	data[0].Effective &^= capNetAdmin
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return err
	}
	ferr := fn()
	if err := unix.Capset(&hdr, &saved[0]); err != nil {
		panic(fmt.Sprintf("cannot restore CAP_NET_ADMIN on this thread: %v", err))
	}
	return ferr
}

// TestDestroyWithoutCapNetAdmin: the kernel refuses with EPERM, mapped to
// ErrNoCapNetAdmin, and the connection survives; the support probe still
// answers (the kernel checks the capability only for a found socket).
func TestDestroyWithoutCapNetAdmin(t *testing.T) {
	ns := netnstest.New(t)
	ctx := context.Background()
	var ln net.Listener
	var p pairs
	var victims []sockdiag.Msg
	var destroyErr, probeErr error
	if err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if err := p.connect(ln, ln.Addr().String(), 2); err != nil {
			return err
		}
		if victims, err = serverSockets(ctx, port(ln)); err != nil {
			return err
		}
		// Do keeps this goroutine on its thread, whose capabilities the
		// kernel checks while handling the requests inside sendmsg.
		return withoutNetAdmin(func() error {
			d, err := sockdiag.DialDestroyer()
			if err != nil {
				return err
			}
			defer d.Close()
			probeErr = d.Supported(ctx)
			_, destroyErr = d.Destroy(ctx, ids(victims), nil)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	defer p.close()
	defer ln.Close()
	if errors.Is(probeErr, sockdiag.ErrDestroyUnsupported) {
		testenv.Require(t, "SOCK_DESTROY (a kernel with CONFIG_INET_DIAG_DESTROY)", probeErr)
	}
	if probeErr != nil {
		t.Errorf("Supported without CAP_NET_ADMIN: %v", probeErr)
	}
	if !errors.Is(destroyErr, sockdiag.ErrNoCapNetAdmin) || !errors.Is(destroyErr, unix.EPERM) {
		t.Fatalf("Destroy without CAP_NET_ADMIN: %v, want ErrNoCapNetAdmin (EPERM)", destroyErr)
	}
	if len(victims) != 2 {
		t.Fatalf("%d victims", len(victims))
	}
	if _, err := p.clients[0].Write([]byte("x")); err != nil {
		t.Errorf("connection after a refused destroy: %v", err)
	}
	p.servers[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(p.servers[0], make([]byte, 1)); err != nil {
		t.Errorf("server end after a refused destroy: %v", err)
	}
}

// TestDestroyOverrunInNamespace sends windows of 1024 requests to a socket
// whose receive buffer holds far fewer answers: the kernel destroys every
// socket, the answers that fit are read, the rest are reported unknown,
// and nothing is left.
func TestDestroyOverrunInNamespace(t *testing.T) {
	ns := netnstest.New(t)
	ctx := context.Background()
	const n = 1500
	var ln net.Listener
	var p pairs
	var victims []sockdiag.Msg
	var small *netlink.Conn
	if err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if err := p.connect(ln, ln.Addr().String(), n); err != nil {
			return err
		}
		if victims, err = serverSockets(ctx, port(ln)); err != nil {
			return err
		}
		if small, err = netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{MessageBufferSize: 4096}); err != nil {
			return err
		}
		return small.SetReadBuffer(16 << 10)
	}); err != nil {
		t.Fatal(err)
	}
	defer p.close()
	defer ln.Close()
	rb, err := small.ReadBuffer()
	if err != nil {
		t.Fatal(err)
	}
	d := sockdiag.NewDestroyer(small, sockdiag.MaxDestroyWindow)
	defer d.Close()
	requireDestroy(t, d)
	if len(victims) != n {
		t.Fatalf("dump found %d server sockets, want %d", len(victims), n)
	}
	got := outcomes{}
	st, err := d.Destroy(ctx, ids(victims), got.record)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("receive buffer %d bytes: %+v (about %d bytes per answer)", rb, st, rb/max(1, st.Destroyed/2))
	if st.Destroyed+st.Unknown != n || st.Gone != 0 {
		t.Errorf("stats %+v, want %d destroyed or unknown", st, n)
	}
	if st.Unknown == 0 {
		t.Errorf("no answer lost with a %d-byte receive buffer: the overrun path was not exercised", rb)
	}
	if got.count(sockdiag.ErrAckLost) != st.Unknown || len(got) != n {
		t.Errorf("%d outcomes, %d lost; stats %+v", len(got), got.count(sockdiag.ErrAckLost), st)
	}
	var left []sockdiag.Msg
	if err := ns.Do(func() error {
		var err error
		left, err = serverSockets(ctx, port(ln))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("%d server sockets left after the destroys", len(left))
	}
}

// TestDestroyRateInNamespace logs how fast the kernel destroys sockets
// through a Destroyer sized by DialDestroyer (no assertion on the rate).
func TestDestroyRateInNamespace(t *testing.T) {
	ns := netnstest.New(t)
	ctx := context.Background()
	const n = 3000
	var ln net.Listener
	var p pairs
	var victims []sockdiag.Msg
	var d *sockdiag.Destroyer
	if err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if err := p.connect(ln, ln.Addr().String(), n); err != nil {
			return err
		}
		if victims, err = serverSockets(ctx, port(ln)); err != nil {
			return err
		}
		d, err = sockdiag.DialDestroyer()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer p.close()
	defer ln.Close()
	defer d.Close()
	requireDestroy(t, d)
	start := time.Now()
	st, err := d.Destroy(ctx, ids(victims), nil)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if st != (sockdiag.DestroyStats{Destroyed: n}) {
		t.Errorf("stats %+v, want %d destroyed", st, n)
	}
	t.Logf("%d sockets destroyed in %v (%.0f/s), window %d", n, took, float64(n)/took.Seconds(), d.Window())
}

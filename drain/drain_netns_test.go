//go:build linux

package drain_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/drain"
	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

// inNS returns dial functions that open their netlink sockets inside ns.
func inNS(ns *netnstest.NS) (func() (sockdiag.Conn, error), func() (*sockdiag.Destroyer, error)) {
	diag := func() (sockdiag.Conn, error) {
		var c sockdiag.Conn
		err := ns.Do(func() error {
			var err error
			c, err = sockdiag.Dial()
			return err
		})
		return c, err
	}
	destroy := func() (*sockdiag.Destroyer, error) {
		var d *sockdiag.Destroyer
		err := ns.Do(func() error {
			var err error
			d, err = sockdiag.DialDestroyer()
			return err
		})
		return d, err
	}
	return diag, destroy
}

// TestDrainInNamespace drains a real listener with the destroy method:
// its accepted connections are closed in batches (the clients see an RST,
// the server ECONNABORTED); connections still in the accept queue, the
// listener and another port's connections are left alone.
func TestDrainInNamespace(t *testing.T) {
	ns := netnstest.New(t)
	const accepted, queued = 40, 5
	var ln, other net.Listener
	var clients, servers, queuedClients, otherConns []net.Conn
	defer func() {
		for _, c := range append(append(append(clients, servers...), queuedClients...), otherConns...) {
			c.Close()
		}
	}()
	if err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if other, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		for range accepted {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			clients = append(clients, c)
			s, err := ln.Accept()
			if err != nil {
				return err
			}
			servers = append(servers, s)
		}
		for range queued {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			queuedClients = append(queuedClients, c)
		}
		for range 3 {
			c, err := net.Dial("tcp", other.Addr().String())
			if err != nil {
				return err
			}
			s, err := other.Accept()
			if err != nil {
				return err
			}
			otherConns = append(otherConns, c, s)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer other.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	diag, destroy := inNS(ns)

	src := &drain.SockDiag{Port: port, Dial: diag}
	defer src.Close()
	l, err := src.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Listeners) != 1 || l.Listeners[0].Addr != netip.MustParseAddr("127.0.0.1") || len(l.Conns) != accepted || l.Unaccepted != queued {
		t.Fatalf("listing: %d listeners %v, %d connections, %d unaccepted; want 1, %d, %d", len(l.Listeners), l.Listeners, len(l.Conns), l.Unaccepted, accepted, queued)
	}
	for _, c := range l.Conns {
		if c.Local.Port() != port || c.Inode == 0 {
			t.Errorf("listed %v (inode %d)", c, c.Inode)
		}
	}

	m := &drain.Destroy{Dial: destroy}
	defer m.Close()
	var ev events
	sum, err := drain.Run(context.Background(), drain.Config{Source: src, Method: m, OnEvent: ev.record,
		Batch: drain.Batch{Count: 15}, Every: 50 * time.Millisecond})
	if errors.Is(err, sockdiag.ErrDestroyUnsupported) {
		testenv.Require(t, "SOCK_DESTROY (a kernel with CONFIG_INET_DIAG_DESTROY)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, e := range ev.of(drain.EventBatch) {
		sizes = append(sizes, e.Closed)
	}
	if sum.End != drain.EndDrained || sum.Closed != accepted || len(sizes) != 3 || sizes[0] != 15 || sizes[1] != 15 || sizes[2] != 10 {
		t.Errorf("summary %+v, closed per batch %v; want 15, 15, 10", sum, sizes)
	}
	if sum.Unaccepted != queued {
		t.Errorf("unaccepted %d at the end, want %d", sum.Unaccepted, queued)
	}
	readErr := func(c net.Conn) error {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err
	}
	for i := range accepted {
		if err := readErr(clients[i]); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d: %v, want ECONNRESET", i, err)
		}
		if err := readErr(servers[i]); !errors.Is(err, syscall.ECONNABORTED) {
			t.Errorf("server end %d: %v, want ECONNABORTED", i, err)
		}
	}
	// What a drain must not touch still works.
	if err := ns.Do(func() error {
		for _, c := range queuedClients {
			if _, err := c.Write([]byte("x")); err != nil {
				return err
			}
			s, err := ln.Accept() // the listener still hands them over
			if err != nil {
				return err
			}
			s.Close()
		}
		for i := 0; i < len(otherConns); i += 2 {
			if _, err := otherConns[i].Write([]byte("y")); err != nil {
				return err
			}
			b := make([]byte, 1)
			otherConns[i+1].SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := otherConns[i+1].Read(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Errorf("after the drain: %v", err)
	}
}

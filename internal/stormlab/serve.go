//go:build linux

package stormlab

import (
	"context"
	"fmt"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// servePool is a listener that accepts connections and holds them without
// reading: accepted server-side sockets (with an inode, unlike the
// connections Connect leaves in an accept queue), as a server with many
// idle clients has. Several workers can serve one port together
// (SO_REUSEPORT), to hold more sockets than one process may.
type servePool struct {
	ln   net.Listener
	room int

	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

// serve listens on addr (SO_REUSEPORT, so other workers can serve the same
// port; backlog somaxconn, as Go listens) and accepts up to the worker's free capacity in the background.
func (w *worker) serve(addr string) (int, error) {
	if w.served != nil {
		return 0, fmt.Errorf("worker %d serves already", w.index)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		return 0, err
	}
	p := &servePool{ln: ln, room: w.capacity - len(w.fds), done: make(chan struct{})}
	go p.accept()
	w.served = p
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (p *servePool) accept() {
	defer close(p.done)
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		full := len(p.conns) >= p.room
		p.mu.Unlock()
		if full {
			return
		}
	}
}

func (p *servePool) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *servePool) close() {
	p.ln.Close()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Serve makes the worker listen on addr ("127.0.0.1:0" picks a port;
// SO_REUSEPORT, so several workers can serve one port) and accept and
// hold connections, up to its capacity. It returns the port.
func (w *Worker) Serve(ctx context.Context, addr string) (int, error) {
	var resp response
	err := w.call(ctx, request{Op: "serve", Addr: addr}, &resp)
	return resp.Port, err
}

// Served returns how many connections the worker accepted and holds.
func (w *Worker) Served(ctx context.Context) (int, error) {
	var resp response
	err := w.call(ctx, request{Op: "served"}, &resp)
	return resp.Served, err
}

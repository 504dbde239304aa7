package drain_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/drain"
)

// server is a fake Source: a listener with a set of connections that the
// fake method closes and the test adds to or removes from.
type server struct {
	mu      sync.Mutex
	conns   []drain.Conn
	next    uint32
	lists   int
	listErr error
	// onList runs before each listing, with its number (from 1).
	onList func(n int)
}

var listener = drain.Listener{Addr: netip.MustParseAddr("10.0.0.1"), Port: 6379, Sockets: 1}

// newServer has n connections whose inodes are not in cookie order, so
// that oldest-first is visible.
func newServer(n int) *server {
	s := &server{}
	s.add(n)
	// Shuffle the inodes deterministically: reverse pairs.
	for i := 0; i+1 < len(s.conns); i += 2 {
		s.conns[i].Inode, s.conns[i+1].Inode = s.conns[i+1].Inode, s.conns[i].Inode
	}
	return s
}

func (s *server) add(n int) []drain.Conn {
	var out []drain.Conn
	for range n {
		s.next++
		c := drain.Conn{
			Family: unix.AF_INET,
			Local:  netip.AddrPortFrom(listener.Addr, listener.Port),
			Remote: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(10000+s.next)),
			Cookie: uint64(1000 + s.next), Inode: 500 + s.next,
		}
		s.conns = append(s.conns, c)
		out = append(out, c)
	}
	return out
}

// Add adds n connections.
func (s *server) Add(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.add(n)
}

// Drop removes the connections with these cookies (clients leaving).
func (s *server) Drop(cookies ...uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns = slices.DeleteFunc(s.conns, func(c drain.Conn) bool { return slices.Contains(cookies, c.Cookie) })
}

func (s *server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *server) List(ctx context.Context) (drain.Listing, error) {
	s.mu.Lock()
	s.lists++
	n, hook := s.lists, s.onList
	s.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listErr != nil {
		return drain.Listing{}, s.listErr
	}
	return drain.Listing{Listeners: []drain.Listener{listener}, Conns: slices.Clone(s.conns), Unaccepted: 2}, nil
}

// method is a fake Method closing connections of a server.
type method struct {
	srv      *server
	checkErr error
	// fate, when set, decides each connection's fate (Closed ones are
	// removed from the server).
	fate func(call int, c drain.Conn) drain.Fate
	// err, when set, is returned by a call.
	err func(call int) error
	// block, when set, is waited on inside each call.
	block chan struct{}

	mu     sync.Mutex
	calls  [][]drain.Conn
	times  []time.Time
	ctxErr []error
	closed bool
}

func (m *method) Name() string                { return "fake" }
func (m *method) Check(context.Context) error { return m.checkErr }
func (m *method) Close() error                { m.closed = true; return nil }
func (m *method) Disconnect(ctx context.Context, conns []drain.Conn, fates []drain.Fate) error {
	if m.block != nil {
		<-m.block
	}
	m.mu.Lock()
	call := len(m.calls)
	m.calls = append(m.calls, slices.Clone(conns))
	m.times = append(m.times, time.Now())
	m.ctxErr = append(m.ctxErr, ctx.Err())
	m.mu.Unlock()
	var closed []uint64
	for i, c := range conns {
		f := drain.Closed
		if m.fate != nil {
			f = m.fate(call, c)
		}
		fates[i] = f
		if f == drain.Closed {
			closed = append(closed, c.Cookie)
		}
	}
	m.srv.Drop(closed...)
	if m.err != nil {
		return m.err(call)
	}
	return nil
}

func (m *method) sizes() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int
	for _, c := range m.calls {
		out = append(out, len(c))
	}
	return out
}

// offsets returns each call's time since start.
func (m *method) offsets(start time.Time) []time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []time.Duration
	for _, t := range m.times {
		out = append(out, t.Sub(start))
	}
	return out
}

// events records a drain's events.
type events struct {
	mu  sync.Mutex
	all []drain.Event
}

func (e *events) record(ev drain.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) of(kind drain.EventKind) []drain.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []drain.Event
	for _, ev := range e.all {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// checkTotals checks Total = Closed + Gone + Skipped + Left in every event.
func (e *events) checkTotals() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.all {
		p := ev.Progress
		if p.Total != p.Closed+p.Gone+p.Skipped+p.Left {
			return fmt.Errorf("%s event %d: total %d != closed %d + gone %d + skipped %d + left %d", ev.Kind, ev.Batch, p.Total, p.Closed, p.Gone, p.Skipped, p.Left)
		}
	}
	return nil
}

var errBoom = errors.New("boom")

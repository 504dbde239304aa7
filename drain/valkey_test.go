package drain_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/drain"
	"github.com/stormwatch/stormwatch/internal/valkey"
)

// fakeValkey is a server's client table behind the ValkeyServer
// interface.
type fakeValkey struct {
	mu      sync.Mutex
	clients []valkey.ClientInfo
	// refuse lists ids the server does not kill (still listed after).
	refuse  map[int64]bool
	listErr error
	killErr error
	lists   int
	kills   [][]int64
	closed  bool
}

func (f *fakeValkey) Clients(context.Context) ([]valkey.ClientInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.listErr != nil {
		return nil, f.listErr
	}
	return slices.Clone(f.clients), nil
}

func (f *fakeValkey) Kill(_ context.Context, ids ...int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills = append(f.kills, slices.Clone(ids))
	if f.killErr != nil {
		return 0, f.killErr
	}
	n := 0
	f.clients = slices.DeleteFunc(f.clients, func(c valkey.ClientInfo) bool {
		if slices.Contains(ids, c.ID) && !c.Self && !f.refuse[c.ID] {
			n++
			return true
		}
		return false
	})
	return n, nil
}

func (f *fakeValkey) Close() error { f.closed = true; return nil }

// drop removes a client as if it had left by itself.
func (f *fakeValkey) drop(id int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clients = slices.DeleteFunc(f.clients, func(c valkey.ClientInfo) bool { return c.ID == id })
}

// fixtureClients reads drain/testdata's CLIENT LIST of a real
// redis-server 7.0 (see testdata/README.md); the redis-cli that listed
// them, id 9, stands for the method's own connection.
func fixtureClients(t *testing.T) []valkey.ClientInfo {
	t.Helper()
	b, err := os.ReadFile("testdata/client-list-redis-7.0.15.txt")
	if err != nil {
		t.Fatal(err)
	}
	list, err := valkey.ParseClientList(string(b), 9)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// connsOf makes the kernel's view of the TCP clients in list: the
// server-side socket of each, with inodes in the reverse of id order so
// that ordering by the server's age is visible.
func connsOf(t *testing.T, list []valkey.ClientInfo) []drain.Conn {
	t.Helper()
	var out []drain.Conn
	for _, c := range list {
		local, err1 := netip.ParseAddrPort(c.LAddr)
		remote, err2 := netip.ParseAddrPort(c.Addr)
		if err1 != nil || err2 != nil {
			continue // the Unix socket's client
		}
		fam := uint8(unix.AF_INET)
		if local.Addr().Is6() {
			fam = unix.AF_INET6
		}
		out = append(out, drain.Conn{Family: fam, Local: local, Remote: remote, Cookie: uint64(c.ID), Inode: uint32(1000 - c.ID)})
	}
	return out
}

var fixtureListeners = []drain.Listener{
	{Addr: netip.MustParseAddr("127.0.0.1"), Port: 6379, Sockets: 1},
	{Addr: netip.MustParseAddr("::1"), Port: 6379, Sockets: 1},
}

func newValkeyMethod(srv *fakeValkey, ls []drain.Listener) (*drain.Valkey, *[]string) {
	var dialed []string
	m := &drain.Valkey{Connect: func(addr string) (drain.ValkeyServer, error) {
		dialed = append(dialed, addr)
		return srv, nil
	}}
	m.UseListeners(ls)
	return m, &dialed
}

func cookies(conns []drain.Conn) []uint64 {
	var out []uint64
	for _, c := range conns {
		out = append(out, c.Cookie)
	}
	return out
}

// TestValkeyOrderFixture: on a real server's CLIENT LIST, the connections
// the method never closes come first (the replica's link, its own, one the
// server does not list), then the clients oldest first by the server's
// age and id — Pub/Sub, blocked and IPv6 clients among them; a batch kills
// by id with the list Order read, and skips the others.
func TestValkeyOrderFixture(t *testing.T) {
	list := fixtureClients(t)
	srv := &fakeValkey{clients: list}
	m, dialed := newValkeyMethod(srv, fixtureListeners)
	conns := connsOf(t, list)
	stranger := drain.Conn{Family: unix.AF_INET, Local: netip.MustParseAddrPort("127.0.0.1:6379"),
		Remote: netip.MustParseAddrPort("127.0.0.1:50000"), Cookie: 99, Inode: 5}
	conns = append(conns, stranger)

	skip, err := m.Order(context.Background(), conns)
	if err != nil {
		t.Fatal(err)
	}
	// Skipped first by inode (99: 5, 9: 991, 3: 997), then age 3 before
	// age 2, ties by id: the ages are 2 s for 4, 5, 6 and 7.
	want := []uint64{99, 9, 3, 4, 5, 6, 7}
	if diff := cmp.Diff(want, cookies(conns)); diff != "" || skip != 3 {
		t.Errorf("order (-want +got):\n%s\nskip %d, want 3", diff, skip)
	}
	if diff := cmp.Diff([]string{"127.0.0.1:6379"}, *dialed); diff != "" {
		t.Errorf("dialed (-want +got):\n%s", diff)
	}

	batch := conns[:skip+2]
	fates := make([]drain.Fate, len(batch))
	if err := m.Disconnect(context.Background(), batch, fates); err != nil {
		t.Fatal(err)
	}
	wantFates := []drain.Fate{drain.Skipped, drain.Skipped, drain.Skipped, drain.Closed, drain.Closed}
	if diff := cmp.Diff(wantFates, fates); diff != "" {
		t.Errorf("fates (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]int64{{4, 5}}, srv.kills); diff != "" {
		t.Errorf("kills (-want +got):\n%s", diff)
	}
	if srv.lists != 1 {
		t.Errorf("%d CLIENT LISTs for one Order and its batch, want 1", srv.lists)
	}

	// A batch without an Order before it lists the clients itself.
	rest := conns[skip+2:]
	fates = make([]drain.Fate, len(rest))
	if err := m.Disconnect(context.Background(), rest, fates); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]drain.Fate{drain.Closed, drain.Closed}, fates); diff != "" || srv.lists != 2 {
		t.Errorf("fates (-want +got):\n%s\n%d lists, want 2", diff, srv.lists)
	}
	if err := m.Close(); err != nil || !srv.closed {
		t.Errorf("Close: %v, server client closed %v", err, srv.closed)
	}
}

// TestValkeyFewerKilled: when the server kills fewer than asked, one more
// CLIENT LIST tells the killed and gone (no longer listed) from the
// refused (still listed); the counts add up to the server's.
func TestValkeyFewerKilled(t *testing.T) {
	list := fixtureClients(t)
	srv := &fakeValkey{clients: list, refuse: map[int64]bool{7: true}}
	m, _ := newValkeyMethod(srv, fixtureListeners)
	conns := connsOf(t, list)
	skip, err := m.Order(context.Background(), conns)
	if err != nil {
		t.Fatal(err)
	}
	srv.drop(5) // leaves by itself between the list and the kill
	batch := conns[skip:]
	fates := make([]drain.Fate, len(batch))
	if err := m.Disconnect(context.Background(), batch, fates); err != nil {
		t.Fatal(err)
	}
	count := map[drain.Fate]int{}
	for _, f := range fates {
		count[f]++
	}
	if diff := cmp.Diff(map[drain.Fate]int{drain.Closed: 2, drain.Gone: 1, drain.Failed: 1}, count); diff != "" {
		t.Errorf("fates %v (-want +got):\n%s", fates, diff)
	}
	if srv.lists != 2 {
		t.Errorf("%d CLIENT LISTs, want 2 (the Order's, and one after the short kill)", srv.lists)
	}
}

// TestValkeyErrors: a failed list or kill leaves the fates unknown and
// returns the error.
func TestValkeyErrors(t *testing.T) {
	list := fixtureClients(t)
	conns := connsOf(t, list)
	for name, srv := range map[string]*fakeValkey{
		"list": {clients: list, listErr: errBoom},
		"kill": {clients: list, killErr: errBoom},
	} {
		m, _ := newValkeyMethod(srv, fixtureListeners)
		fates := make([]drain.Fate, len(conns))
		err := m.Disconnect(context.Background(), conns, fates)
		if !errors.Is(err, errBoom) {
			t.Errorf("%s: %v, want boom", name, err)
		}
		for i, f := range fates {
			if f != drain.Unknown && f != drain.Skipped {
				t.Errorf("%s: conn %d %v after a failure", name, i, f)
			}
		}
	}
}

// TestValkeyCheck: the address the method picks, the server behind the
// listener, and the right to kill.
func TestValkeyCheck(t *testing.T) {
	l := func(a string, dual bool) drain.Listener {
		return drain.Listener{Addr: netip.MustParseAddr(a), Port: 6379, DualStack: dual, Sockets: 1}
	}
	self := func(laddr string) []valkey.ClientInfo {
		return []valkey.ClientInfo{{ID: 1, Addr: "127.0.0.1:40000", LAddr: "10.9.9.9:6379"}, {ID: 2, Addr: "127.0.0.1:40001", LAddr: laddr, Self: true}}
	}
	tests := []struct {
		name      string
		address   string
		listeners []drain.Listener
		srv       *fakeValkey
		dial      string
		err       error
		msg       string
	}{
		{"wildcard", "", []drain.Listener{l("0.0.0.0", false)}, &fakeValkey{clients: self("127.0.0.1:6379")}, "127.0.0.1:6379", nil, ""},
		{"loopback among others", "", []drain.Listener{l("10.0.0.5", false), l("127.0.0.1", false)}, &fakeValkey{clients: self("127.0.0.1:6379")}, "127.0.0.1:6379", nil, ""},
		{"IPv6 only", "", []drain.Listener{l("::", false)}, &fakeValkey{clients: self("[::1]:6379")}, "[::1]:6379", nil, ""},
		{"dual stack", "", []drain.Listener{l("::", true)}, &fakeValkey{clients: self("127.0.0.1:6379")}, "127.0.0.1:6379", nil, ""},
		{"own address", "", []drain.Listener{l("10.0.0.5", false)}, &fakeValkey{clients: self("10.0.0.5:6379")}, "10.0.0.5:6379", nil, ""},
		{"given address", "10.0.0.5:6379", []drain.Listener{l("0.0.0.0", false)}, &fakeValkey{clients: self("10.0.0.5:6379")}, "10.0.0.5:6379", nil, ""},
		{"another server", "127.0.0.1:6379", []drain.Listener{l("10.0.0.5", false)}, &fakeValkey{clients: self("127.0.0.1:6379")}, "127.0.0.1:6379",
			drain.ErrWrongServer, `arrived on "127.0.0.1:6379", not through 10.0.0.5:6379`},
		{"another port", "127.0.0.1:6380", []drain.Listener{l("0.0.0.0", false)}, &fakeValkey{clients: self("127.0.0.1:6380")}, "127.0.0.1:6380",
			drain.ErrWrongServer, "not through 0.0.0.0:6379"},
		{"no own connection listed", "", []drain.Listener{l("0.0.0.0", false)}, &fakeValkey{}, "127.0.0.1:6379",
			drain.ErrWrongServer, "does not list the connection stormwatch uses"},
		{"kill refused", "", []drain.Listener{l("0.0.0.0", false)}, &fakeValkey{clients: self("127.0.0.1:6379"), killErr: errBoom}, "127.0.0.1:6379",
			errBoom, "CLIENT KILL refused (an ACL user needs +client|kill)"},
		{"unreachable", "", []drain.Listener{l("0.0.0.0", false)}, &fakeValkey{listErr: errBoom}, "127.0.0.1:6379", errBoom, "boom"},
		{"no listener", "", nil, &fakeValkey{}, "", drain.ErrNoListener, "no listener to reach the server through"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, dialed := newValkeyMethod(tt.srv, tt.listeners)
			m.Address = tt.address
			err := m.Check(context.Background())
			if tt.err == nil && err != nil {
				t.Fatalf("Check: %v", err)
			}
			if tt.err != nil && (!errors.Is(err, tt.err) || !strings.Contains(fmt.Sprint(err), tt.msg)) {
				t.Fatalf("Check: %v; want %v saying %q", err, tt.err, tt.msg)
			}
			var want []string
			if tt.dial != "" {
				want = []string{tt.dial}
			}
			if diff := cmp.Diff(want, *dialed); diff != "" {
				t.Errorf("dialed (-want +got):\n%s", diff)
			}
			if tt.err == nil && (len(tt.srv.kills) != 1 || tt.srv.kills[0][0] != math.MaxInt64) {
				t.Errorf("kills %v, want one of an id no client has", tt.srv.kills)
			}
		})
	}
}

// valkeyWorld is a server seen from both sides: the kernel's listing
// (Source) and the server's client table (ValkeyServer). Its method's own
// connection appears in both once the method connected.
type valkeyWorld struct {
	fakeValkey
	next int64
}

func (w *valkeyWorld) add(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range n {
		w.next++
		w.clients = append(w.clients, valkey.ClientInfo{ID: w.next, Addr: fmt.Sprintf("10.0.0.2:%d", 10000+w.next), LAddr: "10.0.0.1:6379",
			Age: time.Duration(1000-w.next) * time.Second})
	}
}

func (w *valkeyWorld) connect(string) (drain.ValkeyServer, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	w.clients = append(w.clients, valkey.ClientInfo{ID: w.next, Addr: "10.0.0.1:40000", LAddr: "10.0.0.1:6379", Self: true})
	return w, nil
}

func (w *valkeyWorld) List(context.Context) (drain.Listing, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := drain.Listing{Listeners: []drain.Listener{listener}}
	for _, c := range w.clients {
		l.Conns = append(l.Conns, drain.Conn{Family: unix.AF_INET, Local: netip.MustParseAddrPort(c.LAddr), Remote: netip.MustParseAddrPort(c.Addr),
			Cookie: uint64(c.ID), Inode: uint32(c.ID)})
	}
	return l, nil
}

// TestValkeyRun: a drain with the Valkey method closes every client in
// batches of the planned size, oldest first; its own connection is there
// from the start and skipped, not counted as new.
func TestValkeyRun(t *testing.T) {
	w := &valkeyWorld{}
	w.add(25)
	m := &drain.Valkey{Connect: w.connect}
	var ev events
	sum, err := drain.Run(context.Background(), drain.Config{Source: w, Method: m, OnEvent: ev.record,
		Batch: drain.Batch{Count: 10}, Every: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if sum.End != drain.EndDrained || sum.Closed != 25 || sum.Skipped != 1 || sum.New != 0 || sum.Total != 26 {
		t.Errorf("summary %+v; want drained, 25 closed, 1 skipped, none new, 26 in all", sum)
	}
	var sizes []int
	for _, e := range ev.of(drain.EventBatch) {
		sizes = append(sizes, e.Closed)
	}
	if diff := cmp.Diff([]int{10, 10, 5}, sizes); diff != "" {
		t.Errorf("closed per batch (-want +got):\n%s", diff)
	}
	if len(w.kills) == 0 || !slices.Equal(w.kills[0], []int64{math.MaxInt64}) {
		t.Fatalf("kills %v: the first is not Check's of an id no client has", w.kills)
	}
	var killed []int64
	for _, k := range w.kills[1:] {
		killed = append(killed, k...)
	}
	want := make([]int64, 25)
	for i := range want {
		want[i] = int64(i + 1) // the oldest has the smallest id and the largest age
	}
	if diff := cmp.Diff(want, killed); diff != "" {
		t.Errorf("killed ids, in order (-want +got):\n%s", diff)
	}
	if err := ev.checkTotals(); err != nil {
		t.Error(err)
	}

	// A dry run lists the connection it would skip apart, and kills
	// nothing.
	w2 := &valkeyWorld{}
	w2.add(5)
	if _, err := w2.connect(""); err != nil { // a replica's link, say: listed, skipped
		t.Fatal(err)
	}
	w2.clients[len(w2.clients)-1].Self, w2.clients[len(w2.clients)-1].Replica = false, true
	plan, err := drain.Plan(context.Background(), drain.Config{Source: w2, Method: &drain.Valkey{Connect: w2.connect},
		Batch: drain.Batch{Count: 2}, Every: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Skipped) != 1 || plan.Skipped[0].Cookie != 6 || len(plan.Batches) != 3 || len(w2.kills) != 0 {
		t.Errorf("plan: skipped %v, %d batches, kills %v; want the replica's link, 3 batches, no kill", cookies(plan.Skipped), len(plan.Batches), w2.kills)
	}
}

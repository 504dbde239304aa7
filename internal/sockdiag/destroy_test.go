package sockdiag_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/sockdiag/sockdiagtest"
)

func TestPutDestroyReq(t *testing.T) {
	v4 := sockdiag.ID{
		Family: unix.AF_INET, SrcPort: 6379, DstPort: 40001,
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
		IfIndex: 2, Cookie: 0x0000_0001_0000_0002,
	}
	var b [sockdiag.ReqV2Len]byte
	if err := sockdiag.PutDestroyReq(&b, v4); err != nil {
		t.Fatal(err)
	}
	// The layout of struct inet_diag_req_v2, written out by hand.
	want := make([]byte, sockdiag.ReqV2Len)
	want[0], want[1] = unix.AF_INET, unix.IPPROTO_TCP
	want[8], want[9] = 6379>>8, 6379&0xff
	want[10], want[11] = 40001>>8, 40001&0xff
	copy(want[12:], []byte{10, 0, 0, 1})
	copy(want[28:], []byte{10, 0, 0, 2})
	binary.NativeEndian.PutUint32(want[44:], 2)
	binary.NativeEndian.PutUint32(want[48:], 2) // cookie, low word first
	binary.NativeEndian.PutUint32(want[52:], 1)
	if diff := cmp.Diff(want, b[:]); diff != "" {
		t.Errorf("inet_diag_req_v2 (-want +got):\n%s", diff)
	}

	for _, id := range []sockdiag.ID{
		v4,
		{Family: unix.AF_INET6, SrcPort: 6379, DstPort: 1, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Cookie: 7},
		{Family: unix.AF_INET6, SrcPort: 6379, DstPort: 1, Src: netip.MustParseAddr("::ffff:127.0.0.1"), Dst: netip.MustParseAddr("::ffff:127.0.0.2"), Cookie: 8},
	} {
		if err := sockdiag.PutDestroyReq(&b, id); err != nil {
			t.Fatalf("%v: %v", id, err)
		}
		got, err := sockdiagtest.ParseDestroyReq(b[:])
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(id, got, equateAddr); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}

	for _, bad := range []sockdiag.ID{
		{Family: unix.AF_INET, Src: netip.MustParseAddr("::1"), Dst: netip.MustParseAddr("::1")},
		{Family: unix.AF_INET6, Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1")},
		{Family: unix.AF_INET},
	} {
		if err := sockdiag.PutDestroyReq(&b, bad); !errors.Is(err, sockdiag.ErrFamily) {
			t.Errorf("PutDestroyReq(%+v) = %v, want ErrFamily", bad, err)
		}
	}
}

func TestMsgID(t *testing.T) {
	m := sockdiag.Msg{Family: unix.AF_INET6, State: sockdiag.TCPEstablished, SrcPort: 1, DstPort: 2,
		Src: netip.IPv6Loopback(), Dst: netip.IPv6Loopback(), IfIndex: 3, Cookie: 4, Inode: 5}
	want := sockdiag.ID{Family: unix.AF_INET6, SrcPort: 1, DstPort: 2, Src: netip.IPv6Loopback(), Dst: netip.IPv6Loopback(), IfIndex: 3, Cookie: 4}
	if diff := cmp.Diff(want, m.ID(), equateAddr); diff != "" {
		t.Errorf("Msg.ID (-want +got):\n%s", diff)
	}
}

// table is a listener on 0.0.0.0:6379 with n established connections.
func table(n int) []sockdiag.Msg {
	any4 := netip.IPv4Unspecified()
	out := []sockdiag.Msg{{Family: unix.AF_INET, State: sockdiag.TCPListen, SrcPort: 6379, Src: any4, Dst: any4, Cookie: 1000, Inode: 1}}
	for i := range n {
		out = append(out, sockdiag.Msg{
			Family: unix.AF_INET, State: sockdiag.TCPEstablished, SrcPort: 6379, DstPort: uint16(40000 + i),
			Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
			Cookie: uint64(2000 + i), Inode: uint32(100 + i),
		})
	}
	return out
}

func ids(ms []sockdiag.Msg) []sockdiag.ID {
	var out []sockdiag.ID
	for _, m := range ms {
		out = append(out, m.ID())
	}
	return out
}

// outcomes collects Destroy's outcomes by index.
type outcomes map[int]error

func (o outcomes) record(i int, err error) { o[i] = err }

func (o outcomes) count(target error) int {
	n := 0
	for _, err := range o {
		if (target == nil && err == nil) || (target != nil && errors.Is(err, target)) {
			n++
		}
	}
	return n
}

func TestDestroy(t *testing.T) {
	k := &sockdiagtest.Kernel{Sockets: table(5)}
	c := k.Dial()
	d := sockdiag.NewDestroyer(c, 2)
	victims := k.Sockets[1:4]
	got := outcomes{}
	st, err := d.Destroy(context.Background(), ids(victims), got.record)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sockdiag.DestroyStats{Destroyed: 3}, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(outcomes{0: nil, 1: nil, 2: nil}, got, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(table(5)[1:4], k.Destroyed, equateAddr); diff != "" {
		t.Errorf("destroyed (-want +got):\n%s", diff)
	}
	// Windows of 2: two datagrams of requests for three sockets.
	if k.Sends != 2 || k.Requests != 3 {
		t.Errorf("%d datagrams with %d requests, want 2 with 3", k.Sends, k.Requests)
	}
	if len(c.Deadlines) == 0 {
		t.Error("no deadline set")
	}
}

// TestDestroyStaleCookie: a connection that closed since the dump leaves
// its address and ports to the listener, which the kernel finds instead;
// the cookie makes it refuse (ESTALE) rather than destroy the listener.
func TestDestroyStaleCookie(t *testing.T) {
	k := &sockdiagtest.Kernel{Sockets: table(2)}
	gone := k.Sockets[1]
	k.Sockets = append(k.Sockets[:1], k.Sockets[2:]...) // it closed
	d := sockdiag.NewDestroyer(k.Dial(), 16)
	got := outcomes{}
	st, err := d.Destroy(context.Background(), []sockdiag.ID{gone.ID()}, got.record)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sockdiag.DestroyStats{Gone: 1}, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if !errors.Is(got[0], sockdiag.ErrGone) || !errors.Is(got[0], unix.ESTALE) {
		t.Errorf("outcome %v, want ErrGone (ESTALE)", got[0])
	}
	if _, ok := k.Find(1000); !ok {
		t.Error("the listener was destroyed")
	}

	// Never seen at all: ENOENT, also gone.
	other := gone.ID()
	other.SrcPort = 7000
	got = outcomes{}
	if _, err := d.Destroy(context.Background(), []sockdiag.ID{other}, got.record); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(got[0], sockdiag.ErrGone) || !errors.Is(got[0], unix.ENOENT) {
		t.Errorf("outcome %v, want ErrGone (ENOENT)", got[0])
	}
}

func TestDestroyRefused(t *testing.T) {
	tests := []struct {
		name     string
		kernel   *sockdiagtest.Kernel
		want     error
		wantWrap error
	}{
		{"without CAP_NET_ADMIN", &sockdiagtest.Kernel{NoCapNetAdmin: true}, sockdiag.ErrNoCapNetAdmin, os.ErrPermission},
		{"without CONFIG_INET_DIAG_DESTROY", &sockdiagtest.Kernel{NoDestroy: true}, sockdiag.ErrDestroyUnsupported, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := tt.kernel
			k.Sockets = table(5)
			d := sockdiag.NewDestroyer(k.Dial(), 2)
			got := outcomes{}
			st, err := d.Destroy(context.Background(), ids(k.Sockets[1:]), got.record)
			if !errors.Is(err, tt.want) || !errors.Is(err, tt.wantWrap) {
				t.Fatalf("err = %v, want %v wrapping %v", err, tt.want, tt.wantWrap)
			}
			// Stopped after the first window, both of its answers read.
			if k.Requests != 2 {
				t.Errorf("%d requests sent, want the first window's 2", k.Requests)
			}
			if len(got) != 2 || got.count(tt.want) != 2 {
				t.Errorf("outcomes %v, want two refusals", got)
			}
			if st != (sockdiag.DestroyStats{}) {
				t.Errorf("stats %+v, want nothing destroyed", st)
			}
			if len(k.Destroyed) != 0 {
				t.Errorf("destroyed %d sockets", len(k.Destroyed))
			}
		})
	}
}

func TestDestroySupported(t *testing.T) {
	k := &sockdiagtest.Kernel{Sockets: table(1)}
	if err := sockdiag.NewDestroyer(k.Dial(), 8).Supported(context.Background()); err != nil {
		t.Errorf("Supported on a kernel with SOCK_DESTROY = %v", err)
	}
	if len(k.Destroyed) != 0 {
		t.Errorf("the probe destroyed %v", k.Destroyed)
	}
	// Even without CAP_NET_ADMIN the probe only asks about support.
	k = &sockdiagtest.Kernel{Sockets: table(1), NoCapNetAdmin: true}
	if err := sockdiag.NewDestroyer(k.Dial(), 8).Supported(context.Background()); err != nil {
		t.Errorf("Supported without CAP_NET_ADMIN = %v, want nil", err)
	}
	k = &sockdiagtest.Kernel{Sockets: table(1), NoDestroy: true}
	if err := sockdiag.NewDestroyer(k.Dial(), 8).Supported(context.Background()); !errors.Is(err, sockdiag.ErrDestroyUnsupported) {
		t.Errorf("Supported without SOCK_DESTROY = %v, want ErrDestroyUnsupported", err)
	}
}

// TestDestroyOverrun: the receive buffer holds 3 answers and a window of 8
// is sent; the kernel destroys all 8 but 5 answers are dropped. The 3 read
// are reported, the 5 unknown, and the connection stays usable.
func TestDestroyOverrun(t *testing.T) {
	k := &sockdiagtest.Kernel{Sockets: table(12), AckRoom: 3}
	d := sockdiag.NewDestroyer(k.Dial(), 8)
	got := outcomes{}
	st, err := d.Destroy(context.Background(), ids(k.Sockets[1:9]), got.record)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sockdiag.DestroyStats{Destroyed: 3, Unknown: 5}, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if got.count(nil) != 3 || got.count(sockdiag.ErrAckLost) != 5 {
		t.Errorf("outcomes %v, want 3 destroyed and 5 lost", got)
	}
	for i := range 3 {
		if got[i] != nil {
			t.Errorf("outcome %d = %v, want the first three answered", i, got[i])
		}
	}
	if len(k.Destroyed) != 8 {
		t.Errorf("kernel destroyed %d, want 8", len(k.Destroyed))
	}

	// The next call starts clean: the barrier's answer was consumed.
	k.AckRoom = 0
	st, err = d.Destroy(context.Background(), ids(k.Sockets[1:4]), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st != (sockdiag.DestroyStats{Destroyed: 3}) {
		t.Errorf("after the overrun: %+v, want 3 destroyed", st)
	}
}

func TestDestroyErrors(t *testing.T) {
	k := &sockdiagtest.Kernel{Sockets: table(3)}
	d := sockdiag.NewDestroyer(k.Dial(), 8)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Destroy(ctx, ids(k.Sockets[1:]), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
	if k.Requests != 0 {
		t.Errorf("sent %d requests with a cancelled context", k.Requests)
	}

	bad := k.Sockets[1].ID()
	bad.Src = netip.IPv6Loopback()
	if _, err := d.Destroy(context.Background(), []sockdiag.ID{bad}, nil); !errors.Is(err, sockdiag.ErrFamily) {
		t.Errorf("mixed family: err = %v, want ErrFamily", err)
	}

	// An answer to a request never sent.
	c := sockdiagtest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req == nil {
			return nil, sockdiagtest.ErrWouldBlock
		}
		r := req[0]
		r.Header.Sequence += 100
		return sockdiagtest.KernelError(r, unix.ENOENT)
	})
	_, err := sockdiag.NewDestroyer(c, 8).Destroy(context.Background(), ids(table(1)[1:]), nil)
	if !errors.Is(err, sockdiag.ErrSequence) {
		t.Errorf("foreign answer: err = %v, want ErrSequence", err)
	}

	// An errno the kernel does not send for a found socket: returned.
	c = sockdiagtest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req == nil {
			return nil, sockdiagtest.ErrWouldBlock
		}
		return sockdiagtest.KernelError(req[0], unix.EINVAL)
	})
	_, err = sockdiag.NewDestroyer(c, 8).Destroy(context.Background(), ids(table(1)[1:]), nil)
	if !errors.Is(err, unix.EINVAL) {
		t.Errorf("EINVAL: err = %v", err)
	}
}

package sockdiagtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

// ErrWouldBlock is what a Kernel's connection returns when it is read with
// nothing queued and no deadline set: the real socket would block forever,
// so the caller waited for an answer the kernel never sends. With a
// deadline set, such a read fails with os.ErrDeadlineExceeded, as the real
// one would once the deadline passed.
var ErrWouldBlock = errors.New("sockdiagtest: read with no answer queued (a real socket would block)")

// Kernel fakes the kernel's TCP socket table behind NETLINK_SOCK_DIAG: it
// answers dumps from Sockets and SOCK_DESTROY requests as tcp_diag_destroy
// does — lookup by addresses and ports (established sockets first, then a
// listener on the local address or its family's wildcard), ESTALE when the
// cookie differs, EPERM only once a socket is found — with one
// acknowledgement per request, each in a datagram of its own.
type Kernel struct {
	mu sync.Mutex

	// Sockets is the table. Destroyed sockets leave it.
	Sockets []sockdiag.Msg
	// NoDestroy makes every SOCK_DESTROY fail with EOPNOTSUPP, as a
	// kernel without CONFIG_INET_DIAG_DESTROY.
	NoDestroy bool
	// NoCapNetAdmin makes a SOCK_DESTROY of a found socket fail with
	// EPERM, as for a caller without CAP_NET_ADMIN.
	NoCapNetAdmin bool
	// AckRoom, when positive, is how many answers the receive buffer
	// holds: answers beyond it are dropped and the next read fails with
	// ENOBUFS, as netlink_overrun does.
	AckRoom int
	// Destroyed lists the sockets destroyed, in order.
	Destroyed []sockdiag.Msg
	// Requests counts SOCK_DESTROY requests, Sends the datagrams that
	// carried them.
	Requests, Sends int
	// Filters are the programs of the dump requests, in order (nil for a
	// request without one); dumps apply them with sockdiag.RunFilter.
	Filters [][]byte

	queue    []netlink.Message
	overrun  bool
	deadline time.Time
}

// Dial returns a connection to k, recording deadlines and closes.
func (k *Kernel) Dial() *Conn {
	c := Dial(k.handle)
	c.OnDeadline = func(t time.Time) {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.deadline = t
	}
	return c
}

// Find returns the socket in the table with id's cookie.
func (k *Kernel) Find(cookie uint64) (sockdiag.Msg, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := slices.IndexFunc(k.Sockets, func(m sockdiag.Msg) bool { return m.Cookie == cookie })
	if i < 0 {
		return sockdiag.Msg{}, false
	}
	return k.Sockets[i], true
}

func (k *Kernel) handle(req []netlink.Message) ([]netlink.Message, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if req == nil { // a read
		if k.overrun {
			k.overrun = false
			return nil, os.NewSyscallError("recvmsg", unix.ENOBUFS)
		}
		if len(k.queue) == 0 {
			if !k.deadline.IsZero() {
				return nil, os.ErrDeadlineExceeded
			}
			return nil, ErrWouldBlock
		}
		m := k.queue[0]
		k.queue = k.queue[1:]
		return []netlink.Message{m}, nil
	}
	if len(req) == 1 && req[0].Header.Type == sockdiag.ByFamily && req[0].Header.Flags&netlink.Dump != 0 {
		return k.dump(req[0])
	}
	k.Sends++
	for _, r := range req {
		if r.Header.Type != sockdiag.DestroyType {
			return nil, fmt.Errorf("sockdiagtest: unexpected request type %d", r.Header.Type)
		}
		k.Requests++
		k.ack(r, k.destroy(r.Data))
	}
	return nil, nil
}

// dump answers a SOCK_DIAG_BY_FAMILY dump request.
func (k *Kernel) dump(req netlink.Message) ([]netlink.Message, error) {
	if len(req.Data) < sockdiag.ReqV2Len {
		return KernelError(req, unix.EINVAL)
	}
	family := req.Data[0]
	states := binary.NativeEndian.Uint32(req.Data[4:8])
	filter, ok := requestFilter(req.Data[sockdiag.ReqV2Len:])
	if !ok {
		return KernelError(req, unix.EINVAL)
	}
	k.Filters = append(k.Filters, filter)
	var out [][]byte
	for _, m := range k.Sockets {
		if m.Family == family && states&(1<<m.State) != 0 && (filter == nil || sockdiag.RunFilter(filter, m.SrcPort)) {
			out = append(out, Marshal(m))
		}
	}
	return DumpReply(req, 0, out...), nil
}

// requestFilter returns the INET_DIAG_REQ_BYTECODE attribute among the
// attributes of a dump request (nil when there is none); false when they
// are malformed.
func requestFilter(attrs []byte) ([]byte, bool) {
	var filter []byte
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs[0:2]))
		if l < 4 || l > len(attrs) {
			return nil, false
		}
		if binary.NativeEndian.Uint16(attrs[2:4]) == 1 { // INET_DIAG_REQ_BYTECODE
			filter = attrs[4:l]
		}
		attrs = attrs[min((l+3)&^3, len(attrs)):]
	}
	return filter, true
}

// destroy handles one SOCK_DESTROY request and returns its errno.
func (k *Kernel) destroy(data []byte) unix.Errno {
	if len(data) < sockdiag.ReqV2Len {
		return unix.EINVAL
	}
	if data[1] != unix.IPPROTO_TCP {
		return unix.ENOENT
	}
	if k.NoDestroy {
		return unix.EOPNOTSUPP
	}
	id, err := parseReq(data)
	if err != nil {
		return unix.EINVAL
	}
	i := k.lookup(id)
	if i < 0 {
		return unix.ENOENT
	}
	if k.Sockets[i].Cookie != id.Cookie && id.Cookie != ^uint64(0) {
		return unix.ESTALE
	}
	if k.NoCapNetAdmin {
		return unix.EPERM
	}
	k.Destroyed = append(k.Destroyed, k.Sockets[i])
	k.Sockets = slices.Delete(k.Sockets, i, i+1)
	return 0
}

// lookup finds the socket a packet from id's remote end to its local end
// would reach: an exact non-listening match, else a listener on the local
// address or the family's wildcard.
func (k *Kernel) lookup(id sockdiag.ID) int {
	src, dst := id.Src.Unmap(), id.Dst.Unmap()
	for i, m := range k.Sockets {
		if m.State != sockdiag.TCPListen && m.SrcPort == id.SrcPort && m.DstPort == id.DstPort &&
			m.Src.Unmap() == src && m.Dst.Unmap() == dst {
			return i
		}
	}
	for i, m := range k.Sockets {
		if m.State == sockdiag.TCPListen && m.SrcPort == id.SrcPort && id.SrcPort != 0 &&
			(m.Src.Unmap() == src || m.Src.IsUnspecified()) {
			return i
		}
	}
	return -1
}

// ack queues the answer to r, or drops it when the buffer is full.
func (k *Kernel) ack(r netlink.Message, errno unix.Errno) {
	if k.AckRoom > 0 && len(k.queue) >= k.AckRoom {
		k.overrun = true
		return
	}
	// struct nlmsgerr: the negative errno, then the request's header (the
	// payload is left out, as with NETLINK_CAP_ACK).
	data := make([]byte, 4+16)
	binary.NativeEndian.PutUint32(data[0:], uint32(-int32(errno)))
	binary.NativeEndian.PutUint32(data[4:], r.Header.Length)
	binary.NativeEndian.PutUint16(data[8:], uint16(r.Header.Type))
	binary.NativeEndian.PutUint16(data[10:], uint16(r.Header.Flags))
	binary.NativeEndian.PutUint32(data[12:], r.Header.Sequence)
	binary.NativeEndian.PutUint32(data[16:], r.Header.PID)
	k.queue = append(k.queue, netlink.Message{
		Header: netlink.Header{Type: netlink.Error, Sequence: r.Header.Sequence, PID: nltest.PID},
		Data:   data,
	})
}

// parseReq decodes the socket id of an inet_diag_req_v2.
func parseReq(b []byte) (sockdiag.ID, error) {
	id := sockdiag.ID{Family: b[0]}
	id.SrcPort = binary.BigEndian.Uint16(b[8:10])
	id.DstPort = binary.BigEndian.Uint16(b[10:12])
	switch id.Family {
	case unix.AF_INET:
		id.Src = netip.AddrFrom4([4]byte(b[12:16]))
		id.Dst = netip.AddrFrom4([4]byte(b[28:32]))
	case unix.AF_INET6:
		id.Src = netip.AddrFrom16([16]byte(b[12:28]))
		id.Dst = netip.AddrFrom16([16]byte(b[28:44]))
	default:
		return id, fmt.Errorf("family %d", id.Family)
	}
	id.IfIndex = binary.NativeEndian.Uint32(b[44:48])
	id.Cookie = uint64(binary.NativeEndian.Uint32(b[48:52])) | uint64(binary.NativeEndian.Uint32(b[52:56]))<<32
	return id, nil
}

// ParseDestroyReq decodes the socket id a SOCK_DESTROY request names.
func ParseDestroyReq(b []byte) (sockdiag.ID, error) {
	if len(b) < sockdiag.ReqV2Len {
		return sockdiag.ID{}, fmt.Errorf("%d-byte request, want %d", len(b), sockdiag.ReqV2Len)
	}
	return parseReq(b)
}

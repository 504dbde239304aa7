package sockdiag

// SOCK_DESTROY: closing one TCP socket by its exact identity.
//
// The request is a SOCK_DESTROY message (type 21) carrying an
// inet_diag_req_v2 whose inet_diag_sockid is the socket's, as a dump
// reported it: family, local and remote address and port, interface and
// cookie. The kernel (tcp_diag_destroy) looks the socket up by addresses
// and ports and refuses (ESTALE) when the cookie of what it found is not
// the one asked for. The cookie is what keeps a request for a connection
// that has meanwhile closed from landing on a new connection that reuses
// its ports, or, on kernels whose lookup falls back to the listeners, on
// the listener of its port: with the wildcard cookie (which
// vishvananda/netlink's SocketDestroy sends) such a request destroys
// whatever it finds. Measured on 6.18: a closed connection's request gets
// ENOENT, and the wildcard cookie and a listener's own id get EINVAL. A
// found socket is aborted with ECONNABORTED (tcp_abort: the peer gets an
// RST, a process using the socket gets the error), which needs
// CAP_NET_ADMIN in the socket's network namespace (EPERM otherwise,
// checked only once the socket is found) and a kernel built with
// CONFIG_INET_DIAG_DESTROY (EOPNOTSUPP for every request otherwise).
//
// One request names one socket. Requests are pipelined: a window of them
// goes in one sendmsg, with NLM_F_ACK, and the kernel handles them in
// order within that call, queueing one acknowledgement (an NLMSG_ERROR
// carrying 0 or an errno, and the request's sequence number) per request.
// The window is sized so its acknowledgements fit the receive buffer. If
// the buffer overruns anyway (ENOBUFS), the acknowledgements the kernel
// kept are all queued by the time sendmsg returns (the requests are handled
// synchronously in it), so they are read until the socket stays empty for
// overrunGrace, and the requests whose answer never came are reported as
// unknown.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// DestroyType is the SOCK_DESTROY request message type.
const DestroyType = netlink.HeaderType(unix.SOCK_DESTROY)

const (
	// MaxDestroyWindow bounds the requests sent in one datagram: 1024
	// requests are 73 KiB, well within the default netlink send buffer.
	MaxDestroyWindow = 1024
	// ackBudget is the receive buffer room counted per acknowledgement:
	// an NLMSG_ERROR of 36 bytes takes about 420 bytes of receive buffer
	// (measured on 6.18, x86-64), counted twice for margin.
	ackBudget = 840
	// destroyReadBuffer is the receive buffer asked for with
	// SO_RCVBUFFORCE (the caller needs CAP_NET_ADMIN anyway), else with
	// SO_RCVBUF, capped by net.core.rmem_max.
	destroyReadBuffer = 2 << 20
	// ackBufferSize is the userspace buffer for one acknowledgement.
	ackBufferSize = 4096
	// overrunGrace is how long the socket must stay empty, after an
	// overrun, before the answers not read are counted as lost.
	overrunGrace = 50 * time.Millisecond
)

// ID is the exact identity of one socket, as a request about that socket
// must name it (struct inet_diag_sockid and the address family).
type ID struct {
	Family uint8
	// SrcPort and Src are the socket's local port and address, DstPort
	// and Dst the remote ones. For an AF_INET6 socket they are 16-byte
	// addresses (v4-mapped ones included); for AF_INET, 4-byte ones.
	SrcPort, DstPort uint16
	Src, Dst         netip.Addr
	IfIndex          uint32
	Cookie           uint64
}

// ID returns the identity of the socket m describes.
func (m Msg) ID() ID {
	return ID{Family: m.Family, SrcPort: m.SrcPort, DstPort: m.DstPort, Src: m.Src, Dst: m.Dst, IfIndex: m.IfIndex, Cookie: m.Cookie}
}

// String formats id as "local -> remote (cookie)".
func (id ID) String() string {
	return fmt.Sprintf("%v -> %v (cookie %#x)", netip.AddrPortFrom(id.Src, id.SrcPort), netip.AddrPortFrom(id.Dst, id.DstPort), id.Cookie)
}

// PutDestroyReq encodes the inet_diag_req_v2 of a SOCK_DESTROY for the TCP
// socket id. The addresses must be of id's family: 4-byte ones for
// AF_INET, 16-byte ones for AF_INET6.
func PutDestroyReq(b *[ReqV2Len]byte, id ID) error {
	*b = [ReqV2Len]byte{}
	b[0] = id.Family
	b[1] = unix.IPPROTO_TCP
	// b[4:8], idiag_states, is not read by exact lookups.
	binary.BigEndian.PutUint16(b[8:10], id.SrcPort)
	binary.BigEndian.PutUint16(b[10:12], id.DstPort)
	for off, a := range [2]netip.Addr{id.Src, id.Dst} {
		at := 12 + 16*off
		switch {
		case id.Family == unix.AF_INET && a.Is4():
			a4 := a.As4()
			copy(b[at:], a4[:])
		case id.Family == unix.AF_INET6 && a.Is6():
			a16 := a.As16()
			copy(b[at:], a16[:])
		default:
			return fmt.Errorf("%w: family %d with address %v", ErrFamily, id.Family, a)
		}
	}
	binary.NativeEndian.PutUint32(b[44:48], id.IfIndex)
	binary.NativeEndian.PutUint32(b[48:52], uint32(id.Cookie))
	binary.NativeEndian.PutUint32(b[52:56], uint32(id.Cookie>>32))
	return nil
}

// probeID names no socket: port 0 is never bound, and no socket has cookie
// 0 (the kernel generates cookies from 1). The kernel answers a
// SOCK_DESTROY for it with ENOENT when it supports the request, EOPNOTSUPP
// when it does not.
var probeID = ID{Family: unix.AF_INET, Src: netip.IPv4Unspecified(), Dst: netip.IPv4Unspecified()}

// DestroyConn is the part of a *netlink.Conn a Destroyer needs.
type DestroyConn interface {
	SendMessages(msgs []netlink.Message) ([]netlink.Message, error)
	ReceiveIter() iter.Seq2[netlink.Message, error]
	SetDeadline(t time.Time) error
	Close() error
}

// DestroyStats counts what one Destroy call did.
type DestroyStats struct {
	// Destroyed sockets were found with their cookie and aborted.
	Destroyed int
	// Gone sockets no longer existed (ErrGone).
	Gone int
	// Unknown requests lost their answer (ErrAckLost), or were not
	// answered before an error ended the call.
	Unknown int
}

// Destroyer closes TCP sockets with SOCK_DESTROY over one NETLINK_SOCK_DIAG
// connection. It is not safe for concurrent use.
type Destroyer struct {
	conn   DestroyConn
	window int

	// Scratch, reused between windows.
	msgs  []netlink.Message
	reqs  []byte
	index map[uint32]int
	done  []bool
}

// NewDestroyer returns a Destroyer sending up to window requests (at most
// MaxDestroyWindow) before reading their answers. The connection's
// receive buffer should hold window acknowledgements (about 1 KiB each).
func NewDestroyer(c DestroyConn, window int) *Destroyer {
	window = min(max(window, 1), MaxDestroyWindow)
	return &Destroyer{conn: c, window: window, index: make(map[uint32]int, window)}
}

// DialDestroyer opens a NETLINK_SOCK_DIAG connection for SOCK_DESTROY in
// the calling thread's network namespace: acknowledgements of failed
// requests without a copy of the request (NETLINK_CAP_ACK), a receive
// buffer as large as allowed, and a window sized to it.
func DialDestroyer() (*Destroyer, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{MessageBufferSize: ackBufferSize})
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	// Best effort: without it, error answers carry the request too.
	_ = c.SetOption(netlink.CapAcknowledge, true)
	if err := forceReadBuffer(c, destroyReadBuffer); err != nil {
		if err := c.SetReadBuffer(destroyReadBuffer); err != nil {
			c.Close()
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
	}
	rb, err := c.ReadBuffer() // what the kernel granted, doubled
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	return NewDestroyer(c, rb/ackBudget), nil
}

// forceReadBuffer sets SO_RCVBUFFORCE, which ignores net.core.rmem_max
// but needs CAP_NET_ADMIN.
func forceReadBuffer(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	return serr
}

// Window returns the most requests sent before their answers are read.
func (d *Destroyer) Window() int { return d.window }

// Close closes the netlink connection.
func (d *Destroyer) Close() error { return d.conn.Close() }

// Supported asks the kernel whether it can destroy TCP sockets, with a
// request that names no socket: nil when it answers ENOENT,
// ErrDestroyUnsupported for EOPNOTSUPP. It says nothing about privilege
// (the kernel checks CAP_NET_ADMIN only once a socket is found).
func (d *Destroyer) Supported(ctx context.Context) error {
	var probeErr error
	_, err := d.Destroy(ctx, []ID{probeID}, func(_ int, err error) { probeErr = err })
	switch {
	case err != nil:
		return err
	case probeErr == nil:
		// Cannot happen: no socket has cookie 0.
		return nil
	case errors.Is(probeErr, ErrGone):
		return nil
	}
	return probeErr
}

// Destroy asks the kernel to abort each socket of ids and calls outcome
// (when not nil) with each one's index in ids and its fate: nil when it
// was destroyed, else an error wrapping ErrGone, ErrAckLost,
// ErrNoCapNetAdmin, ErrDestroyUnsupported or the errno.
//
// Requests go in windows (see the file comment). A refusal that would
// recur for every socket (ErrNoCapNetAdmin, ErrDestroyUnsupported) or an
// unexpected errno stops Destroy after the window it came in, and is
// returned; sockets not requested then get no outcome. An error reading
// the answers (the context ended, the connection failed) is returned at
// once and leaves the connection in an unknown state: close it.
func (d *Destroyer) Destroy(ctx context.Context, ids []ID, outcome func(i int, err error)) (DestroyStats, error) {
	var st DestroyStats
	if len(ids) == 0 {
		return st, nil
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	dl, _ := ctx.Deadline()
	if err := d.conn.SetDeadline(dl); err != nil {
		return st, fmt.Errorf("sock_diag: %w", err)
	}
	if ctx.Done() != nil {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(fired)
			_ = d.conn.SetDeadline(aLongTimeAgo)
		})
		defer func() {
			if !stop() {
				<-fired
			}
		}()
	}
	if outcome == nil {
		outcome = func(int, error) {}
	}
	for off := 0; off < len(ids); off += d.window {
		part := ids[off:min(off+d.window, len(ids))]
		refusal, err := d.destroyWindow(ctx, dl, part, off, &st, outcome)
		if err != nil {
			return st, err
		}
		if refusal != nil {
			return st, refusal
		}
	}
	return st, nil
}

// destroyWindow sends one window of requests and reads their answers.
// refusal is a per-socket error that stops the run; err a failure to talk
// to the kernel.
func (d *Destroyer) destroyWindow(ctx context.Context, dl time.Time, part []ID, base int, st *DestroyStats, outcome func(int, error)) (refusal, err error) {
	d.msgs = d.msgs[:0]
	if cap(d.reqs) < len(part)*ReqV2Len {
		d.reqs = make([]byte, d.window*ReqV2Len)
	}
	for i, id := range part {
		b := (*[ReqV2Len]byte)(d.reqs[i*ReqV2Len : (i+1)*ReqV2Len])
		if err := PutDestroyReq(b, id); err != nil {
			return nil, fmt.Errorf("sock_diag: destroy %v: %w", id, err)
		}
		d.msgs = append(d.msgs, netlink.Message{
			Header: netlink.Header{Type: DestroyType, Flags: netlink.Request | netlink.Acknowledge},
			Data:   b[:],
		})
	}
	sent, err := d.conn.SendMessages(d.msgs)
	if err != nil {
		st.Unknown += len(part)
		return nil, wrapErr(ctx, err)
	}
	clear(d.index)
	for i, m := range sent {
		d.index[m.Header.Sequence] = i
	}
	d.done = append(d.done[:0], make([]bool, len(part))...)
	pending := len(part)

	// settle records the answer to request i of the window.
	settle := func(i int, errno unix.Errno) {
		if d.done[i] {
			return
		}
		d.done[i] = true
		pending--
		var err error
		switch errno {
		case 0:
			st.Destroyed++
			outcome(base+i, nil)
			return
		case unix.ENOENT, unix.ESTALE:
			st.Gone++
			outcome(base+i, fmt.Errorf("%w (%w)", ErrGone, errno))
			return
		case unix.EPERM, unix.EACCES:
			err = fmt.Errorf("%w (%w)", ErrNoCapNetAdmin, errno)
		case unix.EOPNOTSUPP:
			err = fmt.Errorf("%w (%w)", ErrDestroyUnsupported, errno)
		default:
			err = fmt.Errorf("sock_diag: destroy %v: %w", part[i], errno)
		}
		outcome(base+i, err)
		if refusal == nil {
			refusal = err
		}
	}

	overrun := false
	for pending > 0 {
		var recvErr error
		drained := false
		for m, err := range d.conn.ReceiveIter() {
			if err != nil {
				seq, errno, isAnswer := answerError(err)
				switch {
				case isAnswer:
					i, ok := d.index[seq]
					if !ok {
						recvErr = fmt.Errorf("sock_diag: %w: answer %d to no request of this window", ErrSequence, seq)
						break
					}
					settle(i, errno)
				case errors.Is(err, unix.ENOBUFS):
					if overrun {
						break
					}
					// Answers were dropped. The kernel handled the whole
					// window within sendmsg, so every answer it kept is
					// queued already: read until the socket stays empty.
					overrun = true
					wait := time.Now().Add(overrunGrace)
					if !dl.IsZero() && dl.Before(wait) {
						wait = dl
					}
					if err := d.conn.SetDeadline(wait); err != nil {
						recvErr = fmt.Errorf("sock_diag: %w", err)
					}
				case overrun && errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil:
					drained = true
				default:
					recvErr = wrapErr(ctx, err)
				}
				break // an error ends the datagram
			}
			if m.Header.Type != netlink.Error {
				recvErr = fmt.Errorf("sock_diag: %w: %d answering SOCK_DESTROY", ErrUnexpectedType, m.Header.Type)
				break
			}
			i, ok := d.index[m.Header.Sequence]
			if !ok {
				recvErr = fmt.Errorf("sock_diag: %w: answer %d to no request of this window", ErrSequence, m.Header.Sequence)
				break
			}
			settle(i, 0) // an acknowledgement without error
		}
		if recvErr != nil {
			st.Unknown += pending
			return refusal, recvErr
		}
		if drained {
			for i := range part {
				if !d.done[i] {
					d.done[i] = true
					st.Unknown++
					outcome(base+i, ErrAckLost)
				}
			}
			pending = 0
		}
	}
	if overrun {
		if err := d.conn.SetDeadline(dl); err != nil {
			return refusal, fmt.Errorf("sock_diag: %w", err)
		}
	}
	return refusal, nil
}

// answerError picks apart an error from ReceiveIter: a netlink answer
// carrying an errno (with the request's sequence number), as opposed to a
// failure of the socket itself.
func answerError(err error) (seq uint32, errno unix.Errno, ok bool) {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return 0, 0, false
	}
	var oe *netlink.OpError
	if !errors.As(err, &oe) || !errors.As(oe.Err, &errno) {
		return 0, 0, false
	}
	return oe.Sequence, errno, true
}

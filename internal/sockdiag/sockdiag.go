// Package sockdiag speaks the kernel's NETLINK_SOCK_DIAG protocol for TCP
// sockets: dumps of the sockets in chosen states (idiag_states set, so the
// kernel only walks the tables holding those states), parsed in place from
// the receive buffer.
//
// Two requests: Dump sends SOCK_DIAG_BY_FAMILY (inet_diag_req_v2) for one
// address family; DumpInet sends the legacy TCPDIAG_GETSOCK
// (inet_diag_req), which the kernel answers for both families in one walk
// of its tables, where two Dump calls walk them twice. Both are answered
// with struct inet_diag_msg, in messages of the request's type. A kernel
// that refuses the legacy request answers with an error LegacyRefused
// recognises (EINVAL for a type it does not know, as 6.18 answers
// DCCPDIAG_GETSOCK; EOPNOTSUPP without the compat handler); the caller
// then dumps per family.
//
// Replies are read with ReceiveIter into one 32 KiB buffer; nothing is
// allocated per socket. Every reply's sequence number is checked against the
// request. The connection's deadline follows the context, and a cancelled
// context wakes a blocked read. A dump the kernel flags NLM_F_DUMP_INTR is
// reported (Result.Interrupted) for the caller to restart; the flag is seen
// on data messages only, since ReceiveIter consumes NLMSG_DONE.
package sockdiag

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Wire format (include/uapi/linux/inet_diag.h, sock_diag.h).
const (
	// ByFamily is the SOCK_DIAG_BY_FAMILY request and reply message type.
	ByFamily = netlink.HeaderType(unix.SOCK_DIAG_BY_FAMILY)
	// TCPDiagGetSock is the legacy TCPDIAG_GETSOCK request type, which the
	// kernel answers for both address families at once; its replies carry
	// the same type.
	TCPDiagGetSock = netlink.HeaderType(18)

	// ReqLen is sizeof(struct inet_diag_req), the legacy request: family,
	// src_len, dst_len, ext (1 byte each), sockid (48), states, dbs (u32
	// each). The kernel ignores its family and dumps both.
	ReqLen = 60

	// ReqV2Len is sizeof(struct inet_diag_req_v2): family, protocol, ext,
	// pad (1 byte each), states (u32), sockid (48).
	ReqV2Len = 56
	// MsgLen is sizeof(struct inet_diag_msg): family, state, timer,
	// retrans (1 byte each), sockid (48), expires, rqueue, wqueue, uid,
	// inode (u32 each). Attributes follow.
	MsgLen = 72

	// AttrSKV6Only is the INET_DIAG_SKV6ONLY attribute (u8), sent for
	// AF_INET6 sockets in LISTEN or CLOSE.
	AttrSKV6Only = 11

	// nlaTypeMask strips the nested and byte-order flags of an attribute
	// type.
	nlaTypeMask = 0x3fff
	// nlmsgMinType is NLMSG_MIN_TYPE: types below it are netlink control
	// messages.
	nlmsgMinType = 0x10
)

// TCP states (include/net/tcp_states.h) and their idiag_states bits.
const (
	TCPEstablished = 1
	TCPSynRecv     = 3
	TCPListen      = 10

	TCPFEstablished = 1 << TCPEstablished
	TCPFSynRecv     = 1 << TCPSynRecv
	TCPFListen      = 1 << TCPListen
)

// Buffer sizes of a dump connection.
const (
	// MessageBufferSize is the userspace receive buffer. The kernel fills
	// dump datagrams up to the size of the largest buffer a reader has
	// offered, capped near 32 KiB: a 32 KiB buffer gets the fewest
	// syscalls per dump.
	MessageBufferSize = 32 << 10
	// readBufferSize is the socket receive buffer asked for (capped by
	// net.core.rmem_max).
	readBufferSize = 1 << 20
)

// Errors about what the kernel sent.
var (
	ErrShortMsg       = errors.New("inet_diag message too short")
	ErrFamily         = errors.New("inet_diag message of unknown address family")
	ErrAttr           = errors.New("malformed inet_diag attribute")
	ErrSequence       = errors.New("netlink reply with a foreign sequence number")
	ErrUnexpectedType = errors.New("unexpected netlink message type")
)

// Msg is one struct inet_diag_msg, as far as the callers use it. Addresses
// are as the kernel reports them: an AF_INET6 socket may carry a v4-mapped
// address.
type Msg struct {
	Family uint8
	State  uint8
	// SrcPort and Src are the local port and address, DstPort and Dst the
	// remote ones.
	SrcPort, DstPort uint16
	Src, Dst         netip.Addr
	// IfIndex is the interface the socket is bound to, 0 if none.
	IfIndex uint32
	// Cookie is the kernel's identifier of the socket (idiag_cookie),
	// which a request about that one socket must carry.
	Cookie uint64
	// RQueue and WQueue are, for a LISTEN socket, the accept queue length
	// and its limit; for other sockets the bytes queued to read and send.
	RQueue, WQueue uint32
	UID            uint32
	// Inode is the socket's inode, 0 for a request socket (SYN_RECV) and
	// for an orphan (a socket no process holds any more).
	Inode uint32
	// V6Only is the INET_DIAG_SKV6ONLY attribute: an AF_INET6 listener that
	// does not take IPv4 connections. False when absent.
	V6Only bool
}

// ParseMsg decodes the payload of one SOCK_DIAG_BY_FAMILY reply (a struct
// inet_diag_msg and its attributes). It reads b in place and never
// allocates.
func ParseMsg(b []byte) (Msg, error) {
	var m Msg
	if len(b) < MsgLen {
		return m, fmt.Errorf("%w: %d bytes, want at least %d", ErrShortMsg, len(b), MsgLen)
	}
	m.Family = b[0]
	m.State = b[1]
	// struct inet_diag_sockid at offset 4: ports and addresses are in
	// network byte order, the rest in host order.
	m.SrcPort = binary.BigEndian.Uint16(b[4:6])
	m.DstPort = binary.BigEndian.Uint16(b[6:8])
	switch m.Family {
	case unix.AF_INET:
		m.Src = netip.AddrFrom4([4]byte(b[8:12]))
		m.Dst = netip.AddrFrom4([4]byte(b[24:28]))
	case unix.AF_INET6:
		m.Src = netip.AddrFrom16([16]byte(b[8:24]))
		m.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	default:
		return m, fmt.Errorf("%w: %d", ErrFamily, m.Family)
	}
	m.IfIndex = binary.NativeEndian.Uint32(b[40:44])
	// The cookie is two host-order u32s, low word first.
	m.Cookie = uint64(binary.NativeEndian.Uint32(b[44:48])) | uint64(binary.NativeEndian.Uint32(b[48:52]))<<32
	// b[52:56] is idiag_expires.
	m.RQueue = binary.NativeEndian.Uint32(b[56:60])
	m.WQueue = binary.NativeEndian.Uint32(b[60:64])
	m.UID = binary.NativeEndian.Uint32(b[64:68])
	m.Inode = binary.NativeEndian.Uint32(b[68:72])

	for a := b[MsgLen:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a[0:2]))
		typ := binary.NativeEndian.Uint16(a[2:4]) & nlaTypeMask
		if l < 4 || l > len(a) {
			return m, fmt.Errorf("%w: length %d with %d bytes left", ErrAttr, l, len(a))
		}
		if typ == AttrSKV6Only {
			if l < 5 {
				return m, fmt.Errorf("%w: INET_DIAG_SKV6ONLY of length %d", ErrAttr, l)
			}
			m.V6Only = a[4] != 0
		}
		l = (l + 3) &^ 3 // NLA_ALIGN
		if l >= len(a) {
			break
		}
		a = a[l:]
	}
	return m, nil
}

// PutReqV2 encodes a TCP dump request for family, asking only for sockets
// whose state bit is set in states, and no extensions.
func PutReqV2(b *[ReqV2Len]byte, family uint8, states uint32) {
	*b = [ReqV2Len]byte{}
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:8], states)
}

// PutReq encodes a legacy TCP dump request (struct inet_diag_req) asking
// for sockets of both address families whose state bit is set in states,
// and no extensions.
func PutReq(b *[ReqLen]byte, states uint32) {
	*b = [ReqLen]byte{}
	// idiag_family is not read by the kernel's dump (it sets AF_UNSPEC);
	// AF_INET is what ss and libnl put there.
	b[0] = unix.AF_INET
	binary.NativeEndian.PutUint32(b[52:56], states)
}

// Conn is the part of a *netlink.Conn a dump needs.
type Conn interface {
	Send(m netlink.Message) (netlink.Message, error)
	ReceiveIter() iter.Seq2[netlink.Message, error]
	SetDeadline(t time.Time) error
	Close() error
}

// Result describes one completed dump.
type Result struct {
	// Messages is the number of inet_diag messages passed on.
	Messages int
	// Interrupted is true when the kernel flagged the dump inconsistent
	// (NLM_F_DUMP_INTR): the table changed under it, so some sockets may
	// be missing or repeated. The caller restarts it.
	Interrupted bool
}

// aLongTimeAgo is a deadline in the past, to wake a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// Dump runs one SOCK_DIAG_BY_FAMILY dump of the TCP sockets of family
// whose state is in states and calls fn with each socket, parsed in place
// from the receive buffer. The connection's deadline follows ctx.
//
// Any error leaves c in an unknown state (part of a dump may still be
// queued): the caller should close it.
func Dump(ctx context.Context, c Conn, family uint8, states uint32, fn func(Msg)) (Result, error) {
	return DumpFiltered(ctx, c, family, states, nil, fn)
}

// DumpFiltered is Dump with a filter the kernel runs on every socket before
// sending it (an INET_DIAG_REQ_BYTECODE program, such as PortFilter
// builds); nil sends every socket in states.
func DumpFiltered(ctx context.Context, c Conn, family uint8, states uint32, filter []byte, fn func(Msg)) (Result, error) {
	var req [ReqV2Len]byte
	PutReqV2(&req, family, states)
	data := req[:]
	if len(filter) > 0 {
		data = appendFilter(data, filter)
	}
	return dump(ctx, c, ByFamily, data, fn)
}

// DumpInet runs one legacy TCPDIAG_GETSOCK dump of the TCP sockets of both
// address families whose state is in states, and calls fn with each
// socket, parsed in place from the receive buffer. The kernel answers a
// legacy request with the family left unspecified (AF_UNSPEC), so it walks
// its tables once for both families where two Dump calls walk them twice:
// for a state held in the established hash (SYN_RECV) that halves the
// work. Each socket comes once, with its own family; an IPv4 handshake to
// a dual-stack listener is an AF_INET6 socket with v4-mapped addresses,
// as in Dump(AF_INET6). Replies carry the request's type
// (TCPDiagGetSock) and the same struct inet_diag_msg.
//
// A kernel without the legacy request answers with an error for which
// LegacyRefused is true: fall back to one Dump per family. Any other
// error leaves c in an unknown state, as for Dump.
func DumpInet(ctx context.Context, c Conn, states uint32, fn func(Msg)) (Result, error) {
	var req [ReqLen]byte
	PutReq(&req, states)
	return dump(ctx, c, TCPDiagGetSock, req[:], fn)
}

// LegacyRefused reports whether err is the kernel refusing a legacy
// TCPDIAG_GETSOCK request: EOPNOTSUPP when sock_diag has no handler for
// it (inet_diag not built, or its compat handler gone), EINVAL when the
// kernel does not know the message type, ENOENT as for a missing handler.
// The connection is still usable: the refusal is the whole answer.
func LegacyRefused(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT)
}

// dump sends one dump request of type typ carrying req and passes each
// inet_diag_msg of the reply (of the same type) to fn.
func dump(ctx context.Context, c Conn, typ netlink.HeaderType, req []byte, fn func(Msg)) (Result, error) {
	var res Result
	if err := ctx.Err(); err != nil {
		return res, err
	}
	dl, _ := ctx.Deadline() // zero: no deadline
	if err := c.SetDeadline(dl); err != nil {
		return res, fmt.Errorf("sock_diag: %w", err)
	}
	if ctx.Done() != nil {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(fired)
			_ = c.SetDeadline(aLongTimeAgo)
		})
		defer func() {
			if !stop() {
				<-fired // never let it land on a later dump
			}
		}()
	}

	sent, err := c.Send(netlink.Message{
		Header: netlink.Header{Type: typ, Flags: netlink.Request | netlink.Dump},
		Data:   req,
	})
	if err != nil {
		return res, wrapErr(ctx, err)
	}

	// ReceiveIter follows the multipart dump to its NLMSG_DONE (which it
	// does not yield) and turns NLMSG_ERROR into an error. Breaking out
	// early makes it drain the rest of the dump.
	for m, err := range c.ReceiveIter() {
		if err != nil {
			return res, wrapErr(ctx, err)
		}
		if m.Header.Sequence != sent.Header.Sequence {
			return res, fmt.Errorf("sock_diag: %w: %d, sent %d", ErrSequence, m.Header.Sequence, sent.Header.Sequence)
		}
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			res.Interrupted = true
		}
		if m.Header.Type < nlmsgMinType {
			continue // an ACK or NOOP
		}
		if m.Header.Type != typ {
			return res, fmt.Errorf("sock_diag: %w: %d", ErrUnexpectedType, m.Header.Type)
		}
		d, err := ParseMsg(m.Data)
		if err != nil {
			return res, fmt.Errorf("sock_diag: %w", err)
		}
		res.Messages++
		fn(d)
	}
	return res, nil
}

// wrapErr reports a failed dump, as the context's error when the context
// ended it.
func wrapErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("sock_diag: %w (%w)", cerr, err)
	}
	return fmt.Errorf("sock_diag: %w", err)
}

// Unsupported reports whether err says the kernel has no inet_diag handler
// for the request (no IPv6, or no inet_diag at all).
func Unsupported(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT)
}

// Dial opens a NETLINK_SOCK_DIAG connection in the calling thread's network
// namespace, sized for dumps.
func Dial() (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{MessageBufferSize: MessageBufferSize})
	if err != nil {
		return nil, err
	}
	if err := c.SetReadBuffer(readBufferSize); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

package collector

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

// sock_diag wire format (include/uapi/linux/inet_diag.h, sock_diag.h).
const (
	// sockDiagByFamily is the request and reply message type.
	sockDiagByFamily = netlink.HeaderType(unix.SOCK_DIAG_BY_FAMILY)

	// inetDiagReqV2Len is sizeof(struct inet_diag_req_v2):
	// family, protocol, ext, pad (1 byte each), states (u32), sockid (48).
	inetDiagReqV2Len = 56
	// inetDiagMsgLen is sizeof(struct inet_diag_msg): family, state, timer,
	// retrans (1 byte each), sockid (48), expires, rqueue, wqueue, uid,
	// inode (u32 each). Attributes follow.
	inetDiagMsgLen = 72

	// inetDiagSKV6Only is the INET_DIAG_SKV6ONLY attribute (u8), sent for
	// AF_INET6 sockets in LISTEN or CLOSE.
	inetDiagSKV6Only = 11

	// TCP states (include/net/tcp_states.h) and their idiag_states bits.
	tcpSynRecv  = 3
	tcpListen   = 10
	tcpfSynRecv = 1 << tcpSynRecv
	tcpfListen  = 1 << tcpListen

	// nlaTypeMask strips the nested and byte-order flags of an attribute
	// type.
	nlaTypeMask = 0x3fff
	// nlmsgMinType is NLMSG_MIN_TYPE: types below it are netlink control
	// messages.
	nlmsgMinType = 0x10
)

// Buffer sizes of the sock_diag connection.
const (
	// messageBufferSize is the userspace receive buffer. The kernel fills
	// dump datagrams up to the size of the largest buffer a reader has
	// offered, capped near 32 KiB: a 32 KiB buffer gets the fewest
	// syscalls per dump.
	messageBufferSize = 32 << 10
	// readBufferSize is the socket receive buffer asked for (capped by
	// net.core.rmem_max).
	readBufferSize = 1 << 20
)

var (
	errShortInetDiag   = errors.New("inet_diag message too short")
	errInetDiagFamily  = errors.New("inet_diag message of unknown address family")
	errInetDiagAttr    = errors.New("malformed inet_diag attribute")
	errSequence        = errors.New("netlink reply with a foreign sequence number")
	errUnexpectedType  = errors.New("unexpected netlink message type")
	errDumpInterrupted = errors.New("sock_diag dump kept being interrupted (NLM_F_DUMP_INTR)")
)

// inetDiagMsg is the part of one struct inet_diag_msg the listener source
// uses. Addresses are as the kernel reports them: an AF_INET6 socket may
// carry a v4-mapped address.
type inetDiagMsg struct {
	Family uint8
	State  uint8
	// SrcPort and Src are the local port and address, DstPort and Dst the
	// remote ones.
	SrcPort, DstPort uint16
	Src, Dst         netip.Addr
	// IfIndex is the interface the socket is bound to, 0 if none.
	IfIndex uint32
	// RQueue and WQueue are, for a LISTEN socket, the accept queue length
	// and its limit; for other sockets the bytes queued to read and send.
	RQueue, WQueue uint32
	UID            uint32
	// Inode is the socket's inode, 0 for a request socket (SYN_RECV).
	Inode uint32
	// V6Only is the INET_DIAG_SKV6ONLY attribute: an AF_INET6 listener that
	// does not take IPv4 connections. False when absent.
	V6Only bool
}

// parseInetDiagMsg decodes the payload of one SOCK_DIAG_BY_FAMILY reply
// (a struct inet_diag_msg and its attributes). It reads b in place and
// never allocates.
func parseInetDiagMsg(b []byte) (inetDiagMsg, error) {
	var m inetDiagMsg
	if len(b) < inetDiagMsgLen {
		return m, fmt.Errorf("%w: %d bytes, want at least %d", errShortInetDiag, len(b), inetDiagMsgLen)
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
		return m, fmt.Errorf("%w: %d", errInetDiagFamily, m.Family)
	}
	m.IfIndex = binary.NativeEndian.Uint32(b[40:44])
	// b[44:52] is the cookie, b[52:56] idiag_expires.
	m.RQueue = binary.NativeEndian.Uint32(b[56:60])
	m.WQueue = binary.NativeEndian.Uint32(b[60:64])
	m.UID = binary.NativeEndian.Uint32(b[64:68])
	m.Inode = binary.NativeEndian.Uint32(b[68:72])

	for a := b[inetDiagMsgLen:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a[0:2]))
		typ := binary.NativeEndian.Uint16(a[2:4]) & nlaTypeMask
		if l < 4 || l > len(a) {
			return m, fmt.Errorf("%w: length %d with %d bytes left", errInetDiagAttr, l, len(a))
		}
		if typ == inetDiagSKV6Only {
			if l < 5 {
				return m, fmt.Errorf("%w: INET_DIAG_SKV6ONLY of length %d", errInetDiagAttr, l)
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

// putInetDiagReqV2 encodes a TCP dump request for family, asking only for
// sockets whose state bit is set in states, and no extensions.
func putInetDiagReqV2(b *[inetDiagReqV2Len]byte, family uint8, states uint32) {
	*b = [inetDiagReqV2Len]byte{}
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:8], states)
}

// diagConn is the part of a *netlink.Conn a sock_diag dump needs.
type diagConn interface {
	Send(m netlink.Message) (netlink.Message, error)
	ReceiveIter() iter.Seq2[netlink.Message, error]
	SetDeadline(t time.Time) error
	Close() error
}

// dumpResult describes one completed dump.
type dumpResult struct {
	// Messages is the number of inet_diag messages passed on.
	Messages int
	// Interrupted is true when the kernel flagged the dump inconsistent
	// (NLM_F_DUMP_INTR): the table changed under it, so some sockets may
	// be missing or repeated. The caller restarts it.
	Interrupted bool
}

// aLongTimeAgo is a deadline in the past, to wake a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// dumpInetDiag runs one SOCK_DIAG_BY_FAMILY dump of the TCP sockets of
// family whose state is in states and calls fn with each socket, parsed in
// place from the receive buffer. The connection's deadline follows ctx.
//
// Any error leaves c in an unknown state (part of a dump may still be
// queued): the caller should close it.
func dumpInetDiag(ctx context.Context, c diagConn, family uint8, states uint32, fn func(inetDiagMsg)) (dumpResult, error) {
	var res dumpResult
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

	var req [inetDiagReqV2Len]byte
	putInetDiagReqV2(&req, family, states)
	sent, err := c.Send(netlink.Message{
		Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request | netlink.Dump},
		Data:   req[:],
	})
	if err != nil {
		return res, wrapDumpErr(ctx, err)
	}

	// ReceiveIter follows the multipart dump to its NLMSG_DONE (which it
	// does not yield) and turns NLMSG_ERROR into an error. Breaking out
	// early makes it drain the rest of the dump.
	for m, err := range c.ReceiveIter() {
		if err != nil {
			return res, wrapDumpErr(ctx, err)
		}
		if m.Header.Sequence != sent.Header.Sequence {
			return res, fmt.Errorf("sock_diag: %w: %d, sent %d", errSequence, m.Header.Sequence, sent.Header.Sequence)
		}
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			res.Interrupted = true
		}
		if m.Header.Type < nlmsgMinType {
			continue // an ACK or NOOP
		}
		if m.Header.Type != sockDiagByFamily {
			return res, fmt.Errorf("sock_diag: %w: %d", errUnexpectedType, m.Header.Type)
		}
		d, err := parseInetDiagMsg(m.Data)
		if err != nil {
			return res, fmt.Errorf("sock_diag: %w", err)
		}
		res.Messages++
		fn(d)
	}
	return res, nil
}

// wrapDumpErr reports a failed dump, as the context's error when the
// context ended it.
func wrapDumpErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("sock_diag: %w (%w)", cerr, err)
	}
	return fmt.Errorf("sock_diag: %w", err)
}

// dialSockDiag opens a NETLINK_SOCK_DIAG connection in the calling
// thread's network namespace, sized for dumps.
func dialSockDiag() (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{MessageBufferSize: messageBufferSize})
	if err != nil {
		return nil, err
	}
	if err := c.SetReadBuffer(readBufferSize); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Package sockdiagtest fakes the kernel's side of sock_diag for unit tests:
// messages encoded as the kernel encodes them, multipart dump replies and
// netlink errors for github.com/mdlayher/netlink/nltest, and a connection
// that records its deadlines and closes.
package sockdiagtest

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

// Request is a dump request as the kernel reads it.
type Request struct {
	// Legacy is true for TCPDIAG_GETSOCK (both families at once), false
	// for SOCK_DIAG_BY_FAMILY.
	Legacy bool
	// Family is the family asked for: AF_UNSPEC for a legacy request.
	Family uint8
	// States is idiag_states.
	States uint32
}

// ParseRequest decodes a dump request: an inet_diag_req_v2 in a
// SOCK_DIAG_BY_FAMILY message, or an inet_diag_req in a TCPDIAG_GETSOCK
// one, for TCP. It reports false for anything else.
func ParseRequest(m netlink.Message) (Request, bool) {
	switch {
	case m.Header.Type == sockdiag.ByFamily && len(m.Data) == sockdiag.ReqV2Len && m.Data[1] == unix.IPPROTO_TCP:
		return Request{Family: m.Data[0], States: binary.NativeEndian.Uint32(m.Data[4:8])}, true
	case m.Header.Type == sockdiag.TCPDiagGetSock && len(m.Data) == sockdiag.ReqLen:
		return Request{Legacy: true, Family: unix.AF_UNSPEC, States: binary.NativeEndian.Uint32(m.Data[52:56])}, true
	}
	return Request{}, false
}

// Marshal encodes m as the kernel would: the fixed struct, then
// INET_DIAG_SHUTDOWN and, for an AF_INET6 listener, INET_DIAG_SKV6ONLY.
func Marshal(m sockdiag.Msg) []byte {
	b := make([]byte, sockdiag.MsgLen, sockdiag.MsgLen+16)
	b[0], b[1] = m.Family, m.State
	binary.BigEndian.PutUint16(b[4:], m.SrcPort)
	binary.BigEndian.PutUint16(b[6:], m.DstPort)
	for off, a := range map[int]netip.Addr{8: m.Src, 24: m.Dst} {
		switch {
		case !a.IsValid():
		case m.Family == unix.AF_INET:
			a4 := a.As4()
			copy(b[off:], a4[:])
		default:
			a16 := a.As16()
			copy(b[off:], a16[:])
		}
	}
	binary.NativeEndian.PutUint32(b[40:], m.IfIndex)
	binary.NativeEndian.PutUint32(b[44:], uint32(m.Cookie))
	binary.NativeEndian.PutUint32(b[48:], uint32(m.Cookie>>32))
	binary.NativeEndian.PutUint32(b[56:], m.RQueue)
	binary.NativeEndian.PutUint32(b[60:], m.WQueue)
	binary.NativeEndian.PutUint32(b[64:], m.UID)
	binary.NativeEndian.PutUint32(b[68:], m.Inode)
	b = append(b, 5, 0, 8, 0, 0, 0, 0, 0) // INET_DIAG_SHUTDOWN, padded
	if m.Family == unix.AF_INET6 && m.State == sockdiag.TCPListen {
		var v byte
		if m.V6Only {
			v = 1
		}
		b = append(b, 5, 0, sockdiag.AttrSKV6Only, 0, v, 0, 0, 0)
	}
	return b
}

// Conn is an nltest connection that records deadlines and closes.
type Conn struct {
	*netlink.Conn
	// Deadlines and Closed are read once the dumps are over.
	Deadlines []time.Time
	Closed    bool
	// OnDeadline, when set, is called with every deadline set.
	OnDeadline func(time.Time)

	mu      sync.Mutex
	expired chan struct{} // closed by a deadline in the past
}

// Dial returns a Conn answering requests with fn (see nltest.Dial).
func Dial(fn nltest.Func) *Conn { return &Conn{Conn: nltest.Dial(fn), expired: make(chan struct{})} }

// SetDeadline records t. A deadline in the past (how a cancelled dump
// wakes a blocked read) closes Expired.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.OnDeadline != nil {
		c.OnDeadline(t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Deadlines = append(c.Deadlines, t)
	if !t.IsZero() && t.Before(time.Now()) {
		select {
		case <-c.expired:
		default:
			close(c.expired)
		}
	}
	return nil
}

// Expired is closed once the connection's deadline was set in the past: a
// fake kernel that stalls a dump returns os.ErrDeadlineExceeded then, as
// the socket would.
func (c *Conn) Expired() <-chan struct{} { return c.expired }

// Close records the close and closes the nltest connection.
func (c *Conn) Close() error {
	c.Closed = true
	return c.Conn.Close()
}

// DumpReply answers req with msgs as a multipart dump ending in
// NLMSG_DONE, split over several datagrams by nltest. The messages carry
// the request's type, as the kernel's do (SOCK_DIAG_BY_FAMILY, or the
// legacy TCPDIAG_GETSOCK).
func DumpReply(req netlink.Message, flags netlink.HeaderFlags, msgs ...[]byte) []netlink.Message {
	out := make([]netlink.Message, 0, len(msgs)+1)
	for _, d := range msgs {
		out = append(out, netlink.Message{
			Header: netlink.Header{Type: req.Header.Type, Flags: netlink.Multi | flags, Sequence: req.Header.Sequence, PID: nltest.PID},
			Data:   d,
		})
	}
	return append(out, netlink.Message{
		Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi | flags, Sequence: req.Header.Sequence, PID: nltest.PID},
		Data:   []byte{0, 0, 0, 0},
	})
}

// KernelError answers req with an NLMSG_ERROR carrying errno, as the
// kernel does (without the request's flags, which nltest.Error would copy
// and which the netlink package would then read as extended ACK flags).
func KernelError(req netlink.Message, errno unix.Errno) ([]netlink.Message, error) {
	req.Header.Flags = 0
	return nltest.Error(int(errno), []netlink.Message{req})
}

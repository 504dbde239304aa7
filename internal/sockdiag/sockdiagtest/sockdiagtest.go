// Package sockdiagtest fakes the kernel's side of sock_diag for unit tests:
// messages encoded as the kernel encodes them, multipart dump replies and
// netlink errors for github.com/mdlayher/netlink/nltest, and a connection
// that records its deadlines and closes.
package sockdiagtest

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

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
	Deadlines []time.Time
	Closed    bool
	// OnDeadline, when set, is called with every deadline set.
	OnDeadline func(time.Time)
}

// Dial returns a Conn answering requests with fn (see nltest.Dial).
func Dial(fn nltest.Func) *Conn { return &Conn{Conn: nltest.Dial(fn)} }

// SetDeadline records t.
func (c *Conn) SetDeadline(t time.Time) error {
	c.Deadlines = append(c.Deadlines, t)
	if c.OnDeadline != nil {
		c.OnDeadline(t)
	}
	return nil
}

// Close records the close and closes the nltest connection.
func (c *Conn) Close() error {
	c.Closed = true
	return c.Conn.Close()
}

// DumpReply answers req with msgs as a multipart dump ending in
// NLMSG_DONE, split over several datagrams by nltest.
func DumpReply(req netlink.Message, flags netlink.HeaderFlags, msgs ...[]byte) []netlink.Message {
	out := make([]netlink.Message, 0, len(msgs)+1)
	for _, d := range msgs {
		out = append(out, netlink.Message{
			Header: netlink.Header{Type: sockdiag.ByFamily, Flags: netlink.Multi | flags, Sequence: req.Header.Sequence, PID: nltest.PID},
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

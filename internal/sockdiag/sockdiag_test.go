package sockdiag_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/sockdiag/sockdiagtest"
)

// equateAddr lets cmp compare netip.Addr values.
var equateAddr = cmpopts.EquateComparable(netip.Addr{})

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "netlink", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseInetDiagMsgFixtures(t *testing.T) {
	// Captured from a 6.18 kernel by TestCaptureNetlinkFixtures (package
	// collector). Inodes, cookies and client ports change with every
	// capture.
	ignore := cmpopts.IgnoreFields(sockdiag.Msg{}, "Inode", "DstPort", "Cookie")
	tests := []struct {
		file string
		want sockdiag.Msg
	}{
		{"listen-v4.bin", sockdiag.Msg{
			Family: unix.AF_INET, State: sockdiag.TCPListen, SrcPort: 7001,
			Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("0.0.0.0"),
			RQueue: 3, WQueue: 16,
		}},
		{"listen-v6-dualstack.bin", sockdiag.Msg{
			Family: unix.AF_INET6, State: sockdiag.TCPListen, SrcPort: 7002,
			Src: netip.IPv6Unspecified(), Dst: netip.IPv6Unspecified(),
			WQueue: 16,
		}},
		{"listen-v6only.bin", sockdiag.Msg{
			Family: unix.AF_INET6, State: sockdiag.TCPListen, SrcPort: 7003,
			Src: netip.IPv6Loopback(), Dst: netip.IPv6Unspecified(),
			WQueue: 16, V6Only: true,
		}},
		{"synrecv-v4.bin", sockdiag.Msg{
			Family: unix.AF_INET, State: sockdiag.TCPSynRecv, SrcPort: 7004,
			Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"),
		}},
		{"synrecv-v4mapped.bin", sockdiag.Msg{
			Family: unix.AF_INET6, State: sockdiag.TCPSynRecv, SrcPort: 7002,
			Src: netip.MustParseAddr("::ffff:127.0.0.1"), Dst: netip.MustParseAddr("::ffff:127.0.0.1"),
		}},
		{"synrecv-v6.bin", sockdiag.Msg{
			Family: unix.AF_INET6, State: sockdiag.TCPSynRecv, SrcPort: 7003,
			Src: netip.IPv6Loopback(), Dst: netip.IPv6Loopback(),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := sockdiag.ParseMsg(readFixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, ignore, equateAddr); diff != "" {
				t.Errorf("sockdiag.ParseMsg (-want +got):\n%s", diff)
			}
			if got.Cookie == 0 {
				t.Error("socket without a cookie")
			}
			if tt.want.State == sockdiag.TCPListen && got.Inode == 0 {
				t.Error("LISTEN socket with inode 0")
			}
			if tt.want.State == sockdiag.TCPSynRecv && got.Inode != 0 {
				t.Errorf("request socket with inode %d, want 0", got.Inode)
			}
		})
	}
}

func TestParseInetDiagMsgErrors(t *testing.T) {
	valid := sockdiagtest.Marshal(sockdiag.Msg{Family: unix.AF_INET6, State: sockdiag.TCPListen, V6Only: true})
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, sockdiag.ErrShortMsg},
		{"short", valid[:sockdiag.MsgLen-1], sockdiag.ErrShortMsg},
		{"family", append([]byte{unix.AF_UNIX}, valid[1:]...), sockdiag.ErrFamily},
		{"attr length below header", append(valid[:sockdiag.MsgLen:sockdiag.MsgLen], 3, 0, 8, 0), sockdiag.ErrAttr},
		{"attr past end", append(valid[:sockdiag.MsgLen:sockdiag.MsgLen], 9, 0, 8, 0, 0), sockdiag.ErrAttr},
		{"v6only without value", append(valid[:sockdiag.MsgLen:sockdiag.MsgLen], 4, 0, sockdiag.AttrSKV6Only, 0), sockdiag.ErrAttr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sockdiag.ParseMsg(tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseInetDiagMsgRoundTrip(t *testing.T) {
	want := sockdiag.Msg{
		Family: unix.AF_INET6, State: sockdiag.TCPListen, SrcPort: 6379, DstPort: 0,
		Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.IPv6Unspecified(),
		IfIndex: 3, Cookie: 0x1234_0000_5678, RQueue: 129, WQueue: 128, UID: 999, Inode: 4242, V6Only: true,
	}
	b := sockdiagtest.Marshal(want)
	// Trailing bytes shorter than an attribute header are padding.
	got, err := sockdiag.ParseMsg(append(b, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, equateAddr); diff != "" {
		t.Errorf("sockdiag.ParseMsg (-want +got):\n%s", diff)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = sockdiag.ParseMsg(b) }); n != 0 {
		t.Errorf("sockdiag.ParseMsg allocates %v times, want 0", n)
	}
}

func FuzzParseInetDiagMsg(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "netlink", "*.bin"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed fixtures: %v", err)
	}
	for _, name := range files {
		f.Add(readFixture(f, filepath.Base(name)))
	}
	f.Add(sockdiagtest.Marshal(sockdiag.Msg{Family: unix.AF_INET, State: sockdiag.TCPSynRecv}))
	f.Add([]byte{})
	f.Add(make([]byte, sockdiag.MsgLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 64<<10 {
			return // larger than any datagram the kernel sends
		}
		m, err := sockdiag.ParseMsg(b)
		if err != nil {
			return
		}
		if len(b) < sockdiag.MsgLen {
			t.Fatalf("parsed a %d-byte message", len(b))
		}
		if m.Family != unix.AF_INET && m.Family != unix.AF_INET6 {
			t.Fatalf("parsed family %d", m.Family)
		}
		if m.Src.Is4() != (m.Family == unix.AF_INET) {
			t.Fatalf("family %d with address %v", m.Family, m.Src)
		}
		// The fields read must encode back to the bytes they came from.
		again := sockdiagtest.Marshal(m)
		for _, r := range [][2]int{{0, 2}, {4, 8}, {40, 52}, {56, 72}} {
			if string(again[r[0]:r[1]]) != string(b[r[0]:r[1]]) {
				t.Fatalf("bytes %d-%d: parsed %x from %x", r[0], r[1], again[r[0]:r[1]], b[r[0]:r[1]])
			}
		}
	})
}

func TestDumpInetDiag(t *testing.T) {
	v4 := sockdiag.Msg{Family: unix.AF_INET, State: sockdiag.TCPListen, SrcPort: 80,
		Src: netip.MustParseAddr("0.0.0.0"), Dst: netip.MustParseAddr("0.0.0.0"), RQueue: 1, WQueue: 128, Inode: 1}
	other := v4
	other.SrcPort, other.Inode = 443, 2
	deadline := time.Now().Add(time.Minute)

	tests := []struct {
		name    string
		reply   func(req netlink.Message) ([]netlink.Message, error)
		want    []sockdiag.Msg
		wantRes sockdiag.Result
		wantErr error
	}{
		{
			name: "multipart",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				return sockdiagtest.DumpReply(req, 0, sockdiagtest.Marshal(v4), sockdiagtest.Marshal(other), sockdiagtest.Marshal(v4)), nil
			},
			want:    []sockdiag.Msg{v4, other, v4},
			wantRes: sockdiag.Result{Messages: 3},
		},
		{
			name: "empty",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				return sockdiagtest.DumpReply(req, 0), nil
			},
		},
		{
			name: "interrupted",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				return sockdiagtest.DumpReply(req, netlink.DumpInterrupted, sockdiagtest.Marshal(v4), sockdiagtest.Marshal(other)), nil
			},
			want:    []sockdiag.Msg{v4, other},
			wantRes: sockdiag.Result{Messages: 2, Interrupted: true},
		},
		{
			name: "netlink error",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				return sockdiagtest.KernelError(req, unix.ENOENT)
			},
			wantErr: unix.ENOENT,
		},
		{
			name: "receive buffer overrun",
			reply: func(netlink.Message) ([]netlink.Message, error) {
				return nil, unix.ENOBUFS
			},
			wantErr: unix.ENOBUFS,
		},
		{
			name: "short message",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				return sockdiagtest.DumpReply(req, 0, sockdiagtest.Marshal(v4), make([]byte, 10)), nil
			},
			want:    []sockdiag.Msg{v4},
			wantRes: sockdiag.Result{Messages: 1},
			wantErr: sockdiag.ErrShortMsg,
		},
		{
			name: "foreign sequence",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				req.Header.Sequence++
				return sockdiagtest.DumpReply(req, 0, sockdiagtest.Marshal(v4), sockdiagtest.Marshal(v4)), nil
			},
			wantErr: sockdiag.ErrSequence,
		},
		{
			name: "unexpected type",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				msgs := sockdiagtest.DumpReply(req, 0, sockdiagtest.Marshal(v4), sockdiagtest.Marshal(v4))
				msgs[0].Header.Type = 0x42
				return msgs, nil
			},
			wantErr: sockdiag.ErrUnexpectedType,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reqs int
			c := sockdiagtest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
				reqs++
				if len(req) != 1 {
					t.Fatalf("got %d request messages, want 1", len(req))
				}
				r := req[0]
				if r.Header.Type != sockdiag.ByFamily || r.Header.Flags != netlink.Request|netlink.Dump {
					t.Errorf("request header %+v, want SOCK_DIAG_BY_FAMILY with Request|Dump", r.Header)
				}
				var want [sockdiag.ReqV2Len]byte
				sockdiag.PutReqV2(&want, unix.AF_INET, sockdiag.TCPFListen)
				if diff := cmp.Diff(want[:], r.Data); diff != "" {
					t.Errorf("inet_diag_req_v2 (-want +got):\n%s", diff)
				}
				return tt.reply(r)
			})
			defer c.Close()
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			defer cancel()

			var got []sockdiag.Msg
			res, err := sockdiag.Dump(ctx, c, unix.AF_INET, sockdiag.TCPFListen, func(m sockdiag.Msg) { got = append(got, m) })
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil {
				if diff := cmp.Diff(tt.wantRes, res); diff != "" {
					t.Errorf("result (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty(), equateAddr); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			if reqs != 1 {
				t.Errorf("sent %d requests, want 1", reqs)
			}
			if len(c.Deadlines) == 0 || !c.Deadlines[0].Equal(deadline) {
				t.Errorf("deadlines %v, want the context's %v first", c.Deadlines, deadline)
			}
		})
	}
}

func TestDumpInetDiagCancelled(t *testing.T) {
	c := sockdiagtest.Dial(func([]netlink.Message) ([]netlink.Message, error) {
		t.Fatal("request sent with a cancelled context")
		return nil, nil
	})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := sockdiag.Dump(ctx, c, unix.AF_INET, sockdiag.TCPFListen, func(sockdiag.Msg) {})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestPutInetDiagReqV2(t *testing.T) {
	var b [sockdiag.ReqV2Len]byte
	sockdiag.PutReqV2(&b, unix.AF_INET6, sockdiag.TCPFSynRecv)
	want := make([]byte, sockdiag.ReqV2Len)
	want[0], want[1] = unix.AF_INET6, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(want[4:], 1<<3)
	if diff := cmp.Diff(want, b[:]); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}

// TestDumpInet checks the legacy one-walk dump against a fake kernel: the
// request (TCPDIAG_GETSOCK, struct inet_diag_req), replies of both
// families carrying the request's type, and what a kernel refusing it
// answers.
func TestDumpInet(t *testing.T) {
	v4 := sockdiag.Msg{Family: unix.AF_INET, State: sockdiag.TCPSynRecv, SrcPort: 6379,
		Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.2"), DstPort: 40000}
	v6 := sockdiag.Msg{Family: unix.AF_INET6, State: sockdiag.TCPSynRecv, SrcPort: 6379,
		Src: netip.MustParseAddr("::ffff:127.0.0.1"), Dst: netip.MustParseAddr("::ffff:127.0.0.3"), DstPort: 40001}
	tests := []struct {
		name        string
		reply       func(req netlink.Message) ([]netlink.Message, error)
		want        []sockdiag.Msg
		wantErr     error
		wantRefused bool
	}{
		{
			name: "both families",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				return sockdiagtest.DumpReply(req, 0, sockdiagtest.Marshal(v4), sockdiagtest.Marshal(v6)), nil
			},
			want: []sockdiag.Msg{v4, v6},
		},
		{
			name: "reply of another type",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				msgs := sockdiagtest.DumpReply(req, 0, sockdiagtest.Marshal(v4))
				msgs[0].Header.Type = sockdiag.ByFamily
				return msgs, nil
			},
			wantErr: sockdiag.ErrUnexpectedType,
		},
		{
			name: "no compat handler",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				return sockdiagtest.KernelError(req, unix.EOPNOTSUPP)
			},
			wantErr: unix.EOPNOTSUPP, wantRefused: true,
		},
		{
			name: "unknown type",
			reply: func(req netlink.Message) ([]netlink.Message, error) {
				return sockdiagtest.KernelError(req, unix.EINVAL)
			},
			wantErr: unix.EINVAL, wantRefused: true,
		},
		{
			name: "not refused: overrun",
			reply: func(netlink.Message) ([]netlink.Message, error) {
				return nil, unix.ENOBUFS
			},
			wantErr: unix.ENOBUFS,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sockdiagtest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
				r := req[0]
				if r.Header.Type != sockdiag.TCPDiagGetSock || r.Header.Flags != netlink.Request|netlink.Dump {
					t.Errorf("request header %+v, want TCPDIAG_GETSOCK with Request|Dump", r.Header)
				}
				var want [sockdiag.ReqLen]byte
				sockdiag.PutReq(&want, sockdiag.TCPFSynRecv)
				if diff := cmp.Diff(want[:], r.Data); diff != "" {
					t.Errorf("inet_diag_req (-want +got):\n%s", diff)
				}
				return tt.reply(r)
			})
			defer c.Close()
			var got []sockdiag.Msg
			_, err := sockdiag.DumpInet(context.Background(), c, sockdiag.TCPFSynRecv, func(m sockdiag.Msg) { got = append(got, m) })
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if sockdiag.LegacyRefused(err) != tt.wantRefused {
				t.Errorf("LegacyRefused(%v) = %v, want %v", err, !tt.wantRefused, tt.wantRefused)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty(), equateAddr); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPutInetDiagReq(t *testing.T) {
	var b [sockdiag.ReqLen]byte
	sockdiag.PutReq(&b, sockdiag.TCPFSynRecv|sockdiag.TCPFListen)
	// struct inet_diag_req: family, src_len, dst_len, ext, sockid (48),
	// states, dbs.
	want := make([]byte, sockdiag.ReqLen)
	want[0] = unix.AF_INET
	binary.NativeEndian.PutUint32(want[52:], 1<<3|1<<10)
	if diff := cmp.Diff(want, b[:]); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}

package sockdiag_test

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

func TestPortFilter(t *testing.T) {
	// One port: S_EQ (yes: past the port op, no: past the end), as ss
	// encodes "sport = :6379".
	one, err := sockdiag.PortFilter([]uint16{6379})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{11, 8, 12, 0, 0, 0, 0, 0}
	binary.NativeEndian.PutUint16(want[6:], 6379)
	if diff := cmp.Diff(want, one); diff != "" {
		t.Errorf("one port (-want +got):\n%s", diff)
	}
	for _, ports := range [][]uint16{{6379}, {6379, 6380}, {22, 6379, 6379, 443, 16379}, {65535, 1}} {
		f, err := sockdiag.PortFilter(ports)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []uint16{0, 1, 22, 80, 443, 6379, 6380, 6381, 16379, 65535} {
			if got := sockdiag.RunFilter(f, p); got != slices.Contains(ports, p) {
				t.Errorf("filter of %v passes %d: %v", ports, p, got)
			}
		}
	}
	if _, err := sockdiag.PortFilter(nil); err == nil || !strings.Contains(err.Error(), "no port") {
		t.Errorf("no port: %v", err)
	}
	many := make([]uint16, sockdiag.MaxFilterPorts+1)
	for i := range many {
		many[i] = uint16(i + 1)
	}
	if _, err := sockdiag.PortFilter(many); err == nil {
		t.Error("no error for too many ports")
	}
	if f, err := sockdiag.PortFilter(many[:sockdiag.MaxFilterPorts]); err != nil || !sockdiag.RunFilter(f, sockdiag.MaxFilterPorts) || sockdiag.RunFilter(f, sockdiag.MaxFilterPorts+1) {
		t.Errorf("the most ports: %v", err)
	}
}

// FuzzPortFilter: the program passes exactly the ports it was built for.
func FuzzPortFilter(f *testing.F) {
	f.Add([]byte{0x18, 0xeb}, uint16(6379))
	f.Add([]byte{0, 22, 0x18, 0xeb, 0x18, 0xec}, uint16(6380))
	f.Add([]byte{1, 0}, uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, probe uint16) {
		if len(b) > 2*sockdiag.MaxFilterPorts {
			return
		}
		var ports []uint16
		for i := 0; i+1 < len(b); i += 2 {
			ports = append(ports, binary.BigEndian.Uint16(b[i:]))
		}
		prog, err := sockdiag.PortFilter(ports)
		if len(ports) == 0 {
			if err == nil {
				t.Fatal("a filter of no port")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range append(ports, probe) {
			if got := sockdiag.RunFilter(prog, p); got != slices.Contains(ports, p) {
				t.Fatalf("filter of %v passes %d: %v", ports, p, got)
			}
		}
	})
}

// FuzzRunFilter: any program ends, without panicking.
func FuzzRunFilter(f *testing.F) {
	one, _ := sockdiag.PortFilter([]uint16{6379, 6380})
	f.Add(one, uint16(6380))
	f.Add([]byte{1, 4, 0, 0}, uint16(1))
	f.Add([]byte{11, 8, 12}, uint16(0))
	f.Fuzz(func(t *testing.T, prog []byte, port uint16) {
		if len(prog) > 64<<10 {
			return
		}
		sockdiag.RunFilter(prog, port)
	})
}

func TestListenersLookup(t *testing.T) {
	lsn := func(fam uint8, addr string, port uint16, v6only bool) sockdiag.Msg {
		return sockdiag.Msg{Family: fam, State: sockdiag.TCPListen, Src: netip.MustParseAddr(addr), SrcPort: port, V6Only: v6only}
	}
	var l sockdiag.Listeners
	for _, m := range []sockdiag.Msg{
		lsn(unix.AF_INET, "0.0.0.0", 6379, false),
		lsn(unix.AF_INET, "0.0.0.0", 6379, false),
		lsn(unix.AF_INET, "10.0.0.5", 6379, false),
		lsn(unix.AF_INET6, "::", 6380, false),
		lsn(unix.AF_INET6, "::", 6381, true),
		lsn(unix.AF_INET6, "::ffff:10.0.0.6", 6382, false),
		{Family: unix.AF_INET, State: sockdiag.TCPEstablished, Src: netip.MustParseAddr("10.0.0.5"), SrcPort: 6379},
	} {
		l.Add(m)
	}
	if l.Len() != 5 {
		t.Fatalf("%d listeners, want 5", l.Len())
	}
	if got := l.At(0); got.Sockets != 2 || got.DualStack {
		t.Errorf("0.0.0.0:6379: %+v", got)
	}
	for _, tt := range []struct {
		addr string
		port uint16
		want string // "" for none
	}{
		{"10.0.0.5", 6379, "10.0.0.5:6379"},
		{"10.0.0.9", 6379, "0.0.0.0:6379"},
		{"10.0.0.9", 6380, "[::]:6380"}, // dual-stack takes IPv4
		{"2001:db8::1", 6380, "[::]:6380"},
		{"10.0.0.9", 6381, ""}, // v6-only does not
		{"2001:db8::1", 6381, "[::]:6381"},
		{"10.0.0.6", 6382, "10.0.0.6:6382"}, // a mapped listener, unmapped
		{"2001:db8::1", 6379, ""},
		{"10.0.0.5", 22, ""},
	} {
		i, ok := l.Lookup(netip.MustParseAddr(tt.addr), tt.port)
		got := ""
		if ok {
			got = netip.AddrPortFrom(l.At(i).Addr, l.At(i).Port).String()
		}
		if got != tt.want {
			t.Errorf("Lookup(%s, %d) = %q, want %q", tt.addr, tt.port, got, tt.want)
		}
	}
	l.Reset()
	if _, ok := l.Lookup(netip.MustParseAddr("10.0.0.5"), 6379); ok || l.Len() != 0 {
		t.Error("Reset left listeners")
	}
}

//go:build linux

package sockdiag_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

// TestPortFilterInKernel: the kernel accepts PortFilter's program (its
// audit refuses a malformed one with EINVAL) and sends only the sockets
// whose local port it names, listening and established alike.
func TestPortFilterInKernel(t *testing.T) {
	ns := netnstest.New(t)
	ports := []int{7301, 7302, 7303}
	var lns []net.Listener
	var p pairs
	defer func() {
		p.close()
		for _, l := range lns {
			l.Close()
		}
	}()
	if err := ns.Do(func() error {
		for _, port := range ports {
			ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return err
			}
			lns = append(lns, ln)
			if err := p.connect(ln, ln.Addr().String(), 3); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		ports  []uint16
		want   int
		wantBy map[uint16]int
	}{
		{"no filter", nil, 3 + 9 + 9, nil}, // listeners, server and client sides
		{"one port", []uint16{7302}, 1 + 3, map[uint16]int{7302: 4}},
		{"two ports", []uint16{7303, 7301}, 2 + 6, map[uint16]int{7301: 4, 7303: 4}},
		{"a port nobody uses", []uint16{7399}, 0, map[uint16]int{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var filter []byte
			if tt.ports != nil {
				var err error
				if filter, err = sockdiag.PortFilter(tt.ports); err != nil {
					t.Fatal(err)
				}
			}
			by := map[uint16]int{}
			var res sockdiag.Result
			if err := ns.Do(func() error {
				c, err := sockdiag.Dial()
				if err != nil {
					return err
				}
				defer c.Close()
				res, err = sockdiag.DumpFiltered(context.Background(), c, 2 /* AF_INET */, sockdiag.TCPFListen|sockdiag.TCPFEstablished, filter, func(m sockdiag.Msg) {
					by[m.SrcPort]++
				})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if res.Messages != tt.want {
				t.Errorf("%d sockets sent, want %d: %v", res.Messages, tt.want, by)
			}
			if tt.wantBy != nil && fmt.Sprint(by) != fmt.Sprint(tt.wantBy) {
				t.Errorf("sockets by local port %v, want %v", by, tt.wantBy)
			}
		})
	}
}

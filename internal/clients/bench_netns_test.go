//go:build linux

package clients_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/clients"
	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

const benchPort = 7601

// storm makes n established connections to 127.0.0.1:benchPort in ns,
// from 200 /24 prefixes (127.1.0.0/24 … 127.1.199.0/24), left in the
// accept queue of a listener that never accepts (so only the clients hold
// descriptors), and returns a func that closes them.
func storm(tb testing.TB, ns *netnstest.NS, n int) func() {
	tb.Helper()
	if out, err := ns.Exec(context.Background(), "sysctl", "-qw", fmt.Sprintf("net.core.somaxconn=%d", n+1024)); err != nil {
		tb.Fatalf("sysctl: %v %s", err, out)
	}
	var fds []int
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	err := ns.Do(func() error {
		lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fds = append(fds, lfd)
		if err := unix.Bind(lfd, &unix.SockaddrInet4{Port: benchPort, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		if err := unix.Listen(lfd, n+1024); err != nil {
			return err
		}
		for i := range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			fds = append(fds, fd)
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 1, byte(i % 200), byte(i/200 + 1)}}); err != nil {
				return err
			}
			if err := unix.Connect(fd, &unix.SockaddrInet4{Port: benchPort, Addr: [4]byte{127, 0, 0, 1}}); err != nil && err != unix.EINPROGRESS {
				return err
			}
		}
		return nil
	})
	if err != nil {
		closeAll()
		tb.Fatal(err)
	}
	// Wait for the handshakes.
	want := []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), benchPort)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got []clients.Sources
		if err := ns.Do(func() (err error) {
			got, err = clients.Dump(context.Background(), clients.DefaultConfig(), nil, want)
			return err
		}); err != nil {
			closeAll()
			tb.Fatal(err)
		}
		if got[0].Established.Total == n {
			break
		}
		if time.Now().After(deadline) {
			closeAll()
			tb.Fatalf("%d of %d connections established after 30 s", got[0].Established.Total, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return closeAll
}

// BenchmarkDump10k: the client prefixes of a listener with 10,000
// established connections, against `ss -tn state established state
// syn-recv '( sport = :7601 )'`, which lists the same sockets (ss run from
// a thread inside the namespace: its cost includes starting the process,
// as a person running it pays). Compare the two ns/op in one run.
func BenchmarkDump10k(b *testing.B) {
	testenv.Tool(b, "ss")
	ns := netnstest.New(b)
	const n = 10000
	defer storm(b, ns, n)()
	want := []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), benchPort)}

	b.Run("clients.Dump", func(b *testing.B) {
		b.ReportAllocs()
		var got []clients.Sources
		if err := ns.Do(func() (err error) {
			b.ResetTimer()
			for range b.N {
				if got, err = clients.Dump(context.Background(), clients.DefaultConfig(), nil, want); err != nil {
					return err
				}
			}
			b.StopTimer()
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if e := got[0].Established; e.Total != n || e.Prefixes != 200 || e.Top[0].Count != n/200 {
			b.Fatalf("established %+v", e)
		}
	})
	b.Run("ss", func(b *testing.B) {
		if err := ns.Do(func() error {
			b.ResetTimer()
			for range b.N {
				cmd := exec.Command("ss", "-Htn", "state", "established", "state", "syn-recv", fmt.Sprintf("( sport = :%d )", benchPort))
				cmd.Stdout = io.Discard
				if err := cmd.Run(); err != nil {
					return err
				}
			}
			b.StopTimer()
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	})
	// The dump alone, without the kernel filter, for the filter's worth:
	// every socket of the namespace (both ends) crosses to userspace.
	b.Run("sockdiag.Dump-unfiltered", func(b *testing.B) {
		b.ReportAllocs()
		if err := ns.Do(func() error {
			c, err := sockdiag.Dial()
			if err != nil {
				return err
			}
			defer c.Close()
			b.ResetTimer()
			for range b.N {
				for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
					if _, err := sockdiag.Dump(context.Background(), c, fam, sockdiag.TCPFSynRecv|sockdiag.TCPFEstablished, func(sockdiag.Msg) {}); err != nil {
						return err
					}
				}
			}
			b.StopTimer()
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	})
}

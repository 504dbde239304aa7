package netdev

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// MaxDriverStats is the most driver statistics a device may report: the
// ethtool buffers are sized for it once (1 MiB of names, 256 KiB of
// values, touched only as far as drivers fill them), as
// github.com/safchain/ethtool sizes its own.
const MaxDriverStats = 1 << 15

// dumpRetries bounds the link dumps tried when the kernel flags one as
// interrupted (links changed while it ran).
const dumpRetries = 3

// kernel is the Kernel of the namespace it was opened in: an rtnetlink
// handle for the link dumps and a datagram socket for the ethtool ioctl,
// both reused for every Read.
type kernel struct {
	h       *netlink.Handle
	e       *ethtoolIoctl // nil without driver statistics
	timeout bool          // a context's deadline set the socket timeout
}

// noDeadline is the socket timeout of a dump whose context has no
// deadline, after one that had: long enough never to cut a dump short.
const noDeadline = time.Hour

// OpenKernel opens the Kernel of the calling thread's network namespace:
// an rtnetlink handle, and with driverStats the ethtool socket. Open calls
// it when Options.Kernel is nil.
func OpenKernel(driverStats bool) (Kernel, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink socket: %w", err)
	}
	k := &kernel{h: h}
	if driverStats {
		if k.e, err = openEthtool(); err != nil {
			h.Close()
			return nil, err
		}
	}
	return k, nil
}

// Links dumps every link of the namespace (vishvananda/netlink LinkList:
// one RTM_GETLINK dump) and appends them to dst.
func (k *kernel) Links(ctx context.Context, dst []Link) ([]Link, error) {
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left < time.Microsecond {
			return dst, context.DeadlineExceeded
		}
		if err := k.h.SetSocketTimeout(left); err != nil {
			return dst, fmt.Errorf("socket timeout: %w", err)
		}
		k.timeout = true
	} else if k.timeout {
		if err := k.h.SetSocketTimeout(noDeadline); err != nil {
			return dst, fmt.Errorf("socket timeout: %w", err)
		}
		k.timeout = false
	}
	var links []netlink.Link
	var err error
	for range dumpRetries {
		links, err = k.h.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		if ctx.Err() != nil { // the socket timeout expired with the context
			return dst, fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return dst, err
	}
	for _, l := range links {
		a := l.Attrs()
		link := Link{Name: a.Name, Index: a.Index, Kind: l.Type(), Loopback: a.Flags&net.FlagLoopback != 0}
		if link.Kind == "device" { // vishvananda's name for "no IFLA_INFO_KIND"
			link.Kind = ""
		}
		if s := a.Statistics; s != nil {
			link.HasCounters = true
			link.Counters = Counters{
				RxPackets: s.RxPackets, TxPackets: s.TxPackets,
				RxBytes: s.RxBytes, TxBytes: s.TxBytes,
				RxErrors: s.RxErrors, TxErrors: s.TxErrors,
				RxDropped: s.RxDropped, TxDropped: s.TxDropped,
				RxMissedErrors: s.RxMissedErrors, RxFifoErrors: s.RxFifoErrors,
			}
		}
		dst = append(dst, link)
	}
	return dst, nil
}

func (k *kernel) DriverName(ifname string) (string, error) {
	if k.e == nil {
		return "", ErrNoDriverStats
	}
	return k.e.driverName(ifname)
}

func (k *kernel) DriverStats(ifname string, withNames bool) ([]byte, []uint64, error) {
	if k.e == nil {
		return nil, nil, ErrNoDriverStats
	}
	return k.e.stats(ifname, withNames)
}

func (k *kernel) Close() error {
	k.h.Close()
	if k.e != nil {
		return k.e.close()
	}
	return nil
}

// ethtool wire format (include/uapi/linux/ethtool.h).
const (
	ethSSStats         = 1  // ETH_SS_STATS
	gstringsHeaderLen  = 12 // struct ethtool_gstrings: cmd, string_set, len
	siocEthtool        = unix.SIOCETHTOOL
	ethtoolGDrvInfo    = unix.ETHTOOL_GDRVINFO
	ethtoolGSSetInfo   = unix.ETHTOOL_GSSET_INFO
	ethtoolGStrings    = unix.ETHTOOL_GSTRINGS
	ethtoolGStats      = unix.ETHTOOL_GSTATS
	ptrSize            = unsafe.Sizeof(unsafe.Pointer(nil))
	ifreqSize          = unsafe.Sizeof(unix.Ifreq{})
	ifreqDataPadding   = ifreqSize - unix.IFNAMSIZ - ptrSize
	statsHeaderWords   = 1 // struct ethtool_stats: cmd, n_stats (one u64)
	ssetInfoStatsCount = 0 // data[0] of the reply: the ETH_SS_STATS count
)

// ifreqData is struct ifreq carrying a pointer in its union, as
// SIOCETHTOOL takes it (golang.org/x/sys/unix keeps its own unexported).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [ifreqDataPadding]byte
}

// ssetInfo is struct ethtool_sset_info asking for one string set.
type ssetInfo struct {
	cmd      uint32
	reserved uint32
	mask     uint64
	data     [1]uint32
	_        uint32
}

// ethtoolIoctl makes the SIOCETHTOOL requests on one socket, into buffers
// allocated once. The kernel writes as many names and values as the driver
// counts at the time of each request, whatever size the request says, so
// the buffers hold MaxDriverStats (a driver counting more is refused before
// any request that writes them).
type ethtoolIoctl struct {
	fd     int
	ifr    ifreqData
	sset   ssetInfo
	drv    unix.EthtoolDrvinfo
	names  []byte   // struct ethtool_gstrings: header, then the names
	values []uint64 // struct ethtool_stats: header word, then the values
}

// openEthtool opens the socket the ioctls go through: a datagram socket as
// ethtool(8) uses, or a generic netlink one where IPv4 is absent. Interface
// names resolve in the namespace the socket was created in.
func openEthtool() (*ethtoolIoctl, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	}
	if err != nil {
		return nil, fmt.Errorf("ethtool socket: %w", err)
	}
	return &ethtoolIoctl{
		fd:     fd,
		names:  make([]byte, gstringsHeaderLen+MaxDriverStats*GStringLen),
		values: make([]uint64, statsHeaderWords+MaxDriverStats),
	}, nil
}

// ioctl sends one SIOCETHTOOL request about ifname with data as its
// argument.
func (e *ethtoolIoctl) ioctl(ifname string, data unsafe.Pointer) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q longer than %d bytes", ifname, unix.IFNAMSIZ-1)
	}
	e.ifr.name = [unix.IFNAMSIZ]byte{}
	copy(e.ifr.name[:], ifname)
	e.ifr.data = data
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(e.fd), siocEthtool, uintptr(unsafe.Pointer(&e.ifr)))
	e.ifr.data = nil
	if errno != 0 {
		return classifyErrno(errno)
	}
	return nil
}

// classifyErrno maps the errors that mean "no statistics here" to the
// sentinels Read treats as no data.
func classifyErrno(errno unix.Errno) error {
	switch errno {
	case unix.EOPNOTSUPP:
		return fmt.Errorf("%w: %w", ErrNoDriverStats, errno)
	case unix.ENODEV:
		return fmt.Errorf("%w: %w", ErrNoDevice, errno)
	}
	return errno
}

func (e *ethtoolIoctl) driverName(ifname string) (string, error) {
	e.drv = unix.EthtoolDrvinfo{Cmd: ethtoolGDrvInfo}
	if err := e.ioctl(ifname, unsafe.Pointer(&e.drv)); err != nil {
		return "", fmt.Errorf("ETHTOOL_GDRVINFO: %w", err)
	}
	return unix.ByteSliceToString(e.drv.Driver[:]), nil
}

// stats asks for the number of statistics, then (withNames) their names,
// then their values, and checks that the answers agree.
func (e *ethtoolIoctl) stats(ifname string, withNames bool) ([]byte, []uint64, error) {
	e.sset = ssetInfo{cmd: ethtoolGSSetInfo, mask: 1 << ethSSStats}
	if err := e.ioctl(ifname, unsafe.Pointer(&e.sset)); err != nil {
		return nil, nil, fmt.Errorf("ETHTOOL_GSSET_INFO: %w", err)
	}
	if e.sset.mask&(1<<ethSSStats) == 0 || e.sset.data[ssetInfoStatsCount] == 0 {
		return nil, nil, ErrNoDriverStats
	}
	n := int(e.sset.data[ssetInfoStatsCount])
	if n > MaxDriverStats {
		return nil, nil, fmt.Errorf("the driver reports %d statistics, more than the %d read here", n, MaxDriverStats)
	}

	var names []byte
	if withNames {
		binary.NativeEndian.PutUint32(e.names[0:], ethtoolGStrings)
		binary.NativeEndian.PutUint32(e.names[4:], ethSSStats)
		binary.NativeEndian.PutUint32(e.names[8:], uint32(n))
		if err := e.ioctl(ifname, unsafe.Pointer(&e.names[0])); err != nil {
			return nil, nil, fmt.Errorf("ETHTOOL_GSTRINGS: %w", err)
		}
		if got := int(binary.NativeEndian.Uint32(e.names[8:])); got != n {
			return nil, nil, fmt.Errorf("%w: %d names after a count of %d", ErrStatsChanged, got, n)
		}
		names = e.names[gstringsHeaderLen : gstringsHeaderLen+n*GStringLen]
	}

	hdr := (*[2]uint32)(unsafe.Pointer(&e.values[0]))
	hdr[0], hdr[1] = ethtoolGStats, uint32(n)
	if err := e.ioctl(ifname, unsafe.Pointer(&e.values[0])); err != nil {
		return nil, nil, fmt.Errorf("ETHTOOL_GSTATS: %w", err)
	}
	if got := int(hdr[1]); got != n {
		return nil, nil, fmt.Errorf("%w: %d values after a count of %d", ErrStatsChanged, got, n)
	}
	return names, e.values[statsHeaderWords : statsHeaderWords+n], nil
}

func (e *ethtoolIoctl) close() error {
	return unix.Close(e.fd)
}

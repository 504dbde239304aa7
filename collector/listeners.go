package collector

// The listeners source: accept and SYN queues per listening address and port,
// read with netlink sock_diag.
//
// Reading. One NETLINK_SOCK_DIAG connection is kept open between cycles
// (re-dialled after any failure, so a half-read dump never leaks into the
// next one). Each dump is a SOCK_DIAG_BY_FAMILY request (inet_diag_req_v2,
// protocol TCP) with idiag_states set, so the kernel only walks the tables
// holding those states: the listening hash for LISTEN, the established hash
// for SYN_RECV. Replies are read with ReceiveIter into one 32 KiB buffer and
// parsed in place (sockdiag.ParseMsg); nothing is allocated per socket. Every
// reply's sequence number is checked against the request. A dump the kernel
// flags NLM_F_DUMP_INTR is restarted (both families, since partial results
// are merged), counted in SynRecv.Retries, and given up after
// maxDumpAttempts; ENOBUFS redials, restarts and counts in SynRecv.NoBufs.
// Both counters cover LISTEN and SYN_RECV dumps. The flag is seen on data
// messages only: ReceiveIter consumes NLMSG_DONE, so a flag carried by DONE
// alone is missed. The connection's deadline
// follows the context, and a cancelled context wakes a blocked read.
//
// LISTEN, every cycle. For a LISTEN socket inet_diag's rqueue is the accept
// queue length and wqueue its limit. Sockets with the same address and port
// (SO_REUSEPORT groups) form one Listener. A dual-stack [::] listener only
// shows up in the AF_INET6 dump; whether it takes IPv4 is read from the
// INET_DIAG_SKV6ONLY attribute. Port filters apply while parsing.
//
// Addresses. A v4-mapped address (an AF_INET6 socket bound to
// ::ffff:a.b.c.d, or an IPv4 handshake on a dual-stack listener) is reported
// unmapped, as the IPv4 address clients dial. The wildcards stay 0.0.0.0 and
// :: (and :: says nothing about whether it is dual-stack). Link-local
// addresses come without a zone.
//
// SYN_RECV, on its own cadence. Request sockets (state SYN_RECV, inode 0)
// are counted per listener: the request's local address is the address the
// client dialled, mapped to the listener on that port with that exact
// address, else the family's wildcard listener (0.0.0.0 or ::), else, for an
// IPv4 request, a dual-stack :: listener. A request socket belongs to its
// listener's family, so IPv4 handshakes on a dual-stack listener come in the
// AF_INET6 dump; a family with no kept listener is not dumped at all.
//
// A SYN_RECV dump walks the whole established hash: every TCP socket on the
// host, in every namespace, once per address family (measured here: ~1.2 ms
// per family at 30k sockets, so ~16 ms for both at 200k). It therefore has
// its own cadence. It runs when a cheap signal moved since the previous
// cycle:
//   - TcpExt SyncookiesSent, TCPReqQFullDoCookies, TCPReqQFullDrop or
//     ListenOverflows increased (a SYN queue or accept queue overflowed);
//   - Tcp PassiveOpens grew faster than passiveOpensFloor per second (a
//     connection storm completing handshakes);
//   - a kept listener's accept queue is not empty;
//   - the previous SYN_RECV dump found a listener's SYN queue a tenth full
//     or more (a few handshakes in flight are normal; follow a flood
//     until it is over);
// and otherwise every SynRecvInterval (0: every cycle). The counters come
// from the tcpstat source, which runs earlier in the same cycle; the previous
// cycle's values are kept here.
//
// Signals are held to a CPU budget: a signalled dump waits until the time
// since the last dump is at least the last dump's duration divided by
// synRecvCPUShare. At 1 s ticks a dump up to ~8 ms (about 100k sockets) runs
// on every signalled cycle; a 16 ms dump (200k sockets) every other cycle,
// keeping the daemon under 1% of a core while a SYN flood is still seen
// within 2 s. A flood that overflows a SYN queue moves the cookie or drop
// counters and is seen on the next cycle the budget allows; a half-open
// population too small to overflow anything is seen within SynRecvInterval.
// The interval itself ignores the budget: it is the operator's choice, and
// under 1% of a core at 200k sockets needs SynRecvInterval >= 2s.
//
// On cycles without a dump, or when the dump fails, the last dump's counts
// are carried onto the current listeners by address and port
// (Snapshot.SynRecv.Time says how old they are).
//
// Cap. With ListenerConfig.Max set, the busiest listeners (by accept queue,
// then SYN_RECV) are kept and Snapshot.ListenersDropped counts the rest.
// Listeners are sorted by port, then address.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

// DialFunc opens a NETLINK_SOCK_DIAG connection. A connection meant for
// dumps should be dialled with netlink.Config.MessageBufferSize set to
// 32 KiB, as the default one is.
type DialFunc func() (*netlink.Conn, error)

const (
	// passiveOpensFloor is the Tcp PassiveOpens rate (connections per
	// second) above which the SYN_RECV dump is signalled. A busy
	// Valkey host with pooled clients opens a handful per second; a storm
	// opens thousands.
	passiveOpensFloor = 50.0

	// synRecvCPUShare is the share of elapsed time that signalled SYN_RECV
	// dumps may take, judged by the last dump's wall time.
	synRecvCPUShare = 0.008

	// synQueueFollowShare: while the last SYN_RECV dump found a listener's
	// SYN queue at least 1/synQueueFollowShare full (its limit taken as the
	// accept queue limit, the listen backlog), the dump runs every cycle to
	// follow the flood.
	synQueueFollowShare = 10

	// maxDumpAttempts bounds the restarts of an interrupted or overrun dump
	// within one cycle.
	maxDumpAttempts = 3

	// intervalSlack lets a dump due at SynRecvInterval run on the tick that
	// lands a little early.
	intervalSlack = 100 * time.Millisecond
)

// Values of SynRecvInfo.Reason.
const (
	reasonSignal   = "signal"
	reasonInterval = "interval"
)

// errDumpInterrupted: the kernel kept flagging a dump inconsistent.
var errDumpInterrupted = errors.New("sock_diag dump kept being interrupted (NLM_F_DUMP_INTR)")

// inetFamilies are the address families dumped, in order.
var inetFamilies = [...]uint8{unix.AF_INET, unix.AF_INET6}

// listenerKey identifies a Listener.
type listenerKey struct {
	addr netip.Addr
	port uint16
}

// listenerMeta is what the SYN_RECV mapping needs beyond a Listener.
type listenerMeta struct {
	// dualStack is true for a :: listener taking IPv4 connections.
	dualStack bool
}

// listenerSource reads the accept and SYN queues of listening TCP sockets.
type listenerSource struct {
	cfg  ListenerConfig
	open func() (sockdiag.Conn, error)

	mu   sync.Mutex // serialises Collect and Close
	conn sockdiag.Conn

	// Per-cycle scratch, reused.
	cur        []Listener
	meta       []listenerMeta
	index      map[listenerKey]int
	hasFamily  [2]bool // a kept listener came from inetFamilies[i]
	unmatched  int     // SYN_RECV requests with no kept listener
	listenFn   func(sockdiag.Msg)
	synRecvFn  func(sockdiag.Msg)
	v6Disabled bool // the kernel has no AF_INET6 inet_diag

	// Carried between cycles.
	cadence synRecvCadence
	last    map[listenerKey]uint32 // SYN_RECV counts of the last dump
	info    SynRecvInfo            // Ran is per cycle
}

func newListenerSource(cfg ListenerConfig) (*listenerSource, error) {
	for _, r := range slices.Concat(cfg.Include, cfg.Exclude) {
		if r.Lo > r.Hi {
			return nil, fmt.Errorf("port range %d-%d: low end above high end", r.Lo, r.Hi)
		}
	}
	if cfg.Max < 0 {
		return nil, fmt.Errorf("listener cap %d is negative", cfg.Max)
	}
	if cfg.SynRecvInterval < 0 {
		return nil, fmt.Errorf("SYN_RECV interval %v is negative", cfg.SynRecvInterval)
	}
	dial := cfg.Dial
	if dial == nil {
		dial = sockdiag.Dial
	}
	l := &listenerSource{
		cfg: cfg,
		open: func() (sockdiag.Conn, error) {
			c, err := dial()
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		index:   make(map[listenerKey]int),
		last:    make(map[listenerKey]uint32),
		cadence: synRecvCadence{interval: cfg.SynRecvInterval},
	}
	l.listenFn = l.addListenSocket
	l.synRecvFn = l.addRequestSocket
	return l, nil
}

func (l *listenerSource) Name() string { return "listeners" }

// Close releases the netlink connection.
func (l *listenerSource) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropConn()
}

func (l *listenerSource) Collect(ctx context.Context, s *Snapshot) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.cadence.observe(s.Time, s.TCP)

	l.info.Ran = false
	s.SynRecv = l.info

	if err := l.dumpPhase(ctx, &s.SynRecv, sockdiag.TCPFListen, l.resetListeners, l.listenFn); err != nil {
		l.info.Retries, l.info.NoBufs = s.SynRecv.Retries, s.SynRecv.NoBufs
		return fmt.Errorf("LISTEN dump: %w", err)
	}

	var busy bool
	for i := range l.cur {
		if l.cur[i].AcceptQueue > 0 {
			busy = true
			break
		}
	}
	run, reason := l.cadence.due(s.Time, s.TCP, busy)
	var synErr error
	if run {
		start := time.Now()
		synErr = l.dumpPhase(ctx, &s.SynRecv, sockdiag.TCPFSynRecv, l.resetSynRecv, l.synRecvFn)
		if synErr == nil {
			s.SynRecv.Time, s.SynRecv.Ran, s.SynRecv.Reason = s.Time, true, reason
			s.SynRecv.Dumps++
			l.rememberSynRecv(s.Time, time.Since(start))
		} else {
			synErr = fmt.Errorf("SYN_RECV dump: %w", synErr)
		}
	}
	if !run || synErr != nil {
		l.carrySynRecv()
	}
	l.info = s.SynRecv
	l.publish(s)
	return synErr
}

// dumpPhase runs one dump per address family for states, restarting all of
// them when one is interrupted or overrun. reset clears what fn gathered.
func (l *listenerSource) dumpPhase(ctx context.Context, info *SynRecvInfo, states uint32, reset func(), fn func(sockdiag.Msg)) error {
	for attempt := 1; ; attempt++ {
		reset()
		interrupted, err := l.dumpFamilies(ctx, states, fn)
		switch {
		case err == nil && !interrupted:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			info.NoBufs++
			l.dropConn()
		case err != nil:
			l.dropConn()
			return err
		default:
			info.Retries++
		}
		if attempt == maxDumpAttempts {
			if err != nil {
				return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			return fmt.Errorf("gave up after %d attempts: %w", attempt, errDumpInterrupted)
		}
	}
}

// dumpFamilies runs the dump for each address family that needs it.
func (l *listenerSource) dumpFamilies(ctx context.Context, states uint32, fn func(sockdiag.Msg)) (interrupted bool, err error) {
	for i, fam := range inetFamilies {
		if fam == unix.AF_INET6 && l.v6Disabled {
			continue
		}
		if states&sockdiag.TCPFListen == 0 && !l.hasFamily[i] {
			continue // no kept listener to count requests for
		}
		if err := l.ensureConn(); err != nil {
			return false, err
		}
		res, err := sockdiag.Dump(ctx, l.conn, fam, states, fn)
		if err != nil {
			if sockdiag.Unsupported(err) {
				if fam == unix.AF_INET6 {
					// Kernel without IPv6: nothing to dump.
					l.v6Disabled = true
					l.dropConn()
					continue
				}
				return false, fmt.Errorf("%w: %w", ErrNoData, err)
			}
			return false, err
		}
		interrupted = interrupted || res.Interrupted
	}
	return interrupted, nil
}

func (l *listenerSource) ensureConn() error {
	if l.conn != nil {
		return nil
	}
	c, err := l.open()
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
			return fmt.Errorf("%w: sock_diag: %w", ErrNoData, err)
		}
		return fmt.Errorf("dial sock_diag: %w", err)
	}
	l.conn = c
	return nil
}

func (l *listenerSource) dropConn() error {
	if l.conn == nil {
		return nil
	}
	err := l.conn.Close()
	l.conn = nil
	return err
}

func (l *listenerSource) resetListeners() {
	l.cur = l.cur[:0]
	l.meta = l.meta[:0]
	clear(l.index)
	l.hasFamily = [2]bool{}
}

// keepPort applies the port filters.
func (l *listenerSource) keepPort(p uint16) bool {
	if len(l.cfg.Include) > 0 && !slices.ContainsFunc(l.cfg.Include, func(r PortRange) bool { return r.Contains(p) }) {
		return false
	}
	return !slices.ContainsFunc(l.cfg.Exclude, func(r PortRange) bool { return r.Contains(p) })
}

// addListenSocket adds one LISTEN socket to its Listener.
func (l *listenerSource) addListenSocket(m sockdiag.Msg) {
	if m.State != sockdiag.TCPListen || !l.keepPort(m.SrcPort) {
		return
	}
	k := listenerKey{addr: m.Src.Unmap(), port: m.SrcPort}
	i, ok := l.index[k]
	if !ok {
		i = len(l.cur)
		l.index[k] = i
		l.cur = append(l.cur, Listener{Addr: k.addr, Port: k.port})
		l.meta = append(l.meta, listenerMeta{})
	}
	if m.Family == unix.AF_INET6 {
		l.hasFamily[1] = true
		if !m.V6Only && k.addr == netip.IPv6Unspecified() {
			l.meta[i].dualStack = true
		}
	} else {
		l.hasFamily[0] = true
	}
	ln := &l.cur[i]
	ln.Sockets++
	ln.AcceptQueue += m.RQueue
	ln.AcceptLimit += m.WQueue
	if m.WQueue > 0 {
		ln.MaxFill = max(ln.MaxFill, float64(m.RQueue)/float64(m.WQueue))
	}
}

func (l *listenerSource) resetSynRecv() {
	for i := range l.cur {
		l.cur[i].SynRecv = 0
	}
	l.unmatched = 0
}

// addRequestSocket counts one SYN_RECV request socket against the listener
// the client dialled.
func (l *listenerSource) addRequestSocket(m sockdiag.Msg) {
	if m.State != sockdiag.TCPSynRecv || m.Inode != 0 {
		return
	}
	if i, ok := l.listenerFor(m.Src.Unmap(), m.SrcPort); ok {
		l.cur[i].SynRecv++
	} else {
		l.unmatched++
	}
}

// listenerFor finds the kept listener receiving a handshake to addr:port.
func (l *listenerSource) listenerFor(addr netip.Addr, port uint16) (int, bool) {
	if i, ok := l.index[listenerKey{addr, port}]; ok {
		return i, true
	}
	if addr.Is4() {
		if i, ok := l.index[listenerKey{netip.IPv4Unspecified(), port}]; ok {
			return i, true
		}
		if i, ok := l.index[listenerKey{netip.IPv6Unspecified(), port}]; ok && l.meta[i].dualStack {
			return i, true
		}
		return 0, false
	}
	i, ok := l.index[listenerKey{netip.IPv6Unspecified(), port}]
	return i, ok
}

// rememberSynRecv keeps this dump's counts for the cycles that skip it.
func (l *listenerSource) rememberSynRecv(now time.Time, cost time.Duration) {
	clear(l.last)
	filling := false
	for _, ln := range l.cur {
		if ln.SynRecv > 0 {
			l.last[listenerKey{ln.Addr, ln.Port}] = ln.SynRecv
			// A few handshakes in flight are normal on a busy host; a
			// SYN queue a tenth full is a flood worth following.
			filling = filling || uint64(ln.SynRecv)*synQueueFollowShare >= uint64(max(ln.AcceptLimit, 1))
		}
	}
	l.cadence.lastDump, l.cadence.lastCost, l.cadence.synFilling = now, cost, filling
}

// carrySynRecv puts the last dump's counts on the current listeners.
func (l *listenerSource) carrySynRecv() {
	for i := range l.cur {
		ln := &l.cur[i]
		ln.SynRecv = l.last[listenerKey{ln.Addr, ln.Port}]
	}
}

// publish copies the listeners into s, capped and sorted.
func (l *listenerSource) publish(s *Snapshot) {
	out := slices.Clone(l.cur)
	s.ListenersDropped = 0
	if max := l.cfg.Max; max > 0 && len(out) > max {
		slices.SortFunc(out, byBusiest)
		s.ListenersDropped = len(out) - max
		out = slices.Clip(out[:max])
	}
	slices.SortFunc(out, byPortAddr)
	s.Listeners = out
}

func byPortAddr(a, b Listener) int {
	if c := cmp.Compare(a.Port, b.Port); c != 0 {
		return c
	}
	return a.Addr.Compare(b.Addr)
}

func byBusiest(a, b Listener) int {
	if c := cmp.Compare(b.AcceptQueue, a.AcceptQueue); c != 0 {
		return c
	}
	if c := cmp.Compare(b.SynRecv, a.SynRecv); c != 0 {
		return c
	}
	return byPortAddr(a, b)
}

// synRecvCadence decides when the SYN_RECV dump runs.
type synRecvCadence struct {
	interval time.Duration

	prevTime time.Time     // the previous cycle, zero before the first
	prevTCP  TCPCounters   // its counters
	lastDump time.Time     // the last successful SYN_RECV dump
	lastCost time.Duration // how long it took
	// synFilling is true when that dump found a listener's SYN queue at
	// least 1/synQueueFollowShare full.
	synFilling bool
}

// due reports whether the SYN_RECV dump should run in the cycle at now,
// whose TCP counters are tcp, and why. acceptQueued says whether a kept
// listener has a non-empty accept queue.
func (c *synRecvCadence) due(now time.Time, tcp TCPCounters, acceptQueued bool) (bool, string) {
	if c.signal(now, tcp, acceptQueued) && c.withinBudget(now) {
		return true, reasonSignal
	}
	if c.lastDump.IsZero() || c.interval <= 0 || now.Before(c.lastDump) ||
		now.Sub(c.lastDump)+intervalSlack >= c.interval {
		return true, reasonInterval
	}
	return false, ""
}

// withinBudget reports whether a signalled dump at now keeps SYN_RECV dumps
// within synRecvCPUShare of the time.
func (c *synRecvCadence) withinBudget(now time.Time) bool {
	if c.lastDump.IsZero() || now.Before(c.lastDump) {
		return true
	}
	return now.Sub(c.lastDump) >= time.Duration(float64(c.lastCost)/synRecvCPUShare)
}

// signal reports whether a cheap storm signal moved since the previous
// cycle.
func (c *synRecvCadence) signal(now time.Time, tcp TCPCounters, acceptQueued bool) bool {
	if acceptQueued || c.synFilling {
		return true
	}
	if c.prevTime.IsZero() {
		return false
	}
	p := &c.prevTCP
	if grew(p.SyncookiesSent, tcp.SyncookiesSent) ||
		grew(p.TCPReqQFullDoCookies, tcp.TCPReqQFullDoCookies) ||
		grew(p.TCPReqQFullDrop, tcp.TCPReqQFullDrop) ||
		grew(p.ListenOverflows, tcp.ListenOverflows) {
		return true
	}
	if dt := now.Sub(c.prevTime).Seconds(); dt > 0 && Present(p.PassiveOpens) && Present(tcp.PassiveOpens) {
		return (tcp.PassiveOpens-p.PassiveOpens)/dt > passiveOpensFloor
	}
	return false
}

// observe records the cycle at now for the next decision.
func (c *synRecvCadence) observe(now time.Time, tcp TCPCounters) {
	c.prevTime, c.prevTCP = now, tcp
}

// grew reports whether a counter read in two cycles increased.
func grew(prev, cur float64) bool {
	return Present(prev) && Present(cur) && cur > prev
}

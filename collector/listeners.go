package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/procfs"
)

// The listeners source: accept and SYN queues per listening address and
// port, read with netlink sock_diag (internal/sockdiag). The LISTEN dump
// runs every cycle; the SYN_RECV dump, which walks every TCP socket of the
// host, on a cadence of its own (synRecvCadence), a goroutine of its own
// and under a deadline of its own (listeners_synrecv.go). Both ask the
// kernel for both address families in one walk (TCPDIAG_GETSOCK), or
// per family where the kernel refuses that. docs/design.md explains the
// mapping of handshakes to listeners and the cadence.

// DialFunc opens a NETLINK_SOCK_DIAG connection. A connection meant for
// dumps should be dialled with netlink.Config.MessageBufferSize set to
// 32 KiB, as sockdiag.Dial does.
type DialFunc func() (*netlink.Conn, error)

// The listeners source's values, by index.
const (
	lsnAcceptQueue = iota
	lsnAcceptLimit
	lsnAcceptFill
	lsnSynRecv
	lsnSynQueueLimit
	lsnSockets
	lsnCount
	lsnDropped
	lsnSynRecvHost
	lsnSynRecvTotal
	lsnSynRecvLastDump
	lsnSynRecvDumps
	lsnDumpRetries
	lsnDumpNoBufs
	lsnOwnerKnown
	lsnOwnerStopped
	lsnSynRecvTimeouts
	lsnSynRecvCPU
	lsnStormSignal
)

// partSynRecv is the part of the listeners source read by the SYN_RECV
// dump.
const partSynRecv = "syn_recv"

// KindListener is the entity kind of listening addresses and ports,
// labelled addr and port.
const KindListener = "listener"

var listenersDecl = &Declaration{
	Name: "listeners",
	Core: true,
	Kinds: []EntityKind{{
		Name: KindListener,
		Help: "a listening TCP address and port (the sockets of a SO_REUSEPORT group together)",
		Labels: []Label{
			{Name: "addr", Help: `the bound address (string, e.g. "0.0.0.0", "::")`},
			{Name: "port", Int: true, Help: "the port (integer)"},
		},
		Display: func(l []string) string { return net.JoinHostPort(l[0], l[1]) },
		Attrs:   []string{attrProcess, attrPID, attrState, attrOwnerError},
		Describe: func(a map[string]string) string {
			if a[attrProcess] != "" {
				return "owner: " + a[attrProcess] + " (pid " + a[attrPID] + "), " + a[attrState]
			}
			if a[attrOwnerError] != "" {
				return "owner unknown: " + a[attrOwnerError]
			}
			return ""
		},
	}},
	HostAttrs: []string{"syn_recv_reason", attrSynRecvError},
	Values: []Value{
		lsnAcceptQueue: {Name: "accept_queue", Entity: KindListener, Kind: Gauge, Unit: "connections", Metric: "listener_accept_queue_length",
			Help: "Completed handshakes waiting for accept() on the listener; it reaches limit+1 when full."},
		lsnAcceptLimit: {Name: "accept_queue_limit", Entity: KindListener, Kind: Gauge, Setting: true, Unit: "connections", Metric: "listener_accept_queue_limit",
			Help: "Accept queue limit of the listener: min(listen backlog, net.core.somaxconn)."},
		lsnAcceptFill: {Name: "accept_queue_fill", Entity: KindListener, Kind: Gauge, Unit: "ratio",
			Help: "fill of the fullest socket's accept queue, 1 = full"},
		lsnSynRecv: {Name: "syn_recv", Entity: KindListener, Kind: Gauge, Unit: "handshakes", Part: partSynRecv, Metric: "listener_syn_recv",
			Help: "Half-open handshakes (SYN_RECV request sockets) addressed to the listener, as of the last SYN_RECV dump."},
		lsnSynQueueLimit: {Name: "syn_queue_limit", Entity: KindListener, Kind: Gauge, Setting: true, Unit: "handshakes",
			Help: "half-open handshakes the listener holds before SYN cookies or drops (an approximation, see SynQueueLimit)"},
		lsnSockets: {Name: "sockets", Entity: KindListener, Kind: Gauge, Setting: true, Unit: "sockets", Metric: "listener_sockets",
			Help: "Listening sockets bound to the address and port (more than one with SO_REUSEPORT)."},
		lsnCount: {Name: "listeners", Kind: Gauge, Unit: "listeners", Help: "listening addresses and ports reported"},
		lsnDropped: {Name: "listeners_dropped", Kind: Gauge, Unit: "listeners", Metric: "listeners_dropped",
			Help: "Listeners that matched the port filters but were not exported because of the listener cap."},
		lsnSynRecvHost: {Name: "syn_recv", Kind: Gauge, Unit: "handshakes", Part: partSynRecv,
			Help: "half-open handshakes (SYN_RECV) to all reported listeners"},
		// syn_recv under its other name: both were in the rule
		// vocabulary before values were declared, and rules may use either.
		lsnSynRecvTotal: {Name: "syn_recv_total", Kind: Gauge, Unit: "handshakes", Part: partSynRecv,
			Help: "half-open handshakes (SYN_RECV) to all reported listeners"},
		lsnSynRecvLastDump: {Name: "syn_recv_last_dump", Kind: Gauge, Unit: "seconds", Metric: "syn_recv_last_dump_timestamp_seconds",
			AttrLabels: []string{"reason", "syn_recv_reason"},
			Help:       "When the SYN_RECV counts were last dumped, and why: reason=signal (a storm signal moved) or interval (slow cadence)."},
		lsnSynRecvDumps: {Name: "syn_recv_dumps", Kind: Counter, Unit: "dumps", Metric: "syn_recv_dumps_total",
			Help: "SYN_RECV sock_diag dumps run."},
		lsnDumpRetries: {Name: "syn_recv_dump_retries", Kind: Counter, Unit: "dumps", Metric: "syn_recv_dump_retries_total",
			Help: "sock_diag dumps restarted because the kernel flagged them inconsistent (NLM_F_DUMP_INTR)."},
		lsnDumpNoBufs: {Name: "syn_recv_dump_nobufs", Kind: Counter, Unit: "dumps", Metric: "syn_recv_dump_nobufs_total",
			Help: "sock_diag dumps restarted because the receive buffer overran (ENOBUFS)."},
		lsnOwnerKnown: {Name: "owner_known", Entity: KindListener, Kind: Gauge, Metric: "listener_owner_info",
			AttrLabels: []string{"process", attrProcess, "pid", attrPID, "state", attrState},
			Help:       "The process holding the listener (1 when it could be seen: run with the privilege to see other processes' file descriptors), its pid and state (running, sleeping, stopped, uninterruptible sleep …)."},
		lsnOwnerStopped: {Name: "owner_stopped", Entity: KindListener, Kind: Gauge,
			Help: "1 when the process holding the listener is stopped (SIGSTOP, a debugger): it accepts nothing; 0 when it runs; no data when it cannot be seen"},
		lsnSynRecvTimeouts: {Name: "syn_recv_dump_timeouts", Kind: Counter, Unit: "dumps", Metric: "syn_recv_dump_timeouts_total",
			Help: "SYN_RECV dumps abandoned at their deadline (2 s); the SYN_RECV counts are no data until a dump completes. The listeners source itself still succeeds."},
		lsnSynRecvCPU: {Name: "syn_recv_dump_cpu", Kind: Counter, Unit: "seconds", Metric: "syn_recv_dump_cpu_seconds_total",
			Help: "CPU time of the SYN_RECV dumps (the dumping thread's, the kernel's walk of the socket table included): what their budget is judged by."},
		lsnStormSignal: {Name: "storm_signal", Kind: Gauge, Unit: "boolean",
			Help: "1 while a cheap storm signal is active (SYN cookies, SYN queue drops or accept queue overflows counted since the last cycle, passive opens above 50/s, an accept queue not empty, a SYN queue a tenth full at the last dump), 0 otherwise: what runs the SYN_RECV dump and the daemon's storm interval"},
	},
	Items: []Item{
		{ID: "syn_queue", Section: "syn_queue", What: "SYN queue", Entity: KindListener, Unit: "half-open",
			Value: "syn_recv", Limit: "syn_queue_limit", Quiet: true, Queue: true},
		{ID: "accept_queue", Section: "accept_queue", What: "accept queue", Entity: KindListener, Unit: "connections",
			Value: "accept_queue", Limit: "accept_queue_limit", Ratio: "accept_queue_fill", Related: []string{"sockets"}, Queue: true},
	},
}

const (
	// passiveOpensFloor is the Tcp PassiveOpens rate (connections per
	// second) above which the SYN_RECV dump is signalled. A busy
	// Valkey host with pooled clients opens a handful per second; a storm
	// opens thousands.
	passiveOpensFloor = 50.0

	// synRecvCPUShare is the share of elapsed time that signalled SYN_RECV
	// dumps may take, judged by the last dump's CPU time (the dumping
	// thread's): the CPU a storm takes from the daemon stretches a dump's
	// wall time, not its cost, so it does not starve the dumps when they
	// matter.
	synRecvCPUShare = 0.008

	// minRateWindow is the shortest span the passive-open rate is judged
	// over: at a sub-second interval, a handful of connections landing in
	// one cycle would otherwise read as a storm.
	minRateWindow = 900 * time.Millisecond

	// synQueueFollowShare: while the last SYN_RECV dump found a listener's
	// SYN queue at least 1/synQueueFollowShare full (its limit taken as the
	// accept queue limit, the listen backlog), the dump runs every cycle to
	// follow the flood.
	synQueueFollowShare = 10
	// synFillingHold is how long a dump that found a SYN queue filling
	// stays a storm signal when the dumps after it fail.
	synFillingHold = 10 * time.Second

	// intervalSlack lets a dump due at SynRecvInterval run on the tick that
	// lands a little early.
	intervalSlack = 100 * time.Millisecond

	// ownerStateInterval is the least time between two looks at the
	// listeners' owners. Their states matter over seconds (a server
	// stopped for the 5 s AcceptQueueStalled judges), so at the storm
	// interval looking every cycle would only multiply the /proc reads.
	ownerStateInterval = 900 * time.Millisecond
)

// Values of the syn_recv_reason attribute.
const (
	reasonSignal   = "signal"
	reasonInterval = "interval"
)

// attrSynRecvError is the host attribute saying why the SYN_RECV part is
// no data in this cycle when the source as a whole succeeded (a dump that
// ran out of time); "" otherwise.
const attrSynRecvError = "syn_recv_error"

// inetFamilies are the address families dumped, in order.
var inetFamilies = [...]uint8{unix.AF_INET, unix.AF_INET6}

// Listener is one listening address and port, as the listeners source
// reads it. Sockets sharing an address and port (SO_REUSEPORT groups) are
// summed: the queue figures are the group's totals and MaxFill the fullest
// socket's fill.
type Listener struct {
	// Addr is the bound address: 0.0.0.0 or :: for a wildcard listener.
	// A v4-mapped address is reported as the IPv4 address clients dial;
	// link-local addresses come without a zone.
	Addr netip.Addr
	// Port is the local port.
	Port uint16
	// Sockets is the number of listening sockets at Addr:Port.
	Sockets int
	// AcceptQueue is the number of completed handshakes waiting for
	// accept() (inet_diag rqueue). It reaches AcceptLimit+1 when full.
	AcceptQueue uint32
	// AcceptLimit is the accept queue limit: min(listen backlog,
	// net.core.somaxconn) (inet_diag wqueue).
	AcceptLimit uint32
	// MaxFill is the highest AcceptQueue/AcceptLimit of any one socket of
	// the group, 0 when the limit is 0.
	MaxFill float64
	// SynRecv is the number of half-open handshakes (request sockets in
	// SYN_RECV) addressed to this listener, as of the last SYN_RECV dump.
	SynRecv uint32
}

// Fill is the fill of the fullest socket of the listener, or of the whole
// group when that is fuller: 1 is full.
func (l *Listener) Fill() float64 {
	fill := l.MaxFill
	if l.AcceptLimit > 0 {
		fill = math.Max(fill, float64(l.AcceptQueue)/float64(l.AcceptLimit))
	}
	return fill
}

// LabelValues returns the listener's address and port as the metrics,
// alerts and checklist label them (addr, port).
func (l *Listener) LabelValues() (addr, port string) {
	return l.Addr.String(), strconv.Itoa(int(l.Port))
}

// Listeners returns the listeners of s (none when the listeners source
// failed), sorted by port then address. SynRecv is 0 where the count is
// no data. It is for tools and tests; rules read the Snapshot.
func Listeners(s *Snapshot) []Listener {
	t := s.TableOf(KindListener)
	if t == nil {
		return nil
	}
	sc := s.Schema()
	slot := func(i int) int { return sc.srcSlots[sc.kinds[t.kind.index].source][i] }
	out := make([]Listener, 0, t.Len())
	for r := range t.Len() {
		lab := t.Labels(r)
		addr, err := netip.ParseAddr(lab[0])
		port, perr := strconv.ParseUint(lab[1], 10, 16)
		if err != nil || perr != nil {
			continue
		}
		v := func(i int) float64 { return t.Value(r, slot(i)) }
		l := Listener{Addr: addr, Port: uint16(port), Sockets: int(v(lsnSockets)),
			AcceptQueue: uint32(v(lsnAcceptQueue)), AcceptLimit: uint32(v(lsnAcceptLimit)), MaxFill: v(lsnAcceptFill)}
		if sr := v(lsnSynRecv); Present(sr) {
			l.SynRecv = uint32(sr)
		}
		out = append(out, l)
	}
	slices.SortFunc(out, byPortAddr)
	return out
}

// SynRecvRan reports whether the SYN_RECV dump ran in the cycle of s.
func SynRecvRan(s *Snapshot) bool {
	sc := s.Schema()
	si, ok := sc.SourceIndex(listenersDecl.Name)
	if !ok {
		return false
	}
	p := sc.partByK[partKey{si, partSynRecv}]
	return s.PartTime(p).Equal(s.Time)
}

// UsePerFamilyDumps makes the listeners source among sources dump each
// address family on its own (SOCK_DIAG_BY_FAMILY), as it does on a
// kernel that refuses the one-walk TCPDIAG_GETSOCK request: for tools
// that compare the two (stormlab bench). It reports whether sources held
// a listeners source.
func UsePerFamilyDumps(sources []Source) bool {
	for _, s := range sources {
		if l, ok := s.(*listenerSource); ok {
			l.mu.Lock()
			l.legacy = false
			l.mu.Unlock()
			return true
		}
	}
	return false
}

// SynQueueLimit approximates how many half-open handshakes listener l
// holds before the kernel answers with cookies or drops SYNs
// (tcp_conn_request): the queue is full once it holds more than the
// listener's accept queue limit (sk_max_ack_backlog: min(backlog,
// somaxconn)); and with syncookies off (the sysctl value 0), SYNs from
// peers not yet proven are dropped once the queue has used three quarters
// of tcp_max_syn_backlog. Both apply per socket, so a SO_REUSEPORT group
// of n sockets holds n times the latter. NaN sysctls (not read) leave the
// accept queue limit. The off-by-one of the kernel's comparison and the
// spread of a reuseport group over its sockets are not modelled.
func SynQueueLimit(l *Listener, syncookies, maxSynBacklog float64) float64 {
	limit := float64(l.AcceptLimit)
	if syncookies == 0 && Present(maxSynBacklog) {
		b := int64(maxSynBacklog)
		sockets := max(l.Sockets, 1)
		limit = math.Min(limit, float64(sockets)*float64(b-b>>2))
	}
	return limit
}

// listenerKey identifies a Listener.
type listenerKey struct {
	addr netip.Addr
	port uint16
}

// listenerMeta is what the source keeps of a listener beyond a Listener.
type listenerMeta struct {
	// inode is one of its sockets' inodes (the first dumped), to find its
	// owner.
	inode uint32
}

// listenerLabels are a listener's label values, kept from one cycle to
// the next so that Snapshots share them.
type listenerLabels struct {
	labels []string
	seen   uint64 // the cycle that last used them
}

// listenerSource reads the accept and SYN queues of listening TCP sockets.
type listenerSource struct {
	cfg  ListenerConfig
	open func() (sockdiag.Conn, error)

	mu   sync.Mutex    // serialises Collect and Close
	conn sockdiag.Conn // for the LISTEN dumps

	// legacy is true until the kernel refuses the one-walk TCPDIAG_GETSOCK
	// request; then each family is dumped on its own.
	legacy bool

	// Per-cycle scratch, reused.
	cur        []Listener
	meta       []listenerMeta
	lst        sockdiag.Listeners // cur's listeners by address and port, as the kernel picks them
	hasFamily  [2]bool            // a kept listener came from inetFamilies[i]
	unmatched  int                // SYN_RECV requests with no kept listener
	listenFn   func(sockdiag.Msg)
	v6Disabled bool // the kernel has no AF_INET6 inet_diag
	order      []int
	// cost runs a SYN_RECV dump and measures it, for its budget: the CPU
	// time of the thread running it (threadCPUCost).
	cost costFunc
	// synTimeout bounds each SYN_RECV dump (synRecvTimeout).
	synTimeout time.Duration

	// The SYN_RECV dumps (listeners_synrecv.go).
	dumper  *synRecvDumper
	job     *synRecvJob   // nil while out with the dumper
	out     bool          // a job is with the dumper
	synConn sockdiag.Conn // the SYN_RECV dumps' connection, while not out
	// owners finds the processes holding the listeners (nil: not looked
	// up).
	owners   *ownerCache
	ownersAt time.Time // the last look at them
	inodes   []uint32
	busy     map[int]bool

	// Carried between cycles.
	cadence  synRecvCadence
	last     map[listenerKey]uint32 // SYN_RECV counts of the last dump
	lastAt   time.Time              // the cycle that asked for it
	lastOK   bool                   // no dump failed since: last may be carried
	partErr  string                 // why the counts are no data since a dump timed out
	reason   string                 // why it ran
	dumps    uint64
	retries  uint64
	nobufs   uint64
	timeouts uint64
	cpu      time.Duration
	labels   map[listenerKey]*listenerLabels
	cycle    uint64
}

func newListenerSource(cfg ListenerConfig, fs *procfs.FS) (*listenerSource, error) {
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
		last:       make(map[listenerKey]uint32),
		labels:     make(map[listenerKey]*listenerLabels),
		cadence:    synRecvCadence{interval: cfg.SynRecvInterval},
		cost:       threadCPUCost,
		synTimeout: synRecvTimeout,
		legacy:     true,
	}
	if fs != nil {
		l.owners = newOwnerCache(*fs)
		l.busy = map[int]bool{}
	}
	l.listenFn = l.addListenSocket
	return l, nil
}

func (l *listenerSource) Declaration() *Declaration { return listenersDecl }

// Close stops the SYN_RECV dumps (abandoning one under way) and releases
// the netlink connections.
func (l *listenerSource) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dumper != nil {
		if j := l.dumper.close(l.out); j != nil {
			l.job, l.out, l.synConn = j, false, j.conn
			j.conn = nil
		}
		l.dumper = nil
	}
	return errors.Join(l.dropSynConn(), l.dropConn())
}

// synRecvMaxAge is how old carried SYN_RECV counts may be before they are
// no data: twice the slow cadence.
func (l *listenerSource) synRecvMaxAge() time.Duration { return 2 * l.cfg.SynRecvInterval }

func (l *listenerSource) Collect(ctx context.Context, w *Writer) error {
	started := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	now := w.Time()
	sig := readSignals(w)
	defer l.cadence.observe(now, sig)
	l.cycle++

	if err := l.dumpListen(ctx); err != nil {
		w.Set(lsnStormSignal, boolValue(l.cadence.signal(now, sig, false)))
		l.publishCounters(w)
		w.SetPartTime(partSynRecv, time.Time{})
		return fmt.Errorf("LISTEN dump: %w", err)
	}

	var busy bool
	for i := range l.cur {
		if l.cur[i].AcceptQueue > 0 {
			busy = true
			break
		}
	}
	storm := l.cadence.signal(now, sig, busy)
	w.Set(lsnStormSignal, boolValue(storm))

	// A dump asked for by an earlier cycle and still under way is waited
	// for first; otherwise one is started when due. Either is waited for
	// until this cycle's deadline, then left to a later cycle.
	var synErr error
	if !l.out {
		if run, reason := l.cadence.due(now, storm); run {
			synErr = l.startSynRecv(now, reason, 1)
		}
	}
	fresh := false
	if synErr == nil && l.out {
		wctx := ctx
		if l.cfg.SynRecvWait > 0 {
			var cancel context.CancelFunc
			wctx, cancel = context.WithDeadline(ctx, started.Add(l.cfg.SynRecvWait))
			defer cancel()
		}
		fresh, synErr = l.awaitSynRecv(wctx, now)
	}
	if errors.Is(synErr, errSynRecvTimeout) {
		// The part's own failure (l.partErr), not the source's: the LISTEN
		// part stands.
		synErr = nil
	}
	w.SetHostAttr(attrSynRecvError, l.partErr)
	// Counts not dumped this cycle are carried from the last dump while
	// it is recent and no dump failed since; a failed dump, or a last
	// dump too old, is no data.
	synRecvKnown := fresh || (synErr == nil && l.lastOK && !l.lastAt.IsZero() && now.Sub(l.lastAt) <= l.synRecvMaxAge())
	if !fresh {
		l.carrySynRecv()
	}
	l.publish(w, synRecvKnown)
	switch {
	case fresh:
		// Delivered in this cycle, though maybe asked for by an earlier
		// one: the rules' functions take it, once, as of now.
		w.SetPartTime(partSynRecv, now)
	case synRecvKnown:
		w.SetPartTime(partSynRecv, l.lastAt)
	default:
		w.SetPartTime(partSynRecv, time.Time{})
	}
	if synErr != nil {
		return fmt.Errorf("SYN_RECV dump: %w", synErr)
	}
	return nil
}

// startSynRecv hands the SYN_RECV dump, asked for by the cycle at now, to
// the dumper. attempt counts the restarts of an overrun dump.
func (l *listenerSource) startSynRecv(now time.Time, reason string, attempt int) error {
	if l.synConn == nil {
		// Dialled here, on the cycle's goroutine, so that the socket lives
		// in the caller's network namespace (the dumper's thread may not).
		c, err := l.dial()
		if err != nil {
			return err
		}
		l.synConn = c
	}
	if l.job == nil {
		l.job = &synRecvJob{counts: make(map[listenerKey]uint32)}
	}
	j := l.job
	j.conn, l.synConn = l.synConn, nil
	j.families = [2]bool{l.hasFamily[0], l.hasFamily[1] && !l.v6Disabled}
	// With no kept listener there is nothing to count: no walk at all.
	j.legacy = l.legacy && (j.families[0] || j.families[1])
	j.timeout = l.synTimeout
	j.asked, j.reason, j.attempt = now, reason, attempt
	if l.dumper == nil {
		l.dumper = startSynRecvDumper(l.cost)
	}
	l.job, l.out = nil, true
	l.dumper.jobs <- j
	return nil
}

// awaitSynRecv waits for the dump under way until ctx is done, and takes
// its result: fresh is true when it brought counts (into l.cur).
func (l *listenerSource) awaitSynRecv(ctx context.Context, now time.Time) (fresh bool, err error) {
	for l.out {
		var j *synRecvJob
		select {
		case j = <-l.dumper.done:
		default:
			select {
			case j = <-l.dumper.done:
			case <-ctx.Done():
				return false, nil // a later cycle takes it
			}
		}
		l.job, l.out = j, false
		if retry, err := l.finishSynRecv(j); retry {
			if err := l.startSynRecv(j.asked, j.reason, j.attempt+1); err != nil {
				return false, err
			}
			continue
		} else if err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// finishSynRecv takes a dump's result back from the dumper. retry asks for
// the dump again at once (its connection overran).
func (l *listenerSource) finishSynRecv(j *synRecvJob) (retry bool, err error) {
	l.synConn, j.conn = j.conn, nil
	l.retries += j.retries
	l.cpu += j.cost
	if j.refused {
		l.legacy = false
	}
	if j.v6Disabled {
		l.v6Disabled = true
	}
	switch {
	case j.err == nil:
		l.dumps++
		l.mapRequests(j.counts)
		l.lastAt, l.reason, l.lastOK, l.partErr = j.asked, j.reason, true, ""
		l.rememberSynRecv(j.asked, j.cost)
		return false, nil
	case errors.Is(j.err, unix.ENOBUFS):
		l.nobufs++
		l.dropSynConn()
		if j.attempt < sockdiag.MaxDumpAttempts {
			return true, nil
		}
		err = fmt.Errorf("gave up after %d attempts: %w", j.attempt, j.err)
	case errors.Is(j.err, errSynRecvTimeout):
		l.timeouts++
		l.partErr = j.err.Error()
		// What it cost counts against the budget, as a dump.
		l.cadence.lastDump, l.cadence.lastCost = j.asked, j.cost
		err = j.err
	default:
		err = j.err
	}
	// Whatever state the connection is in, it is not reused.
	l.dropSynConn()
	l.lastOK = false
	clear(l.last)
	return false, err
}

// publishCounters sets the dump counters and the last dump's time.
func (l *listenerSource) publishCounters(w *Writer) {
	w.Set(lsnSynRecvDumps, float64(l.dumps))
	w.Set(lsnDumpRetries, float64(l.retries))
	w.Set(lsnDumpNoBufs, float64(l.nobufs))
	w.Set(lsnSynRecvTimeouts, float64(l.timeouts))
	w.Set(lsnSynRecvCPU, l.cpu.Seconds())
	if !l.lastAt.IsZero() {
		w.Set(lsnSynRecvLastDump, float64(l.lastAt.UnixNano())/1e9)
		w.SetHostAttr("syn_recv_reason", l.reason)
	}
}

// dumpListen reads the LISTEN sockets: one legacy dump of both families
// or, where the kernel refuses it, one per family; all of it again when a
// dump is interrupted or overrun.
func (l *listenerSource) dumpListen(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		l.resetListeners()
		interrupted, err := l.listenOnce(ctx)
		switch {
		case err == nil && !interrupted:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			l.nobufs++
			l.dropConn()
		case err != nil:
			l.dropConn()
			return err
		default:
			l.retries++
		}
		if attempt == sockdiag.MaxDumpAttempts {
			if err != nil {
				return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			return fmt.Errorf("gave up after %d attempts: %w", attempt, sockdiag.ErrDumpInterrupted)
		}
	}
}

// listenOnce runs the LISTEN dump once.
func (l *listenerSource) listenOnce(ctx context.Context) (interrupted bool, err error) {
	if l.legacy {
		if err := l.ensureConn(); err != nil {
			return false, err
		}
		res, err := sockdiag.DumpInet(ctx, l.conn, sockdiag.TCPFListen, l.listenFn)
		if err == nil || !sockdiag.LegacyRefused(err) {
			return res.Interrupted, err
		}
		// Refused: the refusal is the whole answer, the connection clean.
		l.legacy = false
		l.resetListeners()
	}
	return l.dumpFamilies(ctx, sockdiag.TCPFListen, l.listenFn)
}

// dumpFamilies runs the dump for each address family.
func (l *listenerSource) dumpFamilies(ctx context.Context, states uint32, fn func(sockdiag.Msg)) (interrupted bool, err error) {
	for _, fam := range inetFamilies {
		if fam == unix.AF_INET6 && l.v6Disabled {
			continue
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
	c, err := l.dial()
	if err != nil {
		return err
	}
	l.conn = c
	return nil
}

// dial opens a sock_diag connection.
func (l *listenerSource) dial() (sockdiag.Conn, error) {
	c, err := l.open()
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, fmt.Errorf("%w: sock_diag: %w", ErrNoData, err)
		}
		return nil, fmt.Errorf("dial sock_diag: %w", err)
	}
	return c, nil
}

func (l *listenerSource) dropConn() error {
	if l.conn == nil {
		return nil
	}
	err := l.conn.Close()
	l.conn = nil
	return err
}

func (l *listenerSource) dropSynConn() error {
	if l.synConn == nil {
		return nil
	}
	err := l.synConn.Close()
	l.synConn = nil
	return err
}

func (l *listenerSource) resetListeners() {
	l.cur = l.cur[:0]
	l.meta = l.meta[:0]
	l.lst.Reset()
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
	i, _ := l.lst.Add(m)
	if i == len(l.cur) { // a listener not seen before in this dump
		l.cur = append(l.cur, Listener{Addr: m.Src.Unmap(), Port: m.SrcPort})
		l.meta = append(l.meta, listenerMeta{inode: m.Inode})
	}
	if m.Family == unix.AF_INET6 {
		l.hasFamily[1] = true
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
	l.cadence.lastDump, l.cadence.lastCost = now, cost
	l.cadence.synFilling, l.cadence.fillingAt = filling, now
}

// carrySynRecv puts the last dump's counts on the current listeners.
func (l *listenerSource) carrySynRecv() {
	for i := range l.cur {
		ln := &l.cur[i]
		ln.SynRecv = l.last[listenerKey{ln.Addr, ln.Port}]
	}
}

// publish writes the kept listeners (the busiest, up to the cap) into w.
func (l *listenerSource) publish(w *Writer, synRecvKnown bool) {
	l.publishCounters(w)
	l.order = l.order[:0]
	for i := range l.cur {
		l.order = append(l.order, i)
	}
	dropped := 0
	if max := l.cfg.Max; max > 0 && len(l.order) > max {
		slices.SortFunc(l.order, func(a, b int) int { return byBusiest(l.cur[a], l.cur[b]) })
		dropped = len(l.order) - max
		l.order = l.order[:max]
	}
	syncookies, maxSynBacklog := w.Get("syncookies"), w.Get("tcp_max_syn_backlog")
	l.updateOwners(w.Time())
	tw := w.Table(KindListener, len(l.order))
	var total uint64
	for _, i := range l.order {
		ln := &l.cur[i]
		row := tw.Add(l.labelsOf(ln)...)
		tw.Set(row, lsnAcceptQueue, float64(ln.AcceptQueue))
		tw.Set(row, lsnAcceptLimit, float64(ln.AcceptLimit))
		tw.Set(row, lsnAcceptFill, ln.Fill())
		tw.Set(row, lsnSockets, float64(ln.Sockets))
		tw.Set(row, lsnSynQueueLimit, SynQueueLimit(ln, syncookies, maxSynBacklog))
		if l.owners != nil {
			p, reason := l.owners.lookup(l.meta[i].inode)
			setOwner(tw, row, p, reason)
		}
		if synRecvKnown {
			tw.Set(row, lsnSynRecv, float64(ln.SynRecv))
			total += uint64(ln.SynRecv)
		}
	}
	w.Set(lsnCount, float64(len(l.order)))
	w.Set(lsnDropped, float64(dropped))
	if synRecvKnown {
		w.Set(lsnSynRecvHost, float64(total))
		w.Set(lsnSynRecvTotal, float64(total))
	}
	// Forget the labels of listeners gone for a while.
	if l.cycle%64 == 0 {
		for k, v := range l.labels {
			if l.cycle-v.seen > 64 {
				delete(l.labels, k)
			}
		}
	}
}

// updateOwners looks up the owners of the kept listeners (see
// ownerCache), reading again the state of those with a queue, at most
// every ownerStateInterval.
func (l *listenerSource) updateOwners(now time.Time) {
	if l.owners == nil {
		return
	}
	if !l.ownersAt.IsZero() && now.After(l.ownersAt) && now.Sub(l.ownersAt) < ownerStateInterval {
		return
	}
	l.ownersAt = now
	l.inodes = l.inodes[:0]
	clear(l.busy)
	for _, i := range l.order {
		ino := l.meta[i].inode
		l.inodes = append(l.inodes, ino)
		if l.cur[i].AcceptQueue > 0 {
			if p, reason := l.owners.lookup(ino); reason == "" {
				l.busy[p.PID] = true
			}
		}
	}
	l.owners.update(now, l.inodes, l.busy)
}

// labelsOf returns the listener's label values, the same slice every cycle.
func (l *listenerSource) labelsOf(ln *Listener) []string {
	k := listenerKey{ln.Addr, ln.Port}
	if v, ok := l.labels[k]; ok {
		v.seen = l.cycle
		return v.labels
	}
	addr, port := ln.LabelValues()
	v := &listenerLabels{labels: []string{addr, port}, seen: l.cycle}
	l.labels[k] = v
	return v.labels
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

// signals are the counters of this cycle that drive the SYN_RECV cadence.
type signals struct {
	syncookiesSent, reqQFullDoCookies, reqQFullDrop, listenOverflows, passiveOpens float64
}

// readSignals reads the signals the tcpstat source set this cycle.
func readSignals(w *Writer) signals {
	return signals{
		syncookiesSent:    w.Get("syncookies_sent"),
		reqQFullDoCookies: w.Get("syn_queue_cookies"),
		reqQFullDrop:      w.Get("syn_queue_drops"),
		listenOverflows:   w.Get("listen_overflows"),
		passiveOpens:      w.Get("passive_opens"),
	}
}

// synRecvCadence decides when the SYN_RECV dump runs: on every cycle a
// cheap signal is active (SYN cookies, SYN queue drops or accept queue
// overflows counted since the last cycle; passive opens above
// passiveOpensFloor a second; an accept queue not empty; a SYN queue a
// tenth full at the last dump), held to synRecvCPUShare of the time, and
// otherwise every interval.
type synRecvCadence struct {
	interval time.Duration

	prevTime time.Time     // the previous cycle, zero before the first
	prev     signals       // its counters
	lastDump time.Time     // the last SYN_RECV dump that completed or timed out
	lastCost time.Duration // its CPU time
	// synFilling is true when the last dump that completed (at fillingAt)
	// found a listener's SYN queue at least 1/synQueueFollowShare full. It
	// is a storm signal for synFillingHold after that dump: dumps that fail
	// are retried while it holds, but cannot hold it for ever.
	synFilling bool
	fillingAt  time.Time

	// The passive-open rate is judged over at least minRateWindow: from
	// the reading at rateTime (rateValue), fastOpens as of then.
	rateTime  time.Time
	rateValue float64
	fastOpens bool
}

// due reports whether the SYN_RECV dump should run in the cycle at now,
// in which a storm signal is active or not (signal), and why.
func (c *synRecvCadence) due(now time.Time, signal bool) (bool, string) {
	if signal && c.withinBudget(now) {
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

// signal reports whether a cheap storm signal is active in the cycle at
// now, whose counters are sig; acceptQueued says whether a kept listener
// has a non-empty accept queue.
func (c *synRecvCadence) signal(now time.Time, sig signals, acceptQueued bool) bool {
	if acceptQueued || (c.synFilling && now.Sub(c.fillingAt) < synFillingHold) {
		return true
	}
	if c.prevTime.IsZero() {
		return false
	}
	p := &c.prev
	if grew(p.syncookiesSent, sig.syncookiesSent) ||
		grew(p.reqQFullDoCookies, sig.reqQFullDoCookies) ||
		grew(p.reqQFullDrop, sig.reqQFullDrop) ||
		grew(p.listenOverflows, sig.listenOverflows) {
		return true
	}
	return c.opensFast(now, sig.passiveOpens)
}

// opensFast reports whether passive opens run above passiveOpensFloor a
// second: judged from the rate reading when at least minRateWindow has
// passed since it, else as judged then.
func (c *synRecvCadence) opensFast(now time.Time, passiveOpens float64) bool {
	if !Present(passiveOpens) {
		return false
	}
	dt := now.Sub(c.rateTime)
	if c.rateTime.IsZero() || dt < minRateWindow || !Present(c.rateValue) {
		return c.fastOpens && !c.rateTime.IsZero() && dt >= 0
	}
	return (passiveOpens-c.rateValue)/dt.Seconds() > passiveOpensFloor
}

// observe records the cycle at now for the next decision.
func (c *synRecvCadence) observe(now time.Time, sig signals) {
	if c.rateTime.IsZero() || now.Before(c.rateTime) || now.Sub(c.rateTime) >= minRateWindow {
		c.fastOpens = c.opensFast(now, sig.passiveOpens)
		c.rateTime, c.rateValue = now, sig.passiveOpens
	}
	c.prevTime, c.prev = now, sig
}

// boolValue is 1 for true, 0 for false.
func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// grew reports whether a counter read in two cycles increased.
func grew(prev, cur float64) bool {
	return Present(prev) && Present(cur) && cur > prev
}

package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/sockdiag/sockdiagtest"
)

// fakeKernel answers sock_diag dumps from a socket table, through nltest:
// legacy TCPDIAG_GETSOCK requests (both families at once) unless it
// refuses them, and SOCK_DIAG_BY_FAMILY requests per family. The listeners
// source dumps from two goroutines (the SYN_RECV dumps on their own), so
// it locks. A test changes its fields between cycles, when no dump runs:
// each cycle waits for the dump it starts.
type fakeKernel struct {
	t       *testing.T
	mu      sync.Mutex
	sockets []sockdiag.Msg

	interrupt    int                                     // flag the next n dumps NLM_F_DUMP_INTR
	intrOnly     uint32                                  // only dumps of these states (0: any)
	nobufs       int                                     // fail the next n dumps with ENOBUFS
	nobufsOnly   uint32                                  // only dumps of these states (0: any)
	nlErr        func(family uint8, states uint32) error // an NLMSG_ERROR errno, or nil
	refuseLegacy unix.Errno                              // answer legacy requests with this errno (0: serve them)
	dialErr      error
	// stall holds each SYN_RECV dump that long before answering, as a
	// kernel walking a huge table on a starved CPU; a deadline set in the
	// past ends the wait with os.ErrDeadlineExceeded, as on a socket.
	stall time.Duration

	dials    int
	conns    []*sockdiagtest.Conn
	requests []string // "family/states" of every dump request ("unspec/…": legacy)
}

func (k *fakeKernel) open() (sockdiag.Conn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dials++
	if k.dialErr != nil {
		return nil, k.dialErr
	}
	var c *sockdiagtest.Conn
	c = sockdiagtest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) { return k.reply(c, reqs) })
	k.conns = append(k.conns, c)
	return c, nil
}

func (k *fakeKernel) reply(c *sockdiagtest.Conn, reqs []netlink.Message) ([]netlink.Message, error) {
	req := reqs[0]
	r, ok := sockdiagtest.ParseRequest(req)
	if !ok {
		k.t.Errorf("bad sock_diag request %+v %x", req.Header, req.Data)
		return sockdiagtest.KernelError(req, unix.EINVAL)
	}
	family, states := r.Family, r.States
	k.mu.Lock()
	n := len(k.requests)
	k.requests = append(k.requests, requestName(family, states))
	stall := k.stall
	k.mu.Unlock()
	if stall > 0 && states == sockdiag.TCPFSynRecv {
		select {
		case <-time.After(stall):
		case <-c.Expired():
			k.mu.Lock()
			k.requests[n] += " (abandoned)"
			k.mu.Unlock()
			return nil, os.ErrDeadlineExceeded
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if r.Legacy && k.refuseLegacy != 0 {
		return sockdiagtest.KernelError(req, k.refuseLegacy)
	}
	if k.nobufs > 0 && (k.nobufsOnly == 0 || k.nobufsOnly == states) {
		k.nobufs--
		return nil, unix.ENOBUFS
	}
	if k.nlErr != nil {
		if err := k.nlErr(family, states); err != nil {
			var errno unix.Errno
			if !errors.As(err, &errno) {
				return nil, fmt.Errorf("nlErr returned %w, not an errno", err)
			}
			return sockdiagtest.KernelError(req, errno)
		}
	}
	var flags netlink.HeaderFlags
	if k.interrupt > 0 && (k.intrOnly == 0 || k.intrOnly == states) {
		k.interrupt--
		flags = netlink.DumpInterrupted
	}
	var msgs [][]byte
	for _, m := range k.sockets {
		if (family == unix.AF_UNSPEC || m.Family == family) && states&(1<<m.State) != 0 {
			msgs = append(msgs, sockdiagtest.Marshal(m))
		}
	}
	return sockdiagtest.DumpReply(req, flags, msgs...), nil
}

func requestName(family uint8, states uint32) string {
	f := map[uint8]string{unix.AF_UNSPEC: "unspec", unix.AF_INET: "inet", unix.AF_INET6: "inet6"}[family]
	s := map[uint32]string{sockdiag.TCPFListen: "listen", sockdiag.TCPFSynRecv: "syn-recv"}[states]
	return f + "/" + s
}

// Test sockets.
func listenSock(addr string, port uint16, rq, wq uint32, v6only bool) sockdiag.Msg {
	a := netip.MustParseAddr(addr)
	fam := uint8(unix.AF_INET)
	dst := netip.IPv4Unspecified()
	if a.Is6() {
		fam, dst = unix.AF_INET6, netip.IPv6Unspecified()
	}
	return sockdiag.Msg{Family: fam, State: sockdiag.TCPListen, Src: a, SrcPort: port, Dst: dst,
		RQueue: rq, WQueue: wq, Inode: uint32(port), V6Only: v6only}
}

func requestSock(addr string, port uint16) sockdiag.Msg {
	a := netip.MustParseAddr(addr)
	fam := uint8(unix.AF_INET)
	if a.Is6() {
		fam = unix.AF_INET6
	}
	return sockdiag.Msg{Family: fam, State: sockdiag.TCPSynRecv, Src: a, SrcPort: port, Dst: a, DstPort: 40000}
}

func testListenerSockets() []sockdiag.Msg {
	return []sockdiag.Msg{
		// An SO_REUSEPORT pair.
		listenSock("127.0.0.1", 6379, 3, 128, false),
		listenSock("127.0.0.1", 6379, 10, 128, false),
		// Separate IPv4 and IPv6-only wildcards.
		listenSock("0.0.0.0", 6380, 0, 4096, false),
		listenSock("::", 6380, 1, 4096, true),
		// A dual-stack wildcard.
		listenSock("::", 6381, 0, 511, false),
		// An AF_INET6 socket bound to a v4-mapped address.
		listenSock("::ffff:10.0.0.1", 6382, 0, 100, false),
		listenSock("::1", 6383, 0, 100, true),
		listenSock("0.0.0.0", 22, 0, 0, false),

		requestSock("127.0.0.1", 6379),
		requestSock("127.0.0.1", 6379),
		requestSock("10.0.0.5", 6380),         // to 0.0.0.0
		requestSock("2001:db8::1", 6380),      // to [::]
		requestSock("::ffff:192.0.2.1", 6381), // IPv4 on the dual-stack [::]
		requestSock("::1", 6381),
		requestSock("::ffff:10.0.0.1", 6382),
		requestSock("127.0.0.1", 6383), // no IPv4 listener on 6383
		requestSock("10.0.0.9", 9999),  // no listener at all
		// A full socket in SYN_RECV that has an inode is no request socket.
		func() sockdiag.Msg { m := requestSock("127.0.0.1", 6379); m.Inode = 77; return m }(),
	}
}

// equateAddr lets cmp compare netip.Addr values.
var equateAddr = cmpopts.EquateComparable(netip.Addr{})

var (
	v4Any = netip.IPv4Unspecified()
	v6Any = netip.IPv6Unspecified()
)

func wantTestListeners() []Listener {
	return []Listener{
		{Addr: v4Any, Port: 22, Sockets: 1},
		{Addr: netip.MustParseAddr("127.0.0.1"), Port: 6379, Sockets: 2, AcceptQueue: 13, AcceptLimit: 256, MaxFill: 10.0 / 128, SynRecv: 2},
		{Addr: v4Any, Port: 6380, Sockets: 1, AcceptLimit: 4096, SynRecv: 1},
		{Addr: v6Any, Port: 6380, Sockets: 1, AcceptQueue: 1, AcceptLimit: 4096, MaxFill: 1.0 / 4096, SynRecv: 1},
		{Addr: v6Any, Port: 6381, Sockets: 1, AcceptLimit: 511, SynRecv: 2},
		{Addr: netip.MustParseAddr("10.0.0.1"), Port: 6382, Sockets: 1, AcceptLimit: 100, SynRecv: 1},
		{Addr: netip.IPv6Loopback(), Port: 6383, Sockets: 1, AcceptLimit: 100},
	}
}

func newFakeSource(t *testing.T, k *fakeKernel, cfg ListenerConfig) *listenerSource {
	t.Helper()
	k.t = t
	src, err := newListenerSource(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	src.open = k.open
	t.Cleanup(func() { src.Close() })
	return src
}

// quietTCP returns counters that carry no storm signal (none read).
func quietTCP() signals {
	return signals{math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()}
}

// tl0 is the time of the first cycle of these tests.
var tl0 = time.Unix(1_700_000_000, 0)

// collectAt runs src for the cycle at now, whose TcpExt and Tcp counters
// (read by tcpstat before it) are sig.
func collectAt(t *testing.T, src *listenerSource, now time.Time, sig signals) (*Snapshot, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return collectCtx(ctx, src, now, sig)
}

func collectCtx(ctx context.Context, src *listenerSource, now time.Time, sig signals) (*Snapshot, error) {
	s := newSnapshot(DefaultSchema(), now)
	for name, v := range map[string]float64{
		"syncookies_sent": sig.syncookiesSent, "syn_queue_cookies": sig.reqQFullDoCookies,
		"syn_queue_drops": sig.reqQFullDrop, "listen_overflows": sig.listenOverflows, "passive_opens": sig.passiveOpens,
	} {
		ref, _ := DefaultSchema().Lookup(HostKind, name)
		s.host[ref.Slot] = v
	}
	si, _ := DefaultSchema().SourceIndex("listeners")
	w := s.writer(si)
	err := src.Collect(ctx, w)
	w.finish()
	s.finish()
	return s, err
}

// synInfo is what a Snapshot says of the SYN_RECV dump.
type synInfo struct {
	// Time is when the counts in the Snapshot were dumped: zero when
	// they are no data.
	Time   time.Time
	Ran    bool
	Reason string
	// LastDump is the last dump's time, zero before the first.
	LastDump               time.Time
	Dumps, Retries, NoBufs float64
}

func synInfoOf(s *Snapshot) synInfo {
	sc := s.Schema()
	si, _ := sc.SourceIndex("listeners")
	part := s.PartTime(sc.partByK[partKey{si, partSynRecv}])
	in := synInfo{Time: part, Ran: SynRecvRan(s), Reason: s.HostAttr("syn_recv_reason"),
		Dumps: s.Get("syn_recv_dumps"), Retries: s.Get("syn_recv_dump_retries"), NoBufs: s.Get("syn_recv_dump_nobufs")}
	if v := s.Get("syn_recv_last_dump"); Present(v) {
		in.LastDump = time.Unix(0, int64(math.Round(v*1e9)))
	}
	return in
}

// synRecvOf returns the SYN_RECV count of each listener by "addr:port"
// (NaN: no data).
func synRecvOf(s *Snapshot) map[string]float64 {
	t := s.TableOf(KindListener)
	ref, _ := s.Schema().Lookup(KindListener, "syn_recv")
	out := map[string]float64{}
	for r := range t.Len() {
		l := t.Labels(r)
		out[l[0]+":"+l[1]] = t.Value(r, ref.Slot)
	}
	return out
}

// TestListenersCollect reads the test sockets with the one-walk legacy
// dumps, and with the per-family dumps a kernel refusing them falls back
// to (with each errno LegacyRefused knows): the same listeners and counts
// either way.
func TestListenersCollect(t *testing.T) {
	v2 := []string{"inet/listen", "inet6/listen", "inet/syn-recv", "inet6/syn-recv"}
	for _, tc := range []struct {
		name     string
		refuse   unix.Errno
		wantReqs []string // in the first cycle, then in the second
		second   []string
	}{
		{name: "legacy", wantReqs: []string{"unspec/listen", "unspec/syn-recv"}, second: []string{"unspec/listen", "unspec/syn-recv"}},
		{name: "refused EINVAL", refuse: unix.EINVAL, wantReqs: append([]string{"unspec/listen"}, v2...), second: v2},
		{name: "refused EOPNOTSUPP", refuse: unix.EOPNOTSUPP, wantReqs: append([]string{"unspec/listen"}, v2...), second: v2},
		{name: "refused ENOENT", refuse: unix.ENOENT, wantReqs: append([]string{"unspec/listen"}, v2...), second: v2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKernel{sockets: testListenerSockets(), refuseLegacy: tc.refuse}
			src := newFakeSource(t, k, ListenerConfig{})
			now := tl0
			s, err := collectAt(t, src, now, quietTCP())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantTestListeners(), Listeners(s), equateAddr); diff != "" {
				t.Errorf("Listeners (-want +got):\n%s", diff)
			}
			// 6379 has a non-empty accept queue.
			wantInfo := synInfo{Time: now, LastDump: now, Ran: true, Reason: reasonSignal, Dumps: 1}
			if diff := cmp.Diff(wantInfo, synInfoOf(s)); diff != "" {
				t.Errorf("SYN_RECV (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantReqs, k.requests); diff != "" {
				t.Errorf("dumps (-want +got):\n%s", diff)
			}
			if src.unmatched != 2 {
				t.Errorf("%d unmatched request sockets, want 2", src.unmatched)
			}
			if d := s.Get("listeners_dropped"); d != 0 {
				t.Errorf("listeners_dropped = %v, want 0", d)
			}
			if v := s.Get("storm_signal"); v != 1 {
				t.Errorf("storm_signal = %v, want 1 (an accept queue is not empty)", v)
			}
			// The syn_queue_limit is the accept queue limit with SYN
			// cookies (or sysctls not read).
			limits := map[string]float64{}
			t6 := s.TableOf(KindListener)
			ref, _ := s.Schema().Lookup(KindListener, "syn_queue_limit")
			for r := range t6.Len() {
				limits[t6.Labels(r)[1]+"/"+t6.Labels(r)[0]] = t6.Value(r, ref.Slot)
			}
			if limits["6379/127.0.0.1"] != 256 || limits["6381/::"] != 511 {
				t.Errorf("syn_queue_limit = %v", limits)
			}

			// A refusal is remembered: the next cycle asks per family at once.
			k.requests = nil
			s, err = collectAt(t, src, now.Add(time.Second), quietTCP())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantTestListeners(), Listeners(s), equateAddr); diff != "" {
				t.Errorf("second cycle: Listeners (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.second, k.requests); diff != "" {
				t.Errorf("second cycle: dumps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListenersFilters(t *testing.T) {
	tests := []struct {
		name     string
		cfg      ListenerConfig
		ports    []uint16 // of the listeners kept, in order
		dropped  int
		synDumps []string // SYN_RECV dumps made
	}{
		{
			name:     "include",
			cfg:      ListenerConfig{Include: []PortRange{{6379, 6381}}},
			ports:    []uint16{6379, 6380, 6380, 6381},
			synDumps: []string{"inet/syn-recv", "inet6/syn-recv"},
		},
		{
			name:     "include and exclude",
			cfg:      ListenerConfig{Include: []PortRange{{6379, 6381}}, Exclude: []PortRange{{6380, 6380}}},
			ports:    []uint16{6379, 6381},
			synDumps: []string{"inet/syn-recv", "inet6/syn-recv"},
		},
		{
			name:     "IPv4 listeners only",
			cfg:      ListenerConfig{Exclude: []PortRange{{6380, 6383}}},
			ports:    []uint16{22, 6379},
			synDumps: []string{"inet/syn-recv"},
		},
		{
			name:     "IPv6 listeners only",
			cfg:      ListenerConfig{Include: []PortRange{{6381, 6381}, {6383, 6383}}},
			ports:    []uint16{6381, 6383},
			synDumps: []string{"inet6/syn-recv"},
		},
		{
			name:  "nothing kept",
			cfg:   ListenerConfig{Include: []PortRange{{1, 2}}},
			ports: nil,
		},
		{
			name:     "cap by accept queue",
			cfg:      ListenerConfig{Max: 2},
			ports:    []uint16{6379, 6380}, // 13 queued, then 1 ([::]:6380)
			dropped:  5,
			synDumps: []string{"inet/syn-recv", "inet6/syn-recv"},
		},
		{
			name:     "cap by accept queue then SYN_RECV",
			cfg:      ListenerConfig{Max: 3},
			ports:    []uint16{6379, 6380, 6381}, // then 2 half-open on [::]:6381
			dropped:  4,
			synDumps: []string{"inet/syn-recv", "inet6/syn-recv"},
		},
	}
	for _, tt := range tests {
		for _, legacy := range []bool{true, false} {
			name := tt.name + "/per family"
			k := &fakeKernel{sockets: testListenerSockets(), refuseLegacy: unix.EINVAL}
			wantSyn := tt.synDumps
			if legacy {
				// One walk, whatever the families kept; none when nothing is.
				name, k.refuseLegacy, wantSyn = tt.name+"/legacy", 0, nil
				if len(tt.synDumps) > 0 {
					wantSyn = []string{"unspec/syn-recv"}
				}
			}
			t.Run(name, func(t *testing.T) {
				src := newFakeSource(t, k, tt.cfg)
				s, err := collectAt(t, src, tl0, quietTCP())
				if err != nil {
					t.Fatal(err)
				}
				var ports []uint16
				for _, l := range Listeners(s) {
					ports = append(ports, l.Port)
				}
				if diff := cmp.Diff(tt.ports, ports); diff != "" {
					t.Errorf("ports (-want +got):\n%s", diff)
				}
				if d := s.Get("listeners_dropped"); d != float64(tt.dropped) {
					t.Errorf("listeners_dropped = %v, want %d", d, tt.dropped)
				}
				// Only the kept listeners are held: the cap bounds memory.
				if n := s.TableOf(KindListener).Len(); n != len(tt.ports) {
					t.Errorf("table of %d listeners, want %d", n, len(tt.ports))
				}
				var synDumps []string
				for _, r := range k.requests {
					if !strings.HasSuffix(r, "/listen") {
						synDumps = append(synDumps, r)
					}
				}
				if diff := cmp.Diff(wantSyn, synDumps); diff != "" {
					t.Errorf("SYN_RECV dumps (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestSynRecvCadenceDue(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	counters := func(f func(*signals)) signals {
		c := quietTCP()
		c.syncookiesSent, c.reqQFullDoCookies, c.reqQFullDrop = 5, 5, 5
		c.listenOverflows, c.passiveOpens = 5, 1000
		if f != nil {
			f(&c)
		}
		return c
	}
	base := synRecvCadence{interval: 10 * time.Second, prevTime: t0, prev: counters(nil), lastDump: t0.Add(-5 * time.Second),
		rateTime: t0, rateValue: 1000}
	now := t0.Add(time.Second)

	tests := []struct {
		name       string
		c          synRecvCadence
		now        time.Time
		tcp        signals
		queued     bool
		wantRun    bool
		wantReason string
	}{
		{name: "quiet", c: base, now: now, tcp: counters(nil)},
		{name: "never dumped", c: synRecvCadence{interval: time.Hour}, now: now, tcp: counters(nil), wantRun: true, wantReason: reasonInterval},
		{name: "every cycle", c: synRecvCadence{prevTime: t0, prev: counters(nil), lastDump: t0}, now: now, tcp: counters(nil), wantRun: true, wantReason: reasonInterval},
		{name: "interval due", c: base, now: t0.Add(5 * time.Second), tcp: counters(nil), wantRun: true, wantReason: reasonInterval},
		{name: "interval due on an early tick", c: base, now: t0.Add(4950 * time.Millisecond), tcp: counters(nil), wantRun: true, wantReason: reasonInterval},
		{name: "interval not due", c: base, now: t0.Add(4800 * time.Millisecond), tcp: counters(nil)},
		{name: "clock went back", c: base, now: t0.Add(-time.Hour), tcp: counters(nil), wantRun: true, wantReason: reasonInterval},
		{name: "syncookies sent", c: base, now: now, tcp: counters(func(c *signals) { c.syncookiesSent++ }), wantRun: true, wantReason: reasonSignal},
		{name: "SYN queue full cookies", c: base, now: now, tcp: counters(func(c *signals) { c.reqQFullDoCookies++ }), wantRun: true, wantReason: reasonSignal},
		{name: "SYN queue full drops", c: base, now: now, tcp: counters(func(c *signals) { c.reqQFullDrop++ }), wantRun: true, wantReason: reasonSignal},
		{name: "listen overflows", c: base, now: now, tcp: counters(func(c *signals) { c.listenOverflows++ }), wantRun: true, wantReason: reasonSignal},
		{name: "counter reset", c: base, now: now, tcp: counters(func(c *signals) { c.listenOverflows = 0 })},
		{name: "counter appears", c: synRecvCadence{interval: time.Hour, prevTime: t0, prev: quietTCP(), lastDump: t0}, now: now, tcp: counters(nil)},
		{name: "counter vanishes", c: base, now: now, tcp: counters(func(c *signals) { c.syncookiesSent = math.NaN() })},
		{name: "passive opens above floor", c: base, now: now, tcp: counters(func(c *signals) { c.passiveOpens += passiveOpensFloor + 1 }), wantRun: true, wantReason: reasonSignal},
		{name: "passive opens below floor", c: base, now: now, tcp: counters(func(c *signals) { c.passiveOpens += passiveOpensFloor - 1 })},
		{name: "passive opens rate over two seconds", c: base, now: t0.Add(2 * time.Second), tcp: counters(func(c *signals) { c.passiveOpens += 2 * passiveOpensFloor })},
		// At a sub-second interval the rate is judged over at least
		// minRateWindow: a burst of connections in one short cycle is not
		// a storm, and between judgements the last one holds.
		{name: "passive opens burst in a short cycle", c: base, now: t0.Add(250 * time.Millisecond), tcp: counters(func(c *signals) { c.passiveOpens += 20 })},
		{name: "passive opens fast, judged before", c: func() synRecvCadence { c := base; c.fastOpens = true; return c }(),
			now: t0.Add(250 * time.Millisecond), tcp: counters(nil), wantRun: true, wantReason: reasonSignal},
		{name: "passive opens over the rate window", c: func() synRecvCadence { c := base; c.prevTime = t0.Add(750 * time.Millisecond); return c }(),
			now: now, tcp: counters(func(c *signals) { c.passiveOpens += passiveOpensFloor + 1 }), wantRun: true, wantReason: reasonSignal},
		{name: "accept queue", c: base, now: now, tcp: counters(nil), queued: true, wantRun: true, wantReason: reasonSignal},
		{name: "SYN queue filling last time", c: func() synRecvCadence { c := base; c.synFilling, c.fillingAt = true, t0; return c }(), now: now, tcp: counters(nil), wantRun: true, wantReason: reasonSignal},
		// Dumps failing since a dump found the queue filling: the signal
		// holds synFillingHold, not for ever.
		{name: "SYN queue filling, dumps failed since", c: func() synRecvCadence {
			c := base
			c.synFilling, c.fillingAt = true, now.Add(-synFillingHold)
			return c
		}(), now: now, tcp: counters(nil)},
		{name: "signal within budget", c: func() synRecvCadence { c := base; c.lastDump, c.lastCost = t0, 8*time.Millisecond; return c }(),
			now: now, queued: true, tcp: counters(nil), wantRun: true, wantReason: reasonSignal},
		{name: "signal over budget", c: func() synRecvCadence { c := base; c.lastDump, c.lastCost = t0, 16*time.Millisecond; return c }(),
			now: now, queued: true, tcp: counters(nil)},
		{name: "signal back within budget", c: func() synRecvCadence { c := base; c.lastDump, c.lastCost = t0, 16*time.Millisecond; return c }(),
			now: t0.Add(2 * time.Second), queued: true, tcp: counters(nil), wantRun: true, wantReason: reasonSignal},
		{name: "interval ignores budget", c: func() synRecvCadence {
			c := base
			c.interval, c.lastDump, c.lastCost = time.Second, t0, time.Second
			return c
		}(), now: now, queued: true, tcp: counters(nil), wantRun: true, wantReason: reasonInterval},
		{name: "first cycle counters", c: synRecvCadence{interval: time.Hour, lastDump: t0}, now: now, tcp: counters(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run, reason := tt.c.due(tt.now, tt.c.signal(tt.now, tt.tcp, tt.queued))
			if run != tt.wantRun || reason != tt.wantReason {
				t.Errorf("due = %v, %q; want %v, %q", run, reason, tt.wantRun, tt.wantReason)
			}
		})
	}
}

func TestListenersCadence(t *testing.T) {
	// Backlog 16: two half-opens fill an eighth of its SYN queue.
	k := &fakeKernel{sockets: []sockdiag.Msg{listenSock("0.0.0.0", 6379, 0, 16, false)}}
	src := newFakeSource(t, k, ListenerConfig{SynRecvInterval: 10 * time.Second})
	t0 := tl0
	halfOpen := []sockdiag.Msg{requestSock("10.0.0.1", 6379), requestSock("10.0.0.2", 6379)}
	listener := k.sockets[0]
	cookies := 0.0
	nan := math.NaN()

	type cycle struct {
		at       time.Duration  // after t0
		sockets  []sockdiag.Msg // requests present in the kernel
		cookie   bool           // SyncookiesSent moves
		synErr   bool           // the SYN_RECV dump fails
		wantInfo synInfo
		wantSyn  float64 // NaN: no data
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	cycles := []cycle{
		{at: 0, wantInfo: synInfo{Time: t0, LastDump: t0, Ran: true, Reason: reasonInterval, Dumps: 1}},
		// Half-opens appear; nothing cheap moves: not seen yet, the last
		// dump's counts are carried.
		{at: 1 * time.Second, sockets: halfOpen, wantInfo: synInfo{Time: t0, LastDump: t0, Reason: reasonInterval, Dumps: 1}},
		// SYN cookies sent: dumped.
		{at: 2 * time.Second, sockets: halfOpen, cookie: true,
			wantInfo: synInfo{Time: at(2 * time.Second), LastDump: at(2 * time.Second), Ran: true, Reason: reasonSignal, Dumps: 2}, wantSyn: 2},
		// The SYN queue was filling last time: dumped, and the dump fails:
		// no data (never the old counts).
		{at: 3 * time.Second, sockets: halfOpen, synErr: true,
			wantInfo: synInfo{LastDump: at(2 * time.Second), Reason: reasonSignal, Dumps: 2}, wantSyn: nan},
		// Retried on the next cycle, the flood is over.
		{at: 4 * time.Second,
			wantInfo: synInfo{Time: at(4 * time.Second), LastDump: at(4 * time.Second), Ran: true, Reason: reasonSignal, Dumps: 3}},
		{at: 5 * time.Second, wantInfo: synInfo{Time: at(4 * time.Second), LastDump: at(4 * time.Second), Reason: reasonSignal, Dumps: 3}},
		{at: 14 * time.Second, wantInfo: synInfo{Time: at(14 * time.Second), LastDump: at(14 * time.Second), Ran: true, Reason: reasonInterval, Dumps: 4}},
	}
	for i, c := range cycles {
		k.sockets = append([]sockdiag.Msg{listener}, c.sockets...)
		k.nlErr = nil
		if c.synErr {
			k.nlErr = func(_ uint8, states uint32) error {
				if states == sockdiag.TCPFSynRecv {
					return unix.EIO
				}
				return nil
			}
		}
		if c.cookie {
			cookies++
		}
		tcp := quietTCP()
		tcp.syncookiesSent = cookies
		s, err := collectAt(t, src, t0.Add(c.at), tcp)
		if (err != nil) != c.synErr {
			t.Fatalf("cycle %d: err = %v, want error %v", i, err, c.synErr)
		}
		if diff := cmp.Diff(c.wantInfo, synInfoOf(s)); diff != "" {
			t.Errorf("cycle %d: SYN_RECV (-want +got):\n%s", i, diff)
		}
		got := synRecvOf(s)
		if diff := cmp.Diff(map[string]float64{"0.0.0.0:6379": c.wantSyn}, got, cmpopts.EquateNaNs()); diff != "" {
			t.Errorf("cycle %d: SYN_RECV counts (-want +got):\n%s", i, diff)
		}
		if total := s.Get("syn_recv_total"); total != c.wantSyn && !(math.IsNaN(total) && math.IsNaN(c.wantSyn)) {
			t.Errorf("cycle %d: syn_recv_total = %v, want %v", i, total, c.wantSyn)
		}
	}
}

// TestListenersSynRecvFailedIsNoData: a SYN_RECV dump that keeps failing
// leaves the counts no data every cycle, never the counts of the last dump
// that worked.
func TestListenersSynRecvFailedIsNoData(t *testing.T) {
	k := &fakeKernel{sockets: []sockdiag.Msg{listenSock("0.0.0.0", 6379, 0, 128, false), requestSock("10.0.0.1", 6379)}}
	src := newFakeSource(t, k, ListenerConfig{SynRecvInterval: 0})
	s, err := collectAt(t, src, tl0, quietTCP())
	if err != nil || synRecvOf(s)["0.0.0.0:6379"] != 1 {
		t.Fatalf("first cycle: %v, counts %v", err, synRecvOf(s))
	}
	k.nlErr = func(_ uint8, states uint32) error {
		if states == sockdiag.TCPFSynRecv {
			return unix.EIO
		}
		return nil
	}
	for i := 1; i <= 600; i++ {
		s, err = collectAt(t, src, tl0.Add(time.Duration(i)*time.Second), quietTCP())
		if err == nil {
			t.Fatalf("cycle %d: no error from a failing dump", i)
		}
		if v := synRecvOf(s)["0.0.0.0:6379"]; !math.IsNaN(v) {
			t.Fatalf("cycle %d: SYN_RECV count %v from a failing dump, want no data", i, v)
		}
	}
	// The listener itself is still reported (the LISTEN dump works).
	if l := Listeners(s); len(l) != 1 || l[0].Port != 6379 {
		t.Errorf("listeners %+v", l)
	}
}

func TestListenersCarryFollowsListener(t *testing.T) {
	k := &fakeKernel{sockets: []sockdiag.Msg{
		listenSock("0.0.0.0", 6379, 0, 128, false),
		requestSock("10.0.0.1", 6379),
	}}
	src := newFakeSource(t, k, ListenerConfig{SynRecvInterval: time.Hour})
	if _, err := collectAt(t, src, tl0, quietTCP()); err != nil {
		t.Fatal(err)
	}
	// No signal: the dump is skipped; a new listener appears.
	k.sockets = []sockdiag.Msg{listenSock("0.0.0.0", 6379, 0, 128, false), listenSock("0.0.0.0", 6380, 0, 128, false)}
	s, err := collectAt(t, src, tl0.Add(time.Second), quietTCP())
	if err != nil {
		t.Fatal(err)
	}
	if SynRecvRan(s) {
		t.Fatal("the SYN_RECV dump ran without a signal")
	}
	want := []Listener{
		{Addr: v4Any, Port: 6379, Sockets: 1, AcceptLimit: 128, SynRecv: 1},
		{Addr: v4Any, Port: 6380, Sockets: 1, AcceptLimit: 128},
	}
	if diff := cmp.Diff(want, Listeners(s), equateAddr); diff != "" {
		t.Errorf("Listeners (-want +got):\n%s", diff)
	}
}

func TestListenersRestarts(t *testing.T) {
	const (
		listen  = "unspec/listen"
		synRecv = "unspec/syn-recv"
	)
	perFamily := []string{"inet/listen", "inet6/listen"}
	tests := []struct {
		name       string
		refuse     unix.Errno // the legacy request
		interrupt  int
		intrOnly   uint32
		nobufs     int
		nobufsOnly uint32
		wantErr    error
		wantInfo   synInfo
		wantDials  int // a LISTEN connection and a SYN_RECV one, and redials
		wantReqs   []string
		wantTable  bool // the listeners are delivered
	}{
		{
			name: "clean", wantDials: 2, wantReqs: []string{listen, synRecv}, wantTable: true,
			wantInfo: synInfo{Time: tl0, LastDump: tl0, Ran: true, Reason: reasonInterval, Dumps: 1},
		},
		{
			name: "interrupted once", interrupt: 1, wantDials: 2, wantReqs: []string{listen, listen, synRecv}, wantTable: true,
			wantInfo: synInfo{Time: tl0, LastDump: tl0, Ran: true, Reason: reasonInterval, Dumps: 1, Retries: 1},
		},
		{
			// The first LISTEN dump of a family is interrupted: both
			// families again.
			name: "interrupted once, per family", refuse: unix.EINVAL, interrupt: 1, wantDials: 2, wantTable: true,
			wantReqs: slices.Concat([]string{listen}, perFamily, perFamily, []string{"inet/syn-recv", "inet6/syn-recv"}),
			wantInfo: synInfo{Time: tl0, LastDump: tl0, Ran: true, Reason: reasonInterval, Dumps: 1, Retries: 1},
		},
		{
			name: "interrupted twice", interrupt: 2, wantDials: 2, wantReqs: []string{listen, listen, listen, synRecv}, wantTable: true,
			wantInfo: synInfo{Time: tl0, LastDump: tl0, Ran: true, Reason: reasonInterval, Dumps: 1, Retries: 2},
		},
		{
			name: "SYN_RECV interrupted", interrupt: 1, intrOnly: sockdiag.TCPFSynRecv, wantDials: 2, wantReqs: []string{listen, synRecv, synRecv}, wantTable: true,
			wantInfo: synInfo{Time: tl0, LastDump: tl0, Ran: true, Reason: reasonInterval, Dumps: 1, Retries: 1},
		},
		{
			name: "always interrupted", interrupt: 100, wantDials: 1, wantReqs: []string{listen, listen, listen},
			wantErr:  sockdiag.ErrDumpInterrupted,
			wantInfo: synInfo{Retries: 3},
		},
		{
			// The SYN_RECV part gives up; the LISTEN part stands.
			name: "SYN_RECV always interrupted", interrupt: 100, intrOnly: sockdiag.TCPFSynRecv, wantDials: 2,
			wantReqs: []string{listen, synRecv, synRecv, synRecv}, wantTable: true,
			wantErr:  sockdiag.ErrDumpInterrupted,
			wantInfo: synInfo{Retries: 3},
		},
		{
			name: "receive buffer overrun", nobufs: 1, wantDials: 3, wantReqs: []string{listen, listen, synRecv}, wantTable: true,
			wantInfo: synInfo{Time: tl0, LastDump: tl0, Ran: true, Reason: reasonInterval, Dumps: 1, NoBufs: 1},
		},
		{
			name: "always overrun", nobufs: 100, wantDials: 3, wantReqs: []string{listen, listen, listen},
			wantErr:  unix.ENOBUFS,
			wantInfo: synInfo{NoBufs: 3},
		},
		{
			name: "SYN_RECV overrun", nobufs: 1, nobufsOnly: sockdiag.TCPFSynRecv, wantDials: 3,
			wantReqs: []string{listen, synRecv, synRecv}, wantTable: true,
			wantInfo: synInfo{Time: tl0, LastDump: tl0, Ran: true, Reason: reasonInterval, Dumps: 1, NoBufs: 1},
		},
		{
			name: "SYN_RECV always overrun", nobufs: 100, nobufsOnly: sockdiag.TCPFSynRecv, wantDials: 4,
			wantReqs: []string{listen, synRecv, synRecv, synRecv}, wantTable: true,
			wantErr:  unix.ENOBUFS,
			wantInfo: synInfo{NoBufs: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &fakeKernel{
				sockets: []sockdiag.Msg{
					listenSock("0.0.0.0", 80, 0, 128, false), listenSock("::", 80, 0, 128, true),
					// The flag rides on data messages: ReceiveIter does
					// not show NLMSG_DONE.
					requestSock("10.0.0.1", 80), requestSock("2001:db8::1", 80),
				},
				refuseLegacy: tt.refuse,
				interrupt:    tt.interrupt,
				intrOnly:     tt.intrOnly,
				nobufs:       tt.nobufs,
				nobufsOnly:   tt.nobufsOnly,
			}
			src := newFakeSource(t, k, ListenerConfig{})
			s, err := collectAt(t, src, tl0, quietTCP())
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantInfo, synInfoOf(s)); diff != "" {
				t.Errorf("SYN_RECV (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantReqs, k.requests); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if k.dials != tt.wantDials {
				t.Errorf("%d dials, want %d", k.dials, tt.wantDials)
			}
			// At most the LISTEN and the SYN_RECV connections stay open.
			open := 0
			for _, c := range k.conns {
				if !c.Closed {
					open++
				}
			}
			if open > 2 {
				t.Errorf("%d connections open, want at most 2: one left open after an overrun", open)
			}
			if n := len(Listeners(s)); tt.wantTable && n != 2 {
				t.Errorf("got %d listeners, want 2", n)
			}
			if !tt.wantTable && s.TableOf(KindListener) != nil {
				t.Error("listeners reported from a failed LISTEN dump")
			}
		})
	}
}

func TestListenersCountersPersist(t *testing.T) {
	k := &fakeKernel{sockets: []sockdiag.Msg{listenSock("0.0.0.0", 80, 0, 128, false)}, interrupt: 1}
	src := newFakeSource(t, k, ListenerConfig{})
	var s *Snapshot
	for i := range 3 {
		var err error
		if s, err = collectAt(t, src, tl0.Add(time.Duration(i)*time.Second), quietTCP()); err != nil {
			t.Fatal(err)
		}
	}
	last := tl0.Add(2 * time.Second)
	want := synInfo{Time: last, LastDump: last, Ran: true, Reason: reasonInterval, Dumps: 3, Retries: 1}
	if diff := cmp.Diff(want, synInfoOf(s)); diff != "" {
		t.Errorf("SYN_RECV after 3 cycles (-want +got):\n%s", diff)
	}
}

func TestListenersNoData(t *testing.T) {
	t.Run("no sock_diag", func(t *testing.T) {
		k := &fakeKernel{dialErr: unix.EPROTONOSUPPORT}
		src := newFakeSource(t, k, ListenerConfig{})
		if _, err := collectAt(t, src, tl0, quietTCP()); !IsNoData(err) {
			t.Fatalf("err = %v, want ErrNoData", err)
		}
	})
	t.Run("no tcp_diag", func(t *testing.T) {
		k := &fakeKernel{nlErr: func(uint8, uint32) error { return unix.ENOENT }}
		src := newFakeSource(t, k, ListenerConfig{})
		if _, err := collectAt(t, src, tl0, quietTCP()); !IsNoData(err) {
			t.Fatalf("err = %v, want ErrNoData", err)
		}
	})
	t.Run("no IPv6", func(t *testing.T) {
		k := &fakeKernel{
			sockets: []sockdiag.Msg{listenSock("0.0.0.0", 80, 0, 128, false)},
			nlErr: func(family uint8, _ uint32) error {
				if family == unix.AF_INET6 {
					return unix.ENOENT
				}
				return nil
			},
		}
		src := newFakeSource(t, k, ListenerConfig{})
		for range 2 {
			s, err := collectAt(t, src, tl0, quietTCP())
			if err != nil {
				t.Fatal(err)
			}
			if l := Listeners(s); len(l) != 1 {
				t.Fatalf("listeners %+v, want 1", l)
			}
		}
		// The one-walk request: the kernel sends what it has.
		want := []string{"unspec/listen", "unspec/syn-recv", "unspec/listen", "unspec/syn-recv"}
		if diff := cmp.Diff(want, k.requests); diff != "" {
			t.Errorf("dumps (-want +got):\n%s", diff)
		}
	})
	t.Run("no IPv6, per family", func(t *testing.T) {
		k := &fakeKernel{
			sockets:      []sockdiag.Msg{listenSock("0.0.0.0", 80, 0, 128, false)},
			refuseLegacy: unix.EINVAL,
			nlErr: func(family uint8, _ uint32) error {
				if family == unix.AF_INET6 {
					return unix.ENOENT
				}
				return nil
			},
		}
		src := newFakeSource(t, k, ListenerConfig{})
		for range 2 {
			s, err := collectAt(t, src, tl0, quietTCP())
			if err != nil {
				t.Fatal(err)
			}
			if l := Listeners(s); len(l) != 1 {
				t.Fatalf("listeners %+v, want 1", l)
			}
		}
		want := []string{"unspec/listen", "inet/listen", "inet6/listen", "inet/syn-recv", "inet/listen", "inet/syn-recv"}
		if diff := cmp.Diff(want, k.requests); diff != "" {
			t.Errorf("dumps (-want +got):\n%s", diff)
		}
	})
	t.Run("dial fails", func(t *testing.T) {
		k := &fakeKernel{dialErr: unix.EMFILE}
		src := newFakeSource(t, k, ListenerConfig{})
		_, err := collectAt(t, src, tl0, quietTCP())
		if err == nil || IsNoData(err) || !errors.Is(err, unix.EMFILE) {
			t.Fatalf("err = %v, want EMFILE and not ErrNoData", err)
		}
	})
}

func TestListenersDeadlineAndClose(t *testing.T) {
	k := &fakeKernel{sockets: []sockdiag.Msg{listenSock("0.0.0.0", 80, 0, 128, false)}}
	src := newFakeSource(t, k, ListenerConfig{})
	deadline := time.Now().Add(time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if _, err := collectCtx(ctx, src, time.Now(), quietTCP()); err != nil {
		t.Fatal(err)
	}
	// The LISTEN dump follows the cycle's deadline; the SYN_RECV dump
	// has its own.
	if len(k.conns) != 2 {
		t.Fatalf("%d connections, want 2", len(k.conns))
	}
	if diff := cmp.Diff([]time.Time{deadline}, k.conns[0].Deadlines); diff != "" {
		t.Errorf("LISTEN deadlines (-want +got):\n%s", diff)
	}
	if d := k.conns[1].Deadlines; len(d) != 1 || d[0].After(time.Now().Add(synRecvTimeout)) || d[0].Before(time.Now().Add(synRecvTimeout-time.Minute)) {
		t.Errorf("SYN_RECV deadlines %v, want one %v from its start", d, synRecvTimeout)
	}
	if err := src.Close(); err != nil || !k.conns[0].Closed || !k.conns[1].Closed {
		t.Errorf("Close = %v, closed %v %v; want the connections closed", err, k.conns[0].Closed, k.conns[1].Closed)
	}
	if err := src.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestListenersCancelled(t *testing.T) {
	k := &fakeKernel{sockets: []sockdiag.Msg{listenSock("0.0.0.0", 80, 0, 128, false)}}
	src := newFakeSource(t, k, ListenerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := collectCtx(ctx, src, time.Now(), quietTCP()); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestNewListenerSourceInvalid(t *testing.T) {
	for _, cfg := range []ListenerConfig{
		{Include: []PortRange{{10, 1}}},
		{Exclude: []PortRange{{2, 1}}},
		{Max: -1},
		{SynRecvInterval: -time.Second},
	} {
		if _, err := newListenerSource(cfg, nil); err == nil {
			t.Errorf("newListenerSource(%+v) succeeded", cfg)
		}
	}
}

func TestListenersSortOrder(t *testing.T) {
	ls := []Listener{
		{Addr: v6Any, Port: 80}, {Addr: netip.MustParseAddr("10.0.0.1"), Port: 80},
		{Addr: v4Any, Port: 80}, {Addr: v4Any, Port: 22},
		// By port first, as numbers: 6379 after 80, 10.0.0.1:22 before
		// 0.0.0.0:80 (neither label order would give that).
		{Addr: v4Any, Port: 6379}, {Addr: netip.MustParseAddr("10.0.0.1"), Port: 22},
	}
	k := &fakeKernel{}
	for _, l := range ls {
		k.sockets = append(k.sockets, listenSock(l.Addr.String(), l.Port, 0, 1, false))
	}
	src := newFakeSource(t, k, ListenerConfig{})
	s, err := collectAt(t, src, tl0, quietTCP())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range Listeners(s) {
		got = append(got, netip.AddrPortFrom(l.Addr, l.Port).String())
	}
	want := []string{"0.0.0.0:22", "10.0.0.1:22", "0.0.0.0:80", "10.0.0.1:80", "[::]:80", "0.0.0.0:6379"}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// fixedCost is a cost hook charging every dump d of CPU.
func fixedCost(d time.Duration) costFunc {
	return func(run func()) time.Duration { run(); return d }
}

// TestListenersSynRecvTimeout: a SYN_RECV dump that runs out of its own
// deadline is reported as the part's failure (its error in the
// syn_recv_error attribute, counted), its counts and the carried ones are
// no data until a dump completes, and the source still succeeds with its
// LISTEN values.
func TestListenersSynRecvTimeout(t *testing.T) {
	k := &fakeKernel{sockets: []sockdiag.Msg{listenSock("0.0.0.0", 6379, 0, 128, false), requestSock("10.0.0.1", 6379)}}
	src := newFakeSource(t, k, ListenerConfig{SynRecvInterval: time.Hour})
	src.synTimeout = 100 * time.Millisecond
	src.cost = fixedCost(time.Millisecond)
	nan := math.NaN()
	cookies := 0.0
	type cycle struct {
		cookie    bool // SyncookiesSent moves: the dump is due
		stall     bool // the dump outlasts its deadline
		wantSyn   float64
		wantErr   bool // syn_recv_error set
		timeouts  float64
		dumps     float64
		wantReqs  []string
		wantFresh bool
	}
	for i, c := range []cycle{
		{wantSyn: 1, dumps: 1, wantReqs: []string{"unspec/listen", "unspec/syn-recv"}, wantFresh: true},
		{wantSyn: 1, dumps: 1, wantReqs: []string{"unspec/listen"}}, // carried
		{cookie: true, stall: true, wantSyn: nan, wantErr: true, timeouts: 1, dumps: 1,
			wantReqs: []string{"unspec/listen", "unspec/syn-recv (abandoned)"}},
		// Nothing due: the counts carried before the timeout stay no data.
		{wantSyn: nan, wantErr: true, timeouts: 1, dumps: 1, wantReqs: []string{"unspec/listen"}},
		{cookie: true, wantSyn: 1, timeouts: 1, dumps: 2, wantReqs: []string{"unspec/listen", "unspec/syn-recv"}, wantFresh: true},
	} {
		k.requests = nil
		k.stall = 0
		if c.stall {
			k.stall = time.Minute
		}
		if c.cookie {
			cookies++
		}
		tcp := quietTCP()
		tcp.syncookiesSent = cookies
		s, err := collectAt(t, src, tl0.Add(time.Duration(i)*time.Second), tcp)
		if err != nil {
			t.Fatalf("cycle %d: %v, want the source to succeed", i, err)
		}
		if diff := cmp.Diff(map[string]float64{"0.0.0.0:6379": c.wantSyn}, synRecvOf(s), cmpopts.EquateNaNs()); diff != "" {
			t.Errorf("cycle %d: SYN_RECV counts (-want +got):\n%s", i, diff)
		}
		if l := Listeners(s); len(l) != 1 || l[0].AcceptLimit != 128 {
			t.Errorf("cycle %d: listeners %+v, want the LISTEN part", i, l)
		}
		attr := s.HostAttr(attrSynRecvError)
		if (attr != "") != c.wantErr || (c.wantErr && !strings.Contains(attr, "deadline")) {
			t.Errorf("cycle %d: syn_recv_error %q, want set: %v", i, attr, c.wantErr)
		}
		if got := s.Get("syn_recv_dump_timeouts"); got != c.timeouts {
			t.Errorf("cycle %d: syn_recv_dump_timeouts = %v, want %v", i, got, c.timeouts)
		}
		if got := s.Get("syn_recv_dumps"); got != c.dumps {
			t.Errorf("cycle %d: syn_recv_dumps = %v, want %v", i, got, c.dumps)
		}
		if diff := cmp.Diff(c.wantReqs, k.requests); diff != "" {
			t.Errorf("cycle %d: requests (-want +got):\n%s", i, diff)
		}
		if SynRecvRan(s) != c.wantFresh {
			t.Errorf("cycle %d: SynRecvRan = %v, want %v", i, SynRecvRan(s), c.wantFresh)
		}
	}
}

// TestListenersSynRecvLate: a cycle waits for its SYN_RECV dump only until
// its own deadline, so the LISTEN part keeps its interval; the dump goes
// on and a later cycle delivers it, once, without starting another.
func TestListenersSynRecvLate(t *testing.T) {
	k := &fakeKernel{sockets: []sockdiag.Msg{listenSock("0.0.0.0", 6379, 0, 128, false), requestSock("10.0.0.1", 6379)}}
	src := newFakeSource(t, k, ListenerConfig{SynRecvInterval: 0}) // due every cycle
	src.cost = fixedCost(time.Millisecond)

	k.stall = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	start := time.Now()
	s, err := collectCtx(ctx, src, tl0, quietTCP())
	cancel()
	if took := time.Since(start); err != nil || took > 250*time.Millisecond {
		t.Fatalf("cycle with a slow dump: %v after %v, want it back at its own deadline", err, took)
	}
	if SynRecvRan(s) || !math.IsNaN(synRecvOf(s)["0.0.0.0:6379"]) || len(Listeners(s)) != 1 {
		t.Fatalf("first cycle: %+v, counts %v, listeners %v: want the listeners and no SYN_RECV data yet", synInfoOf(s), synRecvOf(s), Listeners(s))
	}

	// The next cycle, due again, takes the dump still under way.
	k.mu.Lock() // a dump is under way
	k.stall = 0
	k.mu.Unlock()
	s, err = collectAt(t, src, tl0.Add(time.Second), quietTCP())
	if err != nil {
		t.Fatal(err)
	}
	want := synInfo{Time: tl0.Add(time.Second), LastDump: tl0, Ran: true, Reason: reasonInterval, Dumps: 1}
	if diff := cmp.Diff(want, synInfoOf(s)); diff != "" {
		t.Errorf("second cycle: SYN_RECV (-want +got):\n%s", diff)
	}
	if got := synRecvOf(s)["0.0.0.0:6379"]; got != 1 {
		t.Errorf("second cycle: SYN_RECV count %v, want 1", got)
	}
	if diff := cmp.Diff([]string{"unspec/listen", "unspec/syn-recv", "unspec/listen"}, k.requests); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestListenersSynRecvWait: SynRecvWait bounds the wait for a slow
// SYN_RECV dump even when the cycle's own deadline is far: the LISTEN part
// is delivered, the dump left to a later cycle.
func TestListenersSynRecvWait(t *testing.T) {
	k := &fakeKernel{sockets: []sockdiag.Msg{listenSock("0.0.0.0", 6379, 0, 128, false), requestSock("10.0.0.1", 6379)}}
	src := newFakeSource(t, k, ListenerConfig{SynRecvInterval: 0, SynRecvWait: 20 * time.Millisecond})
	src.cost = fixedCost(time.Millisecond)
	k.stall = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	s, err := collectCtx(ctx, src, tl0, quietTCP())
	if took := time.Since(start); err != nil || took >= k.stall {
		t.Fatalf("cycle with a slow dump: %v after %v, want it back before the dump (%v)", err, took, k.stall)
	}
	if SynRecvRan(s) || !math.IsNaN(synRecvOf(s)["0.0.0.0:6379"]) || len(Listeners(s)) != 1 {
		t.Fatalf("first cycle: %+v, counts %v, listeners %v: want the listeners and no SYN_RECV data yet", synInfoOf(s), synRecvOf(s), Listeners(s))
	}
}

// TestListenersBudgetByCPU: the budget of signalled SYN_RECV dumps is the
// dump's CPU time, not its wall time: a dump slowed by a busy machine
// (here a kernel that answers late, spending no CPU of ours) does not hold
// back the next one.
func TestListenersBudgetByCPU(t *testing.T) {
	k := &fakeKernel{sockets: []sockdiag.Msg{listenSock("0.0.0.0", 6379, 1, 128, false)}, stall: 100 * time.Millisecond}
	src := newFakeSource(t, k, ListenerConfig{SynRecvInterval: time.Hour})
	// The real clock: the thread sleeps through the stall.
	for i := range 3 {
		s, err := collectAt(t, src, tl0.Add(time.Duration(i)*time.Second), quietTCP())
		if err != nil {
			t.Fatal(err)
		}
		// Judged by wall time (100 ms, so 12.5 s between dumps), only
		// the first cycle would dump.
		if !SynRecvRan(s) {
			t.Fatalf("cycle %d: no SYN_RECV dump while an accept queue is not empty: %+v, cost %v",
				i, synInfoOf(s), src.cadence.lastCost)
		}
	}
	if c := src.cadence.lastCost; c >= 50*time.Millisecond {
		t.Errorf("a dump that waited 100 ms for the kernel cost %v of CPU", c)
	}
	if cpu := src.cpu; cpu <= 0 {
		t.Errorf("syn_recv_dump_cpu %v, want the dumps' CPU time", cpu)
	}
}

// TestThreadCPUCost checks the cost clock against getrusage(RUSAGE_THREAD):
// a dump waiting on the kernel costs next to nothing, a busy one what its
// thread burned.
func TestThreadCPUCost(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if c := threadCPUCost(func() { time.Sleep(200 * time.Millisecond) }); c > 20*time.Millisecond {
		t.Errorf("sleeping 200 ms cost %v of CPU", c)
	}
	rusage := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var burned time.Duration
	c := threadCPUCost(func() {
		start := rusage()
		for burned < 30*time.Millisecond {
			for range 100000 {
				runtime.KeepAlive(burned)
			}
			burned = rusage() - start
		}
	})
	// getrusage has microsecond resolution and is read inside the run.
	if c < burned-time.Millisecond || c > burned+20*time.Millisecond {
		t.Errorf("burning %v of CPU (getrusage) cost %v", burned, c)
	}
}

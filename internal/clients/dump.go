package clients

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

// Sources are the client prefixes of one listener.
type Sources struct {
	// Listener is the listener asked about (address unmapped).
	Listener netip.AddrPort
	// Found is false when no such listener was listening at the dump.
	Found bool
	// HalfOpen counts the handshakes in SYN_RECV addressed to it,
	// Established its established connections, accepted or still in its
	// accept queue.
	HalfOpen, Established Counts
}

// Dump counts the clients of each listener in want (at most
// cfg.MaxListeners) by prefix, over a sock_diag connection dial opens (nil:
// sockdiag.Dial, in the calling thread's network namespace). The results
// are in the order of want.
func Dump(ctx context.Context, cfg Config, dial func() (sockdiag.Conn, error), want []netip.AddrPort) ([]Sources, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(want) > cfg.MaxListeners {
		return nil, fmt.Errorf("%w: %d, at most %d", ErrTooManyListeners, len(want), cfg.MaxListeners)
	}
	out := make([]Sources, len(want))
	if len(want) == 0 {
		return out, nil
	}
	var ports []uint16
	for i, w := range want {
		w = netip.AddrPortFrom(w.Addr().Unmap(), w.Port())
		out[i].Listener = w
		ports = append(ports, w.Port())
	}
	filter, err := sockdiag.PortFilter(ports)
	if err != nil {
		return nil, err
	}
	d := &sockdiag.Dumper{Dial: dial, Filter: filter}
	defer d.Close()
	var a aggregator
	a.init(cfg, out, ports)
	if err := d.Dump(ctx, sockdiag.TCPFListen, a.listeners.Reset, a.addListener); err != nil {
		return nil, fmt.Errorf("listing listeners: %w", err)
	}
	a.mapListeners()
	if err := d.Dump(ctx, sockdiag.TCPFSynRecv|sockdiag.TCPFEstablished, a.reset, a.addConn); err != nil {
		return nil, fmt.Errorf("listing connections: %w", err)
	}
	for i := range out {
		out[i].HalfOpen = a.halfOpen[i].counts(cfg.Top)
		out[i].Established = a.established[i].counts(cfg.Top)
	}
	return out, nil
}

// aggregator counts the sockets of one Dump as they are parsed.
type aggregator struct {
	cfg       Config
	out       []Sources
	ports     map[uint16]bool
	listeners sockdiag.Listeners
	// slot[i] is the index in out of listener i of the LISTEN dump, -1
	// for a listener not asked about.
	slot                  []int
	halfOpen, established []*counter
}

func (a *aggregator) init(cfg Config, out []Sources, ports []uint16) {
	a.cfg, a.out = cfg, out
	a.ports = make(map[uint16]bool, len(ports))
	for _, p := range ports {
		a.ports[p] = true
	}
	for range out {
		a.halfOpen = append(a.halfOpen, newCounter(cfg.MaxTracked))
		a.established = append(a.established, newCounter(cfg.MaxTracked))
	}
}

func (a *aggregator) addListener(m sockdiag.Msg) {
	if a.ports[m.SrcPort] { // the kernel filtered already; a fake may not
		a.listeners.Add(m)
	}
}

func (a *aggregator) mapListeners() {
	a.slot = make([]int, a.listeners.Len())
	for i := range a.slot {
		a.slot[i] = -1
	}
	for j := range a.out {
		w := a.out[j].Listener
		if i, ok := a.listeners.Index(sockdiag.ListenKey{Addr: w.Addr(), Port: w.Port()}); ok {
			a.slot[i] = j
			a.out[j].Found = true
		}
	}
}

func (a *aggregator) reset() {
	for i := range a.out {
		a.halfOpen[i].reset()
		a.established[i].reset()
	}
}

func (a *aggregator) addConn(m sockdiag.Msg) {
	if !a.ports[m.SrcPort] {
		return
	}
	i, ok := a.listeners.Lookup(m.Src.Unmap(), m.SrcPort)
	if !ok || a.slot[i] < 0 {
		return
	}
	j := a.slot[i]
	client := m.Dst.Unmap()
	bits := a.cfg.Prefix4
	if !client.Is4() {
		bits = a.cfg.Prefix6
	}
	p, err := client.Prefix(bits)
	if err != nil {
		return // not an address (a fake kernel's zero value)
	}
	switch m.State {
	case sockdiag.TCPSynRecv:
		a.halfOpen[j].add(p)
	case sockdiag.TCPEstablished:
		a.established[j].add(p)
	}
}

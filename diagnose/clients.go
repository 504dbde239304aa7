package diagnose

import (
	"net/netip"
	"slices"
	"strconv"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/clients"
)

// Clients are who connects to a listener that is not OK: the client
// prefixes of its half-open handshakes and of its established
// connections, the busiest first. `stormwatch check` reads them on
// demand (internal/clients) after judging the samples; they change no
// status.
type Clients struct {
	// PrefixIPv4 and PrefixIPv6 are the prefix lengths client addresses
	// are grouped by.
	PrefixIPv4 int `json:"prefix_ipv4"`
	PrefixIPv6 int `json:"prefix_ipv6"`
	// HalfOpen are the handshakes in SYN_RECV addressed to the listener,
	// Established its established connections (accepted or waiting in
	// its accept queue); both absent with Error.
	HalfOpen    *ClientCounts `json:"half_open,omitempty"`
	Established *ClientCounts `json:"established,omitempty"`
	// Error says why they were not read.
	Error string `json:"error,omitempty"`
}

// ClientCounts are the client prefixes of one state.
type ClientCounts struct {
	// Total is the number of sockets.
	Total int `json:"total"`
	// Prefixes is the number of distinct prefixes; when Approximate, the
	// number tracked (there were more).
	Prefixes int `json:"prefixes"`
	// Approximate is true when there were too many prefixes to count
	// each: the counts are then upper bounds (see ClientPrefix).
	Approximate bool `json:"approximate"`
	// Top are the most counted prefixes, most first.
	Top []ClientPrefix `json:"top"`
	// Other is the number of sockets from prefixes not in Top.
	Other int `json:"other"`
}

// ClientPrefix is one prefix's count.
type ClientPrefix struct {
	// Prefix is the network, e.g. "198.51.100.0/24" or "2001:db8::/64".
	Prefix string `json:"prefix"`
	// Count is the number of sockets from it, at most Overcount too many.
	Count     int `json:"count"`
	Overcount int `json:"overcount,omitempty"`
}

// NewClients turns what clients.Dump found for one listener, grouped as
// cfg says, into a Clients.
func NewClients(s clients.Sources, cfg clients.Config) *Clients {
	c := &Clients{PrefixIPv4: cfg.Prefix4, PrefixIPv6: cfg.Prefix6}
	if !s.Found {
		c.Error = "the listener was gone when its connections were listed"
		return c
	}
	c.HalfOpen, c.Established = newClientCounts(s.HalfOpen), newClientCounts(s.Established)
	return c
}

func newClientCounts(c clients.Counts) *ClientCounts {
	out := &ClientCounts{Total: c.Total, Prefixes: c.Prefixes, Approximate: c.Approximate, Top: []ClientPrefix{}, Other: c.Other()}
	for _, t := range c.Top {
		out.Top = append(out.Top, ClientPrefix{Prefix: t.Prefix.String(), Count: t.Count, Overcount: t.Overcount})
	}
	return out
}

// ListenersNotOK returns the listeners (address and port) that have an
// item with a warning or worse, the worst first, each once.
func (r *Report) ListenersNotOK() []netip.AddrPort {
	type found struct {
		l      netip.AddrPort
		status Status
	}
	var all []found
	for _, sec := range r.Sections {
		for _, it := range sec.Items {
			l, ok := it.listener()
			if !ok || it.Status == OK || it.Status == Unknown {
				continue
			}
			if i := slices.IndexFunc(all, func(f found) bool { return f.l == l }); i >= 0 {
				all[i].status = max(all[i].status, it.Status)
				continue
			}
			all = append(all, found{l, it.Status})
		}
	}
	slices.SortStableFunc(all, func(a, b found) int { return int(b.status) - int(a.status) })
	out := make([]netip.AddrPort, len(all))
	for i, f := range all {
		out[i] = f.l
	}
	return out
}

// SetClients attaches c to the worst item of listener l (the first of
// those as bad), if it has a warning or worse; false when it has none.
func (r *Report) SetClients(l netip.AddrPort, c *Clients) bool {
	var worst *Item
	for si := range r.Sections {
		for ii := range r.Sections[si].Items {
			it := &r.Sections[si].Items[ii]
			if got, ok := it.listener(); ok && got == l && it.Status != OK && it.Status != Unknown &&
				(worst == nil || it.Status > worst.Status) {
				worst = it
			}
		}
	}
	if worst == nil {
		return false
	}
	worst.Clients = c
	return true
}

// listener is the listener an item is about.
func (it *Item) listener() (netip.AddrPort, bool) {
	if it.kind != collector.KindListener {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(it.Labels["addr"])
	p, perr := strconv.ParseUint(it.Labels["port"], 10, 16)
	if err != nil || perr != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(p)), true
}

package collector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/stormwatch/stormwatch/internal/valkey"
	"github.com/stormwatch/stormwatch/procfs"
)

// The valkey source: each Valkey (or Redis) server's own view of a storm,
// from INFO (every poll) and CONFIG GET (less often: it rarely changes),
// over exactly one connection per server (internal/valkey). Servers come
// from the config file and, with discovery on, from the listeners whose
// owning process is valkey-server or redis-server. A server is one entity
// of kind "valkey", labelled target, joined to the listener on its port.

// KindValkey is the entity kind of Valkey and Redis servers, labelled
// target (the host:port they are polled at).
const KindValkey = "valkey"

// The valkey source's values, by index.
const (
	vkUp = iota
	vkConnected
	vkMaxClients
	vkBlocked
	vkRejected
	vkReceived
	vkEvicted
	vkQueryBufDisc
	vkOutputBufDisc
	vkEventloop
	vkTCPBacklog
	vkMaxNewConns
	vkInfo
)

// Attributes of a Valkey target.
const (
	attrVersion = "version"
	attrServer  = "server"
)

var valkeyDecl = &Declaration{
	Name: "valkey",
	Kinds: []EntityKind{{
		Name:   KindValkey,
		Help:   "a Valkey or Redis server, from the config file or found listening on this host",
		Labels: []Label{{Name: "target", Help: "host:port the server is polled at"}},
		Attrs:  []string{attrServer, attrVersion},
		Joins:  []Join{{Kind: KindListener, Candidates: valkeyListeners}},
		Describe: func(a map[string]string) string {
			if a[attrServer] == "" {
				return ""
			}
			return a[attrServer] + " " + a[attrVersion]
		},
	}},
	// A listener sees the server behind it, so that rules over listeners
	// can tell a known server from a guess.
	Joins: []KindJoin{{From: KindListener, Join: Join{Kind: KindValkey, Candidates: listenerValkeys}}},
	Values: []Value{
		vkUp: {Name: "up", Entity: KindValkey, Kind: Gauge, Metric: "valkey_up",
			Help: "1 if the server answered the last poll in time, 0 if it is down, refused, timed out or the answer is too old (its other series are then absent)."},
		vkConnected: {Name: "connected_clients", Entity: KindValkey, Kind: Gauge, Unit: "clients", Metric: "valkey_connected_clients",
			Help: "Client connections open (INFO connected_clients; replicas not counted)."},
		vkMaxClients: {Name: "maxclients", Entity: KindValkey, Kind: Gauge, Setting: true, Unit: "clients", Metric: "valkey_maxclients",
			Help: "maxclients: above it a new connection is accepted, then refused (rejected_connections)."},
		vkBlocked: {Name: "blocked_clients", Entity: KindValkey, Kind: Gauge, Unit: "clients", Metric: "valkey_blocked_clients",
			Help: "Clients blocked in a blocking command (BLPOP and friends)."},
		vkRejected: {Name: "rejected_connections", Entity: KindValkey, Kind: Counter, Unit: "connections", Metric: "valkey_rejected_connections_total",
			Help: "Connections refused because maxclients was reached (INFO rejected_connections)."},
		vkReceived: {Name: "connections_received", Entity: KindValkey, Kind: Counter, Unit: "connections", Metric: "valkey_connections_received_total",
			Help: "Connections the server accepted (INFO total_connections_received): its rate is the accept pace."},
		vkEvicted: {Name: "evicted_clients", Entity: KindValkey, Kind: Counter, Unit: "clients", Metric: "valkey_evicted_clients_total",
			Help: "Clients evicted by maxmemory-clients (INFO evicted_clients)."},
		vkQueryBufDisc: {Name: "query_buffer_limit_disconnections", Entity: KindValkey, Kind: Counter, Unit: "clients", Metric: "valkey_client_query_buffer_limit_disconnections_total",
			Help: "Clients disconnected for exceeding the query buffer limit (INFO client_query_buffer_limit_disconnections; newer servers)."},
		vkOutputBufDisc: {Name: "output_buffer_limit_disconnections", Entity: KindValkey, Kind: Counter, Unit: "clients", Metric: "valkey_client_output_buffer_limit_disconnections_total",
			Help: "Clients disconnected for exceeding an output buffer limit (INFO client_output_buffer_limit_disconnections; newer servers)."},
		vkEventloop: {Name: "eventloop_cycles", Entity: KindValkey, Kind: Counter, Unit: "cycles", Metric: "valkey_eventloop_cycles_total",
			Help: "Event-loop iterations (INFO eventloop_cycles; newer servers): each accepts at most max-new-connections-per-cycle connections."},
		vkTCPBacklog: {Name: "tcp_backlog", Entity: KindValkey, Kind: Gauge, Setting: true, Unit: "connections", Metric: "valkey_config_tcp_backlog",
			Help: "The listen backlog the server asks for (CONFIG tcp-backlog); the kernel caps it at net.core.somaxconn."},
		vkMaxNewConns: {Name: "max_new_connections_per_cycle", Entity: KindValkey, Kind: Gauge, Setting: true, Unit: "connections", Metric: "valkey_config_max_new_connections_per_cycle",
			Help: "Connections accepted per event-loop iteration at most (CONFIG max-new-connections-per-cycle; Valkey 8 and later)."},
		vkInfo: {Name: "server_info", Entity: KindValkey, Kind: Gauge, Setting: true, Metric: "valkey_server_info",
			AttrLabels: []string{"server", attrServer, "version", attrVersion},
			Help:       "Always 1 for a server that answered; labels say which server and version."},
	},
	Sections: []Section{{Name: "valkey", Title: "Valkey", Order: 50}},
	Items: []Item{
		{ID: "valkey_clients", Section: "valkey", What: "clients", Entity: KindValkey, Unit: "clients",
			Value: "connected_clients", Limit: "maxclients", Related: []string{"up", "blocked_clients", "evicted_clients"}, Queue: true},
		{ID: "valkey_rejected", Section: "valkey", What: "rejected connections", Entity: KindValkey, Unit: "connections/s",
			Rate: []string{"rejected_connections"}},
		{ID: "valkey_accept_pace", Section: "valkey", What: "accept pace", Entity: KindValkey, Unit: "connections/s",
			Rate: []string{"connections_received"}, Related: []string{"eventloop_cycles", "max_new_connections_per_cycle"}},
		{ID: "valkey_backlog", Section: "valkey", What: "tcp-backlog", Entity: KindValkey, Unit: "connections",
			Value: "tcp_backlog"},
	},
}

// valkeyListeners: the listeners a target polled at host:port may be: the
// one bound to that address, else the wildcard of its family.
func valkeyListeners(labels []string) [][]string {
	ap, err := netip.ParseAddrPort(labels[0])
	if err != nil {
		return nil
	}
	addr, port := ap.Addr().Unmap(), strconv.Itoa(int(ap.Port()))
	out := [][]string{{addr.String(), port}}
	if addr.Is4() {
		return append(out, []string{"0.0.0.0", port}, []string{"::", port})
	}
	return append(out, []string{"::", port})
}

// listenerValkeys: the targets behind a listener, as discovery or a config
// file would name them.
func listenerValkeys(labels []string) [][]string {
	addr, err := netip.ParseAddr(labels[0])
	if err != nil {
		return nil
	}
	port := labels[1]
	if addr.IsUnspecified() || addr.IsLoopback() {
		return [][]string{{net.JoinHostPort("127.0.0.1", port)}, {net.JoinHostPort("::1", port)}, {net.JoinHostPort("localhost", port)}}
	}
	return [][]string{{net.JoinHostPort(addr.String(), port)}}
}

// ValkeyConfig configures the valkey source.
type ValkeyConfig struct {
	// Discover polls every listener of this host whose owning process is
	// valkey-server or redis-server (where the process can be seen).
	Discover bool
	// Defaults are the connection settings of discovered servers (their
	// Address is set by discovery).
	Defaults valkey.Config
	// Targets are the servers named in the config file.
	Targets []valkey.Config
	// Interval is how often each server is polled (default 1s); Timeout
	// bounds one poll (default 1s).
	Interval, Timeout time.Duration
	// ConfigInterval is how often CONFIG GET is asked again (default 30s).
	ConfigInterval time.Duration
}

// ValkeySource polls Valkey servers.
type ValkeySource struct {
	mu      sync.Mutex
	cfg     ValkeyConfig
	clients map[string]*valkeyClient // by address
	// discoverErr says why discovery could not see some servers.
	discoverErr string
}

// valkeyClient is one server's connection and what it last said of its
// config.
type valkeyClient struct {
	c   *valkey.Client
	cfg valkey.Config

	mu     sync.Mutex
	conf   valkey.ServerConfig
	confAt time.Time
}

// NewValkeySource returns the valkey target source.
func NewValkeySource(cfg ValkeyConfig) (*ValkeySource, error) {
	s := &ValkeySource{clients: map[string]*valkeyClient{}}
	if err := s.SetConfig(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// SetConfig replaces the configuration (a reload): servers no longer
// named are closed at the next tick.
func (s *ValkeySource) SetConfig(cfg ValkeyConfig) error {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.ConfigInterval <= 0 {
		cfg.ConfigInterval = 30 * time.Second
	}
	for i, t := range cfg.Targets {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("valkey target %d: %w", i+1, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
	return nil
}

// Declaration returns what the source measures.
func (s *ValkeySource) Declaration() *Declaration { return valkeyDecl }

// Options returns the polling interval and timeout.
func (s *ValkeySource) Options() TargetOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return TargetOptions{Interval: s.cfg.Interval, Timeout: s.cfg.Timeout, Up: "up"}
}

// Targets returns the configured servers and, with discovery on, the
// servers listening on this host, one per process.
func (s *ValkeySource) Targets(snap *Snapshot) []Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Target
	seen := map[string]bool{}
	add := func(c valkey.Config) {
		if seen[c.Address] {
			return
		}
		seen[c.Address] = true
		out = append(out, Target{Labels: []string{c.Address}, Name: c.Address, Config: c,
			Interval: s.cfg.Interval, Timeout: s.cfg.Timeout})
	}
	for _, c := range s.cfg.Targets {
		add(c)
	}
	if s.cfg.Discover {
		for _, d := range s.discover(snap) {
			c := s.cfg.Defaults
			c.Address = d.Address
			add(c)
		}
	}
	// Close the connections of servers no longer polled.
	for addr, cl := range s.clients {
		if !seen[addr] {
			cl.c.Close()
			delete(s.clients, addr)
		}
	}
	return out
}

// discover finds the Valkey and Redis servers among the listeners of snap,
// from their owners.
func (s *ValkeySource) discover(snap *Snapshot) []valkey.Target {
	t := snap.TableOf(KindListener)
	if t == nil {
		return nil
	}
	sc := snap.Schema()
	attrs := sc.Attrs(KindListener)
	slot := func(name string) int { return slices.Index(attrs, name) }
	pSlot, pidSlot, errSlot := slot(attrProcess), slot(attrPID), slot(attrOwnerError)
	var ls []valkey.Listener
	owners := ownerTable{}
	hidden := map[string]error{} // one error per reason, not per listener
	for r := range t.Len() {
		reason := t.Attr(r, errSlot)
		if reason == "" && !slices.Contains(valkey.ServerNames, t.Attr(r, pSlot)) {
			continue // seen, and not a server: nothing for Discover
		}
		lab := t.Labels(r)
		addr, err1 := netip.ParseAddr(lab[0])
		port, err2 := strconv.ParseUint(lab[1], 10, 16)
		if err1 != nil || err2 != nil {
			continue
		}
		ino := uint32(r + 1) // a stand-in: the rows are the listeners
		ls = append(ls, valkey.Listener{Addr: addr, Port: uint16(port), Inode: ino})
		if reason != "" {
			err, ok := hidden[reason]
			if !ok {
				err = fmt.Errorf("%w: %s", procfs.ErrOwnerHidden, reason)
				hidden[reason] = err
			}
			owners[ino] = owner{err: err}
			continue
		}
		pid, err := strconv.Atoi(t.Attr(r, pidSlot))
		if err != nil {
			owners[ino] = owner{err: procfs.ErrOwnerNotFound}
			continue
		}
		owners[ino] = owner{proc: procfs.Process{PID: pid, Comm: t.Attr(r, pSlot)}}
	}
	found, err := valkey.Discover(ls, owners)
	s.discoverErr = ""
	if err != nil {
		s.discoverErr = err.Error()
	}
	return found
}

// ownerTable answers valkey.Discover from the listeners' attributes.
type ownerTable map[uint32]owner

func (o ownerTable) Owner(ino uint32) (procfs.Process, error) {
	w, ok := o[ino]
	if !ok {
		return procfs.Process{}, procfs.ErrOwnerNotFound
	}
	return w.proc, w.err
}

func (s *ValkeySource) client(t Target) (*valkeyClient, error) {
	cfg, ok := t.Config.(valkey.Config)
	if !ok {
		return nil, fmt.Errorf("target %s: no connection settings", t.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cl, ok := s.clients[cfg.Address]; ok && cl.cfg == cfg {
		return cl, nil
	} else if ok {
		cl.c.Close() // its settings changed
	}
	c, err := valkey.New(cfg)
	if err != nil {
		return nil, err
	}
	cl := &valkeyClient{c: c, cfg: cfg}
	s.clients[cfg.Address] = cl
	return cl, nil
}

// Poll reads INFO, and CONFIG when it is due, from one server.
func (s *ValkeySource) Poll(ctx context.Context, t Target, w *RowWriter) error {
	cl, err := s.client(t)
	if err != nil {
		return err
	}
	info, err := cl.c.Info(ctx)
	if err != nil {
		return err
	}
	set := func(i int, o valkey.Optional[int64]) {
		if v, ok := o.Get(); ok {
			w.Set(i, float64(v))
		}
	}
	set(vkConnected, info.ConnectedClients)
	set(vkMaxClients, info.MaxClients)
	set(vkBlocked, info.BlockedClients)
	set(vkRejected, info.RejectedConnections)
	set(vkReceived, info.TotalConnectionsReceived)
	set(vkEvicted, info.EvictedClients)
	set(vkQueryBufDisc, info.ClientQueryBufferLimitDisconnections)
	set(vkOutputBufDisc, info.ClientOutputBufferLimitDisconnections)
	set(vkEventloop, info.EventloopCycles)
	w.Set(vkInfo, 1)
	w.SetAttr(attrServer, info.Name())
	w.SetAttr(attrVersion, info.Version())

	conf, err := cl.config(ctx, s.configInterval())
	if err == nil {
		set(vkTCPBacklog, conf.TCPBacklog)
		set(vkMaxNewConns, conf.MaxNewConnectionsPerCycle)
		if !info.MaxClients.Valid {
			set(vkMaxClients, conf.MaxClients)
		}
	} else if !errors.Is(err, valkey.ErrConfigUnavailable) {
		return fmt.Errorf("CONFIG GET: %w", err)
	}
	return nil
}

func (s *ValkeySource) configInterval() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.ConfigInterval
}

// config returns the server's config, asked again every interval.
func (cl *valkeyClient) config(ctx context.Context, interval time.Duration) (valkey.ServerConfig, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !cl.confAt.IsZero() && time.Since(cl.confAt) < interval {
		return cl.conf, nil
	}
	conf, err := cl.c.Config(ctx)
	if err != nil && !errors.Is(err, valkey.ErrConfigUnavailable) {
		return conf, err
	}
	// Unavailable (CONFIG renamed away) is asked again only as often.
	cl.conf, cl.confAt = conf, time.Now()
	return conf, err
}

// Close closes every server connection.
func (s *ValkeySource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, cl := range s.clients {
		cl.c.Close()
		delete(s.clients, addr)
	}
	return nil
}

package alerts

import (
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"slices"

	"github.com/stormwatch/stormwatch/collector"
)

// Scope says what one evaluation of a rule looks at, and so which names its
// condition may use.
type Scope string

const (
	// ScopeHost evaluates the rule once per sample over host-wide values.
	ScopeHost Scope = "host"
	// ScopeListener evaluates the rule once per listening address and port
	// of the latest Snapshot; each yields its own alert, labelled addr and
	// port. Host-wide values are visible too.
	ScopeListener Scope = "listener"
)

// Variable describes one name a condition may use as a current value, and
// the series the functions (increase, rate, …) read by that name.
type Variable struct {
	// Name is how conditions and templates refer to the value.
	Name string
	// Kind is "counter" (cumulative, only ever rises until a reset) or
	// "gauge".
	Kind string
	// Scope is ScopeHost for host-wide values (visible in both scopes)
	// and ScopeListener for a listener's own values.
	Scope Scope
	// Help says what the value is, with its unit.
	Help string
}

// variable is one entry of the vocabulary. A host variable reads a
// Snapshot; a listener variable reads one Listener of it.
type variable struct {
	Variable
	host     func(s *collector.Snapshot) float64
	listener func(s *collector.Snapshot, l *collector.Listener) float64
	// fresh, when set, says whether a Snapshot carries a new point of the
	// series (SYN_RECV counts are not dumped every cycle).
	fresh func(s *collector.Snapshot) bool
}

func (v *variable) counter() bool { return v.Kind == "counter" }

// value returns the variable's current value in s, for listener l.
func (v *variable) value(s *collector.Snapshot, l *collector.Listener) float64 {
	if v.listener != nil {
		return v.listener(s, l)
	}
	return v.host(s)
}

func sysctlVar(name string) func(*collector.Snapshot) float64 {
	return func(s *collector.Snapshot) float64 {
		if v, ok := s.Sysctl(name); ok {
			return float64(v)
		}
		return math.NaN()
	}
}

// synRecvTotal is the host's half-open handshakes, NaN until a SYN_RECV
// dump has run.
func synRecvTotal(s *collector.Snapshot) float64 {
	if s.SynRecv.Time.IsZero() {
		return math.NaN()
	}
	var n float64
	for i := range s.Listeners {
		n += float64(s.Listeners[i].SynRecv)
	}
	return n
}

func synRecvFresh(s *collector.Snapshot) bool { return s.SynRecv.Ran }

// SynQueueLimit approximates how many half-open handshakes listener l holds
// before the kernel answers with cookies or drops SYNs (tcp_conn_request):
// the queue is full once it holds more than the listener's accept queue
// limit (sk_max_ack_backlog: min(backlog, somaxconn)); and with syncookies
// off, SYNs from peers not yet proven are dropped once the queue has used
// three quarters of tcp_max_syn_backlog. Both apply per socket, so a
// SO_REUSEPORT group of n sockets holds n times the latter.
func SynQueueLimit(s *collector.Snapshot, l *collector.Listener) float64 {
	limit := float64(l.AcceptLimit)
	cookies, ok := s.Sysctl("net.ipv4.tcp_syncookies")
	if !ok {
		return limit
	}
	if backlog, ok := s.Sysctl("net.ipv4.tcp_max_syn_backlog"); ok && cookies == 0 {
		sockets := max(l.Sockets, 1)
		limit = math.Min(limit, float64(sockets)*float64(backlog-backlog>>2))
	}
	return limit
}

// acceptFill is the fill of the fullest socket of the listener, or of the
// whole group when the source gave no per-socket figure.
func acceptFill(l *collector.Listener) float64 {
	fill := l.MaxFill
	if l.AcceptLimit > 0 {
		fill = math.Max(fill, float64(l.AcceptQueue)/float64(l.AcceptLimit))
	}
	return fill
}

func gauge(name, help string, f func(*collector.Snapshot) float64) *variable {
	return &variable{Variable: Variable{Name: name, Kind: "gauge", Scope: ScopeHost, Help: help}, host: f}
}

func counter(name, help string, f func(*collector.Snapshot) float64) *variable {
	return &variable{Variable: Variable{Name: name, Kind: "counter", Scope: ScopeHost, Help: help}, host: f}
}

func listenerGauge(name, help string, f func(*collector.Snapshot, *collector.Listener) float64) *variable {
	return &variable{Variable: Variable{Name: name, Kind: "gauge", Scope: ScopeListener, Help: help}, listener: f}
}

// hostVariables are visible in every scope.
var hostVariables = []*variable{
	gauge("conntrack_entries", "conntrack table entries (nf_conntrack_count)", func(s *collector.Snapshot) float64 { return s.Conntrack.Entries }),
	gauge("conntrack_limit", "conntrack table size (nf_conntrack_max)", func(s *collector.Snapshot) float64 { return s.Conntrack.Limit }),
	gauge("conntrack_buckets", "conntrack hash buckets (nf_conntrack_buckets)", func(s *collector.Snapshot) float64 { return s.Conntrack.Buckets }),
	counter("conntrack_found", "conntrack lookups that found an entry", func(s *collector.Snapshot) float64 { return s.Conntrack.Found }),
	counter("conntrack_invalid", "packets conntrack could not track", func(s *collector.Snapshot) float64 { return s.Conntrack.Invalid }),
	counter("conntrack_insert", "entries inserted", func(s *collector.Snapshot) float64 { return s.Conntrack.Insert }),
	counter("conntrack_insert_failed", "entries that could not be inserted (clash or table full)", func(s *collector.Snapshot) float64 { return s.Conntrack.InsertFailed }),
	counter("conntrack_drop", "packets dropped because a new entry could not be made", func(s *collector.Snapshot) float64 { return s.Conntrack.Drop }),
	counter("conntrack_early_drop", "entries evicted early to make room in a full table", func(s *collector.Snapshot) float64 { return s.Conntrack.EarlyDrop }),
	counter("conntrack_icmp_error", "ICMP errors conntrack could not match", func(s *collector.Snapshot) float64 { return s.Conntrack.ICMPError }),
	counter("conntrack_search_restart", "hash lookups restarted by a concurrent resize", func(s *collector.Snapshot) float64 { return s.Conntrack.SearchRestart }),
	counter("conntrack_clash_resolve", "insert clashes resolved", func(s *collector.Snapshot) float64 { return s.Conntrack.ClashResolve }),
	counter("conntrack_chain_too_long", "inserts refused for a too long hash chain", func(s *collector.Snapshot) float64 { return s.Conntrack.ChainTooLong }),

	counter("listen_overflows", "TcpExt ListenOverflows: SYNs or final ACKs dropped on a full accept queue", func(s *collector.Snapshot) float64 { return s.TCP.ListenOverflows }),
	counter("listen_drops", "TcpExt ListenDrops: every drop at a listener, overflows included", func(s *collector.Snapshot) float64 { return s.TCP.ListenDrops }),
	counter("syncookies_sent", "TcpExt SyncookiesSent", func(s *collector.Snapshot) float64 { return s.TCP.SyncookiesSent }),
	counter("syncookies_recv", "TcpExt SyncookiesRecv: valid cookies received", func(s *collector.Snapshot) float64 { return s.TCP.SyncookiesRecv }),
	counter("syncookies_failed", "TcpExt SyncookiesFailed: invalid cookies received", func(s *collector.Snapshot) float64 { return s.TCP.SyncookiesFailed }),
	counter("syn_queue_drops", "TcpExt TCPReqQFullDrop: SYNs dropped on a full SYN queue", func(s *collector.Snapshot) float64 { return s.TCP.TCPReqQFullDrop }),
	counter("syn_queue_cookies", "TcpExt TCPReqQFullDoCookies: SYNs answered with a cookie on a full SYN queue", func(s *collector.Snapshot) float64 { return s.TCP.TCPReqQFullDoCookies }),
	counter("active_opens", "Tcp ActiveOpens: outgoing connections started", func(s *collector.Snapshot) float64 { return s.TCP.ActiveOpens }),
	counter("passive_opens", "Tcp PassiveOpens: incoming connections accepted by the kernel", func(s *collector.Snapshot) float64 { return s.TCP.PassiveOpens }),
	counter("attempt_fails", "Tcp AttemptFails", func(s *collector.Snapshot) float64 { return s.TCP.AttemptFails }),
	counter("estab_resets", "Tcp EstabResets", func(s *collector.Snapshot) float64 { return s.TCP.EstabResets }),
	gauge("established", "Tcp CurrEstab: connections ESTABLISHED or CLOSE_WAIT", func(s *collector.Snapshot) float64 { return s.TCP.CurrEstab }),

	gauge("somaxconn", "net.core.somaxconn", sysctlVar("net.core.somaxconn")),
	gauge("tcp_max_syn_backlog", "net.ipv4.tcp_max_syn_backlog", sysctlVar("net.ipv4.tcp_max_syn_backlog")),
	gauge("syncookies", "net.ipv4.tcp_syncookies (0 off, 1 on overflow, 2 always)", sysctlVar("net.ipv4.tcp_syncookies")),
	gauge("tcp_abort_on_overflow", "net.ipv4.tcp_abort_on_overflow", sysctlVar("net.ipv4.tcp_abort_on_overflow")),
	gauge("tcp_synack_retries", "net.ipv4.tcp_synack_retries", sysctlVar("net.ipv4.tcp_synack_retries")),

	gauge("listeners", "listening addresses and ports reported", func(s *collector.Snapshot) float64 { return float64(len(s.Listeners)) }),
	{
		Variable: Variable{Name: "syn_recv_total", Kind: "gauge", Scope: ScopeHost, Help: "half-open handshakes (SYN_RECV) to all reported listeners"},
		host:     synRecvTotal,
		fresh:    synRecvFresh,
	},
}

// hostOnlyVariables are visible in host scope only: listener scope has
// its own variable of the same name.
var hostOnlyVariables = []*variable{
	{
		Variable: Variable{Name: "syn_recv", Kind: "gauge", Scope: ScopeHost, Help: "half-open handshakes (SYN_RECV) to all reported listeners"},
		host:     synRecvTotal,
		fresh:    synRecvFresh,
	},
}

// listenerVariables are a listener's own values, in listener scope.
var listenerVariables = []*variable{
	listenerGauge("accept_queue", "completed handshakes waiting for accept() (ss Recv-Q)", func(_ *collector.Snapshot, l *collector.Listener) float64 {
		return float64(l.AcceptQueue)
	}),
	listenerGauge("accept_queue_limit", "accept queue limit: min(backlog, somaxconn), summed over the sockets (ss Send-Q)", func(_ *collector.Snapshot, l *collector.Listener) float64 {
		return float64(l.AcceptLimit)
	}),
	listenerGauge("accept_queue_fill", "fill of the fullest socket's accept queue, 1 = full", func(_ *collector.Snapshot, l *collector.Listener) float64 {
		return acceptFill(l)
	}),
	{
		Variable: Variable{Name: "syn_recv", Kind: "gauge", Scope: ScopeListener, Help: "half-open handshakes (SYN_RECV) to this listener"},
		listener: func(s *collector.Snapshot, l *collector.Listener) float64 {
			if s.SynRecv.Time.IsZero() {
				return math.NaN()
			}
			return float64(l.SynRecv)
		},
		fresh: synRecvFresh,
	},
	listenerGauge("syn_queue_limit", "half-open handshakes the listener holds before cookies or drops (approximation, see package doc)", SynQueueLimit),
	listenerGauge("sockets", "listening sockets sharing the address and port", func(_ *collector.Snapshot, l *collector.Listener) float64 {
		return float64(l.Sockets)
	}),
}

// funcs are the functions of every scope. The evaluator binds them.
type funcs struct {
	Increase     func(series, window string) float64                  `expr:"increase"`
	Rate         func(series, window string) float64                  `expr:"rate"`
	MaxOverTime  func(series, window string) float64                  `expr:"max_over_time"`
	TimeToLimit  func(series string, limit float64, w string) float64 `expr:"time_to_limit"`
	BaselineRate func(series, window, exclude string) float64         `expr:"baseline_rate"`
	Sysctl       func(name string) float64                            `expr:"sysctl"`
}

// hostVars holds hostVariables, in their order.
type hostVars struct {
	ConntrackEntries       float64 `expr:"conntrack_entries"`
	ConntrackLimit         float64 `expr:"conntrack_limit"`
	ConntrackBuckets       float64 `expr:"conntrack_buckets"`
	ConntrackFound         float64 `expr:"conntrack_found"`
	ConntrackInvalid       float64 `expr:"conntrack_invalid"`
	ConntrackInsert        float64 `expr:"conntrack_insert"`
	ConntrackInsertFailed  float64 `expr:"conntrack_insert_failed"`
	ConntrackDrop          float64 `expr:"conntrack_drop"`
	ConntrackEarlyDrop     float64 `expr:"conntrack_early_drop"`
	ConntrackICMPError     float64 `expr:"conntrack_icmp_error"`
	ConntrackSearchRestart float64 `expr:"conntrack_search_restart"`
	ConntrackClashResolve  float64 `expr:"conntrack_clash_resolve"`
	ConntrackChainTooLong  float64 `expr:"conntrack_chain_too_long"`
	ListenOverflows        float64 `expr:"listen_overflows"`
	ListenDrops            float64 `expr:"listen_drops"`
	SyncookiesSent         float64 `expr:"syncookies_sent"`
	SyncookiesRecv         float64 `expr:"syncookies_recv"`
	SyncookiesFailed       float64 `expr:"syncookies_failed"`
	SynQueueDrops          float64 `expr:"syn_queue_drops"`
	SynQueueCookies        float64 `expr:"syn_queue_cookies"`
	ActiveOpens            float64 `expr:"active_opens"`
	PassiveOpens           float64 `expr:"passive_opens"`
	AttemptFails           float64 `expr:"attempt_fails"`
	EstabResets            float64 `expr:"estab_resets"`
	Established            float64 `expr:"established"`
	Somaxconn              float64 `expr:"somaxconn"`
	TCPMaxSynBacklog       float64 `expr:"tcp_max_syn_backlog"`
	Syncookies             float64 `expr:"syncookies"`
	TCPAbortOnOverflow     float64 `expr:"tcp_abort_on_overflow"`
	TCPSynackRetries       float64 `expr:"tcp_synack_retries"`
	Listeners              float64 `expr:"listeners"`
	SynRecvTotal           float64 `expr:"syn_recv_total"`
}

// hostEnv is the environment of host-scoped conditions.
type hostEnv struct {
	hostVars
	funcs
	SynRecv float64 `expr:"syn_recv"`
}

// listenerEnv is the environment of listener-scoped conditions.
type listenerEnv struct {
	hostVars
	funcs
	AcceptQueue      float64 `expr:"accept_queue"`
	AcceptQueueLimit float64 `expr:"accept_queue_limit"`
	AcceptQueueFill  float64 `expr:"accept_queue_fill"`
	SynRecv          float64 `expr:"syn_recv"`
	SynQueueLimit    float64 `expr:"syn_queue_limit"`
	Sockets          float64 `expr:"sockets"`
	Port             int     `expr:"port"`
	Addr             string  `expr:"addr"`
}

// scopeVocab is what one scope offers: its variables by name and where
// each lives in the scope's environment struct.
type scopeVocab struct {
	vars   []*variable
	byName map[string]*variable
	field  map[*variable][]int
	env    any // zero environment, for type-checking
}

var vocab = map[Scope]*scopeVocab{
	ScopeHost:     newScopeVocab(hostEnv{}, hostVariables, hostOnlyVariables),
	ScopeListener: newScopeVocab(listenerEnv{}, hostVariables, listenerVariables),
}

// exprFields maps the expr tags of env's fields, embedded ones included,
// to their index paths.
func exprFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for _, f := range reflect.VisibleFields(t) {
		if tag := f.Tag.Get("expr"); tag != "" {
			out[tag] = f.Index
		}
	}
	return out
}

func newScopeVocab(env any, lists ...[]*variable) *scopeVocab {
	fields := exprFields(reflect.TypeOf(env))
	sv := &scopeVocab{byName: map[string]*variable{}, field: map[*variable][]int{}, env: env}
	for _, list := range lists {
		for _, v := range list {
			idx, ok := fields[v.Name]
			if !ok {
				panic(fmt.Sprintf("alerts: variable %q has no field in %T", v.Name, env))
			}
			sv.vars = append(sv.vars, v)
			sv.byName[v.Name] = v
			sv.field[v] = idx
		}
	}
	return sv
}

// Variables returns the values a condition of the given scope may use, in
// a fixed order: host-wide values first.
func Variables(scope Scope) []Variable {
	sv, ok := vocab[scope]
	if !ok {
		return nil
	}
	out := make([]Variable, 0, len(sv.vars)+2)
	for _, v := range sv.vars {
		out = append(out, v.Variable)
	}
	if scope == ScopeListener {
		out = append(out,
			Variable{Name: "port", Kind: "label", Scope: ScopeListener, Help: "the listener's port (integer)"},
			Variable{Name: "addr", Kind: "label", Scope: ScopeListener, Help: "the listener's bound address (string, e.g. \"0.0.0.0\", \"::\")"},
		)
	}
	return out
}

// findListener returns the listener bound to addr and port in s, or nil.
// Snapshot.Listeners is sorted by port then address.
func findListener(s *collector.Snapshot, addr netip.Addr, port uint16) *collector.Listener {
	i, ok := slices.BinarySearchFunc(s.Listeners, port, func(l collector.Listener, p uint16) int {
		if l.Port != p {
			if l.Port < p {
				return -1
			}
			return 1
		}
		return l.Addr.Compare(addr)
	})
	if !ok {
		return nil
	}
	return &s.Listeners[i]
}

package collector

import (
	"context"

	promfs "github.com/prometheus/procfs"

	"github.com/stormwatch/stormwatch/procfs"
)

// tcpstatField is one TcpExt or Tcp counter: its declaration and where
// prometheus/procfs puts it.
type tcpstatField struct {
	Value
	ext func(*promfs.TcpExt) *float64
	tcp func(*promfs.Tcp) *float64
}

// tcpstatFields are the counters that describe a connection storm, each
// declared once.
var tcpstatFields = []tcpstatField{
	{Value{Name: "listen_overflows", Kind: Counter, Unit: "packets", Metric: "tcp_listen_overflows_total",
		Help: "TcpExt ListenOverflows: SYNs or final ACKs dropped because an accept queue was full (retransmits included)."},
		func(x *promfs.TcpExt) *float64 { return x.ListenOverflows }, nil},
	{Value{Name: "listen_drops", Kind: Counter, Unit: "packets", Metric: "tcp_listen_drops_total",
		Help: "TcpExt ListenDrops: all drops at a listener, overflows included."},
		func(x *promfs.TcpExt) *float64 { return x.ListenDrops }, nil},
	{Value{Name: "syncookies_sent", Kind: Counter, Unit: "packets", Metric: "tcp_syncookies_sent_total",
		Help: "TcpExt SyncookiesSent: SYN cookies sent because a SYN queue was full."},
		func(x *promfs.TcpExt) *float64 { return x.SyncookiesSent }, nil},
	{Value{Name: "syncookies_recv", Kind: Counter, Unit: "packets", Metric: "tcp_syncookies_recv_total",
		Help: "TcpExt SyncookiesRecv: valid SYN cookies received."},
		func(x *promfs.TcpExt) *float64 { return x.SyncookiesRecv }, nil},
	{Value{Name: "syncookies_failed", Kind: Counter, Unit: "packets", Metric: "tcp_syncookies_failed_total",
		Help: "TcpExt SyncookiesFailed: invalid SYN cookies received."},
		func(x *promfs.TcpExt) *float64 { return x.SyncookiesFailed }, nil},
	{Value{Name: "syn_queue_drops", Kind: Counter, Unit: "packets", Metric: "tcp_syn_queue_drops_total",
		Help: "TcpExt TCPReqQFullDrop: SYNs dropped because a SYN queue was full and SYN cookies are off."},
		func(x *promfs.TcpExt) *float64 { return x.TCPReqQFullDrop }, nil},
	{Value{Name: "syn_queue_cookies", Kind: Counter, Unit: "packets", Metric: "tcp_syn_queue_cookies_total",
		Help: "TcpExt TCPReqQFullDoCookies: SYNs answered with a cookie because a SYN queue was full."},
		func(x *promfs.TcpExt) *float64 { return x.TCPReqQFullDoCookies }, nil},
	{Value{Name: "active_opens", Kind: Counter, Unit: "connections", Metric: "tcp_active_opens_total",
		Help: "Tcp ActiveOpens: connections opened by this host."},
		nil, func(x *promfs.Tcp) *float64 { return x.ActiveOpens }},
	{Value{Name: "passive_opens", Kind: Counter, Unit: "connections", Metric: "tcp_passive_opens_total",
		Help: "Tcp PassiveOpens: connections accepted by listeners (SYN_RECV from LISTEN)."},
		nil, func(x *promfs.Tcp) *float64 { return x.PassiveOpens }},
	{Value{Name: "attempt_fails", Kind: Counter, Unit: "connections", Metric: "tcp_attempt_fails_total",
		Help: "Tcp AttemptFails: connection attempts that failed."},
		nil, func(x *promfs.Tcp) *float64 { return x.AttemptFails }},
	{Value{Name: "estab_resets", Kind: Counter, Unit: "connections", Metric: "tcp_estab_resets_total",
		Help: "Tcp EstabResets: established connections reset."},
		nil, func(x *promfs.Tcp) *float64 { return x.EstabResets }},
	{Value{Name: "established", Kind: Gauge, Unit: "connections", Metric: "tcp_established",
		Help: "Tcp CurrEstab: connections in ESTABLISHED or CLOSE_WAIT."},
		nil, func(x *promfs.Tcp) *float64 { return x.CurrEstab }},
}

var tcpstatDecl = func() *Declaration {
	d := &Declaration{
		Name: "tcpstat",
		Core: true,
		Sections: []Section{
			{Name: "syn_queue", Title: "SYN queue", Order: 30},
			{Name: "accept_queue", Title: "Accept queue", Order: 40},
			{Name: "connection_rate", Title: "Connection rate", Order: 60},
		},
		Items: []Item{
			{ID: "syn_overflows", Section: "syn_queue", What: "SYN cookies + drops", Unit: "SYNs/s",
				Rate: []string{"syncookies_sent", "syn_queue_drops"}, Related: []string{"syn_queue_cookies"}},
			{ID: "accept_overflows", Section: "accept_queue", What: "accept queue overflows", Unit: "drops/s",
				Rate: []string{"listen_overflows"}, Related: []string{"listen_drops"}},
			{ID: "connection_rate", Section: "connection_rate", What: "new connections (passive opens)", Unit: "connections/s",
				Rate: []string{"passive_opens"},
				// Dropped attempts never become passive opens: in a storm
				// against a stalled server this rate looks calm.
				Caveat: &Caveat{Rate: []string{"listen_drops"},
					Text: "%s connection attempts/s were dropped at a listener (TcpExt ListenDrops) and are not counted here"}},
		},
	}
	for _, f := range tcpstatFields {
		d.Values = append(d.Values, f.Value)
	}
	return d
}()

// tcpstatSource reads the TcpExt and Tcp counters.
type tcpstatSource struct{ fs procfs.FS }

func (s *tcpstatSource) Declaration() *Declaration { return tcpstatDecl }

func (s *tcpstatSource) Collect(_ context.Context, w *Writer) error {
	ns, err := s.fs.Netstat()
	for i, f := range tcpstatFields {
		var p *float64
		switch {
		case f.ext != nil && ns.TcpExt != nil:
			p = f.ext(ns.TcpExt)
		case f.tcp != nil && ns.Tcp != nil:
			p = f.tcp(ns.Tcp)
		}
		if p != nil {
			w.Set(i, *p)
		}
	}
	return err
}

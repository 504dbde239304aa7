package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormwatch/stormwatch/collector"
)

const namespace = "stormwatch"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

var (
	conntrackEntries = desc("conntrack_entries", "Entries in the conntrack table (net.netfilter.nf_conntrack_count).")
	conntrackLimit   = desc("conntrack_entries_limit", "Size of the conntrack table (net.netfilter.nf_conntrack_max); new flows are dropped beyond it.")
	conntrackDrops   = desc("conntrack_drops_total", "Packets dropped because a new flow could not be tracked, summed over CPUs.")
	conntrackEarly   = desc("conntrack_early_drops_total", "Tracked flows evicted to make room for new ones while the table was full.")
	conntrackInsFail = desc("conntrack_insert_failures_total", "Flows that could not be inserted into the conntrack table.")
	conntrackInvalid = desc("conntrack_invalid_total", "Packets conntrack could not track (invalid state).")
	conntrackRestart = desc("conntrack_search_restarts_total", "conntrack table lookups restarted because of a concurrent resize.")

	acceptLen   = desc("listener_accept_queue_length", "Completed handshakes waiting for accept() on the listener; it reaches limit+1 when full.", "addr", "port")
	acceptLimit = desc("listener_accept_queue_limit", "Accept queue limit of the listener: min(listen backlog, net.core.somaxconn).", "addr", "port")
	synRecv     = desc("listener_syn_recv", "Half-open handshakes (SYN_RECV request sockets) addressed to the listener, as of the last SYN_RECV dump.", "addr", "port")
	lsnSockets  = desc("listener_sockets", "Listening sockets bound to the address and port (more than one with SO_REUSEPORT).", "addr", "port")
	lsnDropped  = desc("listeners_dropped", "Listeners that matched the port filters but were not exported because of the listener cap.")

	synDumpTime    = desc("syn_recv_last_dump_timestamp_seconds", "When the SYN_RECV counts were last dumped, and why: reason=signal (a storm signal moved) or interval (slow cadence).", "reason")
	synDumps       = desc("syn_recv_dumps_total", "SYN_RECV sock_diag dumps run.")
	synDumpRetries = desc("syn_recv_dump_retries_total", "sock_diag dumps restarted because the kernel flagged them inconsistent (NLM_F_DUMP_INTR).")
	synDumpNoBufs  = desc("syn_recv_dump_nobufs_total", "sock_diag dumps restarted because the receive buffer overran (ENOBUFS).")

	listenOverflows = desc("tcp_listen_overflows_total", "TcpExt ListenOverflows: SYNs or final ACKs dropped because an accept queue was full (retransmits included).")
	listenDrops     = desc("tcp_listen_drops_total", "TcpExt ListenDrops: all drops at a listener, overflows included.")
	cookiesSent     = desc("tcp_syncookies_sent_total", "TcpExt SyncookiesSent: SYN cookies sent because a SYN queue was full.")
	cookiesRecv     = desc("tcp_syncookies_recv_total", "TcpExt SyncookiesRecv: valid SYN cookies received.")
	cookiesFailed   = desc("tcp_syncookies_failed_total", "TcpExt SyncookiesFailed: invalid SYN cookies received.")
	synQueueDrops   = desc("tcp_syn_queue_drops_total", "TcpExt TCPReqQFullDrop: SYNs dropped because a SYN queue was full and SYN cookies are off.")
	synQueueCookies = desc("tcp_syn_queue_cookies_total", "TcpExt TCPReqQFullDoCookies: SYNs answered with a cookie because a SYN queue was full.")
	passiveOpens    = desc("tcp_passive_opens_total", "Tcp PassiveOpens: connections accepted by listeners (SYN_RECV from LISTEN).")
	activeOpens     = desc("tcp_active_opens_total", "Tcp ActiveOpens: connections opened by this host.")
	attemptFails    = desc("tcp_attempt_fails_total", "Tcp AttemptFails: connection attempts that failed.")
	estabResets     = desc("tcp_estab_resets_total", "Tcp EstabResets: established connections reset.")
	established     = desc("tcp_established", "Tcp CurrEstab: connections in ESTABLISHED or CLOSE_WAIT.")

	sysctl = desc("sysctl", "Kernel parameter that sizes a connection queue or table, by sysctl name.", "name")

	collectorSuccess  = desc("collector_success", "1 if the source read everything in the last cycle, 0 if it failed or the subsystem is absent.", "collector")
	collectorDuration = desc("collector_duration_seconds", "How long the source took in the last cycle.", "collector")
	lastSample        = desc("last_sample_timestamp_seconds", "When the last sampling cycle started.")
	buildInfo         = desc("build_info", "Always 1; labels say which build is running.", "version", "revision", "goversion")
)

// BuildInfo names the running build.
type BuildInfo struct{ Version, Revision string }

// Exporter is a prometheus.Collector serving the latest Snapshot.
type Exporter struct {
	latest func() *collector.Snapshot
	build  BuildInfo
}

// NewExporter returns an Exporter over latest, which returns the newest
// Snapshot or nil before the first cycle.
func NewExporter(latest func() *collector.Snapshot, build BuildInfo) *Exporter {
	return &Exporter{latest: latest, build: build}
}

// Describe sends every descriptor the Exporter may emit.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		conntrackEntries, conntrackLimit, conntrackDrops, conntrackEarly, conntrackInsFail,
		conntrackInvalid, conntrackRestart,
		acceptLen, acceptLimit, synRecv, lsnSockets, lsnDropped,
		synDumpTime, synDumps, synDumpRetries, synDumpNoBufs,
		listenOverflows, listenDrops, cookiesSent, cookiesRecv, cookiesFailed,
		synQueueDrops, synQueueCookies, passiveOpens, activeOpens, attemptFails,
		estabResets, established, sysctl, collectorSuccess, collectorDuration,
		lastSample, buildInfo,
	} {
		ch <- d
	}
}

// Collect sends the metrics of the latest Snapshot.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(buildInfo, prometheus.GaugeValue, 1,
		e.build.Version, e.build.Revision, runtime.Version())
	s := e.latest()
	if s == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		if collector.Present(v) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
		}
	}
	counter := func(d *prometheus.Desc, v float64, lv ...string) {
		if collector.Present(v) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
		}
	}

	gauge(lastSample, float64(s.Time.UnixNano())/1e9)
	for _, r := range s.Sources {
		ok := 0.0
		if r.Success {
			ok = 1
		}
		gauge(collectorSuccess, ok, r.Name)
		gauge(collectorDuration, r.Duration.Seconds(), r.Name)
	}

	c := &s.Conntrack
	gauge(conntrackEntries, c.Entries)
	gauge(conntrackLimit, c.Limit)
	counter(conntrackDrops, c.Drop)
	counter(conntrackEarly, c.EarlyDrop)
	counter(conntrackInsFail, c.InsertFailed)
	counter(conntrackInvalid, c.Invalid)
	counter(conntrackRestart, c.SearchRestart)

	t := &s.TCP
	counter(listenOverflows, t.ListenOverflows)
	counter(listenDrops, t.ListenDrops)
	counter(cookiesSent, t.SyncookiesSent)
	counter(cookiesRecv, t.SyncookiesRecv)
	counter(cookiesFailed, t.SyncookiesFailed)
	counter(synQueueDrops, t.TCPReqQFullDrop)
	counter(synQueueCookies, t.TCPReqQFullDoCookies)
	counter(passiveOpens, t.PassiveOpens)
	counter(activeOpens, t.ActiveOpens)
	counter(attemptFails, t.AttemptFails)
	counter(estabResets, t.EstabResets)
	gauge(established, t.CurrEstab)

	for _, sc := range s.Sysctls {
		gauge(sysctl, float64(sc.Value), sc.Name)
	}

	if r, ok := s.Source("listeners"); ok && (r.Success || len(s.Listeners) > 0) {
		for i := range s.Listeners {
			l := &s.Listeners[i]
			addr, port := l.LabelValues()
			gauge(acceptLen, float64(l.AcceptQueue), addr, port)
			gauge(acceptLimit, float64(l.AcceptLimit), addr, port)
			gauge(lsnSockets, float64(l.Sockets), addr, port)
			if !s.SynRecv.Time.IsZero() {
				gauge(synRecv, float64(l.SynRecv), addr, port)
			}
		}
		gauge(lsnDropped, float64(s.ListenersDropped))
	}
	if sr := &s.SynRecv; !sr.Time.IsZero() {
		gauge(synDumpTime, float64(sr.Time.UnixNano())/1e9, sr.Reason)
		counter(synDumps, float64(sr.Dumps))
		counter(synDumpRetries, float64(sr.Retries))
		counter(synDumpNoBufs, float64(sr.NoBufs))
	}
}

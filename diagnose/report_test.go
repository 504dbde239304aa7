package diagnose

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/golden"
)

var t0 = time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)

// host returns a sample of a healthy Valkey host at t.
func host(t time.Time) *collector.Snapshot {
	s := collector.NewSnapshot(t)
	s.Sysctls = []collector.Sysctl{
		{Name: "net.core.somaxconn", Value: 4096},
		{Name: "net.ipv4.tcp_max_syn_backlog", Value: 4096},
		{Name: "net.ipv4.tcp_syncookies", Value: 1},
		{Name: "net.ipv4.tcp_abort_on_overflow", Value: 0},
		{Name: "net.netfilter.nf_conntrack_max", Value: 262144},
	}
	s.TCP = collector.TCPCounters{
		ListenOverflows: 10, ListenDrops: 10, SyncookiesSent: 0, SyncookiesRecv: 0, SyncookiesFailed: 0,
		TCPReqQFullDrop: 0, TCPReqQFullDoCookies: 0, ActiveOpens: 1000, PassiveOpens: 50000,
		AttemptFails: 3, EstabResets: 20, CurrEstab: 2000,
	}
	c := &s.Conntrack
	c.Entries, c.Limit, c.Buckets, c.StatsVia = 4100, 262144, 65536, "procfs"
	c.Found, c.Invalid, c.Insert, c.InsertFailed, c.Drop, c.EarlyDrop = 10, 2, 90000, 0, 0, 0
	c.ICMPError, c.SearchRestart, c.ClashResolve, c.ChainTooLong = 0, 0, 0, 0
	s.Listeners = []collector.Listener{
		{Addr: netip.MustParseAddr("0.0.0.0"), Port: 6379, Sockets: 1, AcceptQueue: 0, AcceptLimit: 511},
		{Addr: netip.MustParseAddr("127.0.0.1"), Port: 16379, Sockets: 1, AcceptQueue: 0, AcceptLimit: 511},
		{Addr: netip.MustParseAddr("::"), Port: 22, Sockets: 1, AcceptQueue: 0, AcceptLimit: 128},
	}
	s.SynRecv = collector.SynRecvInfo{Time: t, Ran: true, Reason: "interval", Dumps: 1}
	for _, name := range []string{"sysctl", "tcpstat", "conntrack", "conntrack_stats", "listeners"} {
		s.Sources = append(s.Sources, collector.SourceResult{Name: name, Success: true, Duration: time.Millisecond})
	}
	return s
}

var scenarios = []struct {
	name     string
	first    func() *collector.Snapshot // nil: instant check
	last     func() *collector.Snapshot
	wantExit int
}{
	{"healthy", func() *collector.Snapshot { return host(t0) }, func() *collector.Snapshot {
		s := host(t0.Add(2 * time.Second))
		s.TCP.PassiveOpens += 60 // 30 new connections a second
		return s
	}, 0},
	{"storm", func() *collector.Snapshot { return host(t0) }, func() *collector.Snapshot {
		// Reconnection storm: the accept queue of 6379 is full and
		// overflowing, its SYN queue is filling, cookies go out and the
		// conntrack table is near full.
		s := host(t0.Add(2 * time.Second))
		s.TCP.PassiveOpens += 9000
		s.TCP.ListenOverflows += 2400
		s.TCP.ListenDrops += 2400
		s.TCP.SyncookiesSent += 800
		s.Conntrack.Entries = 214000
		s.Listeners[0].AcceptQueue, s.Listeners[0].SynRecv = 512, 470
		s.Listeners[0].MaxFill = 512.0 / 511
		return s
	}, 2},
	{"misconfigured", nil, func() *collector.Snapshot {
		// somaxconn left at the old default caps Valkey's backlog of 511,
		// and SYN cookies are off.
		s := host(t0)
		s.Sysctls[0].Value = 128
		s.Sysctls[2].Value = 0
		s.Listeners[0].AcceptLimit, s.Listeners[1].AcceptLimit = 128, 128
		return s
	}, 1},
	{"unprivileged", func() *collector.Snapshot { return host(t0) }, func() *collector.Snapshot {
		// A kernel without /proc/net/stat/nf_conntrack, run without
		// CAP_NET_ADMIN: the conntrack stats cannot be read.
		s := host(t0.Add(2 * time.Second))
		for _, f := range []*float64{&s.Conntrack.Drop, &s.Conntrack.EarlyDrop, &s.Conntrack.InsertFailed} {
			*f = collector.NaN
		}
		s.Conntrack.StatsVia = ""
		s.Sources[3] = collector.SourceResult{Name: "conntrack_stats",
			Err: fmt.Errorf("ctnetlink: %w: needs CAP_NET_ADMIN: %w", collector.ErrPermission, errors.New("operation not permitted"))}
		return s
	}, 0},
}

func build(t *testing.T, first, last *collector.Snapshot) *Report {
	t.Helper()
	h := collector.NewHistory(2)
	if first != nil {
		h.Add(first)
	}
	h.Add(last)
	findings, err := alerts.NewEngine(alerts.DefaultRules(), alerts.Options{}).Check(last.Time, h)
	if err != nil {
		t.Fatal(err)
	}
	return Build(Input{Host: "valkey-1", First: first, Last: last, Findings: findings})
}

func TestGolden(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			var first *collector.Snapshot
			if sc.first != nil {
				first = sc.first()
			}
			r := build(t, first, sc.last())
			if r.ExitCode != sc.wantExit {
				t.Errorf("exit code %d, want %d (%s)", r.ExitCode, sc.wantExit, r)
			}
			var text, quiet, js bytes.Buffer
			if err := r.WriteText(&text, TextOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := r.WriteText(&quiet, TextOptions{Quiet: true}); err != nil {
				t.Fatal(err)
			}
			if err := r.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, sc.name+".txt", text.Bytes())
			golden.Check(t, sc.name+".quiet.txt", quiet.Bytes())
			golden.Check(t, sc.name+".json", js.Bytes())
			if bytes.Contains(text.Bytes(), []byte("\x1b[")) {
				t.Error("colour codes without Color")
			}
		})
	}
}

func TestColor(t *testing.T) {
	sc := scenarios[1]
	r := build(t, sc.first(), sc.last())
	var b bytes.Buffer
	if err := r.WriteText(&b, TextOptions{Color: true}); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "storm.color.txt", b.Bytes())
}

func TestNothingReadIsUnknown(t *testing.T) {
	s := collector.NewSnapshot(t0)
	for _, name := range []string{"sysctl", "tcpstat", "conntrack", "conntrack_stats", "listeners"} {
		s.Sources = append(s.Sources, collector.SourceResult{Name: name, Err: errors.New("boom")})
	}
	r := build(t, nil, s)
	if r.Status != Unknown || r.ExitCode != 3 {
		t.Errorf("status %v exit %d, want UNKNOWN 3", r.Status, r.ExitCode)
	}
}

// TestCoreSourceFailedIsUnknown: a check that could not read the listeners
// or the TCP counters cannot call the host healthy, and each item that
// needed them says so.
func TestCoreSourceFailedIsUnknown(t *testing.T) {
	for _, src := range []string{"listeners", "tcpstat"} {
		t.Run(src, func(t *testing.T) {
			first, last := host(t0), host(t0.Add(2*time.Second))
			for _, s := range []*collector.Snapshot{first, last} {
				for i := range s.Sources {
					if s.Sources[i].Name == src {
						s.Sources[i] = collector.SourceResult{Name: src, Err: errors.New("netlink receive: timeout")}
					}
				}
				if src == "tcpstat" {
					s.TCP = collector.NewSnapshot(t0).TCP // nothing read
				} else {
					s.Listeners = nil
				}
			}
			r := build(t, first, last)
			if r.Status != Unknown || r.ExitCode != 3 {
				t.Errorf("status %v exit %d with %s failed, want UNKNOWN 3", r.Status, r.ExitCode, src)
			}
			for _, sec := range r.Sections {
				for _, it := range sec.Items {
					needs := it.ID == "accept_queue"
					if src == "tcpstat" {
						needs = it.ID == "syn_overflows" || it.ID == "accept_overflows" || it.ID == "connection_rate"
					}
					if needs && (it.Status != Unknown || it.Reason == "") {
						t.Errorf("%s item %q: status %v reason %q, want UNKNOWN with the reason", src, it.What, it.Status, it.Reason)
					}
				}
			}
		})
	}
}

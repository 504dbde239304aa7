package diagnose

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/clients"
	"github.com/stormwatch/stormwatch/internal/golden"
)

var t0 = time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)

// sample is a test's description of one sample of a Valkey host.
type sample struct {
	t         time.Time
	vals      map[string]float64
	listeners []collector.Listener
	sources   []collector.SourceResult
	// noListeners: the listeners source read nothing.
	noListeners bool
	// owners are the attributes of the owners of listeners, by index.
	owners map[int]map[string]string
}

// host returns a sample of a healthy Valkey host at t.
func host(t time.Time) *sample {
	s := &sample{t: t, vals: map[string]float64{
		"somaxconn": 4096, "tcp_max_syn_backlog": 4096, "syncookies": 1, "tcp_abort_on_overflow": 0, "nf_conntrack_max": 262144,
		"listen_overflows": 10, "listen_drops": 10, "syncookies_sent": 0, "syncookies_recv": 0, "syncookies_failed": 0,
		"syn_queue_drops": 0, "syn_queue_cookies": 0, "active_opens": 1000, "passive_opens": 50000,
		"attempt_fails": 3, "estab_resets": 20, "established": 2000,
		"conntrack_entries": 4100, "conntrack_limit": 262144, "conntrack_buckets": 65536,
		"conntrack_found": 10, "conntrack_invalid": 2, "conntrack_insert": 90000, "conntrack_insert_failed": 0,
		"conntrack_drop": 0, "conntrack_early_drop": 0, "conntrack_icmp_error": 0, "conntrack_search_restart": 0,
		"conntrack_clash_resolve": 0, "conntrack_chain_too_long": 0,
		"softnet_processed": 812000, "softnet_dropped": 0, "softnet_times_squeezed": 12,
		"netdev_max_backlog": 1000, "netdev_budget": 300, "nic_receive_dropped": 0, "nic_receive_missed": 0,
	}}
	s.listeners = []collector.Listener{
		{Addr: netip.MustParseAddr("0.0.0.0"), Port: 6379, Sockets: 1, AcceptQueue: 0, AcceptLimit: 511},
		{Addr: netip.MustParseAddr("127.0.0.1"), Port: 16379, Sockets: 1, AcceptQueue: 0, AcceptLimit: 511},
		{Addr: netip.MustParseAddr("::"), Port: 22, Sockets: 1, AcceptQueue: 0, AcceptLimit: 128},
	}
	for _, name := range []string{"sysctl", "tcpstat", "conntrack", "conntrack_stats", "listeners", "softnet", "nic"} {
		s.sources = append(s.sources, collector.SourceResult{Name: name, Success: true, Duration: time.Millisecond})
	}
	return s
}

// snapshot makes the Snapshot, as the sources would have filled it.
func (s *sample) snapshot() *collector.Snapshot {
	b := collector.NewBuilder(collector.DefaultSchema(), s.t)
	for name, v := range s.vals {
		b.Set(name, v)
	}
	for _, r := range s.sources {
		b.Source(r)
	}
	if s.noListeners {
		return b.Snapshot()
	}
	b.EmptyTable(collector.KindListener)
	var total float64
	for i := range s.listeners {
		l := &s.listeners[i]
		e := b.Entity(collector.KindListener, l.Addr.String(), strconv.Itoa(int(l.Port))).
			Set("accept_queue", float64(l.AcceptQueue)).Set("accept_queue_limit", float64(l.AcceptLimit)).
			Set("accept_queue_fill", l.Fill()).Set("sockets", float64(l.Sockets)).Set("syn_recv", float64(l.SynRecv)).
			Set("syn_queue_limit", collector.SynQueueLimit(l, s.vals["syncookies"], s.vals["tcp_max_syn_backlog"]))
		for name, v := range s.owners[i] {
			e.SetAttr(name, v)
		}
		if st, ok := s.owners[i]["state"]; ok {
			stopped := 0.0
			if st == "stopped" {
				stopped = 1
			}
			e.Set("owner_known", 1).Set("owner_stopped", stopped)
		}
		total += float64(l.SynRecv)
	}
	b.Set("listeners", float64(len(s.listeners))).Set("syn_recv", total).Set("syn_recv_total", total)
	return b.Snapshot()
}

var scenarios = []struct {
	name     string
	first    func() *sample // nil: instant check
	last     func() *sample
	wantExit int
	// clients are what check found of the listeners not OK.
	clients []clients.Sources
}{
	{"healthy", func() *sample { return host(t0) }, func() *sample {
		s := host(t0.Add(2 * time.Second))
		s.vals["passive_opens"] += 60 // 30 new connections a second
		return s
	}, 0, nil},
	{"storm", func() *sample { return host(t0) }, func() *sample {
		// Reconnection storm: the accept queue of 6379 is full and
		// overflowing, its SYN queue is filling, cookies go out and the
		// conntrack table is near full.
		s := host(t0.Add(2 * time.Second))
		s.vals["passive_opens"] += 9000
		s.vals["listen_overflows"] += 2400
		s.vals["listen_drops"] += 2400
		s.vals["syncookies_sent"] += 800
		s.vals["conntrack_entries"] = 214000
		s.listeners[0].AcceptQueue, s.listeners[0].SynRecv = 512, 470
		s.listeners[0].MaxFill = 512.0 / 511
		s.owners = map[int]map[string]string{0: {"process": "valkey-server", "pid": "2231", "state": "running"}}
		return s
	}, 2, []clients.Sources{{
		Listener: netip.MustParseAddrPort("0.0.0.0:6379"), Found: true,
		HalfOpen: clients.Counts{Total: 470, Prefixes: 37, Top: []clients.Count{
			{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Count: 212},
			{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Count: 97},
			{Prefix: netip.MustParsePrefix("2001:db8:7:1::/64"), Count: 40},
		}},
		Established: clients.Counts{Total: 1988, Prefixes: 12, Top: []clients.Count{
			{Prefix: netip.MustParsePrefix("10.20.1.0/24"), Count: 1500},
			{Prefix: netip.MustParsePrefix("10.20.2.0/24"), Count: 400},
			{Prefix: netip.MustParsePrefix("10.20.3.0/24"), Count: 60},
		}},
	}}},
	{"stalled", func() *sample { return stalled(host(t0)) }, func() *sample { return stalled(host(t0.Add(2 * time.Second))) }, 2,
		[]clients.Sources{{
			Listener: netip.MustParseAddrPort("0.0.0.0:6379"), Found: true,
			Established: clients.Counts{Total: 5, Prefixes: 2, Top: []clients.Count{
				{Prefix: netip.MustParsePrefix("10.20.1.0/24"), Count: 3},
				{Prefix: netip.MustParsePrefix("2001:db8:aa:1::/64"), Count: 2},
			}},
		}}},
	{"misconfigured", nil, func() *sample {
		// somaxconn left at the old default caps Valkey's backlog of 511,
		// and SYN cookies are off.
		s := host(t0)
		s.vals["somaxconn"] = 128
		s.vals["syncookies"] = 0
		s.listeners[0].AcceptLimit, s.listeners[1].AcceptLimit = 128, 128
		return s
	}, 1, nil},
	{"unprivileged", func() *sample { return host(t0) }, func() *sample {
		// A kernel without /proc/net/stat/nf_conntrack, run without
		// CAP_NET_ADMIN: the conntrack stats cannot be read.
		s := host(t0.Add(2 * time.Second))
		for name := range s.vals {
			if strings.HasPrefix(name, "conntrack_") && name != "conntrack_entries" && name != "conntrack_limit" && name != "conntrack_buckets" {
				delete(s.vals, name)
			}
		}
		s.sources[3] = collector.SourceResult{Name: "conntrack_stats",
			Err: fmt.Errorf("ctnetlink: %w: needs CAP_NET_ADMIN: %w", collector.ErrPermission, errors.New("operation not permitted"))}
		return s
	}, 0, nil},
}

// stalled makes s a host whose Valkey server is stopped with 5 clients
// in its accept queue.
func stalled(s *sample) *sample {
	s.listeners[0].AcceptQueue = 5
	s.listeners[0].MaxFill = 5.0 / 511
	s.owners = map[int]map[string]string{0: {"process": "redis-server", "pid": "4242", "state": "stopped"}}
	return s
}

func build(t *testing.T, first, last *sample) *Report {
	t.Helper()
	return buildSnapshots(t, first.snap(), last.snapshot())
}

// snap is the sample's Snapshot, nil for no sample.
func (s *sample) snap() *collector.Snapshot {
	if s == nil {
		return nil
	}
	return s.snapshot()
}

func buildSnapshots(t *testing.T, first, last *collector.Snapshot) *Report {
	t.Helper()
	h := collector.NewHistory(collector.Retention{Host: time.Minute, Kinds: map[string]time.Duration{collector.KindListener: time.Minute}})
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
			var first *sample
			if sc.first != nil {
				first = sc.first()
			}
			r := build(t, first, sc.last())
			if r.ExitCode != sc.wantExit {
				t.Errorf("exit code %d, want %d (%s)", r.ExitCode, sc.wantExit, r)
			}
			attachClients(t, r, sc.clients)
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

// attachClients attaches what check found to r, as check does: each
// listener found must be one of r's listeners not OK.
func attachClients(t *testing.T, r *Report, found []clients.Sources) {
	t.Helper()
	notOK := r.ListenersNotOK()
	for _, s := range found {
		if !slices.Contains(notOK, s.Listener) {
			t.Errorf("%v is not among the listeners not OK %v", s.Listener, notOK)
		}
		if !r.SetClients(s.Listener, NewClients(s, clients.DefaultConfig())) {
			t.Errorf("no item to attach the clients of %v to", s.Listener)
		}
	}
}

func TestColor(t *testing.T) {
	sc := scenarios[1]
	r := build(t, sc.first(), sc.last())
	attachClients(t, r, sc.clients)
	var b bytes.Buffer
	if err := r.WriteText(&b, TextOptions{Color: true}); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "storm.color.txt", b.Bytes())
}

func TestNothingReadIsUnknown(t *testing.T) {
	s := &sample{t: t0, vals: map[string]float64{}, noListeners: true}
	for _, name := range []string{"sysctl", "tcpstat", "conntrack", "conntrack_stats", "listeners", "softnet", "nic"} {
		s.sources = append(s.sources, collector.SourceResult{Name: name, Err: errors.New("boom")})
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
			for _, s := range []*sample{first, last} {
				for i := range s.sources {
					if s.sources[i].Name == src {
						s.sources[i] = collector.SourceResult{Name: src, Err: errors.New("netlink receive: timeout")}
					}
				}
				if src == "tcpstat" {
					for _, f := range tcpstatNames { // nothing read
						delete(s.vals, f)
					}
				} else {
					s.noListeners = true
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

var tcpstatNames = []string{"listen_overflows", "listen_drops", "syncookies_sent", "syncookies_recv", "syncookies_failed",
	"syn_queue_drops", "syn_queue_cookies", "active_opens", "passive_opens", "attempt_fails", "estab_resets", "established"}

// TestMissingPort: a port asked about with no listener is said, and is at
// least a warning; when none of the ports asked about has a listener the
// check cannot judge anything it was asked: Unknown.
func TestMissingPort(t *testing.T) {
	for _, tt := range []struct {
		ports    []uint16
		wantExit int
	}{
		{[]uint16{6379, 6390}, 1},
		{[]uint16{6390}, 3},
	} {
		last := host(t0)
		var keep []collector.Listener
		for _, l := range last.listeners {
			if slices.Contains(tt.ports, l.Port) {
				keep = append(keep, l)
			}
		}
		last.listeners = keep // check --port reads only these
		h := collector.NewHistory(collector.Retention{Host: time.Minute})
		snap := last.snapshot()
		h.Add(snap)
		findings, err := alerts.NewEngine(alerts.DefaultRules(), alerts.Options{}).Check(snap.Time, h)
		if err != nil {
			t.Fatal(err)
		}
		r := Build(Input{Host: "h", Last: snap, Findings: findings, Ports: tt.ports})
		if r.ExitCode != tt.wantExit {
			t.Errorf("ports %v: exit %d, want %d", tt.ports, r.ExitCode, tt.wantExit)
		}
		var text, js bytes.Buffer
		if err := r.WriteText(&text, TextOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		for _, out := range []string{text.String(), js.String()} {
			if !strings.Contains(out, "no listener on port 6390") {
				t.Errorf("ports %v: output does not say there is no listener:\n%s", tt.ports, out)
			}
		}
	}
}

// TestClientsText: the lines of an approximate count (more prefixes than
// tracked), of a listener gone before its connections were listed, and
// the JSON of each.
func TestClientsText(t *testing.T) {
	cfg := clients.DefaultConfig()
	approx := NewClients(clients.Sources{Found: true,
		HalfOpen: clients.Counts{Total: 90000, Prefixes: 4096, Approximate: true, Top: []clients.Count{
			{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Count: 30000},
			{Prefix: netip.MustParsePrefix("2001:db8:7:1::/64"), Count: 40, Overcount: 3},
		}}}, cfg)
	gone := NewClients(clients.Sources{}, cfg)
	r := &Report{Sections: []Section{{Name: "accept_queue", Title: "Accept queue", Items: []Item{
		{ID: "accept_queue", What: "accept queue 0.0.0.0:6379", Status: Critical, Clients: approx},
		{ID: "accept_queue", What: "accept queue 0.0.0.0:6380", Status: Warning, Clients: gone},
	}}}}
	var text, js bytes.Buffer
	if err := r.WriteText(&text, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"    half-open    90000 from more than 4096 prefixes (counts are upper bounds)\n",
		"      198.51.100.0/24                30000\n",
		"      2001:db8:7:1::/64                 40  (up to 3 fewer)\n",
		"      other prefixes                 59960\n",
		"    established  none\n",
		"clients not read: the listener was gone when its connections were listed\n",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	for _, want := range []string{`"approximate": true`, `"overcount": 3`, `"other": 59960`, `"error": "the listener was gone`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js.String())
		}
	}
}

// TestSameReasonOnce: the items a failed source left unknown share its
// reason; the text prints it once, the JSON on every item.
func TestSameReasonOnce(t *testing.T) {
	const why = "valkey 127.0.0.1:6379: INFO: timed out"
	r := &Report{Sections: []Section{{Name: "valkey", Title: "Valkey", Items: []Item{
		{ID: "valkey_clients", What: "clients 127.0.0.1:6379", Status: Unknown, Reason: why},
		{ID: "valkey_rejected", What: "rejected connections 127.0.0.1:6379", Status: Unknown, Reason: why},
		{ID: "valkey_backlog", What: "tcp-backlog 127.0.0.1:6379", Status: Unknown, Reason: "another reason"},
	}}}}
	var text, js bytes.Buffer
	if err := r.WriteText(&text, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(text.String(), why); n != 1 {
		t.Errorf("text says %q %d times, want once:\n%s", why, n, text.String())
	}
	if !strings.Contains(text.String(), "(the same reason as above)") || !strings.Contains(text.String(), "another reason") {
		t.Errorf("text:\n%s", text.String())
	}
	if n := strings.Count(js.String(), why); n != 2 {
		t.Errorf("JSON says %q %d times, want on both items:\n%s", why, n, js.String())
	}
}

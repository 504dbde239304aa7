package main

// A stalled server and who is storming, against a real redis-server in a
// network namespace: SIGSTOP with 5 clients waiting makes
// AcceptQueueStalled fire at the default interval and check name the
// process, its pid and state; the same server resumed under
// redis-benchmark keeps the rule quiet; check's table of client prefixes
// matches ss(8); a port nobody listens on is said.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/netnstest"
	"github.com/stormwatch/stormwatch/internal/sockdiag"
	"github.com/stormwatch/stormwatch/internal/testbin"
)

// checkReport is what the tests read of check's JSON.
type checkReport struct {
	Status   string `json:"status"`
	ExitCode int    `json:"exit_code"`
	Sections []struct {
		Name  string      `json:"name"`
		Items []checkItem `json:"items"`
	} `json:"sections"`
}

type checkItem struct {
	ID         string            `json:"id"`
	What       string            `json:"what"`
	Status     string            `json:"status"`
	Labels     map[string]string `json:"labels"`
	Reason     string            `json:"reason"`
	Value      *float64          `json:"value"`
	Attributes map[string]string `json:"attributes"`
	Detail     string            `json:"detail"`
	Alerts     []struct {
		Name string `json:"alertname"`
	} `json:"alerts"`
	Clients *struct {
		PrefixIPv4  int          `json:"prefix_ipv4"`
		PrefixIPv6  int          `json:"prefix_ipv6"`
		HalfOpen    *checkCounts `json:"half_open"`
		Established *checkCounts `json:"established"`
		Error       string       `json:"error"`
	} `json:"clients"`
}

type checkCounts struct {
	Total       int  `json:"total"`
	Prefixes    int  `json:"prefixes"`
	Approximate bool `json:"approximate"`
	Top         []struct {
		Prefix string `json:"prefix"`
		Count  int    `json:"count"`
	} `json:"top"`
	Other int `json:"other"`
}

// byPrefix is the counts as a map.
func (c *checkCounts) byPrefix() map[string]int {
	m := map[string]int{}
	if c != nil {
		for _, t := range c.Top {
			m[t.Prefix] = t.Count
		}
	}
	return m
}

func parseCheck(t *testing.T, out string) checkReport {
	t.Helper()
	var r checkReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("check's JSON: %v\n%s", err, out)
	}
	return r
}

// items returns the report's items with id whose labels include want.
func (r checkReport) items(id string, want map[string]string) []checkItem {
	var out []checkItem
	for _, sec := range r.Sections {
	items:
		for _, it := range sec.Items {
			if id != "" && it.ID != id {
				continue
			}
			for k, v := range want {
				if it.Labels[k] != v {
					continue items
				}
			}
			out = append(out, it)
		}
	}
	return out
}

// TestStalledRedis: redis-server stopped with SIGSTOP while 5 clients wait
// in its accept queue, a fill of 5/511 that no size rule minds. The daemon
// at its default interval fires AcceptQueueStalled within 10 s, naming the
// process; check exits critical naming redis-server, its pid and state
// "stopped", with the waiting clients' prefix. Then the same server,
// resumed and reconnected to by redis-benchmark without keep-alive (its
// accept queue briefly non-empty again and again), keeps the rule quiet
// for 60 s.
func TestStalledRedis(t *testing.T) {
	testbin.RequireTools(t, "redis-server", "redis-benchmark")
	ns := netnstest.New(t)
	const port = 6390
	redis := startRedisIn(t, ns, port)
	pid := strconv.Itoa(redis.Pid)
	if comm, err := os.ReadFile("/proc/" + pid + "/comm"); err != nil || strings.TrimSpace(string(comm)) != "redis-server" {
		t.Fatalf("pid %s is %q (%v), not redis-server", pid, comm, err)
	}
	// Default flags and config: the Valkey source discovers the server
	// and polls it throughout (its connection to a stopped server adds
	// nothing to the accept queue after the first).
	d := startDaemon(t, ns, "", "--collect.interval=1s", "--collect.syn-recv-interval=5s")
	lbl := []string{"addr", "127.0.0.1", "port", strconv.Itoa(port)}
	eventually(t, "the daemon sees the listener and its owner", func() error {
		m, err := d.scrape()
		if err != nil {
			return err
		}
		if _, ok := m.Value("stormwatch_listener_accept_queue_limit", lbl...); !ok {
			return fmt.Errorf("no accept queue limit for 127.0.0.1:%d", port)
		}
		if v := value(m, "stormwatch_listener_owner_info", append(lbl, "process", "redis-server", "pid", pid)...); v != 1 {
			return fmt.Errorf("no owner info naming redis-server pid %s", pid)
		}
		return nil
	})

	if err := redis.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = redis.Signal(syscall.SIGCONT) }()
	var clients []int
	if err := ns.Do(func() (err error) {
		clients, err = connectN(5, port)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { closeAll(clients) }()
	onset := time.Now()
	if n := acceptQueue(t, ns, port); n != 5 {
		t.Fatalf("accept queue %d after 5 connects to a stopped server, want 5", n)
	}

	want := map[string]string{"addr": "127.0.0.1", "port": strconv.Itoa(port)}
	var fired time.Duration
	for {
		as, err := d.alerts()
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := firing(as, "AcceptQueueStalled", want); ok {
			fired = time.Since(onset)
			if s := a.Annotations["summary"]; !strings.Contains(s, "redis-server") || !strings.Contains(s, "stopped") {
				t.Errorf("summary %q does not name redis-server, stopped", s)
			}
			break
		}
		if time.Since(onset) > 15*time.Second {
			t.Fatalf("AcceptQueueStalled not firing 15 s after 5 clients queued on a stopped server: %+v", as)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("AcceptQueueStalled fired %v after the 5 clients were queued", fired.Round(10*time.Millisecond))
	if fired > 10*time.Second {
		t.Errorf("AcceptQueueStalled fired after %v, want within 10 s", fired)
	}

	// check, text and JSON.
	text, code := runCheckIn(t, ns, "", "--port="+strconv.Itoa(port))
	t.Logf("stormwatch check --port=%d (exit %d):\n%s", port, code, text)
	if code < exitWarning {
		t.Errorf("check exit %d on a stopped server, want ≥ 1", code)
	}
	// Queued: the 5 clients and this check's own Valkey connection.
	for _, w := range []string{"AcceptQueueStalled", "redis-server", "pid " + pid, "stopped", "127.0.0.0/24", "not accepting", ":6390          6 / 511"} {
		if !strings.Contains(text, w) {
			t.Errorf("check's text lacks %q", w)
		}
	}
	js, code := runCheckIn(t, ns, "", "--port="+strconv.Itoa(port), "--format=json")
	if code < exitWarning {
		t.Errorf("check --format=json exit %d, want ≥ 1", code)
	}
	r := parseCheck(t, js)
	items := r.items("accept_queue", want)
	if len(items) != 1 {
		t.Fatalf("%d accept queue items for %v:\n%s", len(items), want, js)
	}
	it := items[0]
	if diff := cmp.Diff(map[string]string{"process": "redis-server", "pid": pid, "state": "stopped"}, it.Attributes); diff != "" {
		t.Errorf("owner attributes (-want +got):\n%s", diff)
	}
	if it.Status == "OK" || !strings.Contains(it.Detail, "stopped") {
		t.Errorf("accept queue item %s, detail %q", it.Status, it.Detail)
	}
	// Established: the 5 clients, and stormwatch's own, each held and
	// never opened again: the daemon's Valkey connection (accepted before
	// the stop) and this check's (queued). Queued: the 5 clients, the
	// first check's connection (closed when it exited, still queued) and
	// this check's.
	if it.Clients == nil || it.Clients.Established == nil || it.Clients.Established.Total != 7 ||
		it.Clients.Established.byPrefix()["127.0.0.0/24"] != 7 {
		t.Errorf("clients %+v, want 7 established from 127.0.0.0/24", it.Clients)
	}
	if it.Value == nil {
		t.Error("accept queue item without a value")
	} else if *it.Value != 7 {
		t.Errorf("accept queue %v, want 7", *it.Value)
	}

	// Resumed, and under a benchmark that reconnects for every request.
	closeAll(clients)
	clients = nil
	if err := redis.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	eventually(t, "AcceptQueueStalled resolves", func() error {
		as, err := d.alerts()
		if err != nil {
			return err
		}
		if _, ok := firing(as, "AcceptQueueStalled", want); ok {
			return fmt.Errorf("still firing")
		}
		return nil
	})
	quietUnderBenchmark(t, ns, d, port, 60*time.Second)
}

// quietUnderBenchmark runs redis-benchmark without keep-alive against the
// server on port for span, watching the accept queue itself every 10 ms
// and the daemon's alerts every 500 ms: AcceptQueueStalled must never
// fire, and the benchmark must have kept the queue busy.
func quietUnderBenchmark(t *testing.T, ns *netnstest.NS, d *testDaemon, port int, span time.Duration) {
	t.Helper()
	before := tcpPassiveOpens(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), span)
	defer cancel()
	bench := ns.Command(ctx, "redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-c", "50", "-k", "0", "-t", "ping_inline,set,get", "-l", "-q")
	bench.Stdout, bench.Stderr = nil, nil
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchDone := make(chan error, 1)
	go func() { benchDone <- bench.Wait() }()

	// The queue, sampled far faster than the daemon does.
	var samples, busy int
	var watchErr error
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		watchErr = ns.Do(func() error {
			c, err := sockdiag.Dial()
			if err != nil {
				return err
			}
			defer c.Close()
			for ctx.Err() == nil {
				_, err := sockdiag.Dump(ctx, c, unix.AF_INET, sockdiag.TCPFListen, func(m sockdiag.Msg) {
					if m.SrcPort == uint16(port) {
						samples++
						if m.RQueue > 0 {
							busy++
						}
					}
				})
				if err != nil && ctx.Err() == nil {
					return err
				}
				time.Sleep(10 * time.Millisecond)
			}
			return nil
		})
	}()

	want := map[string]string{"port": strconv.Itoa(port)}
	var pending int
	for ctx.Err() == nil {
		select {
		case err := <-benchDone:
			if ctx.Err() == nil {
				t.Fatalf("redis-benchmark ended early: %v", err)
			}
			benchDone <- err
		default:
		}
		as, err := d.alerts()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Labels["alertname"] == "AcceptQueueStalled" && a.Labels["port"] == want["port"] {
				if a.State == "firing" {
					t.Fatalf("AcceptQueueStalled fired under redis-benchmark: %+v", a)
				}
				pending++
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	<-benchDone // killed at the end of span
	<-watchDone
	if watchErr != nil {
		t.Fatalf("watching the accept queue: %v", watchErr)
	}
	opened := tcpPassiveOpens(t, d) - before
	t.Logf("%v of redis-benchmark -c 50 -k 0: %.0f connections accepted, the accept queue non-empty in %d of %d samples 10 ms apart; AcceptQueueStalled pending in %d polls, never firing",
		span, opened, busy, samples, pending)
	if opened < 1000 {
		t.Errorf("the benchmark opened %.0f connections in %v: it did not load the server", opened, span)
	}
	if busy == 0 {
		t.Errorf("the accept queue was never seen non-empty in %d samples: the benchmark did not test a busy queue", samples)
	}
}

// tcpPassiveOpens is the daemon's count of passive opens.
func tcpPassiveOpens(t *testing.T, d *testDaemon) float64 {
	t.Helper()
	m, err := d.scrape()
	if err != nil {
		t.Fatal(err)
	}
	return value(m, "stormwatch_tcp_passive_opens_total")
}

// acceptQueue is the accept queue of the listener on port, as ss sees it
// (Recv-Q of the LISTEN socket).
func acceptQueue(t *testing.T, ns *netnstest.NS, port int) int {
	t.Helper()
	out, err := ns.Exec(context.Background(), "ss", "-Htln", fmt.Sprintf("( sport = :%d )", port))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		t.Fatalf("ss -tln: %q", out)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("ss -tln: %q", out)
	}
	return n
}

// ssPeers counts the peers of the sockets on local port in state (an ss
// state filter: established, syn-recv) by prefix, as ss(8) lists them.
func ssPeers(t *testing.T, ns *netnstest.NS, state string, port, bits4 int) (map[string]int, int) {
	t.Helper()
	out, err := ns.Exec(context.Background(), "ss", "-Htn", "state", state, fmt.Sprintf("( sport = :%d )", port))
	if err != nil {
		t.Fatal(err)
	}
	m, total := parseSSPeers(t, string(out), bits4)
	return m, total
}

// parseSSPeers reads `ss -Htn state X` lines (Recv-Q Send-Q Local:Port
// Peer:Port [Process]) into counts of peers by prefix (bits4 for IPv4,
// /64 for IPv6).
func parseSSPeers(t testing.TB, out string, bits4 int) (map[string]int, int) {
	m := map[string]int{}
	total := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			t.Fatalf("ss line %q", line)
		}
		peer, err := netip.ParseAddrPort(f[3])
		if err != nil {
			t.Fatalf("ss line %q: peer: %v", line, err)
		}
		a := peer.Addr().Unmap()
		bits := 64
		if a.Is4() {
			bits = bits4
		}
		p, err := a.Prefix(bits)
		if err != nil {
			t.Fatal(err)
		}
		m[p.String()]++
		total++
	}
	return m, total
}

// connectFrom starts n non-blocking connects from src (port chosen by the
// kernel) to 127.0.0.1:port.
func connectFrom(src [4]byte, n, port int) ([]int, error) {
	var fds []int
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fds, err
		}
		fds = append(fds, fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src}); err != nil {
			return fds, err
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		if err != nil && err != unix.EINPROGRESS {
			return fds, err
		}
	}
	return fds, nil
}

// TestCheckClientsMatchSS: a listener that accepts nothing (stalled, so
// not OK) with established clients from three 127.x.y.z/24 prefixes and
// half-open ones (their final ACK dropped) from two more: check's table of
// client prefixes, in JSON and text, is what ss(8) lists.
func TestCheckClientsMatchSS(t *testing.T) {
	testbin.RequireTools(t, "nft", "ss")
	ns := netnstest.New(t)
	const port = 7501
	rule := fmt.Sprintf("add table inet halfopen; add chain inet halfopen in { type filter hook input priority 0; }; "+
		"add rule inet halfopen in ip saddr 127.3.0.0/16 tcp dport %d tcp flags & (fin|syn|rst|ack) == ack drop", port)
	if out, err := ns.Exec(context.Background(), "nft", rule); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	var lfd int
	var fds []int
	defer func() { closeAll(fds) }()
	if err := ns.Do(func() (err error) {
		if lfd, err = listen(unix.AF_INET, []byte{127, 0, 0, 1}, port, 128); err != nil {
			return err
		}
		for _, c := range []struct {
			src [4]byte
			n   int
		}{
			{[4]byte{127, 1, 1, 1}, 3}, {[4]byte{127, 1, 1, 2}, 2}, // 127.1.1.0/24: 5
			{[4]byte{127, 1, 2, 7}, 2},                               // 127.1.2.0/24: 2
			{[4]byte{127, 2, 0, 9}, 1},                               // 127.2.0.0/24: 1
			{[4]byte{127, 3, 1, 1}, 4},                               // half-open, 127.3.1.0/24: 4
			{[4]byte{127, 3, 2, 1}, 2}, {[4]byte{127, 3, 2, 200}, 1}, // half-open, 127.3.2.0/24: 3
		} {
			f, err := connectFrom(c.src, c.n, port)
			fds = append(fds, f...)
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	eventually(t, "the handshakes settle", func() error {
		if _, n := ssPeers(t, ns, "established", port, 24); n != 8 {
			return fmt.Errorf("%d established", n)
		}
		if _, n := ssPeers(t, ns, "syn-recv", port, 24); n != 7 {
			return fmt.Errorf("%d syn-recv", n)
		}
		return nil
	})

	js, code := runCheckIn(t, ns, "", "--port="+strconv.Itoa(port), "--format=json", "--window=1s")
	estWant, estTotal := ssPeers(t, ns, "established", port, 24)
	synWant, synTotal := ssPeers(t, ns, "syn-recv", port, 24)
	if code < exitWarning {
		t.Fatalf("check exit %d on a listener that accepts nothing, want ≥ 1:\n%s", code, js)
	}
	r := parseCheck(t, js)
	var c *checkItem
	for _, it := range r.items("", map[string]string{"addr": "127.0.0.1", "port": strconv.Itoa(port)}) {
		if it.Clients != nil {
			if c != nil {
				t.Errorf("clients on two items: %q and %q", c.What, it.What)
			}
			c = &it
		}
	}
	if c == nil {
		t.Fatalf("no item of 127.0.0.1:%d carries its clients:\n%s", port, js)
	}
	if c.Status == "OK" || c.Clients.Error != "" || c.Clients.PrefixIPv4 != 24 || c.Clients.PrefixIPv6 != 64 {
		t.Errorf("item %q %s, clients %+v", c.What, c.Status, c.Clients)
	}
	for _, st := range []struct {
		name  string
		got   *checkCounts
		want  map[string]int
		total int
	}{
		{"established", c.Clients.Established, estWant, estTotal},
		{"half-open", c.Clients.HalfOpen, synWant, synTotal},
	} {
		if st.got == nil {
			t.Errorf("%s: absent", st.name)
			continue
		}
		if diff := cmp.Diff(st.want, st.got.byPrefix()); diff != "" {
			t.Errorf("%s by /24, ss (-want) and check (+got):\n%s", st.name, diff)
		}
		if st.got.Total != st.total || st.got.Prefixes != len(st.want) || st.got.Other != 0 || st.got.Approximate {
			t.Errorf("%s: total %d, %d prefixes, other %d, approximate %v; ss: %d from %d prefixes",
				st.name, st.got.Total, st.got.Prefixes, st.got.Other, st.got.Approximate, st.total, len(st.want))
		}
	}
	if estWant["127.1.1.0/24"] != 5 || synWant["127.3.2.0/24"] != 3 {
		t.Errorf("ss saw established %v, half-open %v: not the clients made", estWant, synWant)
	}

	// Text, grouped by /16 and the top 2 only.
	text, _ := runCheckIn(t, ns, "", "--port="+strconv.Itoa(port), "--window=1s", "--clients.prefix4=16", "--clients.top=2")
	est16, _ := ssPeers(t, ns, "established", port, 16)
	syn16, _ := ssPeers(t, ns, "syn-recv", port, 16)
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[0], "127.") {
			lines = append(lines, f[0]+" "+f[1])
		}
	}
	want := []string{
		fmt.Sprintf("127.3.0.0/16 %d", syn16["127.3.0.0/16"]),
		fmt.Sprintf("127.1.0.0/16 %d", est16["127.1.0.0/16"]),
		fmt.Sprintf("127.2.0.0/16 %d", est16["127.2.0.0/16"]),
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("text rows by /16 (-want from ss +got):\n%s\n%s", diff, text)
	}
	if !strings.Contains(text, "clients by /16 (IPv4) and /64 (IPv6) prefix:") {
		t.Errorf("text does not say the grouping:\n%s", text)
	}
}

// TestCheckMissingPortInNamespace: check --port on a port nobody listens
// on says "no listener" in text and JSON, and exits ≥ 1 (3: nothing asked
// about exists).
func TestCheckMissingPortInNamespace(t *testing.T) {
	testbin.RequireTools(t)
	ns := netnstest.New(t)
	text, code := runCheckIn(t, ns, "", "--port=6390", "--window=0")
	if code < exitWarning || !strings.Contains(text, "no listener on port 6390") {
		t.Errorf("text: exit %d, want ≥ 1 and \"no listener on port 6390\":\n%s", code, text)
	}
	js, code := runCheckIn(t, ns, "", "--port=6390", "--window=0", "--format=json")
	if code < exitWarning {
		t.Errorf("JSON: exit %d, want ≥ 1", code)
	}
	r := parseCheck(t, js)
	items := r.items("accept_queue", map[string]string{"port": "6390"})
	if len(items) != 1 || !strings.Contains(items[0].Reason, "no listener on port 6390") || items[0].Status == "OK" {
		t.Errorf("JSON items for port 6390 %+v, want one saying no listener, not OK:\n%s", items, js)
	}
	if r.ExitCode != code || r.Status != "UNKNOWN" {
		t.Errorf("JSON status %s exit_code %d, process exit %d; want UNKNOWN 3", r.Status, r.ExitCode, code)
	}
}

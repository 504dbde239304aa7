//go:build linux

package stormlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/stormwatch/stormwatch/collector"
)

// Ports the scenarios use inside their namespace.
const (
	RedisPort     = 6379
	SynFloodPort  = 7000
	ConntrackPort = 7100
)

// AcceptQueueStorm piles clients into a stalled redis-server: the server
// is stopped with SIGSTOP, so completed handshakes wait in its accept queue
// until it overflows; SIGCONT lets it drain.
type AcceptQueueStorm struct {
	Lab     *Lab
	Port    int     // 0: RedisPort
	Backlog int     // redis tcp-backlog, the accept queue limit; 0: 128
	Rate    float64 // client arrivals per second; 0: at once

	Redis   *Redis
	clients *Worker
}

// Setup starts redis-server and a client worker.
func (s *AcceptQueueStorm) Setup(ctx context.Context) error {
	s.Port = cmpOr0(s.Port, RedisPort)
	s.Backlog = cmpOr0(s.Backlog, 128)
	if err := s.Lab.Sysctl("net.core.somaxconn", "4096"); err != nil {
		return err
	}
	var err error
	if s.Redis, err = s.Lab.StartRedis(ctx, s.Port, s.Backlog); err != nil {
		return err
	}
	s.clients, err = s.Lab.StartWorker(ctx)
	return err
}

// Limit is the accept queue limit: min(tcp-backlog, somaxconn).
func (s *AcceptQueueStorm) Limit() int { return min(s.Backlog, 4096) }

// Stall stops the server (SIGSTOP): it accepts nothing until Release.
func (s *AcceptQueueStorm) Stall() error {
	s.Lab.Logf("SIGSTOP redis-server (pid %d)", s.Redis.Pid())
	return s.Redis.Signal(syscall.SIGSTOP)
}

// Arrive opens n client connections at the scenario's rate and waits up
// to wait for their handshakes (those the full queue drops stay pending:
// their SYNs are retransmitted).
func (s *AcceptQueueStorm) Arrive(ctx context.Context, n int, wait time.Duration) (ConnectResult, error) {
	res, err := s.clients.Connect(ctx, s.Redis.Addr(), n, s.Rate, wait)
	s.Lab.Logf("%d clients arrived: %+v", n, res)
	return res, err
}

// Release resumes the server (SIGCONT) so it accepts the queue.
func (s *AcceptQueueStorm) Release() error {
	s.Lab.Logf("SIGCONT redis-server (pid %d)", s.Redis.Pid())
	return s.Redis.Signal(syscall.SIGCONT)
}

// SynFlood keeps handshakes half-open by dropping the client's final ACK
// with nftables, so a listener's SYN queue fills; with tcp_syncookies on
// the kernel then answers with cookies, with it off it drops SYNs.
type SynFlood struct {
	Lab        *Lab
	Port       int // 0: SynFloodPort
	Backlog    int // the listener's backlog, which is its SYN queue limit; 0: 256
	Syncookies int // net.ipv4.tcp_syncookies in the namespace: 0 or 1

	w *Worker
}

// Setup sets the namespace's sysctls, opens the listener and loads the
// nftables rule.
func (s *SynFlood) Setup(ctx context.Context) error {
	s.Port = cmpOr0(s.Port, SynFloodPort)
	s.Backlog = cmpOr0(s.Backlog, 256)
	for _, kv := range [][2]string{
		{"net.ipv4.tcp_syncookies", strconv.Itoa(s.Syncookies)},
		{"net.core.somaxconn", "4096"},
		// Far above the SYN queue, so that without cookies the kernel's
		// "three quarters of tcp_max_syn_backlog" early drop stays out of
		// the way and only the full queue drops.
		{"net.ipv4.tcp_max_syn_backlog", "8192"},
	} {
		if err := s.Lab.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	var err error
	if s.w, err = s.Lab.StartWorker(ctx); err != nil {
		return err
	}
	if _, err := s.w.Listen(ctx, fmt.Sprintf("127.0.0.1:%d", s.Port), s.Backlog); err != nil {
		return err
	}
	return s.Lab.DropFinalACK(ctx, s.Port)
}

// SynQueueLimit is the number of half-open handshakes the listener keeps
// before its SYN queue counts as full: its accept queue limit.
func (s *SynFlood) SynQueueLimit() int { return min(s.Backlog, 4096) }

// Flood starts n more handshakes at once.
func (s *SynFlood) Flood(ctx context.Context, n int) (ConnectResult, error) {
	res, err := s.w.Connect(ctx, fmt.Sprintf("127.0.0.1:%d", s.Port), n, 0, 300*time.Millisecond)
	s.Lab.Logf("%d SYNs sent: %+v", n, res)
	return res, err
}

// HpingFlood is a SYN flood by hping3 at a redis-server: SYNs from a
// spoofed loopback source whose SYN-ACKs nftables drops in the namespace,
// so that no handshake completes and the listener's SYN queue fills; with
// net.ipv4.tcp_syncookies=1 (the kernel's default) the kernel then answers
// with cookies. The source is always a 127.0.0.0/8 address: the packets
// never leave the namespace's loopback.
type HpingFlood struct {
	Lab     *Lab
	Port    int // 0: RedisPort
	Backlog int // redis tcp-backlog, the SYN queue limit; 0: 511 (Valkey's default)
	// Source is the spoofed source address; "": 127.66.0.1.
	Source string
	// Interval is the time between SYNs (hping3 -i u…); 0: 10 µs, which
	// hping3's sleeps turn into about 10,000 SYNs a second here.
	Interval time.Duration

	Redis *Redis
	proc  *Process
}

// Setup starts redis-server and drops the SYN-ACKs it sends to Source.
func (s *HpingFlood) Setup(ctx context.Context) error {
	s.Port = cmpOr0(s.Port, RedisPort)
	s.Backlog = cmpOr0(s.Backlog, 511)
	if s.Source == "" {
		s.Source = "127.66.0.1"
	}
	if s.Interval == 0 {
		s.Interval = 10 * time.Microsecond
	}
	src, err := netip.ParseAddr(s.Source)
	if err != nil || !netip.MustParsePrefix("127.0.0.0/8").Contains(src) {
		return fmt.Errorf("hping3 flood source %q: want an address in 127.0.0.0/8", s.Source)
	}
	for _, kv := range [][2]string{{"net.core.somaxconn", "4096"}, {"net.ipv4.tcp_syncookies", "1"}} {
		if err := s.Lab.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if s.Redis, err = s.Lab.StartRedis(ctx, s.Port, s.Backlog); err != nil {
		return err
	}
	return s.Lab.NFT(ctx, fmt.Sprintf("stormlab_hping_%d", s.Port), fmt.Sprintf(
		"chain output { type filter hook output priority 0; ip daddr %s tcp sport %d tcp flags & (syn|ack) == (syn|ack) drop; }", src, s.Port))
}

// SynQueueLimit is the number of half-open handshakes the listener keeps
// before it answers with cookies: its accept queue limit.
func (s *HpingFlood) SynQueueLimit() int { return min(s.Backlog, 4096) }

// Start starts hping3 flooding the server, and returns when it did.
func (s *HpingFlood) Start() (time.Time, error) {
	us := max(1, s.Interval.Microseconds())
	start := time.Now()
	p, err := s.Lab.Start("hping3", "-q", "-I", "lo", "-S", "-p", strconv.Itoa(s.Port), "-a", s.Source,
		"-i", "u"+strconv.FormatInt(us, 10), "127.0.0.1")
	if err != nil {
		return start, err
	}
	s.proc = p
	return start, nil
}

// Stop stops hping3.
func (s *HpingFlood) Stop() {
	if s.proc != nil {
		s.proc.Stop(2 * time.Second)
	}
}

// ConntrackFill tracks the namespace's connections to one port (and only
// those) and fills the conntrack table against a lowered global
// nf_conntrack_max.
type ConntrackFill struct {
	Lab   *Lab
	Port  int // 0: ConntrackPort
	Limit int // nf_conntrack_max while filling; 0: 512

	w *Worker
}

// Setup loads the nftables rules (which also loads conntrack) and opens
// the listener. It does not touch nf_conntrack_max: see LowerLimit.
func (s *ConntrackFill) Setup(ctx context.Context) error {
	s.Port = cmpOr0(s.Port, ConntrackPort)
	s.Limit = cmpOr0(s.Limit, 512)
	if err := s.Lab.Sysctl("net.core.somaxconn", "8192"); err != nil {
		return err
	}
	// A ct expression makes the namespace track connections; notrack in
	// the raw hooks keeps every other flow (stormwatch's own scrapes) out
	// of the table, so its count is exactly the scenario's flows.
	p := s.Port
	// (Separate accepts: nft 1.0.6 merges "tcp dport != P tcp sport != P"
	// into one compare of both ports, which matches the port's own flows.)
	rules := fmt.Sprintf(`chain pre { type filter hook prerouting priority raw; tcp dport %d accept; tcp sport %d accept; notrack; }
chain out { type filter hook output priority raw; tcp dport %d accept; tcp sport %d accept; notrack; }
chain in { type filter hook input priority 0; ct state new counter; }`, p, p, p, p)
	if err := s.Lab.NFT(ctx, "stormlab_conntrack", rules); err != nil {
		return err
	}
	var err error
	if s.w, err = s.Lab.StartWorker(ctx); err != nil {
		return err
	}
	_, err = s.w.Listen(ctx, fmt.Sprintf("127.0.0.1:%d", s.Port), 8192)
	return err
}

// ErrHostBusy says lowering nf_conntrack_max would starve the host.
var ErrHostBusy = errors.New("the host's own conntrack table is too full to lower nf_conntrack_max")

// LowerLimit sets the global nf_conntrack_max to the scenario's Limit and
// returns the function restoring the old value, which the caller must
// arrange to run however it ends. The limit is enforced per namespace, but
// it is one global value: it refuses (ErrHostBusy) when the host's own
// table holds more than a quarter of Limit.
func (s *ConntrackFill) LowerLimit() (restore func() error, err error) {
	hostCount, err := ReadGlobalSysctl("net.netfilter.nf_conntrack_count")
	if err != nil {
		return nil, err
	}
	if hostCount > int64(s.Limit/4) {
		return nil, fmt.Errorf("%w: %d entries, limit would be %d", ErrHostBusy, hostCount, s.Limit)
	}
	old, _ := ReadGlobalSysctl("net.netfilter.nf_conntrack_max")
	restore, err = SetGlobalSysctl("net.netfilter.nf_conntrack_max", strconv.Itoa(s.Limit))
	if err == nil {
		s.Lab.Logf("global nf_conntrack_max %d -> %d (restored afterwards)", old, s.Limit)
	}
	return restore, err
}

// Open opens n more tracked connections and waits briefly for them.
func (s *ConntrackFill) Open(ctx context.Context, n int) (ConnectResult, error) {
	res, err := s.w.Connect(ctx, fmt.Sprintf("127.0.0.1:%d", s.Port), n, 0, time.Second)
	s.Lab.Logf("%d flows opened: %+v", n, res)
	return res, err
}

// ReconnectStorm connects a pool of clients to redis-server, restarts the
// server, and watches them reconnect, with or without backoff.
type ReconnectStorm struct {
	Lab     *Lab
	Port    int // 0: RedisPort
	Backlog int // redis tcp-backlog; 0: 128
	Clients int // 0: 3000
	// Backoff is "none" or "jitter" (see ClientsConfig); Base and Cap
	// default to 50 ms and 2 s.
	Backoff   string
	Base, Cap time.Duration
	// Outage is how long the server stays down; 0: 500 ms.
	Outage time.Duration

	Redis *Redis
	w     *Worker
}

// ReconnectResult is what one restart did.
type ReconnectResult struct {
	Backoff string
	Clients int
	QueueStats
	// AllBack is the time from the new server's start to the last
	// client's reconnection (PING answered).
	AllBack time.Duration
	// Attempts and Failures count the clients' connects from the restart
	// until all were back.
	Attempts, Failures uint64
}

// Setup starts the server and the clients and waits until every client is
// connected.
func (s *ReconnectStorm) Setup(ctx context.Context) error {
	s.Port = cmpOr0(s.Port, RedisPort)
	s.Backlog = cmpOr0(s.Backlog, 128)
	s.Clients = cmpOr0(s.Clients, 3000)
	if s.Base == 0 {
		s.Base = 50 * time.Millisecond
	}
	if s.Cap == 0 {
		s.Cap = 2 * time.Second
	}
	if s.Outage == 0 {
		s.Outage = 500 * time.Millisecond
	}
	if err := s.Lab.Sysctl("net.core.somaxconn", "4096"); err != nil {
		return err
	}
	var err error
	if s.Redis, err = s.Lab.StartRedis(ctx, s.Port, s.Backlog); err != nil {
		return err
	}
	if s.w, err = s.Lab.StartWorker(ctx); err != nil {
		return err
	}
	err = s.w.StartClients(ctx, ClientsConfig{
		Addr: s.Redis.Addr(), N: s.Clients, Backoff: s.Backoff, Base: s.Base, Cap: s.Cap,
		DialTimeout: time.Second, Lifetime: 5 * time.Minute,
	})
	if err != nil {
		return err
	}
	_, err = s.waitAll(ctx, time.Time{}, time.Minute)
	return err
}

// waitAll waits until every client holds a connection made at or after
// since.
func (s *ReconnectStorm) waitAll(ctx context.Context, since time.Time, timeout time.Duration) (ClientsStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.w.ClientsStatus(ctx, since)
		if err != nil {
			return st, err
		}
		if st.ConnectedSince == st.N {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("%d of %d clients connected after %v", st.ConnectedSince, st.N, timeout)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Restart stops the server (SIGTERM), keeps it down for Outage, starts a
// new one on the same port and measures the clients' return.
func (s *ReconnectStorm) Restart(ctx context.Context) (ReconnectResult, error) {
	res := ReconnectResult{Backoff: s.Backoff, Clients: s.Clients}
	probe, err := s.Lab.StartProbe(10*time.Millisecond, s.Port)
	if err != nil {
		return res, err
	}
	before, err := s.w.ClientsStatus(ctx, time.Time{})
	if err != nil {
		return res, err
	}
	down := time.Now()
	s.Lab.Logf("stopping redis-server (pid %d) with %d clients", s.Redis.Pid(), before.Connected)
	s.Redis.Stop(5 * time.Second)
	time.Sleep(s.Outage)
	up := time.Now()
	if s.Redis, err = s.Lab.StartRedis(ctx, s.Port, s.Backlog); err != nil {
		probe.Stop()
		return res, err
	}
	st, err := s.waitAll(ctx, down, 2*time.Minute)
	samples, perr := probe.Stop()
	if err != nil {
		return res, err
	}
	if perr != nil {
		return res, perr
	}
	res.QueueStats = Summarise(samples, s.Port, time.Second)
	res.AllBack = time.Unix(0, st.Last).Sub(up)
	res.Attempts = st.Attempts - before.Attempts
	res.Failures = st.Failures - before.Failures
	s.Lab.Logf("%s: %+v", s.Backoff, res)
	return res, nil
}

// Churn is benign load: short connections (connect, PING, close) at a
// steady rate against an accepting redis-server.
type Churn struct {
	Lab  *Lab
	Port int     // 0: RedisPort
	Rate float64 // connections per second; 0: 200

	Redis *Redis
	w     *Worker
}

// Setup starts the server (Valkey's default tcp-backlog, 511) and a worker.
func (s *Churn) Setup(ctx context.Context) error {
	s.Port = cmpOr0(s.Port, RedisPort)
	if s.Rate == 0 {
		s.Rate = 200
	}
	if err := s.Lab.Sysctl("net.core.somaxconn", "4096"); err != nil {
		return err
	}
	var err error
	if s.Redis, err = s.Lab.StartRedis(ctx, s.Port, 511); err != nil {
		return err
	}
	s.w, err = s.Lab.StartWorker(ctx)
	return err
}

// Start begins churning for d.
func (s *Churn) Start(ctx context.Context, d time.Duration) error {
	return s.w.StartChurn(ctx, s.Redis.Addr(), s.Rate, d)
}

// Wait waits for the churn to end.
func (s *Churn) Wait(ctx context.Context) (ChurnResult, error) { return s.w.WaitChurn(ctx) }

func cmpOr0(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

// Listeners reads every listener of the namespace once with stormwatch's
// listeners source, SYN_RECV counts included.
func (l *Lab) Listeners(ctx context.Context) ([]collector.Listener, error) {
	var out []collector.Listener
	err := l.NS.Do(func() error {
		sources, err := collector.NewSources(collector.Config{})
		if err != nil {
			return err
		}
		defer collector.CloseSources(sources)
		s, err := listenersOnly(sources, "sysctl")
		if err != nil {
			return err
		}
		snap := s.Sample(ctx, time.Now())
		if r, _ := snap.Source("listeners"); r.Err != nil {
			return r.Err
		}
		out = collector.Listeners(snap)
		return nil
	})
	return out, err
}

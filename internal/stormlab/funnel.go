//go:build linux

package stormlab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Ports of the Funnel scenario.
const (
	OldRedisPort = 6379
	NewRedisPort = 6380
)

// Funnel is a server replacement: a pool of clients on an "old"
// redis-server that, when the old server drops them, reconnect at once
// (no backoff) to a "new" one. Dropping them all at once (killing the old
// server) is the reconnection storm; `stormwatch drain` on the old
// server's port spreads it out.
type Funnel struct {
	Lab              *Lab
	OldPort, NewPort int // 0: OldRedisPort, NewRedisPort
	// Backlog is both servers' tcp-backlog and Somaxconn the namespace's
	// net.core.somaxconn; 0: 128 each.
	Backlog, Somaxconn int
	Clients            int // 0: 2000
	// DialTimeout bounds each client's connect and the PING that follows
	// it; a client retries at once when it passes (0: 1 s). A client
	// whose PING times out on a stopped server leaves its connection in
	// the accept queue and queues another: with 1 s, a stop of 3 s
	// multiplies what one batch put there by up to four.
	DialTimeout time.Duration

	Old, New *Redis
	w        *Worker
}

// FunnelResult is what one way of moving the clients did to the new
// server.
type FunnelResult struct {
	// QueueStats of the new server's listener (peak accept queue, new
	// connections per second, ListenOverflows of the namespace).
	QueueStats
	// AllBack is the time from the start of the move until the last
	// client's connection to the new server (PING answered).
	AllBack time.Duration
	// Attempts and Failures count the clients' connects during the move.
	Attempts, Failures uint64
}

// Setup sets somaxconn, starts both servers and the clients, and waits
// until every client is connected to the old server.
func (s *Funnel) Setup(ctx context.Context) error {
	s.OldPort = cmpOr0(s.OldPort, OldRedisPort)
	s.NewPort = cmpOr0(s.NewPort, NewRedisPort)
	s.Backlog = cmpOr0(s.Backlog, 128)
	s.Somaxconn = cmpOr0(s.Somaxconn, 128)
	s.Clients = cmpOr0(s.Clients, 2000)
	if s.DialTimeout <= 0 {
		s.DialTimeout = time.Second
	}
	if err := s.Lab.Sysctl("net.core.somaxconn", strconv.Itoa(s.Somaxconn)); err != nil {
		return err
	}
	var err error
	if s.Old, err = s.Lab.StartRedis(ctx, s.OldPort, s.Backlog); err != nil {
		return err
	}
	if s.New, err = s.Lab.StartRedis(ctx, s.NewPort, s.Backlog); err != nil {
		return err
	}
	if s.w, err = s.Lab.StartWorker(ctx); err != nil {
		return err
	}
	err = s.w.StartClients(ctx, ClientsConfig{
		Addr: s.Old.Addr(), Reconnect: s.New.Addr(), N: s.Clients, Backoff: "none",
		DialTimeout: s.DialTimeout, Lifetime: 10 * time.Minute,
		// 500 a second: the setup is not the storm under test.
		Ramp: time.Duration(s.Clients) * 2 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	if _, err := s.waitAll(ctx, time.Time{}, 2*time.Minute); err != nil {
		return err
	}
	return s.waitEstablished(ctx, s.OldPort, s.Clients, time.Minute)
}

// waitAll waits until every client holds a connection made at or after
// since.
func (s *Funnel) waitAll(ctx context.Context, since time.Time, timeout time.Duration) (ClientsStatus, error) {
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

// Established counts the established server-side connections of port, as
// ss shows them.
func (s *Funnel) Established(ctx context.Context, port int) (int, error) {
	out, err := s.Lab.Exec(ctx, "ss", "-Htn", "state", "established", fmt.Sprintf("( sport = :%d )", port))
	if err != nil {
		return 0, err
	}
	return strings.Count(string(out), "\n"), nil
}

// waitEstablished waits until port has n established server-side
// connections.
func (s *Funnel) waitEstablished(ctx context.Context, port, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := s.Established(ctx, port)
		if err != nil {
			return err
		}
		if got == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d has %d established connections after %v, want %d", port, got, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Move runs move (which makes the old server drop its clients: killing
// it, or draining it), waits until every client is connected to the new
// server, and measures the new server's accept queue meanwhile.
func (s *Funnel) Move(ctx context.Context, move func(ctx context.Context) error, timeout time.Duration) (FunnelResult, error) {
	var res FunnelResult
	probe, err := s.Lab.StartProbe(10*time.Millisecond, s.NewPort)
	if err != nil {
		return res, err
	}
	before, err := s.w.ClientsStatus(ctx, time.Time{})
	if err != nil {
		probe.Stop()
		return res, err
	}
	start := time.Now()
	if err := move(ctx); err != nil {
		probe.Stop()
		return res, err
	}
	st, err := s.waitAll(ctx, start, timeout)
	// A little more, so the probe sees the queue settle, and at least a
	// rate window past the start, so a quick move has a rate.
	time.Sleep(max(200*time.Millisecond, time.Until(start.Add(1200*time.Millisecond))))
	samples, perr := probe.Stop()
	if err != nil {
		return res, err
	}
	if perr != nil {
		return res, perr
	}
	res.QueueStats = Summarise(samples, s.NewPort, time.Second)
	res.AllBack = time.Unix(0, st.Last).Sub(start)
	res.Attempts = st.Attempts - before.Attempts
	res.Failures = st.Failures - before.Failures
	s.Lab.Logf("moved %d clients: %+v", s.Clients, res)
	return res, s.waitEstablished(ctx, s.NewPort, s.Clients, 10*time.Second)
}

// KillOld ends the old server with SIGKILL: the kernel closes every
// connection at once.
func (s *Funnel) KillOld(context.Context) error {
	s.Lab.Logf("SIGKILL redis-server (pid %d) with %d clients", s.Old.Pid(), s.Clients)
	s.Old.Kill()
	return nil
}

// StallNew stops the new server (SIGSTOP) for d, then resumes it
// (SIGCONT): a receiver that takes no connection for a while, as one in
// a long fork, a swap storm or a stop-the-world pause.
func (s *Funnel) StallNew(ctx context.Context, d time.Duration) error {
	s.Lab.Logf("SIGSTOP the new redis-server (pid %d) for %v", s.New.Pid(), d)
	if err := s.New.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	t := time.NewTimer(d)
	select {
	case <-ctx.Done():
		t.Stop()
	case <-t.C:
	}
	return s.New.Signal(syscall.SIGCONT)
}

// ServeConnections makes n connections to one port that the server side
// has accepted and holds (with an inode each, as a server's idle
// clients): server workers share the port with SO_REUSEPORT, client
// workers connect from their own source addresses. It returns the port
// once every connection is accepted.
func (l *Lab) ServeConnections(ctx context.Context, n int) (int, error) {
	for _, kv := range [][2]string{
		// Go reads somaxconn once, when a worker starts.
		{"net.core.somaxconn", "65535"},
		{"net.ipv4.tcp_max_syn_backlog", "65535"},
		{"net.ipv4.ip_local_port_range", "1024 65535"},
	} {
		if err := l.Sysctl(kv[0], kv[1]); err != nil {
			return 0, err
		}
	}
	// SO_REUSEPORT spreads connections by hash: give each server worker
	// a fifth more room than its share.
	first, err := l.StartWorker(ctx)
	if err != nil {
		return 0, err
	}
	servers := max(1, (n*5/4+first.Capacity-1)/first.Capacity)
	port, err := first.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	all := []*Worker{first}
	for range servers - 1 {
		w, err := l.StartWorker(ctx)
		if err != nil {
			return 0, err
		}
		if _, err := w.Serve(ctx, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			return 0, err
		}
		all = append(all, w)
	}
	clients, err := l.connectFrom(ctx, fmt.Sprintf("127.0.0.1:%d", port), n)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		served := 0
		for _, w := range all {
			k, err := w.Served(ctx)
			if err != nil {
				return 0, err
			}
			served += k
		}
		if served == n {
			l.Logf("%d connections to port %d accepted by %d server workers, made by %d client workers", n, port, servers, clients)
			return port, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d connections accepted after 2 minutes", served, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// connectFrom opens n connections to addr from as many new workers as
// they take, and returns how many workers that was once every handshake
// is done.
func (l *Lab) connectFrom(ctx context.Context, addr string, n int) (int, error) {
	errs := make(chan error, n/100+1)
	workers := 0
	for left := n; left > 0; {
		w, err := l.StartWorker(ctx)
		if err != nil {
			return 0, err
		}
		k := min(left, w.Capacity)
		left -= k
		workers++
		go func() {
			res, err := w.Connect(ctx, addr, k, 0, 30*time.Second)
			if err == nil && (res.Failed > 0 || res.Pending > 0) {
				err = fmt.Errorf("worker %d: %+v", w.Index, res)
			}
			errs <- err
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	return workers, nil
}

// RedisConnections starts a redis-server on port with room for n clients
// and opens n idle connections to it (clients that never send a
// command), returning once the server counts them all.
func (l *Lab) RedisConnections(ctx context.Context, port, n int) (*Redis, error) {
	for _, kv := range [][2]string{
		{"net.core.somaxconn", "65535"},
		{"net.ipv4.tcp_max_syn_backlog", "65535"},
		{"net.ipv4.ip_local_port_range", "1024 65535"},
	} {
		if err := l.Sysctl(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	r, err := l.StartRedisArgs(ctx, port, 65535, "--maxclients", strconv.Itoa(n+100))
	if err != nil {
		return nil, err
	}
	// redis-server lowers maxclients to what its RLIMIT_NOFILE allows.
	out, err := l.Exec(ctx, "redis-cli", "-p", strconv.Itoa(port), "config", "get", "maxclients")
	if err != nil {
		return nil, err
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return nil, fmt.Errorf("redis-cli config get maxclients: no answer")
	}
	if max, err := strconv.Atoi(f[len(f)-1]); err != nil || max < n+1 {
		return nil, fmt.Errorf("redis-server takes at most %s clients here (its RLIMIT_NOFILE, less 32), not %d", f[len(f)-1], n+1)
	}
	workers, err := l.connectFrom(ctx, r.Addr(), n)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := l.Exec(ctx, "redis-cli", "-p", strconv.Itoa(port), "info", "clients")
		if err != nil {
			return nil, err
		}
		got := -1
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
				got, _ = strconv.Atoi(v)
			}
		}
		if got-1 >= n { // redis-cli itself is one
			l.Logf("%d connections to redis-server on port %d, made by %d client workers", n, port, workers)
			return r, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("redis-server counts %d of %d clients after 2 minutes: %s", got-1, n, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

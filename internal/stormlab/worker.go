//go:build linux

package stormlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// workerEnv, when set in a process's environment, makes RunWorkerIfRequested
// turn the process into a worker. Its value is the worker's index, which
// picks the worker's block of source addresses.
const workerEnv = "STORMLAB_WORKER"

// fdReserve is how many descriptors a worker keeps free for everything but
// the sockets it holds (pipes, netlink, ss runs, HTTP scrapes).
const fdReserve = 256

// maxClients bounds the clients of one Clients request: each is a goroutine,
// and the race detector allows 8128 of them.
const maxClients = 6000

// RunWorkerIfRequested turns the process into a lab worker when it was
// started as one (by Lab.StartWorker) and never returns then; otherwise it
// returns at once. Call it first thing in main, or in TestMain before
// m.Run, in every binary that hosts a Lab.
func RunWorkerIfRequested() {
	v, ok := os.LookupEnv(workerEnv)
	if !ok {
		return
	}
	var index int
	if _, err := fmt.Sscan(v, &index); err != nil {
		fmt.Fprintf(os.Stderr, "stormlab worker: %s=%q: %v\n", workerEnv, v, err)
		os.Exit(2)
	}
	os.Exit(serveWorker(index, os.Stdin, os.Stdout))
}

// request is one command sent to a worker, as a JSON line.
type request struct {
	Op string `json:"op"`

	// listen, connect, clients, churn
	Addr    string `json:"addr,omitempty"`
	Backlog int    `json:"backlog,omitempty"`

	// connect
	N      int     `json:"n,omitempty"`
	Rate   float64 `json:"rate,omitempty"`    // connects per second, 0: as fast as possible
	WaitMs int     `json:"wait_ms,omitempty"` // how long to wait for handshakes to complete

	// clients
	Clients *ClientsConfig `json:"clients,omitempty"`
	Since   int64          `json:"since,omitempty"` // Unix nanoseconds

	// churn
	DurationMs int `json:"duration_ms,omitempty"`

	// bench
	Bench *cycleBenchRequest `json:"bench,omitempty"`
}

// response is a worker's answer to one request.
type response struct {
	Err string `json:"err,omitempty"`

	Capacity int `json:"capacity,omitempty"` // hello: sockets the worker may hold
	Port     int `json:"port,omitempty"`     // listen, serve
	Served   int `json:"served,omitempty"`   // served: connections accepted and held

	Connect *ConnectResult    `json:"connect,omitempty"`
	Clients *ClientsStatus    `json:"clients,omitempty"`
	Churn   *ChurnResult      `json:"churn,omitempty"`
	Bench   *cycleBenchResult `json:"bench,omitempty"`
}

// ConnectResult says how a batch of connects went.
type ConnectResult struct {
	// Opened sockets have sent their SYN (connect returned EINPROGRESS or
	// success) and are held by the worker.
	Opened int `json:"opened"`
	// Established of them completed the handshake (as the client sees it)
	// before the wait ran out; Pending did not.
	Established int `json:"established"`
	Pending     int `json:"pending"`
	// Failed connects, and the first error.
	Failed   int    `json:"failed"`
	FirstErr string `json:"first_err,omitempty"`
}

// ClientsConfig describes a pool of long-lived clients of a Redis-protocol
// server that reconnect when their connection ends.
type ClientsConfig struct {
	Addr string `json:"addr"`
	// Reconnect, when set, is dialled instead of Addr once a client's
	// connection to Addr has ended: a client that moves to a new server
	// when the old one drops it.
	Reconnect string `json:"reconnect,omitempty"`
	N         int    `json:"n"`
	// Backoff is "none" (reconnect at once, retry at once) or "jitter"
	// (exponential backoff with full jitter: a random wait in
	// [0, min(Cap, Base·2^attempt)) before every reconnect attempt).
	Backoff string        `json:"backoff"`
	Base    time.Duration `json:"base"`
	Cap     time.Duration `json:"cap"`
	// DialTimeout bounds one connect and the PING that proves it.
	DialTimeout time.Duration `json:"dial_timeout"`
	// Lifetime stops the clients after this long (a safety bound).
	Lifetime time.Duration `json:"lifetime"`
	// Ramp spreads the clients' first connects evenly over this time (0:
	// all at once). A setup that must not itself be a storm uses it: a
	// connect whose PING times out in an overflowing queue can leave the
	// server a connection whose client is gone.
	Ramp time.Duration `json:"ramp,omitempty"`
}

// ClientsStatus is the state of a client pool.
type ClientsStatus struct {
	N int `json:"n"`
	// Connected clients hold a live connection that answered PING.
	Connected int `json:"connected"`
	// ConnectedSince of them got it at or after the request's Since.
	ConnectedSince int `json:"connected_since"`
	// Last is when the latest of those connections was made (Unix ns).
	Last int64 `json:"last"`
	// Attempts and Failures count connects since the pool started.
	Attempts uint64 `json:"attempts"`
	Failures uint64 `json:"failures"`
}

// ChurnResult counts the short connections of a churn run.
type ChurnResult struct {
	OK       uint64 `json:"ok"`
	Failed   uint64 `json:"failed"`
	FirstErr string `json:"first_err,omitempty"`
}

type worker struct {
	index    int
	capacity int
	fds      []int
	srcNext  int // connections handed a source address so far

	clients *clientPool
	churn   *churnRun
	served  *servePool
	stop    context.CancelFunc
	ctx     context.Context
}

func serveWorker(index int, in io.Reader, out io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{index: index, ctx: ctx, stop: cancel}
	defer w.closeAll()
	defer cancel()

	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) // the limit as it stays
		}
		w.capacity = int(min(lim.Cur, 1<<24)) - fdReserve
	}

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var req request
		var resp response
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp.Err = fmt.Sprintf("bad request: %v", err)
		} else {
			resp = w.handle(req)
		}
		if err := enc.Encode(resp); err != nil {
			return 1
		}
	}
	return 0
}

func (w *worker) handle(r request) response {
	switch r.Op {
	case "hello":
		return response{Capacity: w.capacity}
	case "listen":
		port, err := w.listen(r.Addr, r.Backlog)
		if err != nil {
			return response{Err: err.Error()}
		}
		return response{Port: port}
	case "connect":
		res, err := w.connect(r)
		if err != nil {
			return response{Err: err.Error()}
		}
		return response{Connect: &res}
	case "close":
		w.closeAll()
		return response{}
	case "serve":
		port, err := w.serve(r.Addr)
		if err != nil {
			return response{Err: err.Error()}
		}
		return response{Port: port}
	case "served":
		if w.served == nil {
			return response{Err: "not serving"}
		}
		return response{Served: w.served.count()}
	case "clients":
		if w.clients != nil {
			return response{Err: "clients already started"}
		}
		p, err := startClients(w.ctx, w.index, *r.Clients)
		if err != nil {
			return response{Err: err.Error()}
		}
		w.clients = p
		return response{}
	case "clients_status":
		if w.clients == nil {
			return response{Err: "no clients"}
		}
		st := w.clients.status(r.Since)
		return response{Clients: &st}
	case "churn":
		if w.churn != nil && !w.churn.finished() {
			return response{Err: "churn already running"}
		}
		w.churn = startChurn(w.ctx, w.index, r.Addr, r.Rate, time.Duration(r.DurationMs)*time.Millisecond)
		return response{}
	case "churn_wait":
		if w.churn == nil {
			return response{Err: "no churn"}
		}
		res := w.churn.wait()
		return response{Churn: &res}
	case "bench":
		res, err := runCycleBench(w.ctx, *r.Bench)
		if err != nil {
			return response{Err: err.Error()}
		}
		return response{Bench: &res}
	}
	return response{Err: fmt.Sprintf("unknown op %q", r.Op)}
}

func (w *worker) closeAll() {
	if w.served != nil {
		w.served.close()
		w.served = nil
	}
	if w.clients != nil {
		w.clients.close()
		w.clients = nil
	}
	for _, fd := range w.fds {
		unix.Close(fd)
	}
	w.fds = w.fds[:0]
}

func (w *worker) listen(addr string, backlog int) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, err
	}
	// An IPv6 address listens dual-stack (IPV6_V6ONLY off), as a server
	// bound to [::] does by default.
	fam := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
	if ap.Addr().Is4() {
		fam, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) // without it, bind says why
	if fam == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			unix.Close(fd)
			return 0, fmt.Errorf("IPV6_V6ONLY off: %w", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("bind %v: %w", ap, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return 0, err
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return 0, err
	}
	w.fds = append(w.fds, fd)
	switch got := got.(type) {
	case *unix.SockaddrInet4:
		return got.Port, nil
	case *unix.SockaddrInet6:
		return got.Port, nil
	}
	return 0, fmt.Errorf("listening socket of unknown family %T", got)
}

// sourceAddr returns the source address of a worker's i-th connection:
// workers own 127.<16+index>.0.0/16, and each address carries up to
// connsPerSource connections, so no address runs out of ephemeral ports.
func sourceAddr(index, i int) [4]byte {
	const connsPerSource = 500
	a := i / connsPerSource
	return [4]byte{127, byte(16 + index%200), byte(a / 250), byte(1 + a%250)}
}

// connect opens r.N non-blocking connections to r.Addr, paced at r.Rate,
// and waits up to r.WaitMs for their handshakes.
func (w *worker) connect(r request) (ConnectResult, error) {
	var res ConnectResult
	ap, err := netip.ParseAddrPort(r.Addr)
	if err != nil {
		return res, err
	}
	if room := w.capacity - len(w.fds); r.N > room {
		return res, fmt.Errorf("worker %d holds %d sockets and may hold %d more, not %d", w.index, len(w.fds), room, r.N)
	}
	dst := &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	start := time.Now()
	pending := make([]int, 0, r.N)
	for i := range r.N {
		if r.Rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / r.Rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			res.Failed++
			res.FirstErr = cmpOr(res.FirstErr, fmt.Sprintf("socket: %v", err))
			break
		}
		// Best effort: without it, ports are picked at bind and run out sooner.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		src := sourceAddr(w.index, w.srcNext)
		w.srcNext++
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src}); err != nil {
			unix.Close(fd)
			res.Failed++
			res.FirstErr = cmpOr(res.FirstErr, fmt.Sprintf("bind %v: %v", netip.AddrFrom4(src), err))
			continue
		}
		if err := unix.Connect(fd, dst); err != nil && err != unix.EINPROGRESS {
			unix.Close(fd)
			res.Failed++
			res.FirstErr = cmpOr(res.FirstErr, fmt.Sprintf("connect %v: %v", ap, err))
			continue
		}
		w.fds = append(w.fds, fd)
		pending = append(pending, fd)
		res.Opened++
	}
	deadline := time.Now().Add(time.Duration(r.WaitMs) * time.Millisecond)
	for {
		var err error
		pending, err = pollConnected(pending, &res)
		if err != nil {
			return res, err
		}
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.Pending = len(pending)
	return res, nil
}

// pollConnected counts the sockets of pending whose connect finished and
// returns those still in progress.
func pollConnected(pending []int, res *ConnectResult) ([]int, error) {
	const chunk = 4096
	var pfds [chunk]unix.PollFd
	still := pending[:0]
	for off := 0; off < len(pending); off += chunk {
		part := pending[off:min(off+chunk, len(pending))]
		for i, fd := range part {
			pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT}
		}
		if _, err := unix.Poll(pfds[:len(part)], 0); err != nil && err != unix.EINTR {
			return pending, err
		}
		for i, fd := range part {
			switch ev := pfds[i].Revents; {
			case ev&(unix.POLLERR|unix.POLLHUP) != 0:
				res.Failed++
				if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
					res.FirstErr = cmpOr(res.FirstErr, syscall.Errno(e).Error())
				}
			case ev&unix.POLLOUT != 0:
				res.Established++
			default:
				still = append(still, fd)
			}
		}
	}
	return still, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// clientPool is a set of long-lived Redis-protocol clients.
type clientPool struct {
	cfg      ClientsConfig
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	since    []atomic.Int64 // per client: when its live connection was made, 0 if none
	attempts atomic.Uint64
	failures atomic.Uint64
}

func startClients(parent context.Context, index int, cfg ClientsConfig) (*clientPool, error) {
	if cfg.N <= 0 || cfg.N > maxClients {
		return nil, fmt.Errorf("%d clients: want 1 to %d", cfg.N, maxClients)
	}
	if cfg.Backoff != "none" && cfg.Backoff != "jitter" {
		return nil, fmt.Errorf("backoff %q: want none or jitter", cfg.Backoff)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(parent, cfg.Lifetime)
	p := &clientPool{cfg: cfg, cancel: cancel, since: make([]atomic.Int64, cfg.N)}
	for i := range cfg.N {
		src := sourceAddr(index, i)
		p.wg.Go(func() { p.run(ctx, i, netip.AddrFrom4(src)) })
	}
	return p, nil
}

func (p *clientPool) close() {
	p.cancel()
	p.wg.Wait()
}

// run keeps client i connected until ctx ends.
func (p *clientPool) run(ctx context.Context, i int, src netip.Addr) {
	d := &net.Dialer{
		Timeout:   p.cfg.DialTimeout,
		LocalAddr: &net.TCPAddr{IP: src.AsSlice()},
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1) // best effort, as above
			})
		},
	}
	if p.cfg.Ramp > 0 {
		t := time.NewTimer(p.cfg.Ramp * time.Duration(i) / time.Duration(p.cfg.N))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	attempt := 0
	first := true
	addr := p.cfg.Addr
	for ctx.Err() == nil {
		if !first && p.cfg.Backoff == "jitter" {
			ceiling := min(p.cfg.Cap, p.cfg.Base<<min(attempt, 30))
			if ceiling > 0 {
				t := time.NewTimer(rand.N(ceiling))
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
		first = false
		p.attempts.Add(1)
		conn, err := p.dial(ctx, d, addr)
		if err != nil {
			p.failures.Add(1)
			attempt++
			continue
		}
		attempt = 0
		p.since[i].Store(time.Now().UnixNano())
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		var b [64]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				break
			}
		}
		stop()
		p.since[i].Store(0)
		conn.Close()
		if p.cfg.Reconnect != "" {
			addr = p.cfg.Reconnect
		}
	}
}

// dial connects and checks the server answers PING.
func (p *clientPool) dial(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := ping(conn, p.cfg.DialTimeout); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// ping sends a Redis PING on conn and reads the +PONG reply.
func ping(conn net.Conn, timeout time.Duration) error {
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		return err
	}
	var b [7]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return err
	}
	if string(b[:]) != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", b[:])
	}
	return nil
}

func (p *clientPool) status(since int64) ClientsStatus {
	st := ClientsStatus{N: p.cfg.N, Attempts: p.attempts.Load(), Failures: p.failures.Load()}
	for i := range p.since {
		t := p.since[i].Load()
		if t == 0 {
			continue
		}
		st.Connected++
		if t >= since {
			st.ConnectedSince++
			st.Last = max(st.Last, t)
		}
	}
	return st
}

// churnRun opens short connections at a steady rate: connect, PING, close.
type churnRun struct {
	done   chan struct{}
	ok     atomic.Uint64
	failed atomic.Uint64
	mu     sync.Mutex
	first  string
}

// maxChurnInFlight bounds the connections a churn run has open at once.
const maxChurnInFlight = 256

func startChurn(ctx context.Context, index int, addr string, rate float64, d time.Duration) *churnRun {
	c := &churnRun{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		if rate <= 0 || d <= 0 {
			return
		}
		sem := make(chan struct{}, maxChurnInFlight)
		start := time.Now()
		n := int(rate * d.Seconds())
		for i := range n {
			next := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(next)):
			}
			select {
			case sem <- struct{}{}:
			default:
				c.fail(errors.New("too many churn connections in flight"))
				continue
			}
			src := netip.AddrFrom4(sourceAddr(index, i%5000))
			wg.Go(func() {
				defer func() { <-sem }()
				d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
				conn, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					c.fail(err)
					return
				}
				defer conn.Close()
				if err := ping(conn, 2*time.Second); err != nil {
					c.fail(err)
					return
				}
				c.ok.Add(1)
			})
		}
	}()
	return c
}

func (c *churnRun) fail(err error) {
	c.failed.Add(1)
	c.mu.Lock()
	c.first = cmpOr(c.first, err.Error())
	c.mu.Unlock()
}

func (c *churnRun) finished() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *churnRun) wait() ChurnResult {
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return ChurnResult{OK: c.ok.Load(), Failed: c.failed.Load(), FirstErr: c.first}
}

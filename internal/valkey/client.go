package valkey

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	vk "github.com/valkey-io/valkey-go"
	"golang.org/x/sys/unix"
)

// ClientName is the name the Client's connection carries on the server
// (CLIENT SETNAME), so that CLIENT LIST shows who it is.
const ClientName = "stormwatch"

// killBatch caps the ids of one CLIENT KILL ID command, and the CLIENT
// KILL commands sent in one pipeline to a server that takes one id per
// command: valkey-go moves a pipeline of BlockingPipeline (2000) commands
// or more to a dedicated connection, which the one-connection gate would
// refuse.
const killBatch = 1000

// ioBuffer is the read and write buffer of the connection: INFO is ~4 KiB,
// CLIENT LIST of 10,000 clients ~3 MiB (read through the buffer).
const ioBuffer = 16 << 10

// Client talks to one server over at most one connection, opened on the
// first call and reused. After a failure (down, refused credentials,
// timeout, garbage) the connection is closed and the next connect waits a
// backoff that doubles per consecutive failure; calls in between fail at
// once with ErrBackoff without touching the network.
//
// A connection closed while the server owes an answer on it (a stopped or
// hung server: a new connection waits in its accept queue, an old one
// gets no reply) is not closed but held, and no other is opened until the
// server answers on it or closes it: closing would not take a queued
// connection out of the accept queue, and each new one would add to the
// queue of a server that is not serving — the storm this client watches
// for. Calls meanwhile fail with ErrBackoff wrapping ErrTimeout. Every method takes a
// context and is safe for concurrent use: concurrent calls share (pipeline
// on) the one connection.
//
// The password is read from Config.PasswordFile on each connect and never
// appears in an error or in the Client's printed form.
type Client struct {
	cfg    Config
	tls    *tls.Config
	dialer net.Dialer
	now    func() time.Time
	// dialNet opens the TCP connection; nil means dialer.DialContext.
	// Tests dial inside a network namespace with it.
	dialNet func(ctx context.Context, network, addr string) (net.Conn, error)

	// mu guards vc's creation.
	mu sync.Mutex
	vc vk.Client

	// dmu guards the connection state below; never held while dialing.
	dmu      sync.Mutex
	closed   bool
	live     *trackedConn // the one connection, or dialingConn while dialing
	failures int
	retryAt  time.Time
	lastErr  error  // the failure that started the current backoff
	secret   string // last password read, only to scrub it from errors

	connectCtx context.Context // the caller's, while NewClient connects
	stopWatch  func() bool     // stops connectDial's deadline watch

	// unanswered is the last connection, held open because the server
	// owed an answer on it when it was closed; unansweredAt is when the
	// Client wrote what it waits for.
	unanswered   *rawConn
	unansweredAt time.Time

	refusedFull atomic.Bool // the last connection was refused at maxclients
	infoSplit   atomic.Bool // the server takes one INFO section per command
	configSplit atomic.Bool // the server takes one CONFIG GET parameter per command
	killSplit   atomic.Bool // the server takes one id per CLIENT KILL ID
}

// dialingConn marks Client.live while a dial is under way.
var dialingConn = &trackedConn{}

// New checks cfg, reads its TLS files and returns a Client. It does not
// connect: the first call does.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg: cfg,
		tls: tc,
		// TCP keepalive finds a dead peer on an idle connection; the
		// library's own idle PING is off (Dialer.KeepAlive -1 below).
		dialer: net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 15 * time.Second},
		now:    time.Now,
	}
	return c, nil
}

// NewWithDial is New with dial opening the TCP connection instead of a
// net.Dialer with Config.DialTimeout (whose deadline still bounds the
// call through its context): for a caller that reaches the server inside
// another network namespace, or through a socket it prepares itself.
func NewWithDial(cfg Config, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*Client, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	c.dialNet = dial
	return c, nil
}

// Address returns the server's address as configured.
func (c *Client) Address() string { return c.cfg.Address }

// String describes the Client by its address (never its credentials).
func (c *Client) String() string { return "valkey.Client(" + c.cfg.Address + ")" }

// GoString is String, so that %#v shows no field.
func (c *Client) GoString() string { return c.String() }

// Format prints the Client as String for every verb, so that no format
// (%v, %+v, %#v, %s) walks its fields.
func (c *Client) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// options returns the valkey-go options that hold the client to one
// connection and leave reconnecting and retrying to the Client.
func (c *Client) options() vk.ClientOption {
	return vk.ClientOption{
		InitAddress:       []string{c.cfg.Address},
		ForceSingleClient: true, // no CLUSTER probe, one node
		PipelineMultiplex: -1,   // 2^0 = one pipelined connection
		BlockingPoolSize:  1,
		DisableCache:      true, // no CLIENT TRACKING
		DisableRetry:      true, // a failed call fails; the Client backs off
		ClientName:        ClientName,
		ClientSetInfo:     vk.DisableClientSetInfo,
		// RESP2: AUTH, HELLO 2 and CLIENT SETNAME in one round trip on any
		// server version, INFO as a plain bulk string.
		AlwaysRESP2: true,
		// Dialer.Timeout bounds the HELLO/AUTH handshake; KeepAlive < 0
		// turns off the library's idle PING (our dialer keeps TCP
		// keepalive on).
		Dialer:              net.Dialer{Timeout: c.cfg.DialTimeout, KeepAlive: -1},
		ConnWriteTimeout:    c.cfg.Timeout,
		ReadBufferEachConn:  ioBuffer,
		WriteBufferEachConn: ioBuffer,
		DialCtxFn:           c.connectDial,
		AuthCredentialsFn:   c.credentials,
	}
}

// credentials reads the password file for a new connection.
func (c *Client) credentials(vk.AuthCredentialsContext) (vk.AuthCredentials, error) {
	if c.cfg.PasswordFile == "" {
		return vk.AuthCredentials{Username: c.cfg.Username}, nil
	}
	pw, err := readPassword(c.cfg.PasswordFile)
	if err != nil {
		return vk.AuthCredentials{}, fmt.Errorf("%w: %w", ErrAuth, err)
	}
	c.dmu.Lock()
	c.secret = pw
	c.dmu.Unlock()
	return vk.AuthCredentials{Username: c.cfg.Username, Password: pw}, nil
}

// dial is the only way a connection is opened. It refuses while another
// connection is open or being opened, while the Client backs off, and
// after Close.
func (c *Client) dial(ctx context.Context, addr string, _ *net.Dialer, _ *tls.Config) (net.Conn, error) {
	c.dmu.Lock()
	if err := c.gateLocked(); err != nil {
		c.dmu.Unlock()
		return nil, err
	}
	if c.live != nil {
		c.dmu.Unlock()
		return nil, fmt.Errorf("%w: the previous connection is still open", ErrBackoff)
	}
	c.live = dialingConn
	c.dmu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout) // TCP and TLS
	defer cancel()
	dialNet := c.dialNet
	if dialNet == nil {
		dialNet = c.dialer.DialContext
	}
	var raw *rawConn
	conn, err := dialNet(ctx, "tcp", addr)
	if err == nil {
		raw = &rawConn{Conn: conn}
		conn = raw
	}
	if err == nil && c.tls != nil {
		tc := tls.Client(conn, c.tls)
		if err = tc.HandshakeContext(ctx); err != nil {
			raw.detach()
			defer c.release(raw) // after dmu is released
		}
		conn = tc
	}

	c.dmu.Lock()
	defer c.dmu.Unlock()
	if err != nil {
		c.live = nil
		return nil, err
	}
	if c.closed {
		c.live = nil
		conn.Close()
		raw.Conn.Close()
		return nil, ErrClosed
	}
	t := &trackedConn{Conn: conn, c: c, raw: raw}
	c.live = t
	c.refusedFull.Store(false)
	return t, nil
}

// gateLocked returns why no connection may be opened now, or nil.
func (c *Client) gateLocked() error {
	if c.closed {
		return ErrClosed
	}
	if u := c.unanswered; u != nil {
		if u.waiting() {
			return fmt.Errorf("%w: the server has not answered for %s, and no other connection is opened until it does: %w",
				ErrBackoff, time.Since(c.unansweredAt).Round(time.Second), ErrTimeout)
		}
		// It answered, or closed it: the server is back.
		c.unanswered = nil
		u.Conn.Close()
	}
	if wait := c.retryAt.Sub(c.now()); wait > 0 {
		return fmt.Errorf("%w (%s more after %d failure(s)): %w",
			ErrBackoff, wait.Round(time.Millisecond), c.failures, c.lastErr)
	}
	return nil
}

// connected reports whether the connection is open: after an error
// reply, whether it answered a command (true) or refused the handshake.
func (c *Client) connected() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.live != nil && c.live != dialingConn
}

// trackedConn is the Client's one connection; closing it frees the slot.
type trackedConn struct {
	net.Conn
	c    *Client
	raw  *rawConn // the TCP connection under net.Conn (TLS or not)
	once sync.Once
	// head is the start of what the server sent, to recognise a refusal
	// at maxclients: the server writes its error and closes at once, and
	// a client that was writing meanwhile may only see EOF or a reset.
	head  [len(maxClientsReply)]byte
	headN int
}

// maxClientsReply starts what a server at maxclients sends on accept.
const maxClientsReply = "-ERR max number of clients reached"

func (t *trackedConn) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	if t.headN < len(t.head) && n > 0 {
		k := copy(t.head[t.headN:], b[:n])
		t.headN += k
		if t.headN == len(t.head) && string(t.head[:]) == maxClientsReply {
			t.c.refusedFull.Store(true)
		}
	}
	return n, err
}

// Close closes the connection, or holds it if the server owes an answer
// on it (see Client).
func (t *trackedConn) Close() error {
	var err error
	// Decided before closing: closing a TLS connection writes its
	// close_notify, which is not a request the server owes an answer to.
	owed := t.raw != nil && t.raw.owed()
	if !owed {
		err = t.Conn.Close()
	} else {
		t.raw.detach()
	}
	t.once.Do(func() {
		t.c.dmu.Lock()
		if t.c.live == t {
			t.c.live = nil
		}
		t.c.dmu.Unlock()
		if owed {
			t.c.release(t.raw)
		} else if t.raw != nil {
			t.raw.Conn.Close()
		}
	})
	return err
}

// release closes a connection, or holds it as the Client's unanswered one
// if the server owes an answer on it and the Client is open.
func (c *Client) release(raw *rawConn) {
	owedSince, owed := raw.owedSince()
	if !owed {
		raw.Conn.Close()
		return
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.closed || c.unanswered != nil {
		raw.Conn.Close()
		return
	}
	c.unanswered, c.unansweredAt = raw, owedSince
}

// rawConn is the TCP connection. It notes whether the server owes an
// answer (bytes were written since it last sent any), and can be taken
// from its readers and writers without being closed (detach).
type rawConn struct {
	net.Conn
	mu       sync.Mutex
	written  time.Time // first write since the last read, zero if none
	detached atomic.Bool
	// io is held shared by every Read and Write under way, and
	// exclusively by detach once they have all returned.
	io sync.RWMutex
}

func (r *rawConn) Read(b []byte) (int, error) {
	r.io.RLock()
	defer r.io.RUnlock()
	if r.detached.Load() {
		return 0, net.ErrClosed
	}
	n, err := r.Conn.Read(b)
	if n > 0 {
		r.mu.Lock()
		r.written = time.Time{}
		r.mu.Unlock()
	}
	return n, err
}

func (r *rawConn) Write(b []byte) (int, error) {
	r.io.RLock()
	defer r.io.RUnlock()
	if r.detached.Load() {
		return 0, net.ErrClosed
	}
	r.mu.Lock()
	if r.written.IsZero() {
		r.written = time.Now()
	}
	r.mu.Unlock()
	return r.Conn.Write(b)
}

// owedSince returns since when the server owes an answer, if it does.
func (r *rawConn) owedSince() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.written, !r.written.IsZero()
}

func (r *rawConn) owed() bool { _, ok := r.owedSince(); return ok }

// detach makes every Read and Write, under way or to come, fail as on a
// closed connection, and returns once those under way have: the
// connection stays open, without a deadline, for waiting.
func (r *rawConn) detach() {
	r.detached.Store(true)
	_ = r.SetDeadline(time.Unix(1, 0)) // wakes a blocked Read or Write
	r.io.Lock()
	_ = r.SetDeadline(time.Time{})
	r.io.Unlock()
}

// Close is a no-op: trackedConn and release decide when the TCP
// connection closes (a TLS connection's Close would close it).
func (r *rawConn) Close() error { return nil }

// waiting reports whether the server still has not answered: nothing to
// read and the connection not closed. It does not block.
func (r *rawConn) waiting() bool {
	sc, ok := r.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	waiting := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		waiting = n < 0 && errors.Is(err, unix.EAGAIN)
		return true // never wait for the poller
	})
	return err == nil && waiting
}

// client returns the valkey-go client, creating it on first use. Creating
// it connects (through dial); a failed connect still yields a client,
// which connects again on a later call.
func (c *Client) client(ctx context.Context) (vk.Client, error) {
	c.dmu.Lock()
	err := c.gateLocked()
	c.dmu.Unlock()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.vc != nil {
		return c.vc, nil
	}
	// NewClient connects with a background context: connectDial holds
	// that connect to ctx.
	c.dmu.Lock()
	c.connectCtx = ctx
	c.dmu.Unlock()
	vc, err := vk.NewClient(c.options())
	c.dmu.Lock()
	c.connectCtx = nil
	stop := c.stopWatch
	c.stopWatch = nil
	c.dmu.Unlock()
	if stop != nil && !stop() && err == nil {
		err = ctx.Err() // ctx ended as the handshake finished: the deadline was cut
		vc.Close()
		vc = nil
	}
	if vc != nil {
		// Keep it even if it failed to connect: later calls connect again
		// through dial, past the backoff gate.
		c.vc = vc
	}
	if err != nil {
		return nil, err
	}
	return vc, nil
}

// connectDial is the library's dial function. While NewClient connects
// (connectCtx set), it ends the dial, and cuts the connection's deadline
// during the handshake, when the caller's context ends. Later connects
// happen inside a call, under that call's context already.
func (c *Client) connectDial(ctx context.Context, addr string, d *net.Dialer, tc *tls.Config) (net.Conn, error) {
	c.dmu.Lock()
	cc := c.connectCtx
	c.dmu.Unlock()
	if cc == nil {
		return c.dial(ctx, addr, d, tc)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopDial := context.AfterFunc(cc, cancel)
	defer stopDial()
	conn, err := c.dial(ctx, addr, d, tc)
	if err != nil {
		if cc.Err() != nil {
			err = fmt.Errorf("%w: %w", cc.Err(), err)
		}
		return nil, err
	}
	stop := context.AfterFunc(cc, func() { conn.SetDeadline(time.Unix(1, 0)) })
	c.dmu.Lock()
	c.stopWatch = stop
	c.dmu.Unlock()
	return conn, nil
}

// do runs fn with the client and turns its error into one of the
// sentinel errors; a connection failure closes the connection and starts
// the backoff.
func (c *Client) do(ctx context.Context, op string, fn func(vk.Client) error) error {
	vc, err := c.client(ctx)
	if err == nil {
		err = fn(vc)
	}
	if err == nil {
		c.dmu.Lock()
		c.failures = 0
		c.dmu.Unlock()
		return nil
	}
	return c.fail(op, err)
}

// fail classifies err, records a connection failure and returns the
// error to give the caller.
func (c *Client) fail(op string, err error) error {
	kind := classify(err)
	if errors.Is(kind, ErrDown) && c.refusedFull.Load() {
		kind = ErrMaxClients
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	connFailure := true
	switch {
	case errors.Is(kind, ErrBackoff), errors.Is(kind, ErrClosed), errors.Is(kind, context.Canceled):
		connFailure = false // not a new failure of the connection
	case errors.Is(kind, ErrServer), errors.Is(kind, ErrConfigUnavailable):
		// An error reply on a working connection is the command's
		// failure; with no connection left it was the handshake's.
		connFailure = c.live == nil
	}
	if connFailure {
		c.failures++
		c.retryAt = c.now().Add(c.backoffLocked())
		c.lastErr = kindOnly{kind}
		if live := c.live; live != nil && live != dialingConn {
			// Whatever state the stream is in, start afresh: a late
			// reply must not be read as the answer to the next command.
			// (Close takes dmu: after this function releases it.)
			defer func() { go live.Close() }()
		}
	}
	var out error
	if errors.Is(kind, ErrBackoff) || errors.Is(kind, ErrClosed) || errors.Is(err, kind) {
		out = fmt.Errorf("valkey %s: %s: %w", c.cfg.Address, op, err)
	} else {
		out = fmt.Errorf("valkey %s: %s: %w: %w", c.cfg.Address, op, kind, err)
	}
	if c.secret != "" && strings.Contains(out.Error(), c.secret) {
		// A server that does not know a command echoes its arguments.
		out = redacted{text: strings.ReplaceAll(out.Error(), c.secret, "[redacted]"), kind: kind}
	}
	return out
}

// redacted is an error whose text had the password cut out. It keeps the
// kind for errors.Is, not the original chain (which holds the password).
type redacted struct {
	text string
	kind error
}

func (r redacted) Error() string { return r.text }
func (r redacted) Unwrap() error { return r.kind }

// kindOnly is the failure kept for backoff errors: its kind, not its text.
type kindOnly struct{ kind error }

func (k kindOnly) Error() string { return "last failure: " + k.kind.Error() }
func (k kindOnly) Unwrap() error { return k.kind }

// backoffLocked returns the wait after c.failures consecutive failures.
func (c *Client) backoffLocked() time.Duration {
	d := c.cfg.BackoffMin
	for i := 1; i < c.failures && d < c.cfg.BackoffMax; i++ {
		d *= 2
	}
	return min(d, c.cfg.BackoffMax)
}

// valkeyErr returns the server's error reply in err's chain.
func valkeyErr(err error) (*vk.ValkeyError, bool) {
	var ve *vk.ValkeyError
	ok := errors.As(err, &ve)
	return ve, ok
}

// classify returns the sentinel error that describes err.
func classify(err error) error {
	for _, s := range []error{ErrBackoff, ErrClosed, ErrAuth, ErrProtocol, ErrConfigUnavailable} {
		if errors.Is(err, s) {
			return s
		}
	}
	if ve, ok := valkeyErr(err); ok {
		msg := ve.Error()
		switch {
		case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"),
			strings.Contains(msg, "invalid password"), strings.Contains(msg, "AUTH failed"):
			return ErrAuth
		case strings.Contains(msg, "max number of clients"):
			return ErrMaxClients
		}
		return ErrServer
	}
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	var ae tls.AlertError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ErrTimeout
	case errors.As(err, &cve), errors.As(err, &rhe), errors.As(err, &ae),
		errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &cie):
		return ErrTLS
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	var oe *net.OpError
	var dnse *net.DNSError
	switch {
	case errors.Is(err, vk.ErrClosing), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &oe), errors.As(err, &dnse):
		return ErrDown
	}
	return ErrProtocol
}

// Close closes the connection; later calls fail with ErrClosed.
func (c *Client) Close() error {
	c.dmu.Lock()
	c.closed = true
	c.dmu.Unlock()
	c.mu.Lock()
	vc := c.vc
	c.vc = nil
	c.mu.Unlock()
	if vc != nil {
		vc.Close()
	}
	c.dmu.Lock()
	u := c.unanswered
	c.unanswered = nil
	c.dmu.Unlock()
	if u != nil {
		u.Conn.Close()
	}
	return nil
}

// Info reads INFO server, clients and stats in one round trip: one INFO
// command with three sections (Redis ≥ 7.0, Valkey), or, on a server
// that takes one section per command, three pipelined ones.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	err := c.do(ctx, "INFO", func(vc vk.Client) error {
		var text string
		var err error
		if !c.infoSplit.Load() {
			text, err = vc.Do(ctx, vc.B().Info().Section("server", "clients", "stats").Build()).ToString()
			if _, ok := valkeyErr(err); ok && errors.Is(classify(err), ErrServer) && c.connected() {
				c.infoSplit.Store(true) // "ERR syntax error" before Redis 7.0
			} else if err != nil {
				return err
			}
		}
		if c.infoSplit.Load() {
			var b strings.Builder
			for _, r := range vc.DoMulti(ctx,
				vc.B().Info().Section("server").Build(),
				vc.B().Info().Section("clients").Build(),
				vc.B().Info().Section("stats").Build()) {
				s, err := r.ToString()
				if err != nil {
					return err
				}
				b.WriteString(s)
				b.WriteString("\r\n")
			}
			text = b.String()
		}
		info, err = ParseInfo(text)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if !info.RedisVersion.Valid && !info.ValkeyVersion.Valid {
			return fmt.Errorf("%w: INFO reply has no redis_version or valkey_version", ErrProtocol)
		}
		return nil
	})
	return info, err
}

// ServerConfig is the part of the server's configuration that sizes a
// storm's queues, from CONFIG GET.
type ServerConfig struct {
	// TCPBacklog is tcp-backlog: the backlog the server passes to
	// listen(2); the kernel caps it at net.core.somaxconn.
	TCPBacklog Optional[int64]
	// MaxClients is maxclients.
	MaxClients Optional[int64]
	// MaxNewConnectionsPerCycle is max-new-connections-per-cycle (Valkey ≥
	// 8.0, default 10): TCP connections accepted per event-loop iteration.
	MaxNewConnectionsPerCycle Optional[int64]
	// MaxNewTLSConnectionsPerCycle is max-new-tls-connections-per-cycle
	// (Valkey ≥ 8.0, default 1).
	MaxNewTLSConnectionsPerCycle Optional[int64]
}

// configParams maps the CONFIG GET parameters to their places.
var configParams = []struct {
	name string
	at   func(*ServerConfig) *Optional[int64]
}{
	{"tcp-backlog", func(s *ServerConfig) *Optional[int64] { return &s.TCPBacklog }},
	{"maxclients", func(s *ServerConfig) *Optional[int64] { return &s.MaxClients }},
	{"max-new-connections-per-cycle", func(s *ServerConfig) *Optional[int64] { return &s.MaxNewConnectionsPerCycle }},
	{"max-new-tls-connections-per-cycle", func(s *ServerConfig) *Optional[int64] { return &s.MaxNewTLSConnectionsPerCycle }},
}

// Config reads tcp-backlog, maxclients and the accept pace parameters
// with one CONFIG GET of several parameters (Redis ≥ 7.0, Valkey), or one
// per parameter, pipelined. A parameter the server does not have is
// absent. If CONFIG is renamed, disabled or denied by an ACL, the error
// wraps ErrConfigUnavailable.
func (c *Client) Config(ctx context.Context) (ServerConfig, error) {
	var sc ServerConfig
	err := c.do(ctx, "CONFIG GET", func(vc vk.Client) error {
		vals := make(map[string]string, len(configParams))
		var err error
		if !c.configSplit.Load() {
			names := make([]string, len(configParams))
			for i, p := range configParams {
				names[i] = p.name
			}
			var m map[string]string
			m, err = vc.Do(ctx, vc.B().ConfigGet().Parameter(names...).Build()).AsStrMap()
			if err == nil {
				vals = m
			} else if configUnavailable(err) {
				return fmt.Errorf("%w: %w", ErrConfigUnavailable, err)
			} else if _, ok := valkeyErr(err); ok && errors.Is(classify(err), ErrServer) && c.connected() {
				c.configSplit.Store(true) // one parameter per CONFIG GET before Redis 7.0
			} else {
				return err
			}
		}
		if c.configSplit.Load() {
			cmds := make(vk.Commands, len(configParams))
			for i, p := range configParams {
				cmds[i] = vc.B().ConfigGet().Parameter(p.name).Build()
			}
			for _, r := range vc.DoMulti(ctx, cmds...) {
				m, err := r.AsStrMap()
				if err != nil {
					if configUnavailable(err) {
						return fmt.Errorf("%w: %w", ErrConfigUnavailable, err)
					}
					return err
				}
				for k, v := range m {
					vals[k] = v
				}
			}
		}
		for _, p := range configParams {
			v, ok := vals[p.name]
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: CONFIG %s: %q is not an integer", ErrProtocol, p.name, clip(v))
			}
			*p.at(&sc) = some(n)
		}
		return nil
	})
	return sc, err
}

// configUnavailable reports whether err says CONFIG cannot be used:
// CONFIG is an unknown command (renamed or disabled with rename-command)
// or an ACL denies it.
func configUnavailable(err error) bool {
	ve, ok := valkeyErr(err)
	if !ok {
		return false
	}
	msg := strings.ToLower(ve.Error())
	if strings.HasPrefix(msg, "noperm") {
		return true
	}
	// "ERR unknown command 'CONFIG', with args beginning with: ..." (Redis
	// 7 quotes with ', older servers with `).
	_, rest, ok := strings.Cut(msg, "unknown command ")
	return ok && len(rest) > 7 && rest[1:7] == "config" && (rest[7] == '\'' || rest[7] == '`')
}

// Clients lists the server's connections (CLIENT LIST), marking the
// Client's own connection (CLIENT ID, in the same round trip) as Self.
func (c *Client) Clients(ctx context.Context) ([]ClientInfo, error) {
	var list []ClientInfo
	err := c.do(ctx, "CLIENT LIST", func(vc vk.Client) error {
		rs := vc.DoMulti(ctx, vc.B().ClientId().Build(), vc.B().ClientList().Build())
		self, err := rs[0].AsInt64()
		if err != nil {
			return err
		}
		text, err := rs[1].ToString()
		if err != nil {
			return err
		}
		list, err = ParseClientList(text, self)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		return nil
	})
	return list, err
}

// Kill closes the connections with the given ids and returns how many
// the server closed. An id that is gone counts 0. The Client's own
// connection is never closed (the server skips the caller). ids must be
// positive.
//
// It sends one CLIENT KILL ID id1 id2 … per killBatch ids, which Valkey
// takes since 8.1. An older server answers that form with a syntax error
// (Redis 7.0; a CLIENT KILL with several ID filters kills only the last
// on Redis 7.0 and Valkey 8.0, so that form is never sent): the Client
// then remembers it and sends one CLIENT KILL ID per id, pipelined — the
// same single round trip per batch.
func (c *Client) Kill(ctx context.Context, ids ...int64) (int, error) {
	for _, id := range ids {
		if id <= 0 {
			return 0, fmt.Errorf("valkey %s: CLIENT KILL: client id %d is not positive", c.cfg.Address, id)
		}
	}
	killed := 0
	for len(ids) > 0 {
		batch := ids[:min(len(ids), killBatch)]
		ids = ids[len(batch):]
		err := c.do(ctx, "CLIENT KILL", func(vc vk.Client) error {
			if len(batch) > 1 && !c.killSplit.Load() {
				args := make([]string, len(batch))
				for i, id := range batch {
					args[i] = strconv.FormatInt(id, 10)
				}
				n, err := vc.Do(ctx, vc.B().Arbitrary("CLIENT", "KILL", "ID").Args(args...).Build()).AsInt64()
				if err == nil {
					killed += int(n)
					return nil
				}
				if !syntaxError(err) || !c.connected() {
					return err
				}
				c.killSplit.Store(true) // one id per CLIENT KILL before Valkey 8.1
			}
			cmds := make(vk.Commands, len(batch))
			for i, id := range batch {
				cmds[i] = vc.B().ClientKill().Id(id).Build()
			}
			for _, r := range vc.DoMulti(ctx, cmds...) {
				n, err := r.AsInt64()
				if err != nil {
					return err
				}
				killed += int(n)
			}
			return nil
		})
		if err != nil {
			return killed, err
		}
	}
	return killed, nil
}

// syntaxError reports whether err is the server's "ERR syntax error"
// reply.
func syntaxError(err error) bool {
	ve, ok := valkeyErr(err)
	return ok && strings.Contains(strings.ToLower(ve.Error()), "syntax error")
}

package valkey

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newTestClient returns a Client for addr with short timeouts, closed when
// the test ends.
func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name  string
		serve func(t *testing.T) string // returns the address
		want  error
	}{
		{"refused", func(t *testing.T) string { return refusedAddr(t) }, ErrDown},
		{"hang", func(t *testing.T) string { return newFakeServer(t, hang).addr() }, ErrTimeout},
		{"garbage", func(t *testing.T) string { return newFakeServer(t, garbage).addr() }, ErrProtocol},
		{"maxclients", func(t *testing.T) string { return newFakeServer(t, full).addr() }, ErrMaxClients},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.serve(t)
			c := newTestClient(t, Config{Address: addr, DialTimeout: 300 * time.Millisecond, Timeout: 300 * time.Millisecond})
			start := time.Now()
			_, err := c.Info(context.Background())
			took := time.Since(start)
			t.Logf("Info: %v (%v)", err, took)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Info error = %v, want %v", err, tt.want)
			}
			for _, other := range []error{ErrDown, ErrAuth, ErrTimeout, ErrProtocol, ErrMaxClients, ErrTLS, ErrServer, ErrBackoff} {
				if !errors.Is(other, tt.want) && errors.Is(err, other) {
					t.Errorf("Info error %v also wraps %v", err, other)
				}
			}
			if !strings.Contains(err.Error(), addr) {
				t.Errorf("error %q does not name the address %s", err, addr)
			}
			// Bounded by the dial timeout and the handshake timeout,
			// with a generous margin for a loaded machine.
			if took > 5*time.Second {
				t.Errorf("Info took %v with 300ms timeouts", took)
			}
			// The next call, within the backoff, fails at once, naming
			// both the wait and the failure behind it.
			start = time.Now()
			_, err = c.Config(context.Background())
			if !errors.Is(err, ErrBackoff) || !errors.Is(err, tt.want) {
				t.Errorf("call within the backoff: %v, want ErrBackoff and %v", err, tt.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("call within the backoff took %v", d)
			}
		})
	}
}

func TestTimeoutFollowsContext(t *testing.T) {
	s := newFakeServer(t, hang)
	c := newTestClient(t, Config{Address: s.addr(), DialTimeout: 30 * time.Second, Timeout: 30 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Info(ctx)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Info = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Info took %v under a 300ms context, 30s timeouts", d)
	}
}

// TestBackoff steps a fake clock: the waits double per consecutive
// failure up to the maximum, and no call in a wait reaches the network.
func TestBackoff(t *testing.T) {
	s := newFakeServer(t, full)
	c := newTestClient(t, Config{Address: s.addr(), BackoffMin: time.Second, BackoffMax: 5 * time.Second})
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		if _, err := c.Info(ctx); !errors.Is(err, ErrMaxClients) {
			t.Fatalf("attempt %d: %v, want ErrMaxClients", i+1, err)
		}
		if got := s.accepts.Load(); got != int64(i+1) {
			t.Fatalf("after attempt %d the server accepted %d connections", i+1, got)
		}
		for range 3 {
			if _, err := c.Info(ctx); !errors.Is(err, ErrBackoff) {
				t.Fatalf("within wait %d: %v, want ErrBackoff", i+1, err)
			}
		}
		now = now.Add(wait - time.Millisecond)
		if _, err := c.Info(ctx); !errors.Is(err, ErrBackoff) {
			t.Fatalf("1ms before the end of wait %d (%v): %v, want ErrBackoff", i+1, wait, err)
		}
		if got := s.accepts.Load(); got != int64(i+1) {
			t.Fatalf("calls within wait %d reached the server (%d connections)", i+1, got)
		}
		now = now.Add(time.Millisecond)
	}
}

func TestClosed(t *testing.T) {
	c := newTestClient(t, Config{Address: refusedAddr(t)})
	c.Close()
	if _, err := c.Info(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Info after Close = %v, want ErrClosed", err)
	}
}

// TestSecretNeverShown talks to a server that echoes every argument of
// every command in its error replies (as Redis 5 does for a command it
// does not know): the password must appear in no error and no printed
// form of the Client.
func TestSecretNeverShown(t *testing.T) {
	const secret = "s3cr3t-Pa55w0rd-do-not-print"
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newFakeServer(t, respServer(unknownEverything))
	c := newTestClient(t, Config{Address: s.addr(), Username: "monitor", PasswordFile: pwFile})
	ctx := context.Background()

	// Each call is a day after the last: past any backoff, so each one
	// connects and sends the password again.
	now := time.Now()
	c.now = func() time.Time { return now }
	var errs []error
	for _, call := range []func() error{
		func() error { _, err := c.Info(ctx); return err },
		func() error { _, err := c.Config(ctx); return err },
		func() error { _, err := c.Clients(ctx); return err },
		func() error { _, err := c.Kill(ctx, 1, 2); return err },
	} {
		errs = append(errs, call())
		t.Logf("after call %d: %d connections: %v", len(errs), s.accepts.Load(), errs[len(errs)-1])
		now = now.Add(24 * time.Hour)
	}
	if got := s.accepts.Load(); got != int64(len(errs)) {
		t.Fatalf("%d connections for %d calls past the backoff", got, len(errs))
	}
	for _, err := range errs {
		t.Logf("%v (%d connections)", err, s.accepts.Load())
	}
	sawServerText := false
	for _, err := range errs {
		if err == nil {
			t.Fatal("a call to a server that knows no command succeeded")
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			if out := fmt.Sprintf(verb, err); strings.Contains(out, secret) {
				t.Errorf("error printed with %s shows the password: %s", verb, out)
			}
		}
		for e := err; e != nil; e = errors.Unwrap(e) {
			if strings.Contains(e.Error(), secret) {
				t.Errorf("a wrapped error shows the password: %v", e)
			}
		}
		if !strings.Contains(err.Error(), "[redacted]") {
			t.Errorf("error does not carry the server's echo: the scrubbing was not exercised: %v", err)
		}
		sawServerText = true
	}
	if !sawServerText {
		t.Errorf("no error carried the server's echo: the scrubbing was not exercised: %v", errs)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d"} {
		if out := fmt.Sprintf(verb, c); strings.Contains(out, secret) || !strings.Contains(out, s.addr()) {
			t.Errorf("Client printed with %s: %s", verb, out)
		}
	}
	if out := fmt.Sprintf("%+v %#v", c.cfg, c.cfg); strings.Contains(out, secret) {
		t.Errorf("Config shows the password: %s", out)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Address: "127.0.0.1:6379"}, ""},
		{Config{Address: "[::1]:6379", TLS: TLSConfig{Enabled: true, ServerName: "cache"}}, ""},
		{Config{Address: ""}, `address "" is not host:port`},
		{Config{Address: "localhost"}, `address "localhost" is not host:port`},
		{Config{Address: ":6379"}, `address ":6379" is not host:port`},
		{Config{Address: "h:0"}, `port "0" is not a port (1-65535)`},
		{Config{Address: "h:70000"}, `port "70000" is not a port (1-65535)`},
		{Config{Address: "h:1", Timeout: -time.Second}, "timeout -1s is negative"},
		{Config{Address: "h:1", BackoffMin: time.Minute, BackoffMax: time.Second}, "backoff_min 1m0s is above backoff_max 1s"},
		{Config{Address: "h:1", TLS: TLSConfig{CAFile: "/ca.pem"}}, "tls settings given but tls is not enabled"},
		{Config{Address: "h:1", TLS: TLSConfig{Enabled: true, CertFile: "/c.pem"}}, "cert_file and key_file go together"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("Validate(%+v) = %v", tt.cfg, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig saying %q", tt.cfg, err, tt.want)
		}
	}
	if _, err := New(Config{Address: "h:1", TLS: TLSConfig{Enabled: true, CAFile: "/nonexistent/ca.pem"}}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("New with a missing CA file = %v", err)
	}
}

func TestReadPassword(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		path, want, wantErr string
	}{
		{write("lf", "pw one\n"), "pw one", ""},
		{write("crlf", "pw\r\n"), "pw", ""},
		{write("bare", "pw"), "pw", ""},
		{write("spaces", " pw \n"), " pw ", ""},
		{write("empty", "\n"), "", "is empty"},
		{write("two", "a\nb\n"), "", "more than one line"},
		{write("big", strings.Repeat("x", maxPasswordFileSize+1)), "", "is over 4096 bytes"},
		{filepath.Join(dir, "missing"), "", "no such file"},
	}
	for _, tt := range tests {
		got, err := readPassword(tt.path)
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("readPassword(%s) = %q, %v; want %q", tt.path, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("readPassword(%s) error = %v, want %q", tt.path, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "xxxx") {
			t.Errorf("error shows the file's content: %v", err)
		}
	}
	// A password file that cannot be read is an authentication failure.
	c := newTestClient(t, Config{Address: newFakeServer(t, hang).addr(), PasswordFile: filepath.Join(dir, "missing")})
	if _, err := c.Info(context.Background()); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "password_file") {
		t.Errorf("Info with a missing password file = %v, want ErrAuth naming password_file", err)
	}
}

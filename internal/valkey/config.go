package valkey

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/stormwatch/stormwatch/internal/fileread"
)

// Defaults for the zero values of Config's durations.
const (
	DefaultDialTimeout = 2 * time.Second
	DefaultTimeout     = 2 * time.Second
	DefaultBackoffMin  = 1 * time.Second
	DefaultBackoffMax  = 30 * time.Second
)

// maxPasswordFileSize caps the password file read.
const maxPasswordFileSize = 4096

// maxCAFileSize bounds a tls ca_file: room for a large CA bundle.
const maxCAFileSize = 1 << 20

// Config says how to reach one server. It holds no secret: the password
// is read from PasswordFile on each connect, so a Config can be logged.
type Config struct {
	// Address is host:port (e.g. "127.0.0.1:6379", "[::1]:6379").
	Address string
	// Username is the ACL user; empty means the default user.
	Username string
	// PasswordFile is a file holding the password (one trailing newline is
	// trimmed); empty means no password. It is read again on every
	// connect, so a rotated password is picked up at the next reconnect.
	PasswordFile string
	// TLS, when Enabled, wraps the connection in TLS.
	TLS TLSConfig
	// DialTimeout bounds the TCP (and TLS) connect and the handshake
	// (HELLO/AUTH). 0 means DefaultDialTimeout.
	DialTimeout time.Duration
	// Timeout bounds each command's write and reply (and so how long a
	// hung server can hold a call). 0 means DefaultTimeout.
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the wait after a failure before the
	// next connect: BackoffMin after the first, doubling per consecutive
	// failure up to BackoffMax. 0 means DefaultBackoffMin/Max.
	BackoffMin, BackoffMax time.Duration
}

// TLSConfig is the TLS side of a Config.
type TLSConfig struct {
	// Enabled turns TLS on.
	Enabled bool
	// CAFile is a PEM bundle of the CAs to trust; empty means the system
	// roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key (PEM), for
	// servers with tls-auth-clients; both or neither. They are read again
	// on every handshake, so a renewed certificate is picked up.
	CertFile, KeyFile string
	// ServerName is the name to verify the server's certificate against;
	// empty means the host of Address.
	ServerName string
	// InsecureSkipVerify skips certificate verification (tests only).
	InsecureSkipVerify bool
}

// withDefaults returns cfg with zero durations replaced by the defaults.
func (cfg Config) withDefaults() Config {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	return cfg
}

// Validate checks every field and reports the first error, naming the
// field, the bad value and what is accepted. Files are not read.
func (cfg Config) Validate() error {
	host, port, err := net.SplitHostPort(cfg.Address)
	if err != nil || host == "" {
		return fmt.Errorf("%w: address %q is not host:port (e.g. 127.0.0.1:6379)", ErrInvalidConfig, cfg.Address)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%w: address %q: port %q is not a port (1-65535)", ErrInvalidConfig, cfg.Address, port)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"dial_timeout", cfg.DialTimeout}, {"timeout", cfg.Timeout},
		{"backoff_min", cfg.BackoffMin}, {"backoff_max", cfg.BackoffMax},
	} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %v is negative (0 means the default)", ErrInvalidConfig, d.name, d.v)
		}
	}
	if c := cfg.withDefaults(); c.BackoffMin > c.BackoffMax {
		return fmt.Errorf("%w: backoff_min %v is above backoff_max %v", ErrInvalidConfig, c.BackoffMin, c.BackoffMax)
	}
	t := cfg.TLS
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		return fmt.Errorf("%w: tls settings given but tls is not enabled", ErrInvalidConfig)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("%w: tls cert_file and key_file go together (cert_file %q, key_file %q)", ErrInvalidConfig, t.CertFile, t.KeyFile)
	}
	return nil
}

// tlsConfig builds the client's TLS configuration, reading the CA file
// and checking the key pair once. nil when TLS is off.
func (cfg Config) tlsConfig() (*tls.Config, error) {
	t := cfg.TLS
	if !t.Enabled {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, for tests
	}
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(cfg.Address)
		tc.ServerName = host
	}
	if t.CAFile != "" {
		pem, err := fileread.Read(t.CAFile, maxCAFileSize)
		if err != nil {
			return nil, fmt.Errorf("%w: tls ca_file: %w", ErrInvalidConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: tls ca_file %s holds no PEM certificate", ErrInvalidConfig, t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return nil, fmt.Errorf("%w: tls cert_file %s / key_file %s: %w", ErrInvalidConfig, t.CertFile, t.KeyFile, err)
		}
		certFile, keyFile := t.CertFile, t.KeyFile
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("tls cert_file %s / key_file %s: %w", certFile, keyFile, err)
			}
			return &c, nil
		}
	}
	return tc, nil
}

// readPassword reads a password file: at most maxPasswordFileSize bytes,
// one trailing "\n" or "\r\n" trimmed, not empty. Errors name the file,
// never its content.
// It is read as every file stormwatch is given (internal/fileread): a FIFO
// or a hung file system fails it instead of blocking the connect.
func readPassword(path string) (string, error) {
	b, err := fileread.Read(path, maxPasswordFileSize)
	if errors.Is(err, fileread.ErrTooLarge) {
		return "", fmt.Errorf("password_file %s is over %d bytes", path, maxPasswordFileSize)
	}
	if err != nil {
		return "", fmt.Errorf("password_file: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return "", fmt.Errorf("password_file %s is empty", path)
	}
	if bytes.ContainsAny(b, "\r\n") {
		return "", fmt.Errorf("password_file %s holds more than one line", path)
	}
	return string(b), nil
}

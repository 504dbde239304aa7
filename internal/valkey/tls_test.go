package valkey

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCert makes a self-signed certificate for 127.0.0.1 and writes it
// as a CA file; it returns the server's TLS configuration and the file.
func testCert(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "valkey test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, caFile
}

// TestTLSCloseIsNotARequest: a TLS connection the client drops after an
// answer it could not use writes its close_notify on the way out. That is
// not a request the server owes an answer to: the next attempt dials
// anew, even though this server never closes its side.
func TestTLSCloseIsNotARequest(t *testing.T) {
	serverTLS, caFile := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Answers the first request with garbage, then reads until the
	// client's close_notify and keeps its side open.
	s := serveListener(t, tls.NewListener(ln, serverTLS), func(c net.Conn) {
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
		_, _ = io.Copy(io.Discard, c)
	})
	c := newTestClient(t, Config{Address: s.addr(), TLS: TLSConfig{Enabled: true, CAFile: caFile},
		BackoffMin: time.Second, BackoffMax: time.Second})
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	for attempt := 1; attempt <= 2; attempt++ {
		_, err := c.Info(ctx)
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("attempt %d: %v, want ErrProtocol (a second connection, answered with garbage)", attempt, err)
		}
		if got := s.accepts.Load(); got != int64(attempt) {
			t.Fatalf("after attempt %d the server accepted %d connections", attempt, got)
		}
		now = now.Add(2 * time.Second) // past the backoff
	}
}

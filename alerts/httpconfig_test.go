package alerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testPKI is a self-signed CA with a server certificate for 127.0.0.1 and
// a client certificate, as PEM files in dir/tls.
type testPKI struct {
	pool                  *x509.CertPool
	server                tls.Certificate
	caFile                string
	clientCert, clientKey string
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	tlsDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(tlsDir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stormwatch test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "alertmanager"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p := &testPKI{pool: x509.NewCertPool(), caFile: write("ca.pem", "CERTIFICATE", caDER)}
	p.pool.AddCert(ca)
	serverDER, serverKey := leaf(2, x509.ExtKeyUsageServerAuth)
	p.server = tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}
	clientDER, clientKey := leaf(3, x509.ExtKeyUsageClientAuth)
	p.clientCert = write("client.pem", "CERTIFICATE", clientDER)
	p.clientKey = write("client-key.pem", "EC PRIVATE KEY", keyDER(clientKey))
	return p
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHTTPClientFromFileTLSBasicAuth posts to an Alertmanager that serves
// TLS with a certificate of a self-signed CA, asks for a client
// certificate and checks basic auth, through an HTTP config file with
// relative paths; the password file is read again at each request.
func TestHTTPClientFromFileTLSBasicAuth(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	var mu sync.Mutex
	password := "s3cret"
	am := newFakeAMWith(t, &tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
	}, func(r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		user, pass, ok := r.BasicAuth()
		return ok && user == "stormwatch" && pass == password
	})
	passwordFile := filepath.Join(dir, "secrets", "am-password")
	writeFile(t, passwordFile, "s3cret\n")
	cfg := filepath.Join(dir, "alertmanager-http.yml")
	writeFile(t, cfg, `
tls_config:
  ca_file: tls/ca.pem
  cert_file: tls/client.pem
  key_file: tls/client-key.pem
basic_auth:
  username: stormwatch
  password_file: secrets/am-password
`)
	client, err := HTTPClientFromFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := startNotifier(t, NotifierOptions{URLs: []string{am.URL + "/prefix"}, Client: client})
	n.Send(at(0), []Alert{firing("A", 0, 0)})
	if got := am.wait(t); len(got) != 1 || got[0].Labels["alertname"] != "A" {
		t.Fatalf("got %+v, want A", got)
	}

	// A rotated password is used from the next request on.
	mu.Lock()
	password = "rotated"
	mu.Unlock()
	writeFile(t, passwordFile, "rotated\n")
	n.Send(at(1), []Alert{firing("A", 0, 0), firing("B", 1, 1)})
	if got := am.wait(t); len(got) != 1 || got[0].Labels["alertname"] != "B" {
		t.Fatalf("after rotation got %+v, want B", got)
	}
	if s := n.Stats(); s.Failed != 0 {
		t.Errorf("stats %+v", s)
	}

	// Without the file: the server's certificate is not trusted.
	errs := make(chan error, 10)
	plain := startNotifier(t, NotifierOptions{
		URLs: []string{am.URL + "/prefix"}, OnError: func(_ string, err error, _ uint64) { errs <- err },
	})
	plain.Send(at(0), []Alert{firing("A", 0, 0)})
	select {
	case err := <-errs:
		if _, ok := errors.AsType[x509.UnknownAuthorityError](err); !ok {
			t.Errorf("error %v, want x509.UnknownAuthorityError", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error reported without the CA")
	}
}

// TestHTTPClientFromFileBearer sends the bearer token of a credentials
// file; a wrong token is reported with Alertmanager's answer.
func TestHTTPClientFromFileBearer(t *testing.T) {
	dir := t.TempDir()
	am := newFakeAMWith(t, nil, func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer tok-123" })
	writeFile(t, filepath.Join(dir, "token"), "tok-123\n")
	writeFile(t, filepath.Join(dir, "wrong"), "tok-999\n")
	writeFile(t, filepath.Join(dir, "good.yml"), "authorization:\n  credentials_file: token\n")
	writeFile(t, filepath.Join(dir, "bad.yml"), "bearer_token_file: wrong\n")

	good, err := HTTPClientFromFile(filepath.Join(dir, "good.yml"))
	if err != nil {
		t.Fatal(err)
	}
	n := startNotifier(t, NotifierOptions{URLs: []string{am.URL + "/prefix"}, Client: good})
	n.Send(at(0), []Alert{firing("A", 0, 0)})
	am.wait(t)

	bad, err := HTTPClientFromFile(filepath.Join(dir, "bad.yml"))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 10)
	m := startNotifier(t, NotifierOptions{
		URLs: []string{am.URL + "/prefix"}, Client: bad, OnError: func(_ string, err error, _ uint64) { errs <- err },
	})
	m.Send(at(0), []Alert{firing("A", 0, 0)})
	select {
	case err := <-errs:
		if want := "alertmanager answered 401 Unauthorized: unauthorized"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error reported with a wrong token")
	}
}

// TestHTTPClientFromFileErrors: each bad file is refused with an error
// naming the file, and the field when there is one.
func TestHTTPClientFromFileErrors(t *testing.T) {
	dir := t.TempDir()
	newTestPKI(t, dir) // tls/client.pem for cert-no-key.yml, tls/* for full.yml
	writeFile(t, filepath.Join(dir, "password"), "pw\n")
	writeFile(t, filepath.Join(dir, "garbage.pem"), "not a certificate\n")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	big := "# padding\n" + strings.Repeat("#", MaxHTTPConfigFileSize)
	for _, tc := range []struct {
		name, content string // content "" with name a path under dir: no file written
		want          string // with DIR for dir
	}{
		{name: "missing.yml", want: "invalid HTTP client configuration: open DIR/missing.yml: no such file or directory"},
		{name: "adir", want: "invalid HTTP client configuration: DIR/adir: not a regular file (a directory)"},
		{name: "fifo", want: "invalid HTTP client configuration: DIR/fifo: not a regular file (a named pipe)"},
		{name: "big.yml", content: big, want: "invalid HTTP client configuration: DIR/big.yml: larger than the 1048576 bytes accepted"},
		{name: "syntax.yml", content: "tls_config: [\n", want: "invalid HTTP client configuration: DIR/syntax.yml: yaml: line 1: did not find expected node content"},
		{name: "unknown.yml", content: "basic_auth:\n  username: u\n  pasword: p\n", want: "invalid HTTP client configuration: DIR/unknown.yml: yaml: unmarshal errors:\n  line 3: field pasword not found in type config.plain"},
		{name: "two-auths.yml", content: "basic_auth: {username: u, password: p}\nauthorization: {credentials: t}\n", want: "invalid HTTP client configuration: DIR/two-auths.yml: at most one of basic_auth, oauth2 & authorization must be configured"},
		{name: "cert-no-key.yml", content: "tls_config: {cert_file: tls/client.pem}\n", want: "invalid HTTP client configuration: DIR/cert-no-key.yml: exactly one of key or key_file must be configured when a client certificate is configured"},
		{name: "no-ca.yml", content: "tls_config: {ca_file: nope.pem}\n", want: "invalid HTTP client configuration: DIR/no-ca.yml: tls_config.ca_file: open DIR/nope.pem: no such file or directory"},
		{name: "ca-dir.yml", content: "tls_config: {ca_file: adir}\n", want: "invalid HTTP client configuration: DIR/ca-dir.yml: tls_config.ca_file: DIR/adir: not a regular file (a directory)"},
		{name: "bad-ca.yml", content: "tls_config: {ca_file: garbage.pem}\n", want: "invalid HTTP client configuration: DIR/bad-ca.yml: unable to use specified CA cert file DIR/garbage.pem"},
		{name: "no-password.yml", content: "basic_auth: {username: u, password_file: secrets/nope}\n", want: "invalid HTTP client configuration: DIR/no-password.yml: basic_auth.password_file: open DIR/secrets/nope: no such file or directory"},
		{name: "fifo-token.yml", content: "authorization: {credentials_file: fifo}\n", want: "invalid HTTP client configuration: DIR/fifo-token.yml: authorization.credentials_file: DIR/fifo: not a regular file (a named pipe)"},
		{name: "ref.yml", content: "basic_auth: {username: u, password_ref: vault}\n", want: "invalid HTTP client configuration: DIR/ref.yml: unable to use password: cannot use secret ref without manager"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if tc.content != "" {
				writeFile(t, path, tc.content)
			}
			done := make(chan struct{})
			var err error
			go func() { _, err = HTTPClientFromFile(path); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("HTTPClientFromFile hangs")
			}
			want := strings.ReplaceAll(tc.want, "DIR", dir)
			if err == nil || err.Error() != want || !errors.Is(err, ErrHTTPConfig) {
				t.Errorf("error:\n%v\nwant:\n%s\n(matching ErrHTTPConfig)", err, want)
			}
		})
	}

	// Valid: an empty file (plain HTTP, no auth), and every file field.
	writeFile(t, filepath.Join(dir, "empty.yml"), "")
	writeFile(t, filepath.Join(dir, "full.yml"), `
tls_config:
  ca_file: tls/ca.pem
  cert_file: tls/client.pem
  key_file: tls/client-key.pem
  server_name: alertmanager.example
  min_version: TLS12
basic_auth:
  username: stormwatch
  password_file: password
follow_redirects: false
`)
	for _, name := range []string{"empty.yml", "full.yml"} {
		if _, err := HTTPClientFromFile(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

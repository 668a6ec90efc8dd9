package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// hostCall is call with a Host header of our choosing, as a browser on a
// re-bound name would send it.
func hostCall(t *testing.T, method, url, host, token string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(`{"pool":"web","site":"fra"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, url, host, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDNSRebinding: without a token, a page whose name an attacker
// re-bound to the node's address reaches it with its own name as Host and
// is turned away, for reads and for drains; IP literals, localhost and the
// configured names are served.
func TestDNSRebinding(t *testing.T) {
	f := newFixture(t, "")
	base := f.start(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:" + port, true},
		{"[::1]:" + port, true},
		{"localhost:" + port, true},
		{"LOCALHOST", true},
		{"gslb-admin.example.net:" + port, true},
		{"gslb-admin.example.net.", true},
		{"evil.example:" + port, false},
		{"evil.example", false},
		{"localhost.evil.example", false},
		{"127.0.0.1.nip.io", false},
	} {
		for _, m := range []string{"GET /api/v1/status", "POST /api/v1/drain", "POST /api/v1/reload", "GET /"} {
			method, path, _ := strings.Cut(m, " ")
			code := hostCall(t, method, base+path, tc.host, "")
			if tc.ok && code == http.StatusMisdirectedRequest {
				t.Errorf("%s with Host %s: refused", m, tc.host)
			}
			if !tc.ok && code != http.StatusMisdirectedRequest {
				t.Errorf("%s with Host %s: %d, want 421", m, tc.host, code)
			}
		}
	}
	if st, _ := f.srv.opts.Mesh.(*memMesh); st != nil && len(st.Drains()) != 1 {
		t.Errorf("drains in force: %v, want only the one from an accepted host", st.Drains())
	}
}

// TestPprofOffByDefault: without admin.pprof there is no /debug/pprof/,
// token or not; with it and no token, Start refuses.
func TestPprofOffByDefault(t *testing.T) {
	s := New(Options{Listen: "127.0.0.1:0", Token: "s3cret", Logger: testLogger(t)})
	if r := serve(s, "GET", "/debug/pprof/goroutine?debug=1", "s3cret", ""); r.code != 404 {
		t.Errorf("pprof off: GET /debug/pprof/goroutine = %d, want 404", r.code)
	}
	s = New(Options{Listen: "127.0.0.1:0", Pprof: true, Logger: testLogger(t)})
	err := s.Start(t.Context())
	if err == nil {
		s.Shutdown(context.Background())
	}
	if err == nil || !strings.Contains(err.Error(), "pprof needs a token_file") {
		t.Errorf("pprof without a token: Start = %v", err)
	}
}

// TestTokenRotation: SetToken replaces the token at once.
func TestTokenRotation(t *testing.T) {
	f := newFixture(t, "old-token")
	base := f.start(t)
	if code := hostCall(t, "POST", base+"/api/v1/reload", "127.0.0.1", "old-token"); code != 200 {
		t.Fatalf("reload with the token: %d", code)
	}
	f.srv.SetToken("new-token")
	if code := hostCall(t, "POST", base+"/api/v1/reload", "127.0.0.1", "old-token"); code != 401 {
		t.Errorf("reload with the rotated-out token: %d, want 401", code)
	}
	if code := hostCall(t, "POST", base+"/api/v1/reload", "127.0.0.1", "new-token"); code != 200 {
		t.Errorf("reload with the new token: %d, want 200", code)
	}
}

// selfSigned makes a certificate for 127.0.0.1 and the pool that trusts it.
func selfSigned(t *testing.T, cn string) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestAdminTLS: with a certificate the listener speaks only TLS, the
// command line's client reaches it through a trusted pool, and
// SetCertificate swaps the certificate for new connections.
func TestAdminTLS(t *testing.T) {
	cert, pool := selfSigned(t, "first")
	f := newFixture(t, "s3cret")
	f.srv.opts.Certificate = cert
	f.srv.cert.Store(cert)
	base := strings.Replace(f.start(t), "http://", "https://", 1)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	c := &Client{Base: base, HTTP: hc}
	st, err := c.Status(t.Context())
	if err != nil || st.Node != "ns1" {
		t.Fatalf("status over TLS: %v %v", st, err)
	}
	// Plain HTTP gets no API.
	if resp, err := http.Get(strings.Replace(base, "https://", "http://", 1) + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.Contains(string(b), "ok") {
			t.Error("plain HTTP answered on a TLS listener")
		}
	}
	next, pool2 := selfSigned(t, "second")
	f.srv.SetCertificate(next)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{RootCAs: pool2})
	if err != nil {
		t.Fatalf("handshake after the certificate was replaced: %v", err)
	}
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "second" {
		t.Errorf("certificate after SetCertificate: %q", cn)
	}
	conn.Close()
}

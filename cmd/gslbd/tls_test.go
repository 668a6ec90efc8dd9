package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gslbd/admin"
)

// TestCLIOverTLS: an admin listener with a certificate is reached with
// -admin https://… and -ca-file; without the CA the command fails on the
// unknown authority rather than talking in the clear.
func TestCLIOverTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gslbd admin"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	srv := admin.New(admin.Options{
		Listen:      "127.0.0.1:0",
		Token:       "tls-token",
		Logger:      slog.New(slog.NewTextHandler(t.Output(), nil)),
		NodeName:    "tls1",
		Version:     "test",
		Certificate: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	url := "https://" + srv.Addr().String()
	if code, out, errOut := cliRun("status", "-admin", url, "-ca-file", ca); code != 0 || !strings.Contains(out, "node tls1") {
		t.Errorf("status over TLS with -ca-file: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := cliRun("status", "-admin", url); code == 0 || !strings.Contains(errOut, "certificate") {
		t.Errorf("status over TLS without the CA: %d %q, want a certificate error", code, errOut)
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFIFOIsAnError names a FIFO as the geo database, the token file and
// the cookie secret: each is a clear error at once. Opening a FIFO for
// reading blocks until a writer comes; a load that did so would hang and
// hold the reload lock for good.
func TestFIFOIsAnError(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"city.mmdb", "admin.token", "cookie.key"} {
		if err := syscall.Mkfifo(filepath.Join(dir, name), 0o600); err != nil {
			t.Fatalf("mkfifo: %v", err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "zones"), 0o755)
	os.WriteFile(filepath.Join(dir, "gslbd.toml"), []byte(`
[node]
name = "ns1"
[dns.cookies]
secret_file = "cookie.key"
[admin]
token_file = "admin.token"
`), 0o644)
	done := make(chan error, 1)
	go func() {
		_, err := LoadNodeConfig(filepath.Join(dir, "gslbd.toml"))
		done <- err
	}()
	select {
	case err := <-done:
		for _, want := range []string{"admin.token_file: cannot use", "dns.cookies.secret_file: cannot use", "not a regular file (a FIFO)"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("load with FIFOs: %v, want %q", err, want)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("loading a config naming FIFOs hangs")
	}

	os.WriteFile(filepath.Join(dir, "gslbd.toml"), []byte(`
[node]
name = "ns1"
[geo]
city_db = "city.mmdb"
`), 0o644)
	go func() {
		cfg, err := LoadNodeConfig(filepath.Join(dir, "gslbd.toml"))
		if err == nil {
			_, err = Load(cfg)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "geo.city_db") || !strings.Contains(err.Error(), "not a regular file (a FIFO)") {
			t.Errorf("load with a FIFO as city_db: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("loading a FIFO as geo.city_db hangs")
	}
}

func TestReadFileBounds(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "big")
	os.WriteFile(p, make([]byte, 100), 0o600)
	if _, _, err := ReadFile(p, 99); err == nil || !strings.Contains(err.Error(), "more than the 99 allowed") {
		t.Errorf("100-byte file with a 99-byte limit: %v", err)
	}
	if b, _, err := ReadFile(p, 100); err != nil || len(b) != 100 {
		t.Errorf("100-byte file with a 100-byte limit: %d bytes, %v", len(b), err)
	}
	if _, _, err := ReadFile(dir, 100); err == nil || !strings.Contains(err.Error(), "a directory") {
		t.Errorf("a directory: %v", err)
	}
	if _, _, err := ReadFile("/dev/zero", 100); err == nil || !strings.Contains(err.Error(), "a device") {
		t.Errorf("/dev/zero: %v", err)
	}
}

package dnssec

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// bindKeygen runs BIND's dnssec-keygen in dir and returns the .key path.
// The test fails when the tool is missing: keys as operators make them
// are the point.
func bindKeygen(t *testing.T, dir string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("dnssec-keygen"); err != nil {
		t.Fatalf("dnssec-keygen (Debian package bind9-utils) is needed: %v", err)
	}
	cmd := exec.Command("dnssec-keygen", append([]string{"-q", "-K", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dnssec-keygen %v: %v\n%s", args, err, out)
	}
	return filepath.Join(dir, strings.TrimSpace(string(out))+".key")
}

func TestReadBINDKeys(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		alg  uint8
		sep  bool
	}{
		{[]string{"-a", "13", "-f", "KSK", "gslb.example.com."}, ECDSAP256SHA256, true},
		{[]string{"-a", "13", "gslb.example.com."}, ECDSAP256SHA256, false},
		{[]string{"-a", "15", "-f", "KSK", "gslb.example.com."}, ED25519, true},
		{[]string{"-a", "15", "gslb.example.com."}, ED25519, false},
	} {
		path := bindKeygen(t, dir, tc.args...)
		k, err := ReadKey(path, "GSLB.example.com")
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if k.DNSKEY.Algorithm != tc.alg || k.SEP() != tc.sep {
			t.Errorf("%v: algorithm %d sep %v", tc.args, k.DNSKEY.Algorithm, k.SEP())
		}
		if !strings.Contains(filepath.Base(path), k.BaseName()) {
			t.Errorf("file %s, BaseName %s", path, k.BaseName())
		}
		if k.Created.IsZero() || k.Activate.IsZero() || !k.Active(time.Now()) {
			t.Errorf("%v: timing %+v, want created and active now", tc.args, k.Timing)
		}
		// A signature made with the private half verifies with the public.
		rr, _ := dns.NewRR("www.gslb.example.com. 60 IN A 192.0.2.1")
		sig := &dns.RRSIG{Algorithm: k.DNSKEY.Algorithm, SignerName: "gslb.example.com.", KeyTag: k.Tag,
			Inception: uint32(time.Now().Unix() - 60), Expiration: uint32(time.Now().Unix() + 60)}
		if err := sig.Sign(k.Signer, []dns.RR{rr}); err != nil {
			t.Fatal(err)
		}
		if err := sig.Verify(k.DNSKEY, []dns.RR{rr}); err != nil {
			t.Errorf("%v: verify: %v", tc.args, err)
		}
	}
}

func TestReadBINDTiming(t *testing.T) {
	dir := t.TempDir()
	path := bindKeygen(t, dir, "-a", "13", "-P", "20300101000000", "-A", "20300102000000",
		"-I", "20300103000000", "-D", "20300104000000", "gslb.example.com.")
	k, err := ReadKey(path, "")
	if err != nil {
		t.Fatal(err)
	}
	day := func(d int) time.Time { return time.Date(2030, 1, d, 0, 0, 0, 0, time.UTC) }
	if !k.Publish.Equal(day(1)) || !k.Activate.Equal(day(2)) || !k.Inactive.Equal(day(3)) || !k.Delete.Equal(day(4)) {
		t.Fatalf("timing %+v", k.Timing)
	}
	for _, c := range []struct {
		at       time.Time
		pub, act bool
	}{
		{day(1).Add(-time.Second), false, false},
		{day(1), true, false},
		{day(2), true, true},
		{day(3), true, false},
		{day(4), false, false},
	} {
		if k.Published(c.at) != c.pub || k.Active(c.at) != c.act {
			t.Errorf("at %v: published %v active %v, want %v %v", c.at, k.Published(c.at), k.Active(c.at), c.pub, c.act)
		}
	}
	// dnssec-settime changes the timing, as an operator rolling keys does.
	if out, err := exec.Command("dnssec-settime", "-K", dir, "-I", "20300105000000", strings.TrimSuffix(filepath.Base(path), ".key")).CombinedOutput(); err != nil {
		t.Fatalf("dnssec-settime: %v\n%s", err, out)
	}
	if k, err = ReadKey(path, ""); err != nil || !k.Inactive.Equal(day(5)) {
		t.Fatalf("after dnssec-settime: %v, inactive %v", err, k.Inactive)
	}
}

func TestGenerateWriteRead(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	for _, alg := range []uint8{ECDSAP256SHA256, ED25519} {
		for _, ksk := range []bool{true, false} {
			k, err := Generate("Gslb.Example.com", alg, ksk, 3600, Timing{Created: now, Publish: now, Activate: now})
			if err != nil {
				t.Fatal(err)
			}
			if err := k.Write(dir); err != nil {
				t.Fatal(err)
			}
			if err := k.Write(dir); err == nil {
				t.Error("Write overwrote an existing key pair")
			}
			if fi, err := os.Stat(PrivatePath(k.Path)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf(".private mode %v, %v", fi.Mode(), err)
			}
			back, err := ReadKey(k.Path, "gslb.example.com.")
			if err != nil {
				t.Fatal(err)
			}
			if back.Tag != k.Tag || back.SEP() != ksk || !back.Activate.Equal(now) {
				t.Errorf("read back tag %d sep %v activate %v, wrote %d %v %v", back.Tag, back.SEP(), back.Activate, k.Tag, ksk, now)
			}
			// BIND's own tools read what we write.
			if out, err := exec.Command("dnssec-settime", "-K", dir, "-p", "all", strings.TrimSuffix(filepath.Base(k.Path), ".key")).CombinedOutput(); err != nil {
				t.Errorf("dnssec-settime cannot read %s: %v\n%s", k.Path, err, out)
			}
		}
	}
}

func TestReadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	a := bindKeygen(t, dir, "-a", "13", "gslb.example.com.")
	b := bindKeygen(t, dir, "-a", "13", "gslb.example.com.")
	rsa := bindKeygen(t, dir, "-a", "8", "-b", "1024", "gslb.example.com.")
	other := bindKeygen(t, dir, "-a", "15", "other.example.com.")

	// A .private that belongs to another key.
	mixed := filepath.Join(t.TempDir(), filepath.Base(a))
	copyFile(t, a, mixed)
	copyFile(t, PrivatePath(b), PrivatePath(mixed))
	// A .key without its .private.
	lonely := filepath.Join(t.TempDir(), filepath.Base(a))
	copyFile(t, a, lonely)
	// Garbage.
	junk := filepath.Join(t.TempDir(), "Kjunk.+013+00001.key")
	os.WriteFile(junk, []byte("not a key\n"), 0o644)
	// Algorithm of .private differs from .key.
	algmix := filepath.Join(t.TempDir(), filepath.Base(a))
	copyFile(t, a, algmix)
	copyFile(t, PrivatePath(other), PrivatePath(algmix))

	fifo := filepath.Join(t.TempDir(), "Kfifo.+013+00002.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		path, zone string
		kind       KeyErrorKind
		msg        string
	}{
		{filepath.Join(dir, "Knone.+013+00000.key"), "", KeyMissing, "no such file"},
		{lonely, "", KeyMissing, ".private: no such file"},
		{mixed, "", KeyMismatch, "does not belong to"},
		{algmix, "", KeyMismatch, "does not match"},
		{rsa, "", KeyAlgorithm, "algorithm 8"},
		{other, "gslb.example.com.", KeyMismatch, "not of zone gslb.example.com."},
		{junk, "", KeyUnreadable, "parse DNSKEY"},
		{PrivatePath(a), "", KeyUnreadable, "not a .key file"},
		{dir + "/", "", KeyUnreadable, "not a .key file"},
		{fifo, "", KeyUnreadable, "not a regular file"},
	} {
		_, err := ReadKey(c.path, c.zone)
		var ke *KeyError
		if !errors.As(err, &ke) || ke.Kind != c.kind || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ReadKey(%s) = %v, want kind %d with %q", c.path, err, c.kind, c.msg)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

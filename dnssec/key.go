// Package dnssec holds what online signing needs: zone keys read from (and
// written as) BIND key pairs, which keys are published and which sign at a
// given moment (their timing metadata), RRSIGs made with miekg/dns's
// DNSSEC primitives, the NSEC records of compact denial of existence, and a
// bounded cache of signatures keyed by RRset content.
//
// It sits apart from zones and dnsserver because three parts of gslbd use
// it for different jobs: the config loader reads and checks the key files
// of a zone (gslbd check), the DNS server signs answers, and the command
// line generates keys and prints DS records. It imports only miekg/dns and
// the standard library.
package dnssec

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Algorithms gslbd signs with: the two RFC 8624 recommends for signing
// whose signatures are small and cheap enough to make per answer.
const (
	ECDSAP256SHA256 = dns.ECDSAP256SHA256 // 13
	ED25519         = dns.ED25519         // 15
)

// maxKeyFile bounds what is read of a key file: real ones are a few
// hundred bytes; anything this big is not a key.
const maxKeyFile = 64 << 10

// Timing is a key's BIND timing metadata. A zero time is unset: a key
// with no Publish is published from the start, with no Activate it signs
// from the start, and with no Inactive or Delete it never stops.
type Timing struct {
	Created  time.Time
	Publish  time.Time // in the DNSKEY RRset from then
	Activate time.Time // signs from then
	Inactive time.Time // stops signing then (stays published)
	Delete   time.Time // leaves the DNSKEY RRset then
}

// Key is one key pair of a zone.
type Key struct {
	// Path is the .key file; the .private file lies beside it.
	Path   string
	DNSKEY *dns.DNSKEY
	Signer crypto.Signer
	Tag    uint16
	Timing
}

// SEP reports whether the key has the secure entry point flag (257): a
// key-signing key, or a combined key when the zone has no zone-signing key.
func (k *Key) SEP() bool { return k.DNSKEY.Flags&dns.SEP != 0 }

// Published reports whether the key is in the DNSKEY RRset at t.
func (k *Key) Published(t time.Time) bool {
	return !t.Before(k.Publish) && (k.Delete.IsZero() || t.Before(k.Delete))
}

// Active reports whether the key signs at t. A key signs only while it
// is published.
func (k *Key) Active(t time.Time) bool {
	return k.Published(t) && !t.Before(k.Activate) && (k.Inactive.IsZero() || t.Before(k.Inactive))
}

// Role names the key's job for messages: "KSK", "ZSK".
func (k *Key) Role() string {
	if k.SEP() {
		return "KSK"
	}
	return "ZSK"
}

// KeyError is a problem with one key pair. Kind tells what went wrong, so
// `gslbd check` can say it in an operator's words.
type KeyError struct {
	Path string // the file at fault
	Kind KeyErrorKind
	Err  error
}

// KeyErrorKind classifies a KeyError.
type KeyErrorKind uint8

const (
	KeyMissing    KeyErrorKind = iota // a file does not exist
	KeyUnreadable                     // cannot be read or parsed
	KeyMismatch                       // .private does not belong to .key, or the key is not the zone's
	KeyAlgorithm                      // an algorithm gslbd does not sign with
)

func (e *KeyError) Error() string {
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

func (e *KeyError) Unwrap() error { return e.Err }

// PrivatePath is the .private file beside a .key file.
func PrivatePath(keyPath string) string {
	return strings.TrimSuffix(keyPath, ".key") + ".private"
}

// ReadKey reads a BIND key pair: keyPath (K<zone>.+<alg>+<id>.key) and the
// .private file beside it. zone, when not empty, is the origin the key
// must belong to. Errors are *KeyError.
func ReadKey(keyPath, zone string) (*Key, error) {
	if !strings.HasSuffix(keyPath, ".key") {
		return nil, &KeyError{keyPath, KeyUnreadable, errors.New("not a .key file: name the public half of a BIND key pair, K<zone>.+<alg>+<id>.key")}
	}
	pub, err := readSmall(keyPath)
	if err != nil {
		return nil, err
	}
	k := &Key{Path: keyPath}
	var comments []string
	for _, line := range strings.Split(string(pub), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, ";"):
			comments = append(comments, strings.TrimSpace(line[1:]))
		case k.DNSKEY != nil:
			return nil, &KeyError{keyPath, KeyUnreadable, errors.New("more than one record: a .key file holds one DNSKEY")}
		default:
			rr, err := dns.NewRR(line)
			if err != nil {
				return nil, &KeyError{keyPath, KeyUnreadable, fmt.Errorf("parse DNSKEY: %w", err)}
			}
			dk, ok := rr.(*dns.DNSKEY)
			if !ok {
				return nil, &KeyError{keyPath, KeyUnreadable, fmt.Errorf("holds a %s record, want DNSKEY", dns.TypeToString[rr.Header().Rrtype])}
			}
			k.DNSKEY = dk
		}
	}
	if k.DNSKEY == nil {
		return nil, &KeyError{keyPath, KeyUnreadable, errors.New("no DNSKEY record")}
	}
	dk := k.DNSKEY
	dk.Hdr.Name = strings.ToLower(dk.Hdr.Name)
	if zone != "" && dk.Hdr.Name != strings.ToLower(dns.Fqdn(zone)) {
		return nil, &KeyError{keyPath, KeyMismatch, fmt.Errorf("key of %s, not of zone %s", dk.Hdr.Name, dns.Fqdn(zone))}
	}
	if dk.Algorithm != ECDSAP256SHA256 && dk.Algorithm != ED25519 {
		return nil, &KeyError{keyPath, KeyAlgorithm, fmt.Errorf("algorithm %d (%s): gslbd signs with 13 (ECDSAP256SHA256) or 15 (ED25519)", dk.Algorithm, dns.AlgorithmToString[dk.Algorithm])}
	}
	if dk.Protocol != 3 || dk.Flags&dns.ZONE == 0 || dk.Flags&^(dns.ZONE|dns.SEP) != 0 {
		return nil, &KeyError{keyPath, KeyUnreadable, fmt.Errorf("flags %d protocol %d: want a zone key, flags 256 (ZSK) or 257 (KSK), protocol 3", dk.Flags, dk.Protocol)}
	}
	k.Tag = dk.KeyTag()

	privPath := PrivatePath(keyPath)
	priv, err := readSmall(privPath)
	if err != nil {
		return nil, err
	}
	meta, err := privateFields(priv)
	if err != nil {
		return nil, &KeyError{privPath, KeyUnreadable, err}
	}
	alg, _, _ := strings.Cut(meta["algorithm"], " ")
	if n, err := strconv.Atoi(alg); err != nil || uint8(n) != dk.Algorithm || n > 255 {
		return nil, &KeyError{privPath, KeyMismatch, fmt.Errorf("algorithm %q does not match the .key file's %d", meta["algorithm"], dk.Algorithm)}
	}
	sk, err := dk.ReadPrivateKey(bytes.NewReader(priv), privPath)
	if err != nil {
		return nil, &KeyError{privPath, KeyUnreadable, fmt.Errorf("read private key: %w", err)}
	}
	signer, ok := sk.(crypto.Signer)
	if !ok {
		return nil, &KeyError{privPath, KeyUnreadable, fmt.Errorf("private key of type %T cannot sign", sk)}
	}
	if !samePublic(dk, signer) {
		return nil, &KeyError{privPath, KeyMismatch, fmt.Errorf("private key does not belong to %s (key tag %d)", filepath.Base(keyPath), k.Tag)}
	}
	k.Signer = signer

	// named keeps timing in the .private file; the comments of the .key
	// file say the same for people. Take .private's, else the comments.
	t, err := parseTiming(meta)
	if err != nil {
		return nil, &KeyError{privPath, KeyUnreadable, err}
	}
	if t == (Timing{}) {
		fromKey := map[string]string{}
		for _, c := range comments {
			if name, v, ok := strings.Cut(c, ":"); ok {
				v = strings.TrimSpace(v)
				if i := strings.IndexByte(v, ' '); i > 0 {
					v = v[:i] // "20240101000000 (Mon Jan  1 …)"
				}
				fromKey[strings.ToLower(strings.TrimSpace(name))] = v
			}
		}
		if t, err = parseTiming(fromKey); err != nil {
			return nil, &KeyError{keyPath, KeyUnreadable, err}
		}
	}
	k.Timing = t
	return k, nil
}

// readSmall reads a key file, classifying failures for check. It opens
// without blocking, so a FIFO in a key's place is an error, not a reload
// that hangs.
func readSmall(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &KeyError{path, KeyMissing, errors.New("no such file")}
	}
	if err != nil {
		return nil, &KeyError{path, KeyUnreadable, err}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, &KeyError{path, KeyUnreadable, errors.New("not a regular file")}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, &KeyError{path, KeyUnreadable, err}
	}
	if len(b) > maxKeyFile {
		return nil, &KeyError{path, KeyUnreadable, fmt.Errorf("larger than %d bytes: not a key file", maxKeyFile)}
	}
	return b, nil
}

// privateFields reads the "Name: value" lines of a .private file, names
// lower-cased.
func privateFields(b []byte) (map[string]string, error) {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == ';' {
			continue
		}
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %q: want \"Name: value\"", line)
		}
		m[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(v)
	}
	if m["private-key-format"] == "" || m["algorithm"] == "" {
		return nil, errors.New("not a BIND private key file: no Private-key-format or Algorithm line")
	}
	return m, sc.Err()
}

// timeFormat is BIND's YYYYMMDDHHMMSS, UTC.
const timeFormat = "20060102150405"

func parseTiming(m map[string]string) (Timing, error) {
	var t Timing
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"created", &t.Created}, {"publish", &t.Publish}, {"activate", &t.Activate}, {"inactive", &t.Inactive}, {"delete", &t.Delete}} {
		v := m[f.name]
		if v == "" || v == "0" {
			continue
		}
		tm, err := time.ParseInLocation(timeFormat, v, time.UTC)
		if err != nil {
			return t, fmt.Errorf("%s time %q: want YYYYMMDDHHMMSS (UTC)", f.name, v)
		}
		*f.dst = tm
	}
	return t, nil
}

// samePublic reports whether signer's public key is dk's.
func samePublic(dk *dns.DNSKEY, signer crypto.Signer) bool {
	want, err := base64.StdEncoding.DecodeString(dk.PublicKey)
	if err != nil {
		return false
	}
	return bytes.Equal(want, publicBytes(signer))
}

// publicBytes is the DNSKEY public key field (RFC 6605 §4, RFC 8080 §3)
// derived from the private key itself. (miekg/dns fills an ECDSA key's
// public half from the DNSKEY it was read with, so that half proves
// nothing about the pair.)
func publicBytes(signer crypto.Signer) []byte {
	switch p := signer.(type) {
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() || p.D == nil {
			return nil
		}
		var d [32]byte
		p.D.FillBytes(d[:])
		sk, err := ecdh.P256().NewPrivateKey(d[:])
		if err != nil {
			return nil
		}
		return sk.PublicKey().Bytes()[1:] // without the 0x04 of an uncompressed point
	case ed25519.PrivateKey:
		return append([]byte(nil), p.Public().(ed25519.PublicKey)...)
	}
	return nil
}

// Generate makes a new key pair for zone: a KSK (flags 257, also the
// combined key when the zone has no ZSK) or a ZSK (256). ttl is the
// DNSKEY TTL written in the .key file.
func Generate(zone string, alg uint8, ksk bool, ttl uint32, t Timing) (*Key, error) {
	if alg != ECDSAP256SHA256 && alg != ED25519 {
		return nil, fmt.Errorf("generate key: algorithm %d: want 13 (ECDSAP256SHA256) or 15 (ED25519)", alg)
	}
	zone = strings.ToLower(dns.Fqdn(zone))
	if _, ok := dns.IsDomainName(zone); !ok {
		return nil, fmt.Errorf("generate key: invalid zone name %q", zone)
	}
	dk := &dns.DNSKEY{
		Hdr:       dns.RR_Header{Name: zone, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: ttl},
		Flags:     dns.ZONE,
		Protocol:  3,
		Algorithm: alg,
	}
	if ksk {
		dk.Flags |= dns.SEP
	}
	bits := 256
	sk, err := dk.Generate(bits)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	signer, ok := sk.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("generate key: %T cannot sign", sk)
	}
	return &Key{DNSKEY: dk, Signer: signer, Tag: dk.KeyTag(), Timing: t}, nil
}

// BaseName is the BIND file name of the key without extension:
// K<zone>.+<alg>+<id>, the zone with its final dot.
func (k *Key) BaseName() string {
	return fmt.Sprintf("K%s+%03d+%05d", k.DNSKEY.Hdr.Name, k.DNSKEY.Algorithm, k.Tag)
}

// Write writes the key pair into dir as BIND does (the .private file
// readable by its owner only) and sets k.Path. It refuses to overwrite.
func (k *Key) Write(dir string) error {
	base := filepath.Join(dir, k.BaseName())
	role := "zone-signing"
	if k.SEP() {
		role = "key-signing"
	}
	var pub strings.Builder
	fmt.Fprintf(&pub, "; This is a %s key, keyid %d, for %s\n", role, k.Tag, k.DNSKEY.Hdr.Name)
	var priv strings.Builder
	priv.WriteString(k.DNSKEY.PrivateKeyString(k.Signer))
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"Created", k.Created}, {"Publish", k.Publish}, {"Activate", k.Activate}, {"Inactive", k.Inactive}, {"Delete", k.Delete}} {
		if f.t.IsZero() {
			continue
		}
		ts := f.t.UTC().Format(timeFormat)
		fmt.Fprintf(&pub, "; %s: %s (%s)\n", f.name, ts, f.t.UTC().Format(time.ANSIC))
		fmt.Fprintf(&priv, "%s: %s\n", f.name, ts)
	}
	pub.WriteString(k.DNSKEY.String() + "\n")
	if err := writeNew(base+".private", priv.String(), 0o600); err != nil {
		return err
	}
	if err := writeNew(base+".key", pub.String(), 0o644); err != nil {
		os.Remove(base + ".private")
		return err
	}
	k.Path = base + ".key"
	return nil
}

func writeNew(path, data string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write key: %w", err)
	}
	return nil
}

// DS returns the DS records for the key, SHA-256 (digest type 2), with
// the given TTL.
func (k *Key) DS(ttl uint32) *dns.DS {
	ds := k.DNSKEY.ToDS(dns.SHA256)
	ds.Hdr.Ttl = ttl
	return ds
}

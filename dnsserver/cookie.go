package dnsserver

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
	"time"
)

// DNS Cookies (RFC 7873) with the interoperable server cookie of RFC 9018:
// a client sends an 8-byte client cookie, we answer with a 16-byte server
// cookie
//
//	version 1 | 3 reserved zero bytes | timestamp (4) | hash (8)
//
// whose hash is SipHash-2-4 of the client cookie, the first 8 bytes of the
// server cookie and the client's address, keyed with a 128-bit secret.
// A client that brings a valid server cookie back has proved it receives
// what is sent to its address, so it is exempt from rate limiting; every
// node that shares the secret (cookies.secret_file) accepts the cookies of
// the others, which anycast and round-robin NS sets need.

const (
	optCookie        = 10 // RFC 7873 option code
	clientCookieLen  = 8
	serverCookieLen  = 16 // RFC 9018 §4
	cookieVersion    = 1
	cookieMaxAge     = time.Hour        // RFC 9018 §4.3: older is invalid
	cookieRefreshAge = 30 * time.Minute // older is replaced by a fresh one
	cookieMaxAhead   = 5 * time.Minute  // newer than now+this is invalid
)

// What a query's COOKIE option turned out to be.
const (
	cookieNone    = iota // no COOKIE option
	cookieClient         // a client cookie alone
	cookieInvalid        // with a server cookie we did not make, or too old
	cookieValid
)

var cookieStateNames = [...]string{"none", "client_only", "invalid", "valid"}

// CookieSecret is a 128-bit SipHash key.
type CookieSecret [16]byte

// ParseCookieSecret reads a secret as a secret file holds it: 32
// hexadecimal digits (e.g. from `openssl rand -hex 16`), blanks around
// them ignored.
func ParseCookieSecret(text string) (CookieSecret, error) {
	var s CookieSecret
	t := strings.TrimSpace(text)
	if len(t) != 2*len(s) {
		return s, fmt.Errorf("parse cookie secret: %d characters, want %d hexadecimal digits (a 128-bit key, e.g. from `openssl rand -hex 16`)", len(t), 2*len(s))
	}
	if _, err := hex.Decode(s[:], []byte(t)); err != nil {
		return s, fmt.Errorf("parse cookie secret: want %d hexadecimal digits: %w", 2*len(s), err)
	}
	if s == (CookieSecret{}) {
		return s, errors.New("parse cookie secret: all zero; generate one with `openssl rand -hex 16`")
	}
	return s, nil
}

// RandomCookieSecret is a fresh secret for a node that shares none.
func RandomCookieSecret() CookieSecret {
	var s CookieSecret
	rand.Read(s[:])
	return s
}

// cookieSecrets is what the hot path reads: the secret new cookies are
// made with and the one before it, still accepted (RFC 9018 §5).
type cookieSecrets struct {
	cur, prev CookieSecret
	hasPrev   bool
}

// SetCookieSecret makes s the secret of new server cookies. Cookies made
// with the secret it replaces stay valid until they expire, so clients
// are not bounced with BADCOOKIE by a rotation. Setting the secret in
// force again changes nothing.
func (s *Server) SetCookieSecret(sec CookieSecret) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	cur := s.cookies.Load()
	if cur != nil && cur.cur == sec {
		return
	}
	n := &cookieSecrets{cur: sec}
	if cur != nil {
		n.prev, n.hasPrev = cur.cur, true
	}
	s.cookies.Store(n)
}

// checkCookie judges the server cookie a query brought, if any. The query
// holds the option as parsed; client is the packet's source.
func (q *query) checkCookie(cs *cookieSecrets, client netip.Addr, now uint32) {
	if !q.hasCookie {
		q.cookie = cookieNone
		return
	}
	q.cookie = cookieClient
	if len(q.srvCookie) == 0 {
		return
	}
	q.cookie = cookieInvalid
	sc := q.srvCookie
	if cs == nil || len(sc) != serverCookieLen || sc[0] != cookieVersion || sc[1]|sc[2]|sc[3] != 0 {
		return
	}
	// Serial-number arithmetic (RFC 1982) on the timestamp, as RFC 9018
	// §4.3 asks: the difference is signed.
	age := int32(now - binary.BigEndian.Uint32(sc[4:]))
	if age > int32(cookieMaxAge/time.Second) || age < -int32(cookieMaxAhead/time.Second) {
		return
	}
	want := binary.LittleEndian.Uint64(sc[8:])
	cur := cookieHash(&cs.cur, &q.clientCookie, sc[:8], client) == want
	if !cur && !(cs.hasPrev && cookieHash(&cs.prev, &q.clientCookie, sc[:8], client) == want) {
		return
	}
	q.cookie = cookieValid
	// A fresh cookie of the current secret is echoed as it came (RFC 9018
	// §4.3 allows it); an older one, or one of the previous secret, is
	// replaced, so clients move to the new secret after a rotation.
	q.echoCookie = cur && age <= int32(cookieRefreshAge/time.Second)
}

// putServerCookie writes the server cookie of a response into b (16
// bytes): the one the client brought when it is still fresh, else a new
// one made with the current secret.
func (q *query) putServerCookie(b []byte, cs *cookieSecrets, client netip.Addr, now uint32) {
	if q.echoCookie {
		copy(b, q.srvCookie)
		return
	}
	b[0] = cookieVersion
	b[1], b[2], b[3] = 0, 0, 0
	binary.BigEndian.PutUint32(b[4:], now)
	var h uint64
	if cs != nil {
		h = cookieHash(&cs.cur, &q.clientCookie, b[:8], client)
	}
	// SipHash's output is a little-endian number (RFC 9018 appendix A).
	binary.LittleEndian.PutUint64(b[8:], h)
}

// cookieHash is the RFC 9018 §4.4 hash: SipHash-2-4 over client cookie |
// version | reserved | timestamp | client address (4 or 16 bytes).
func cookieHash(key *CookieSecret, cc *[8]byte, head []byte, client netip.Addr) uint64 {
	var m [8 + 8 + 16]byte
	copy(m[:], cc[:])
	copy(m[8:], head[:8])
	n := 16
	if client.Is4() || client.Is4In6() {
		a := client.Unmap().As4()
		n += copy(m[16:], a[:])
	} else {
		a := client.As16()
		n += copy(m[16:], a[:])
	}
	return sipHash24(key, m[:n])
}

// sipHash24 is SipHash-2-4 (Aumasson and Bernstein) with a 128-bit key.
func sipHash24(key *CookieSecret, m []byte) uint64 {
	k0 := binary.LittleEndian.Uint64(key[:8])
	k1 := binary.LittleEndian.Uint64(key[8:])
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	length := len(m)
	for len(m) >= 8 {
		w := binary.LittleEndian.Uint64(m)
		v3 ^= w
		round()
		round()
		v0 ^= w
		m = m[8:]
	}
	var last [8]byte
	copy(last[:], m)
	last[7] = byte(length)
	w := binary.LittleEndian.Uint64(last[:])
	v3 ^= w
	round()
	round()
	v0 ^= w
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}

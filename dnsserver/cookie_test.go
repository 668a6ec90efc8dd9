package dnsserver

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestSipHash checks SipHash-2-4 against the reference vectors of the
// SipHash paper (key 00..0f, messages 00, 00 01, ...).
func TestSipHash(t *testing.T) {
	var key CookieSecret
	for i := range key {
		key[i] = byte(i)
	}
	want := map[int]uint64{
		0:  0x726fdb47dd0e0e31,
		1:  0x74f839c593dc67fd,
		7:  0xab0200f58b01d137,
		8:  0x93f5f5799a932462,
		15: 0xa129ca6149be45e5,
		16: 0x3f2acc7f57c29bdb,
		63: 0x958a324ceb064572,
	}
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	for n, w := range want {
		if got := sipHash24(&key, msg[:n]); got != w {
			t.Errorf("siphash of %d bytes: %#x, want %#x", n, got, w)
		}
	}
}

// TestServerCookieRFC9018 reproduces the worked examples of RFC 9018
// appendix A.
func TestServerCookieRFC9018(t *testing.T) {
	cases := []struct {
		secret, client, ip string
		ts                 uint32
		want               string
	}{
		{"e5e973e5a6b2a43f48e7dc849e37bfcf", "2464c4abcf10c957", "198.51.100.100", 1559731985, "010000005cf79f111f8130c3eee29480"},
		{"dd3bdf9344b678b185a6f5cb60fca715", "22681ab97d52c298", "2001:db8:220:1:59de:d0f4:8769:82b8", 1559741817, "010000005cf7c57926556bd0934c72f8"},
	}
	for _, c := range cases {
		sec, err := ParseCookieSecret(c.secret)
		if err != nil {
			t.Fatal(err)
		}
		var q query
		q.hasCookie = true
		hex.Decode(q.clientCookie[:], []byte(c.client))
		got := make([]byte, 16)
		q.putServerCookie(got, &cookieSecrets{cur: sec}, netip.MustParseAddr(c.ip), c.ts)
		if hex.EncodeToString(got) != c.want {
			t.Errorf("server cookie for %s from %s: %x, want %s", c.client, c.ip, got, c.want)
		}
	}
}

func TestParseCookieSecret(t *testing.T) {
	for _, bad := range []string{"", "abc", strings.Repeat("0", 32), strings.Repeat("g", 32), strings.Repeat("a", 34)} {
		if _, err := ParseCookieSecret(bad); err == nil {
			t.Errorf("ParseCookieSecret(%q) accepted", bad)
		}
	}
	if _, err := ParseCookieSecret(" e5e973e5a6b2a43f48e7dc849e37bfcf\n"); err != nil {
		t.Error(err)
	}
}

// cookieQuery is a query with a COOKIE option: client cookie cc followed
// by the server cookie sc (hex, may be empty).
func cookieQuery(name string, cc, sc string) *dns.Msg {
	o := optWith(0, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cc + sc})
	return mkQuery(name, dns.TypeA, o)
}

// respCookie returns the COOKIE option of a response, hex.
func respCookie(t *testing.T, r *dns.Msg) string {
	t.Helper()
	if o := r.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if c, ok := e.(*dns.EDNS0_COOKIE); ok {
				return c.Cookie
			}
		}
	}
	return ""
}

func TestCookies(t *testing.T) {
	s := rrlFixture(t, 2)
	sec, _ := ParseCookieSecret("e5e973e5a6b2a43f48e7dc849e37bfcf")
	s.SetCookieSecret(sec)
	const cc = "2464c4abcf10c957"
	src := "198.51.100.100:5300"

	// A client cookie alone: answered, with our server cookie.
	r := handleMsg(t, s, cookieQuery("static.gslb.example.com.", cc, ""), src, false)
	got := respCookie(t, r)
	if len(got) != 48 || !strings.HasPrefix(got, cc+"01000000") || len(r.Answer) != 2 {
		t.Fatalf("answer to a client cookie: cookie %q, %d answers", got, len(r.Answer))
	}
	sc := got[16:]

	// Coming back with it: valid, echoed while fresh, never rate limited.
	for i := range 10 {
		r = handleMsg(t, s, cookieQuery("static.gslb.example.com.", cc, sc), src, false)
		if r == nil || r.Truncated || len(r.Answer) != 2 || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d with a valid cookie was limited: %v", i, r)
		}
		if c := respCookie(t, r); c != cc+sc {
			t.Fatalf("fresh server cookie not echoed: %s", c)
		}
	}
	if s.ctr.cookies[cookieValid].Load() != 10 {
		t.Errorf("valid cookies counted %d, want 10", s.ctr.cookies[cookieValid].Load())
	}
	// The same server cookie from another address is invalid: it is
	// answered (with a new cookie) but charged to the rate limiter, and a
	// slipped response is BADCOOKIE, not TC.
	other := "203.0.113.9:5300"
	var badcookie int
	for range 6 {
		r = handleMsg(t, s, cookieQuery("static.gslb.example.com.", cc, sc), other, false)
		if r == nil {
			continue
		}
		if c := respCookie(t, r); c == cc+sc || len(c) != 48 {
			t.Errorf("invalid cookie got %q back, want a new one", c)
		}
		if r.Rcode == dns.RcodeBadCookie {
			badcookie++
			if r.Truncated || len(r.Answer) != 0 {
				t.Errorf("BADCOOKIE with TC or answers: %v", r)
			}
		}
	}
	if badcookie != 2 {
		t.Errorf("6 queries with an invalid cookie at rate 2, slip 2: %d BADCOOKIE, want 2", badcookie)
	}

	// Rotation: cookies made with the previous secret stay valid.
	next, _ := ParseCookieSecret("dd3bdf9344b678b185a6f5cb60fca715")
	s.SetCookieSecret(next)
	r = handleMsg(t, s, cookieQuery("static.gslb.example.com.", cc, sc), src, false)
	if s.ctr.cookies[cookieValid].Load() != 11 {
		t.Errorf("cookie of the previous secret not accepted after rotation")
	}
	if c := respCookie(t, r); c == cc+sc || len(c) != 48 {
		t.Errorf("after a rotation the answer kept the previous secret's cookie: %s", c)
	}
	s.SetCookieSecret(RandomCookieSecret())
	handleMsg(t, s, cookieQuery("static.gslb.example.com.", cc, sc), src, false)
	if s.ctr.cookies[cookieValid].Load() != 11 {
		t.Errorf("cookie two secrets old accepted")
	}

	// A server cookie older than an hour is invalid; one older than half
	// an hour is valid but replaced.
	s.SetCookieSecret(sec)
	var q query
	hex.Decode(q.clientCookie[:], []byte(cc))
	mk := func(age uint32) string {
		b := make([]byte, 16)
		q.putServerCookie(b, s.cookies.Load(), netip.MustParseAddr("198.51.100.100"), cookieNow()-age)
		return hex.EncodeToString(b)
	}
	before := s.ctr.cookies[cookieValid].Load()
	r = handleMsg(t, s, cookieQuery("static.gslb.example.com.", cc, mk(2000)), src, false)
	if s.ctr.cookies[cookieValid].Load() != before+1 || respCookie(t, r) == cc+mk(2000) {
		t.Errorf("a 2000 s old cookie: valid %v, cookie %s", s.ctr.cookies[cookieValid].Load() == before+1, respCookie(t, r))
	}
	handleMsg(t, s, cookieQuery("static.gslb.example.com.", cc, mk(4000)), src, false)
	if s.ctr.cookies[cookieValid].Load() != before+1 {
		t.Error("a 4000 s old cookie was accepted")
	}

	// Malformed options are FORMERR (RFC 7873 §5.2.2).
	for _, bad := range []string{"2464c4ab", cc + "0102", cc + strings.Repeat("ab", 33)} {
		r = handleMsg(t, s, cookieQuery("static.gslb.example.com.", bad, ""), "192.0.2.77:53", true)
		if r == nil || r.Rcode != dns.RcodeFormatError {
			t.Errorf("cookie %q: %v, want FORMERR", bad, r)
		}
	}

	// A query with no question and only a cookie asks for a server
	// cookie (RFC 7873 §5.4).
	m := cookieQuery("static.gslb.example.com.", cc, "")
	m.Question = nil
	r = handleMsg(t, s, m, "192.0.2.78:53", false)
	if r == nil || r.Rcode != dns.RcodeSuccess || len(respCookie(t, r)) != 48 || len(r.Question) != 0 {
		t.Errorf("cookie query without a question: %v", r)
	}
	m.Extra = nil
	if r = handleMsg(t, s, m, "192.0.2.78:53", false); r == nil || r.Rcode != dns.RcodeFormatError {
		t.Errorf("no question and no cookie: %v, want FORMERR", r)
	}
	m = cookieQuery("static.gslb.example.com.", cc, strings.Repeat("ab", 16))
	m.Question = nil
	if r = handleMsg(t, s, m, "198.18.0.1:53", false); r == nil || r.Rcode != dns.RcodeBadCookie {
		t.Errorf("no question and a bad server cookie: %v, want BADCOOKIE", r)
	}
}

// TestCookieOverTruncation keeps the COOKIE option when the answer is
// truncated: its room is reserved like ECS's.
func TestCookieOverTruncation(t *testing.T) {
	s := handlerFixture(t)
	m := mkQuery("big.gslb.example.com.", dns.TypeTXT, optWith(0, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}))
	m.Extra[0].(*dns.OPT).SetUDPSize(512)
	r := handleMsg(t, s, m, "127.0.0.1:5300", false)
	if !r.Truncated || len(respCookie(t, r)) != 48 {
		t.Errorf("truncated answer: TC %v cookie %q", r.Truncated, respCookie(t, r))
	}
	b := pack(t, r)
	if len(b) > 512 {
		t.Errorf("response of %d bytes over a 512-byte buffer", len(b))
	}
}

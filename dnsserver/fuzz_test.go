package dnsserver

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"
)

var genCorpus = flag.Bool("gen-corpus", false, "rewrite testdata/fuzz/FuzzHandle from fuzzSeeds")

// fuzzSeeds are the interesting shapes of input: valid queries of every
// kind, and the ways a packet can lie (cut short, pointer loops, bad OPT,
// bad ECS). They are both f.Add seeds and, with -gen-corpus, the files of
// testdata/fuzz/FuzzHandle.
func fuzzSeeds(t testing.TB) map[string][]byte {
	good := pack(t, mkQuery("www.gslb.example.com.", dns.TypeA))
	seeds := map[string][]byte{
		"valid-pool":     good,
		"valid-ecs":      pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, ecsOpt(4096, "10.1.2.0/24"))),
		"valid-ecs6":     pack(t, mkQuery("geo.gslb.example.com.", dns.TypeAAAA, ecsOpt(1232, "2001:db8::/56"))),
		"valid-cname":    pack(t, mkQuery("chain1.gslb.example.com.", dns.TypeA)),
		"valid-wildcard": pack(t, mkQuery("a.b.wild.gslb.example.com.", dns.TypeA)),
		"valid-referral": pack(t, mkQuery("x.sub.gslb.example.com.", dns.TypeA)),
		"valid-any":      pack(t, mkQuery("gslb.example.com.", dns.TypeANY)),
		"valid-big":      pack(t, mkQuery("big.gslb.example.com.", dns.TypeTXT, ecsOpt(512, ""))),
		"header-only":    good[:12],
		"header-short":   good[:7],
		"name-cut":       good[:20],
		"badvers":        pack(t, mkQuery("static.gslb.example.com.", dns.TypeA, optWith(1))),
		"two-opt":        pack(t, mkQuery("static.gslb.example.com.", dns.TypeA, optWith(0), optWith(0))),
		"ecs-prefix-33":  pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 1, 33, 0, 1, 2, 3, 4, 5)))),
		"ecs-family-9":   pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 9, 8, 0, 10)))),
		"ecs-extra-bits": pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 1, 9, 0, 10, 0xFF)))),
		"ecs-short":      pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 1, 24)))),
		"cookie-client":  pack(t, cookieQuery("www.gslb.example.com.", "0102030405060708", "")),
		"cookie-server":  pack(t, cookieQuery("www.gslb.example.com.", "0102030405060708", "010000005cf79f111f8130c3eee29480")),
		"cookie-short":   pack(t, cookieQuery("www.gslb.example.com.", "01020304", "")),
		"axfr":           pack(t, mkQuery("gslb.example.com.", dns.TypeAXFR)),
		"do-pool":        pack(t, doQuery("www.gslb.example.com.", dns.TypeA, 1232)),
		"do-nxdomain":    pack(t, doQuery("nope.gslb.example.com.", dns.TypeA, 1232)),
		"do-nodata":      pack(t, doQuery("static.gslb.example.com.", dns.TypeTXT, 1232)),
		"do-referral":    pack(t, doQuery("x.secure.gslb.example.com.", dns.TypeA, 1232)),
		"do-dnskey":      pack(t, doQuery("gslb.example.com.", dns.TypeDNSKEY, 1232)),
		"do-big-512":     pack(t, doQuery("big.gslb.example.com.", dns.TypeTXT, 512)),
		"do-wildcard":    pack(t, doQuery("a.b.wild.gslb.example.com.", dns.TypeA, 1232)),
		"nxname":         pack(t, doQuery("www.gslb.example.com.", dns.TypeNXNAME, 1232)),
	}
	noQuestion := cookieQuery("www.gslb.example.com.", "0102030405060708", "")
	noQuestion.Question = nil
	seeds["cookie-no-question"] = pack(t, noQuestion)
	// Question name pointing at itself.
	seeds["question-pointer-loop"] = append(append([]byte{}, good[:12]...), 0xC0, 12, 0, 1, 0, 1)
	// An answer record whose owner points at itself, then one pointing
	// forward, past the end.
	loop := append([]byte{}, good...)
	binary.BigEndian.PutUint16(loop[6:], 2)
	at := len(loop)
	loop = append(loop, 0xC0, byte(at), 0, 1, 0, 1, 0, 0, 0, 0, 0, 0)
	loop = append(loop, 0xC0, 0xFF, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0)
	seeds["rr-pointer-loops"] = loop
	// OPT whose RDLENGTH runs past the packet.
	opt := pack(t, mkQuery("static.gslb.example.com.", dns.TypeA, optWith(0, &dns.EDNS0_LOCAL{Code: 10, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}})))
	binary.BigEndian.PutUint16(opt[len(opt)-14:], 200)
	seeds["opt-rdlen-overrun"] = opt
	// Huge section counts with no records behind them.
	counts := append([]byte{}, good...)
	binary.BigEndian.PutUint16(counts[6:], 0xFFFF)
	binary.BigEndian.PutUint16(counts[8:], 0xFFFF)
	binary.BigEndian.PutUint16(counts[10:], 0xFFFF)
	seeds["huge-counts"] = counts
	return seeds
}

func FuzzHandle(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b, false)
		f.Add(b, true)
	}
	// Every input goes to an unsigned server and to one whose main zone
	// is signed, so the signing path sees the same packets.
	unsigned, signed := handlerFixture(f), signedFixture(f)
	f.Fuzz(func(t *testing.T, pkt []byte, tcp bool) {
		for _, s := range []*Server{unsigned, signed} {
			fuzzOne(t, s, pkt, tcp)
		}
	})
}

// fuzzOne checks one input against s: junk dropped, everything else
// answered within the size limits with a response that parses.
func fuzzOne(t *testing.T, s *Server, pkt []byte, tcp bool) {
	buf := make([]byte, 0, 65535)
	resp := s.Handle(buf, pkt, benchSrc, tcp)
	if resp == nil {
		if len(pkt) >= headerLen && pkt[2]&0x80 == 0 {
			t.Fatalf("a sane header got no reply")
		}
		return
	}
	if len(pkt) < headerLen || pkt[2]&0x80 != 0 {
		t.Fatalf("replied to junk")
	}
	if !tcp && len(resp) > int(s.cfg.UDPSize) {
		t.Fatalf("UDP response of %d bytes exceeds udp_size %d", len(resp), s.cfg.UDPSize)
	}
	if resp[0] != pkt[0] || resp[1] != pkt[1] || resp[2]&0x80 == 0 {
		t.Fatalf("response header % x for query header % x", resp[:4], pkt[:4])
	}
	// Everything we send must parse.
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("unpack our response: %v\nquery % x\nresponse % x", err, pkt, resp)
	}
	checkTruncated(t, &m, resp)
}

// checkTruncated checks truncated on resp, whose unpacked form is m: the
// cut answer parses, keeps the ID, flags, rcode, question and OPT (with
// its options), sets TC and drops every other record.
func checkTruncated(t testing.TB, m *dns.Msg, resp []byte) {
	t.Helper()
	cut := truncated(append([]byte(nil), resp...))
	if cut == nil {
		t.Fatalf("truncated refused our own response % x", resp)
	}
	var c dns.Msg
	if err := c.Unpack(cut); err != nil {
		t.Fatalf("unpack the truncated response: %v\nresponse % x\ncut % x", err, resp, cut)
	}
	if c.Id != m.Id || !c.Truncated || c.Rcode != m.Rcode || c.Authoritative != m.Authoritative ||
		c.RecursionDesired != m.RecursionDesired || len(c.Answer) != 0 || len(c.Ns) != 0 {
		t.Fatalf("truncated: %v\nfrom %v", &c, m)
	}
	if fmt.Sprint(c.Question) != fmt.Sprint(m.Question) {
		t.Fatalf("truncated question %v, want %v", c.Question, m.Question)
	}
	want, got := m.IsEdns0(), c.IsEdns0()
	switch {
	case want == nil && len(c.Extra) != 0:
		t.Fatalf("truncated kept %v of an answer without OPT", c.Extra)
	case want != nil && (len(c.Extra) != 1 || got == nil || got.String() != want.String()):
		t.Fatalf("truncated extra %v, want only %v", c.Extra, want)
	}
}

// TestGenerateFuzzCorpus writes the seed corpus when run with -gen-corpus;
// otherwise it checks the committed corpus still holds every seed.
func TestGenerateFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzHandle")
	for name, b := range fuzzSeeds(t) {
		for _, tcp := range []bool{false, true} {
			p := filepath.Join(dir, fmt.Sprintf("%s-tcp-%v", name, tcp))
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%v)\n", b, tcp)
			if *genCorpus {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != body {
				t.Errorf("corpus file %s is missing or stale (err %v); run go test ./dnsserver/ -run TestGenerateFuzzCorpus -args -gen-corpus", p, err)
			}
		}
	}
}

// TestTruncatedCut feeds truncated every prefix of the answers to the
// fuzz seeds: a cut answer never panics it, and what it returns is never
// longer than what it got.
func TestTruncatedCut(t *testing.T) {
	s := signedFixture(t)
	for name, pkt := range fuzzSeeds(t) {
		resp := s.Handle(nil, pkt, benchSrc, false)
		for n := range len(resp) {
			if cut := truncated(append([]byte(nil), resp[:n]...)); len(cut) > n {
				t.Fatalf("%s: truncated made %d bytes of %d", name, len(cut), n)
			}
		}
	}
}

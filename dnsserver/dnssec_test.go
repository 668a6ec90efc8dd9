package dnsserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gslbd/dnssec"
	"gslbd/zones"
)

const signedOrigin = "gslb.example.com."

// signedKeys makes a key set for the test zone: a combined key, or a KSK
// and a ZSK.
func signedKeys(t testing.TB, alg uint8, split bool) []*dnssec.Key {
	t.Helper()
	gen := func(ksk bool) *dnssec.Key {
		k, err := dnssec.Generate(signedOrigin, alg, ksk, 300, dnssec.Timing{})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if split {
		return []*dnssec.Key{gen(true), gen(false)}
	}
	return []*dnssec.Key{gen(true)}
}

// signedZoneExtra adds a secure delegation (with DS) to the test zone.
const signedZoneExtra = `
[records.secure]
NS = ["ns.elsewhere.net."]
DS = ["12345 13 2 3B3A4F2A9E55C1B9E7F2D6D18F4E0C6E1E7E5BE45F6A1F4D2C3B1A0F9E8D7C6B"]
`

// signView loads the default test files, with a secure delegation added,
// and signs gslb.example.com. with keys.
func signView(t testing.TB, keys []*dnssec.Key) *zones.View {
	t.Helper()
	files := defaultFiles()
	files["zones/gslb.toml"] += signedZoneExtra
	v := loadView(t, files)
	z := v.Snap.Zone(signedOrigin)
	dz, err := dnssec.NewZone(signedOrigin, keys, 300)
	if err != nil {
		t.Fatal(err)
	}
	z.DNSSEC = dz
	return v
}

func startSigned(t testing.TB, keys []*dnssec.Key) (*Server, string) {
	t.Helper()
	s := New(Config{Listen: []string{"127.0.0.1:0"}, UDPSockets: 1}, testLogger(t), nil)
	s.Publish(signView(t, keys))
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		s.Shutdown(sctx)
		cancel()
	})
	return s, s.Addrs()[0].String()
}

func doQuery(name string, qtype uint16, size uint16) *dns.Msg {
	m := mkQuery(name, qtype, ecsOpt(size, ""))
	m.IsEdns0().SetDo()
	return m
}

// checkSigned verifies every RRset of the answer and authority sections
// of m (referral NS excepted) against keys, as a validator would: each
// has an RRSIG by a key of the zone, over exactly that RRset, with the
// owner's label count.
func checkSigned(t *testing.T, m *dns.Msg, keys []*dnssec.Key) {
	t.Helper()
	now := time.Now()
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		sets := map[string][]dns.RR{}
		var sigs []*dns.RRSIG
		for _, rr := range sec {
			if s, ok := rr.(*dns.RRSIG); ok {
				sigs = append(sigs, s)
				continue
			}
			k := strings.ToLower(rr.Header().Name) + "/" + dns.TypeToString[rr.Header().Rrtype]
			sets[k] = append(sets[k], rr)
		}
		for k, set := range sets {
			if set[0].Header().Rrtype == dns.TypeNS && !m.Authoritative {
				continue // a referral's NS are the child's, never signed
			}
			ok := false
			for _, s := range sigs {
				if !strings.EqualFold(s.Hdr.Name, set[0].Header().Name) || s.TypeCovered != set[0].Header().Rrtype {
					continue
				}
				for _, key := range keys {
					if key.Tag != s.KeyTag {
						continue
					}
					if err := s.Verify(key.DNSKEY, set); err != nil {
						t.Errorf("%s: signature by %d does not verify: %v", k, s.KeyTag, err)
						continue
					}
					if !s.ValidityPeriod(now) || int(s.Labels) != dns.CountLabel(set[0].Header().Name) {
						t.Errorf("%s: validity %d..%d labels %d", k, s.Inception, s.Expiration, s.Labels)
					}
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s: no valid RRSIG in\n%v", k, m)
			}
		}
	}
}

func nsecOf(m *dns.Msg) *dns.NSEC {
	for _, rr := range m.Ns {
		if n, ok := rr.(*dns.NSEC); ok {
			return n
		}
	}
	return nil
}

func TestSignedAnswers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alg   uint8
		split bool
	}{{"ECDSA-CSK", dnssec.ECDSAP256SHA256, false}, {"Ed25519-KSK+ZSK", dnssec.ED25519, true}} {
		t.Run(tc.name, func(t *testing.T) {
			keys := signedKeys(t, tc.alg, tc.split)
			s := New(Config{}, testLogger(t), nil)
			s.Publish(signView(t, keys))
			ask := func(q *dns.Msg, tcp bool) *dns.Msg {
				t.Helper()
				resp := s.Handle(make([]byte, 0, 65535), pack(t, q), benchSrc, tcp)
				var m dns.Msg
				if err := m.Unpack(resp); err != nil {
					t.Fatalf("unpack: %v", err)
				}
				return &m
			}
			for _, c := range []struct {
				name  string
				qtype uint16
				an    int // answer RRs without RRSIGs
				nsec  []uint16
				nx    bool
			}{
				{"www.gslb.example.com.", dns.TypeA, 2, nil, false},
				{"WWW.gslb.example.com.", dns.TypeAAAA, 2, nil, false},
				{"geo.gslb.example.com.", dns.TypeA, 1, nil, false},
				{"static.gslb.example.com.", dns.TypeA, 2, nil, false},
				{"chain1.gslb.example.com.", dns.TypeA, 4, nil, false},
				{"api.gslb.example.com.", dns.TypeAAAA, 3, nil, false},
				{"x.wild.gslb.example.com.", dns.TypeA, 1, nil, false},
				{"gslb.example.com.", dns.TypeMX, 1, nil, false},
				{"gslb.example.com.", dns.TypeDNSKEY, len(keys), nil, false},
				{"gslb.example.com.", dns.TypeCDS, 1, nil, false},
				{"gslb.example.com.", dns.TypeCDNSKEY, 1, nil, false},
				{"gslb.example.com.", dns.TypeANY, 1, nil, false},
				{"geo.gslb.example.com.", dns.TypeANY, 1, nil, false},
				{"nope.gslb.example.com.", dns.TypeA, 0, []uint16{dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNXNAME}, true},
				{"dangling.gslb.example.com.", dns.TypeA, 1, []uint16{dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNXNAME}, true},
				{"static.gslb.example.com.", dns.TypeTXT, 0, []uint16{dns.TypeA, dns.TypeRRSIG, dns.TypeNSEC}, false},
				{"v4only.gslb.example.com.", dns.TypeAAAA, 0, []uint16{dns.TypeA, dns.TypeRRSIG, dns.TypeNSEC}, false},
				{"www.gslb.example.com.", dns.TypeMX, 0, []uint16{dns.TypeA, dns.TypeTXT, dns.TypeAAAA, dns.TypeRRSIG, dns.TypeNSEC}, false},
				{"b.ent.gslb.example.com.", dns.TypeA, 0, []uint16{dns.TypeRRSIG, dns.TypeNSEC}, false},
				{"y.wild.gslb.example.com.", dns.TypeTXT, 0, []uint16{dns.TypeA, dns.TypeRRSIG, dns.TypeNSEC}, false},
				{"gslb.example.com.", dns.TypeSRV, 0, []uint16{dns.TypeNS, dns.TypeSOA, dns.TypeMX, dns.TypeTXT, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY, dns.TypeCAA}, false},
				{"sub.gslb.example.com.", dns.TypeDS, 0, []uint16{dns.TypeNS, dns.TypeRRSIG, dns.TypeNSEC}, false},
				{"secure.gslb.example.com.", dns.TypeDS, 1, nil, false},
			} {
				for _, tcp := range []bool{false, true} {
					m := ask(doQuery(c.name, c.qtype, 1232), tcp)
					label := fmt.Sprintf("%s %s tcp=%v", c.name, dns.TypeToString[c.qtype], tcp)
					if m.Rcode != dns.RcodeSuccess || !m.Authoritative || m.Truncated || !m.IsEdns0().Do() {
						t.Errorf("%s: rcode %s aa %v tc %v do %v", label, dns.RcodeToString[m.Rcode], m.Authoritative, m.Truncated, m.IsEdns0().Do())
					}
					an := 0
					for _, rr := range m.Answer {
						if rr.Header().Rrtype != dns.TypeRRSIG {
							an++
						}
					}
					if an != c.an {
						t.Errorf("%s: %d answers, want %d:\n%v", label, an, c.an, m)
					}
					checkSigned(t, m, keys)
					nsec := nsecOf(m)
					if c.nsec == nil {
						if nsec != nil {
							t.Errorf("%s: NSEC in a positive answer", label)
						}
						continue
					}
					if nsec == nil {
						t.Errorf("%s: no NSEC:\n%v", label, m)
						continue
					}
					if !slices.Equal(nsec.TypeBitMap, c.nsec) {
						t.Errorf("%s: NSEC types %v, want %v", label, nsec.TypeBitMap, c.nsec)
					}
					if !strings.EqualFold(nsec.NextDomain, `\000.`+nsec.Hdr.Name) || nsec.Hdr.Ttl != 60 {
						t.Errorf("%s: NSEC %v: want next \\000.owner and the negative TTL 60", label, nsec)
					}
				}
			}

			// Without DO: the unsigned answers, NXDOMAIN included.
			for _, q := range []*dns.Msg{mkQuery("nope.gslb.example.com.", dns.TypeA, ecsOpt(1232, "")), mkQuery("www.gslb.example.com.", dns.TypeA)} {
				m := ask(q, false)
				for _, rr := range append(append(m.Answer, m.Ns...), m.Extra...) {
					if t := rr.Header().Rrtype; t == dns.TypeRRSIG || t == dns.TypeNSEC {
						panic(fmt.Sprintf("%v in an answer without DO", rr))
					}
				}
				if q.Question[0].Name == "nope.gslb.example.com." && m.Rcode != dns.RcodeNameError {
					t.Errorf("NXDOMAIN without DO: rcode %s", dns.RcodeToString[m.Rcode])
				}
			}
			// DNSKEY is there without DO too.
			if m := ask(mkQuery(signedOrigin, dns.TypeDNSKEY), false); len(m.Answer) != len(keys) {
				t.Errorf("DNSKEY without DO: %v", m.Answer)
			}

			// A referral proves that the child has no DS.
			m := ask(doQuery("www.sub.gslb.example.com.", dns.TypeA, 1232), false)
			if m.Authoritative || nsecOf(m) == nil || !slices.Equal(nsecOf(m).TypeBitMap, []uint16{dns.TypeNS, dns.TypeRRSIG, dns.TypeNSEC}) {
				t.Errorf("signed referral: %v", m)
			}
			checkSigned(t, m, keys)
			// A referral to a signed child carries its signed DS instead;
			// without DO, neither.
			m = ask(doQuery("www.secure.gslb.example.com.", dns.TypeA, 1232), false)
			ds := 0
			for _, rr := range m.Ns {
				if rr.Header().Rrtype == dns.TypeDS {
					ds++
				}
			}
			if m.Authoritative || ds != 1 || nsecOf(m) != nil {
				t.Errorf("signed referral to a secure child: %v", m)
			}
			checkSigned(t, m, keys)
			m = ask(mkQuery("www.secure.gslb.example.com.", dns.TypeA), false)
			for _, rr := range m.Ns {
				if t := rr.Header().Rrtype; t == dns.TypeDS || t == dns.TypeRRSIG || t == dns.TypeNSEC {
					panic(fmt.Sprintf("%v in a referral without DO", rr))
				}
			}

			// Explicit NXNAME questions are a format error (RFC 9824 §3.5).
			if m := ask(doQuery("www.gslb.example.com.", dns.TypeNXNAME, 1232), false); m.Rcode != dns.RcodeFormatError {
				t.Errorf("NXNAME query: %s", dns.RcodeToString[m.Rcode])
			}

			// A signed answer that does not fit goes out truncated, never
			// without its signatures; TCP carries all of it.
			m = ask(doQuery("big.gslb.example.com.", dns.TypeTXT, 600), false)
			if !m.Truncated || len(m.Answer) != 0 {
				t.Errorf("big TXT with DO in 600 bytes: tc %v, %d answers", m.Truncated, len(m.Answer))
			}
			m = ask(doQuery("big.gslb.example.com.", dns.TypeTXT, 600), true)
			if m.Truncated || len(m.Answer) != 8+len(keys)-btoi(tc.split) {
				t.Errorf("big TXT over TCP: tc %v, %d answers", m.Truncated, len(m.Answer))
			}
			checkSigned(t, m, keys)
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// signedHot are the DO queries of the signed benchmarks and allocation
// budget.
func signedHot() []hotQuery {
	do := func(name string, t uint16) *dns.Msg { return doQuery(name, t, 1232) }
	return []hotQuery{
		{"Static", do("static.gslb.example.com.", dns.TypeA), 3, dns.RcodeSuccess},
		{"Pool", do("www.gslb.example.com.", dns.TypeA), 3, dns.RcodeSuccess},
		{"PoolECS", mkQuery("geo.gslb.example.com.", dns.TypeA, ecsOptDO(1232, "10.1.2.0/24")), 2, dns.RcodeSuccess},
		{"CNAMEChain", do("chain1.gslb.example.com.", dns.TypeA), 7, dns.RcodeSuccess},
		{"Wildcard", do("x.wild.gslb.example.com.", dns.TypeA), 2, dns.RcodeSuccess},
		{"NXDOMAIN", do("nope.gslb.example.com.", dns.TypeA), 0, dns.RcodeSuccess},
		{"NODATA", do("static.gslb.example.com.", dns.TypeTXT), 0, dns.RcodeSuccess},
		{"DNSKEY", do(signedOrigin, dns.TypeDNSKEY), 2, dns.RcodeSuccess},
	}
}

func ecsOptDO(size uint16, prefix string) *dns.OPT {
	o := ecsOpt(size, prefix)
	o.SetDo()
	return o
}

func signedFixture(t testing.TB) *Server {
	s := New(Config{}, testLogger(t), nil)
	s.Publish(signView(t, signedKeys(t, dnssec.ECDSAP256SHA256, false)))
	return s
}

// TestSignedAllocs: once the signatures are cached, a signed answer
// allocates nothing, like an unsigned one.
func TestSignedAllocs(t *testing.T) {
	s := signedFixture(t)
	for _, hq := range signedHot() {
		pkt := checkHot(t, s, hq)
		buf := make([]byte, 0, 65535)
		for _, tcp := range []bool{false, true} {
			if n := testing.AllocsPerRun(200, func() { s.Handle(buf, pkt, benchSrc, tcp) }); n != 0 {
				t.Errorf("%s tcp=%v: %.1f allocations per signed query, want 0", hq.name, tcp, n)
			}
		}
	}
}

func benchSigned(b *testing.B, name string) {
	s := signedFixture(b)
	for _, hq := range signedHot() {
		if hq.name != name {
			continue
		}
		pkt := checkHot(b, s, hq)
		buf := make([]byte, 0, 65535)
		b.ReportAllocs()
		for b.Loop() {
			s.Handle(buf, pkt, benchSrc, false)
		}
		return
	}
	b.Fatalf("no query %q", name)
}

func BenchmarkSignedStatic(b *testing.B)   { benchSigned(b, "Static") }
func BenchmarkSignedPool(b *testing.B)     { benchSigned(b, "Pool") }
func BenchmarkSignedPoolECS(b *testing.B)  { benchSigned(b, "PoolECS") }
func BenchmarkSignedNXDOMAIN(b *testing.B) { benchSigned(b, "NXDOMAIN") }
func BenchmarkSignedNODATA(b *testing.B)   { benchSigned(b, "NODATA") }

// BenchmarkSignedMiss measures a signed answer whose signatures are not
// cached: every query asks for a name nobody asked before, so its NSEC
// is signed anew (the cost a random-name flood imposes).
func BenchmarkSignedMiss(b *testing.B) {
	s := signedFixture(b)
	buf := make([]byte, 0, 65535)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		pkt := pack(b, doQuery(fmt.Sprintf("n%d.gslb.example.com.", i), dns.TypeA, 1232))
		s.Handle(buf, pkt, benchSrc, false)
	}
}

// delvPath finds delv; missing, the test fails (Debian: bind9-dnsutils,
// which dnsutils pulls in).
func delvPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("delv")
	if err != nil {
		t.Fatalf("delv not found (%v): install it (Debian: apt-get install bind9-dnsutils); this test does not skip", err)
	}
	return p
}

// trustAnchor writes the zone's SEP keys as a delv/named trust-anchors
// file.
func trustAnchor(t *testing.T, keys []*dnssec.Key) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("trust-anchors {\n")
	for _, k := range keys {
		if k.SEP() {
			fmt.Fprintf(&b, "  %q static-key %d %d %d %q;\n", k.DNSKEY.Hdr.Name, k.DNSKEY.Flags, k.DNSKEY.Protocol, k.DNSKEY.Algorithm, k.DNSKEY.PublicKey)
		}
	}
	b.WriteString("};\n")
	p := filepath.Join(t.TempDir(), "anchor.conf")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// delv asks addr for name/type and validates the answer itself, with the
// zone's key as its only trust anchor.
func delv(t *testing.T, addr, anchor, name, qtype string, extra ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"@" + host, "-p", port, "-a", anchor, "+root=" + signedOrigin, "+nortrace", name, qtype}, extra...)
	out, _ := exec.CommandContext(ctx, delvPath(t), args...).CombinedOutput()
	return string(out)
}

// TestDelvValidates: BIND's validator, given only the zone's key, fully
// validates every kind of answer: pool answers (geo too), static data,
// CNAME chains, wildcards, the apex keys, and both kinds of denial.
func TestDelvValidates(t *testing.T) {
	delvPath(t)
	for _, tc := range []struct {
		name  string
		alg   uint8
		split bool
	}{{"ECDSA-CSK", dnssec.ECDSAP256SHA256, false}, {"Ed25519-KSK+ZSK", dnssec.ED25519, true}} {
		t.Run(tc.name, func(t *testing.T) {
			keys := signedKeys(t, tc.alg, tc.split)
			_, addr := startSigned(t, keys)
			anchor := trustAnchor(t, keys)
			for _, c := range []struct {
				name, qtype, want string
			}{
				{"www.gslb.example.com.", "A", "; fully validated"},
				{"www.gslb.example.com.", "AAAA", "; fully validated"},
				{"geo.gslb.example.com.", "A", "; fully validated"},
				{"static.gslb.example.com.", "A", "; fully validated"},
				{"chain1.gslb.example.com.", "A", "; fully validated"},
				{"api.gslb.example.com.", "A", "; fully validated"},
				{"x.wild.gslb.example.com.", "A", "; fully validated"},
				{"gslb.example.com.", "MX", "; fully validated"},
				{"gslb.example.com.", "DNSKEY", "; fully validated"},
				{"gslb.example.com.", "CDS", "; fully validated"},
				{"_sip._udp.gslb.example.com.", "SRV", "; fully validated"},
				{"nope.gslb.example.com.", "A", "; negative response, fully validated"},
				{"static.gslb.example.com.", "TXT", "; negative response, fully validated"},
				{"v4only.gslb.example.com.", "AAAA", "; negative response, fully validated"},
				{"b.ent.gslb.example.com.", "A", "; negative response, fully validated"},
				{"y.wild.gslb.example.com.", "MX", "; negative response, fully validated"},
			} {
				out := delv(t, addr, anchor, c.name, c.qtype)
				if !strings.Contains(out, c.want) {
					t.Errorf("delv %s %s: want %q:\n%s", c.name, c.qtype, c.want, out)
				}
			}
			// The control: with a key the zone does not have as the anchor,
			// nothing validates.
			wrong := trustAnchor(t, signedKeys(t, tc.alg, false))
			if out := delv(t, addr, wrong, "www.gslb.example.com.", "A"); strings.Contains(out, "fully validated") {
				t.Errorf("delv validated with a foreign trust anchor:\n%s", out)
			}
		})
	}
}

package dnsserver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// handlerFixture is a published server that is never started: benchmarks
// and the allocation budget drive Handle directly, packed query in,
// packed response out.
func handlerFixture(t testing.TB) *Server {
	s := New(Config{}, testLogger(t), nil)
	s.Publish(loadView(t, defaultFiles()))
	return s
}

var benchSrc = netip.MustParseAddrPort("127.0.0.1:40000")

type hotQuery struct {
	name string
	msg  *dns.Msg
	// answers is what a correct response carries, so a benchmark of a
	// broken path fails instead of measuring it.
	answers int
	rcode   int
}

func hotQueries() []hotQuery {
	return []hotQuery{
		{"Static", mkQuery("static.gslb.example.com.", dns.TypeA), 2, dns.RcodeSuccess},
		{"StaticEDNS", mkQuery("static.gslb.example.com.", dns.TypeA, ecsOpt(1232, "")), 2, dns.RcodeSuccess},
		{"Pool", mkQuery("www.gslb.example.com.", dns.TypeA), 2, dns.RcodeSuccess},
		{"PoolECS", mkQuery("geo.gslb.example.com.", dns.TypeA, ecsOpt(1232, "10.1.2.0/24")), 1, dns.RcodeSuccess},
		{"PoolECS6", mkQuery("geo.gslb.example.com.", dns.TypeAAAA, ecsOpt(1232, "2001:db8:77::/56")), 1, dns.RcodeSuccess},
		{"PoolAffinityECS", mkQuery("aff.gslb.example.com.", dns.TypeA, ecsOpt(1232, "10.1.2.0/24")), 1, dns.RcodeSuccess},
		{"CNAMEChain", mkQuery("chain1.gslb.example.com.", dns.TypeA), 4, dns.RcodeSuccess},
		{"Wildcard", mkQuery("x.wild.gslb.example.com.", dns.TypeA), 1, dns.RcodeSuccess},
		{"NXDOMAIN", mkQuery("nope.gslb.example.com.", dns.TypeA), 0, dns.RcodeNameError},
		{"Refused", mkQuery("example.org.", dns.TypeA), 0, dns.RcodeRefused},
	}
}

func checkHot(t testing.TB, s *Server, hq hotQuery) []byte {
	t.Helper()
	pkt := pack(t, hq.msg)
	buf := make([]byte, 0, 65535)
	resp := s.Handle(buf, pkt, benchSrc, false)
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("%s: unpack: %v", hq.name, err)
	}
	if m.Rcode != hq.rcode || len(m.Answer) != hq.answers {
		t.Fatalf("%s: rcode %s with %d answers, want %s with %d", hq.name, dns.RcodeToString[m.Rcode], len(m.Answer), dns.RcodeToString[hq.rcode], hq.answers)
	}
	return pkt
}

func benchHandle(b *testing.B, name string) {
	s := handlerFixture(b)
	for _, hq := range hotQueries() {
		if hq.name != name {
			continue
		}
		pkt := checkHot(b, s, hq)
		buf := make([]byte, 0, 65535)
		b.ReportAllocs()
		b.SetBytes(int64(len(pkt)))
		for b.Loop() {
			s.Handle(buf, pkt, benchSrc, false)
		}
		return
	}
	b.Fatalf("no query %q", name)
}

func BenchmarkServeStatic(b *testing.B)          { benchHandle(b, "Static") }
func BenchmarkServeStaticEDNS(b *testing.B)      { benchHandle(b, "StaticEDNS") }
func BenchmarkServePool(b *testing.B)            { benchHandle(b, "Pool") }
func BenchmarkServePoolECS(b *testing.B)         { benchHandle(b, "PoolECS") }
func BenchmarkServePoolECS6(b *testing.B)        { benchHandle(b, "PoolECS6") }
func BenchmarkServePoolAffinityECS(b *testing.B) { benchHandle(b, "PoolAffinityECS") }
func BenchmarkServeCNAMEChain(b *testing.B)      { benchHandle(b, "CNAMEChain") }
func BenchmarkServeWildcard(b *testing.B)        { benchHandle(b, "Wildcard") }
func BenchmarkServeNXDOMAIN(b *testing.B)        { benchHandle(b, "NXDOMAIN") }

// BenchmarkServeParallel runs the pool-with-ECS query on every P, as the
// SO_REUSEPORT readers do, to show the path shares nothing hot.
func BenchmarkServeParallel(b *testing.B) {
	s := handlerFixture(b)
	pkt := checkHot(b, s, hotQueries()[3])
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 65535)
		for pb.Next() {
			s.Handle(buf, pkt, benchSrc, false)
		}
	})
}

// TestAllocs is the allocation budget of the hot path: zero for every
// query kind, static, pool, pool with ECS, negative, refused. The only
// heap memory a query touches is the pooled Select scratch, warmed here
// by the first call.
func TestAllocs(t *testing.T) {
	s := handlerFixture(t)
	for _, hq := range hotQueries() {
		pkt := checkHot(t, s, hq)
		buf := make([]byte, 0, 65535)
		allocs := testing.AllocsPerRun(200, func() { s.Handle(buf, pkt, benchSrc, false) })
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per query, want 0", hq.name, allocs)
		}
		tcpAllocs := testing.AllocsPerRun(200, func() { s.Handle(buf, pkt, benchSrc, true) })
		if tcpAllocs != 0 {
			t.Errorf("%s over TCP: %.1f allocations per query, want 0", hq.name, tcpAllocs)
		}
	}
}

// rrlOn is a limiter that lets the benchmark's one client through: the
// bucket is charged on every query, as in production, but never runs dry.
var rrlOn = RRLConfig{ResponsesPerSecond: 1 << 30, NXDomainsPerSecond: 1 << 30, ErrorsPerSecond: 1 << 30}

// rrlTight limits everything after the first response, so the benchmark
// measures the dropped and slipped paths.
var rrlTight = RRLConfig{ResponsesPerSecond: 1, NXDomainsPerSecond: 1, ErrorsPerSecond: 1}

func benchRRL(b *testing.B, cfg RRLConfig, m *dns.Msg) {
	s := New(Config{RRL: cfg}, testLogger(b), nil)
	s.Publish(loadView(b, defaultFiles()))
	pkt := pack(b, m)
	buf := make([]byte, 0, 65535)
	b.ReportAllocs()
	for b.Loop() {
		s.Handle(buf, pkt, benchSrc, false)
	}
}

// The RRL benchmarks are the pool query of BenchmarkServePool with the
// limiter on; compare the two for its cost.
func BenchmarkServePoolRRL(b *testing.B) {
	benchRRL(b, rrlOn, mkQuery("www.gslb.example.com.", dns.TypeA))
}

func BenchmarkServePoolRRLLimited(b *testing.B) {
	benchRRL(b, rrlTight, mkQuery("www.gslb.example.com.", dns.TypeA))
}

func BenchmarkServeNXDOMAINRRL(b *testing.B) {
	benchRRL(b, rrlOn, mkQuery("nope.gslb.example.com.", dns.TypeA))
}

// BenchmarkServePoolCookie carries a client cookie alone: the server
// makes a new server cookie (one SipHash) for every answer.
func BenchmarkServePoolCookie(b *testing.B) {
	benchRRL(b, rrlOn, cookieQuery("www.gslb.example.com.", "0102030405060708", ""))
}

// BenchmarkServePoolValidCookie brings back a fresh server cookie: one
// SipHash to check it, then exempt from the limiter.
func BenchmarkServePoolValidCookie(b *testing.B) {
	s := New(Config{RRL: rrlTight}, testLogger(b), nil)
	s.Publish(loadView(b, defaultFiles()))
	pkt := validCookieQuery(b, s, "www.gslb.example.com.")
	buf := make([]byte, 0, 65535)
	b.ReportAllocs()
	for b.Loop() {
		if len(s.Handle(buf, pkt, benchSrc, false)) == 0 {
			b.Fatal("a query with a valid cookie was dropped")
		}
	}
}

// validCookieQuery asks once with a client cookie and returns the packed
// query carrying the server cookie that came back.
func validCookieQuery(t testing.TB, s *Server, name string) []byte {
	const cc = "0102030405060708"
	resp := s.Handle(nil, pack(t, cookieQuery(name, cc, "")), benchSrc, true)
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	for _, o := range m.IsEdns0().Option {
		if c, ok := o.(*dns.EDNS0_COOKIE); ok {
			return pack(t, cookieQuery(name, cc, c.Cookie[16:]))
		}
	}
	t.Fatal("no cookie in the answer")
	return nil
}

// TestAllocsRRL extends the allocation budget to rate limiting and
// cookies: zero for charged, dropped and slipped responses, and for
// queries with client and server cookies.
func TestAllocsRRL(t *testing.T) {
	for _, cfg := range []RRLConfig{rrlOn, rrlTight} {
		s := New(Config{RRL: cfg}, testLogger(t), nil)
		s.Publish(loadView(t, defaultFiles()))
		pkts := map[string][]byte{
			"valid-cookie":  validCookieQuery(t, s, "www.gslb.example.com."),
			"client-cookie": pack(t, cookieQuery("www.gslb.example.com.", "0102030405060708", "")),
		}
		for _, hq := range hotQueries() {
			pkts[hq.name] = pack(t, hq.msg)
		}
		buf := make([]byte, 0, 65535)
		for name, pkt := range pkts {
			s.Handle(buf, pkt, benchSrc, false) // warm the pooled scratch
			if allocs := testing.AllocsPerRun(200, func() { s.Handle(buf, pkt, benchSrc, false) }); allocs != 0 {
				t.Errorf("%s with rate %d: %.1f allocations per query, want 0", name, cfg.ResponsesPerSecond, allocs)
			}
		}
		if cfg == rrlTight && s.ctr.rrlSlipped[rrlResponses].Load() == 0 {
			t.Error("the tight limiter slipped nothing: the budget did not cover that path")
		}
	}
}

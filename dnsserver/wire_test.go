package dnsserver

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// rrText renders an RR as "owner ttl TYPE rdata", the form the tables use.
func rrText(rr dns.RR) string {
	f := strings.Fields(rr.String())
	// owner ttl class type rdata...
	return strings.Join(append(f[:2:2], f[3:]...), " ")
}

func rrTexts(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, rrText(rr))
	}
	slices.Sort(out)
	return out
}

type wireCase struct {
	name   string
	qname  string
	qtype  uint16
	edns   bool   // send OPT (UDP size 1232)
	ecs    string // ECS prefix to send (implies edns)
	rcode  int
	aa     bool
	tc     bool
	answer []string
	ns     []string
	extra  []string
	// scope is the ECS scope expected in the response; scopeSelect
	// means "whatever the view's Select says for that client".
	scope   int
	scopeOf string // the pool name whose Select gives the scope; default qname
}

const scopeSelect = -1

const (
	soaNeg   = "gslb.example.com. 60 SOA ns1.gslb.example.com. hostmaster.example.com. 2025010101 3600 600 86400 60"
	soaOther = "other.test. 300 SOA ns1.gslb.example.com. hostmaster.other.test. 7 3600 600 86400 3600"
)

var wireCases = []wireCase{
	{name: "apex SOA", qname: "gslb.example.com.", qtype: dns.TypeSOA, aa: true,
		answer: []string{"gslb.example.com. 300 SOA ns1.gslb.example.com. hostmaster.example.com. 2025010101 3600 600 86400 60"}},
	{name: "apex NS with glue", qname: "gslb.example.com.", qtype: dns.TypeNS, aa: true,
		answer: []string{"gslb.example.com. 300 NS ns1.gslb.example.com.", "gslb.example.com. 300 NS ns2.gslb.example.com."},
		extra:  []string{"ns1.gslb.example.com. 300 A 192.0.2.53", "ns2.gslb.example.com. 300 AAAA 2001:db8::53"}},
	{name: "MX with target address", qname: "gslb.example.com.", qtype: dns.TypeMX, aa: true,
		answer: []string{"gslb.example.com. 300 MX 10 mail.gslb.example.com."},
		extra:  []string{"mail.gslb.example.com. 300 A 192.0.2.25"}},
	{name: "TXT", qname: "gslb.example.com.", qtype: dns.TypeTXT, aa: true,
		answer: []string{`gslb.example.com. 300 TXT "v=spf1 -all"`}},
	{name: "CAA", qname: "gslb.example.com.", qtype: dns.TypeCAA, aa: true,
		answer: []string{`gslb.example.com. 300 CAA 0 issue "letsencrypt.org"`}},
	{name: "static A with own TTL", qname: "static.gslb.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"static.gslb.example.com. 60 A 192.0.2.80", "static.gslb.example.com. 60 A 192.0.2.81"}},
	{name: "SRV with target address", qname: "_sip._udp.gslb.example.com.", qtype: dns.TypeSRV, aa: true,
		answer: []string{"_sip._udp.gslb.example.com. 300 SRV 10 60 5060 mail.gslb.example.com."},
		extra:  []string{"mail.gslb.example.com. 300 A 192.0.2.25"}},
	{name: "PTR", qname: "ptr.gslb.example.com.", qtype: dns.TypePTR, aa: true,
		answer: []string{"ptr.gslb.example.com. 300 PTR host.example.net."}},
	{name: "pool A carries pool TTL", qname: "www.gslb.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"www.gslb.example.com. 30 A 192.0.2.10", "www.gslb.example.com. 30 A 192.0.2.11"}},
	{name: "pool AAAA spills to next site", qname: "www.gslb.example.com.", qtype: dns.TypeAAAA, aa: true,
		answer: []string{"www.gslb.example.com. 30 AAAA 2001:db8:10::1", "www.gslb.example.com. 30 AAAA 2001:db8:20::1"}},
	{name: "static TXT beside a pool", qname: "www.gslb.example.com.", qtype: dns.TypeTXT, aa: true,
		answer: []string{`www.gslb.example.com. 300 TXT "dynamic"`}},
	{name: "NODATA at a pool name", qname: "www.gslb.example.com.", qtype: dns.TypeMX, aa: true,
		ns: []string{soaNeg}},
	{name: "pool without the family is NODATA", qname: "v4only.gslb.example.com.", qtype: dns.TypeAAAA, aa: true,
		ns: []string{soaNeg}},
	{name: "CNAME to pool name", qname: "api.gslb.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"api.gslb.example.com. 300 CNAME www.gslb.example.com.", "www.gslb.example.com. 30 A 192.0.2.10", "www.gslb.example.com. 30 A 192.0.2.11"}},
	{name: "CNAME query answers the alias only", qname: "api.gslb.example.com.", qtype: dns.TypeCNAME, aa: true,
		answer: []string{"api.gslb.example.com. 300 CNAME www.gslb.example.com."}},
	{name: "CNAME chain followed", qname: "chain1.gslb.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"chain1.gslb.example.com. 300 CNAME chain2.gslb.example.com.", "chain2.gslb.example.com. 300 CNAME static.gslb.example.com.",
			"static.gslb.example.com. 60 A 192.0.2.80", "static.gslb.example.com. 60 A 192.0.2.81"}},
	{name: "CNAME leaving the zone stops", qname: "out.gslb.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"out.gslb.example.com. 300 CNAME www.example.net."}},
	{name: "CNAME loop stops", qname: "loop1.gslb.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"loop1.gslb.example.com. 300 CNAME loop2.gslb.example.com.", "loop2.gslb.example.com. 300 CNAME loop1.gslb.example.com."}},
	{name: "CNAME to nothing is NXDOMAIN (RFC 6604)", qname: "dangling.gslb.example.com.", qtype: dns.TypeA, aa: true, rcode: dns.RcodeNameError,
		answer: []string{"dangling.gslb.example.com. 300 CNAME nothere.gslb.example.com."}, ns: []string{soaNeg}},
	{name: "CNAME then NODATA", qname: "chain1.gslb.example.com.", qtype: dns.TypeMX, aa: true,
		answer: []string{"chain1.gslb.example.com. 300 CNAME chain2.gslb.example.com.", "chain2.gslb.example.com. 300 CNAME static.gslb.example.com."},
		ns:     []string{soaNeg}},
	{name: "NXDOMAIN with negative TTL", qname: "nope.gslb.example.com.", qtype: dns.TypeA, aa: true, rcode: dns.RcodeNameError,
		ns: []string{soaNeg}},
	{name: "NODATA at a static name", qname: "static.gslb.example.com.", qtype: dns.TypeTXT, aa: true,
		ns: []string{soaNeg}},
	{name: "empty non-terminal is NODATA", qname: "b.ent.gslb.example.com.", qtype: dns.TypeA, aa: true,
		ns: []string{soaNeg}},
	{name: "empty non-terminal two up is NODATA", qname: "ent.gslb.example.com.", qtype: dns.TypeA, aa: true,
		ns: []string{soaNeg}},
	{name: "below an empty non-terminal is NXDOMAIN", qname: "x.b.ent.gslb.example.com.", qtype: dns.TypeA, aa: true, rcode: dns.RcodeNameError,
		ns: []string{soaNeg}},
	{name: "wildcard synthesises the asked name", qname: "x.wild.gslb.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"x.wild.gslb.example.com. 300 A 192.0.2.99"}},
	{name: "wildcard covers deeper names", qname: "deep.x.wild.gslb.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"deep.x.wild.gslb.example.com. 300 A 192.0.2.99"}},
	{name: "wildcard NODATA", qname: "x.wild.gslb.example.com.", qtype: dns.TypeTXT, aa: true,
		ns: []string{soaNeg}},
	{name: "wildcard does not match an existing name", qname: "host.wild.gslb.example.com.", qtype: dns.TypeA, aa: true,
		ns: []string{soaNeg}},
	{name: "wildcard does not match below an existing name", qname: "x.host.wild.gslb.example.com.", qtype: dns.TypeA, aa: true, rcode: dns.RcodeNameError,
		ns: []string{soaNeg}},
	{name: "literal wildcard name", qname: "*.wild.gslb.example.com.", qtype: dns.TypeA, aa: true,
		answer: []string{"*.wild.gslb.example.com. 300 A 192.0.2.99"}},
	{name: "referral below a delegation", qname: "www.sub.gslb.example.com.", qtype: dns.TypeA,
		ns:    []string{"sub.gslb.example.com. 300 NS ns1.sub.gslb.example.com.", "sub.gslb.example.com. 300 NS ns.elsewhere.net."},
		extra: []string{"ns1.sub.gslb.example.com. 300 A 192.0.2.153"}},
	{name: "referral at the delegation", qname: "sub.gslb.example.com.", qtype: dns.TypeNS,
		ns:    []string{"sub.gslb.example.com. 300 NS ns1.sub.gslb.example.com.", "sub.gslb.example.com. 300 NS ns.elsewhere.net."},
		extra: []string{"ns1.sub.gslb.example.com. 300 A 192.0.2.153"}},
	{name: "glue name is referred too", qname: "ns1.sub.gslb.example.com.", qtype: dns.TypeA,
		ns:    []string{"sub.gslb.example.com. 300 NS ns1.sub.gslb.example.com.", "sub.gslb.example.com. 300 NS ns.elsewhere.net."},
		extra: []string{"ns1.sub.gslb.example.com. 300 A 192.0.2.153"}},
	{name: "DS below the cut is referred", qname: "www.sub.gslb.example.com.", qtype: dns.TypeDS,
		ns:    []string{"sub.gslb.example.com. 300 NS ns1.sub.gslb.example.com.", "sub.gslb.example.com. 300 NS ns.elsewhere.net."},
		extra: []string{"ns1.sub.gslb.example.com. 300 A 192.0.2.153"}},
	{name: "DS at the cut is the parent's", qname: "sub.gslb.example.com.", qtype: dns.TypeDS, aa: true,
		ns: []string{soaNeg}},
	{name: "outside every zone is REFUSED", qname: "example.org.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
	{name: "parent of a zone is REFUSED", qname: "example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
	{name: "second zone", qname: "a.other.test.", qtype: dns.TypeA, aa: true,
		answer: []string{"a.other.test. 300 A 192.0.2.200"}},
	{name: "second zone NXDOMAIN", qname: "b.other.test.", qtype: dns.TypeA, aa: true, rcode: dns.RcodeNameError,
		ns: []string{soaOther}},
	{name: "minimal ANY at the apex", qname: "gslb.example.com.", qtype: dns.TypeANY, aa: true,
		answer: []string{"gslb.example.com. 300 SOA ns1.gslb.example.com. hostmaster.example.com. 2025010101 3600 600 86400 60"}},
	{name: "minimal ANY at a pool-only name", qname: "geo.gslb.example.com.", qtype: dns.TypeANY, aa: true,
		answer: []string{`geo.gslb.example.com. 3600 HINFO "RFC8482" ""`}},
	{name: "minimal ANY at a name with static data", qname: "static.gslb.example.com.", qtype: dns.TypeANY, aa: true,
		answer: []string{"static.gslb.example.com. 60 A 192.0.2.80", "static.gslb.example.com. 60 A 192.0.2.81"}},
	{name: "EDNS query", qname: "static.gslb.example.com.", qtype: dns.TypeA, aa: true, edns: true,
		answer: []string{"static.gslb.example.com. 60 A 192.0.2.80", "static.gslb.example.com. 60 A 192.0.2.81"}},
	{name: "ECS static answer has scope 0", qname: "static.gslb.example.com.", qtype: dns.TypeA, aa: true, ecs: "10.1.2.0/24",
		answer: []string{"static.gslb.example.com. 60 A 192.0.2.80", "static.gslb.example.com. 60 A 192.0.2.81"}},
	{name: "ECS failover pool has scope 0", qname: "www.gslb.example.com.", qtype: dns.TypeA, aa: true, ecs: "10.1.2.0/24",
		answer: []string{"www.gslb.example.com. 30 A 192.0.2.10", "www.gslb.example.com. 30 A 192.0.2.11"}},
	{name: "ECS geo client in Germany", qname: "geo.gslb.example.com.", qtype: dns.TypeA, aa: true, ecs: "10.1.2.0/24", scope: scopeSelect,
		answer: []string{"geo.gslb.example.com. 25 A 192.0.2.40"}},
	{name: "ECS geo client in the US", qname: "geo.gslb.example.com.", qtype: dns.TypeA, aa: true, ecs: "10.2.3.0/24", scope: scopeSelect,
		answer: []string{"geo.gslb.example.com. 25 A 198.51.100.40"}},
	{name: "ECS geo IPv6 answer for an IPv4 client", qname: "geo.gslb.example.com.", qtype: dns.TypeAAAA, aa: true, ecs: "10.2.3.0/24", scope: scopeSelect,
		answer: []string{"geo.gslb.example.com. 25 AAAA 2001:db8:41::1"}},
	{name: "ECS through a CNAME to a pool", qname: "geoalias.gslb.example.com.", qtype: dns.TypeA, aa: true, ecs: "10.1.2.0/24",
		scope: scopeSelect, scopeOf: "geo.gslb.example.com.",
		answer: []string{"geoalias.gslb.example.com. 300 CNAME geo.gslb.example.com.", "geo.gslb.example.com. 25 A 192.0.2.40"}},
	{name: "ECS source prefix 0 means the packet source (127.0.0.1, in Germany)", qname: "geo.gslb.example.com.", qtype: dns.TypeA, aa: true, ecs: "0.0.0.0/0",
		answer: []string{"geo.gslb.example.com. 25 A 192.0.2.40"}},
	{name: "ECS with REFUSED echoes scope 0", qname: "example.org.", qtype: dns.TypeA, ecs: "10.1.2.0/24", rcode: dns.RcodeRefused},
	{name: "truncated without EDNS", qname: "big.gslb.example.com.", qtype: dns.TypeTXT, aa: true, tc: true},
	{name: "big answer fits with EDNS", qname: "big.gslb.example.com.", qtype: dns.TypeTXT, aa: true, edns: true,
		answer: bigTXT()},
}

func bigTXT() []string {
	var out []string
	for i := range 8 {
		out = append(out, `big.gslb.example.com. 300 TXT "`+string(rune('0'+i))+`123456789012345678901234567890123456789012345678901234567890123456789"`)
	}
	slices.Sort(out)
	return out
}

func TestWire(t *testing.T) {
	s, addr := startServer(t, Config{})
	view := s.state.Load().view
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	for _, tc := range wireCases {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, tc.qtype)
			m.RecursionDesired = true
			if tc.edns || tc.ecs != "" {
				m.Extra = append(m.Extra, ecsOpt(1232, tc.ecs))
			}
			r, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			checkResponse(t, m, r, tc, view)
		})
	}
}

func checkResponse(t *testing.T, q, r *dns.Msg, tc wireCase, view *zones.View) {
	t.Helper()
	if r.Id != q.Id || !r.Response {
		t.Errorf("id %d response %v, want id %d response", r.Id, r.Response, q.Id)
	}
	if r.Rcode != tc.rcode {
		t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
	}
	if r.Authoritative != tc.aa {
		t.Errorf("AA %v, want %v", r.Authoritative, tc.aa)
	}
	if r.RecursionAvailable {
		t.Error("RA set")
	}
	if !r.RecursionDesired {
		t.Error("RD not copied")
	}
	if r.Truncated != tc.tc {
		t.Errorf("TC %v, want %v", r.Truncated, tc.tc)
	}
	if len(r.Question) != 1 || r.Question[0] != q.Question[0] {
		t.Errorf("question %v, want %v", r.Question, q.Question)
	}
	for _, sec := range []struct {
		name      string
		got, want []string
	}{{"answer", rrTexts(r.Answer), tc.answer}, {"authority", rrTexts(r.Ns), tc.ns}, {"additional", rrTexts(r.Extra), tc.extra}} {
		want := append([]string{}, sec.want...)
		slices.Sort(want)
		if !slices.Equal(sec.got, want) {
			t.Errorf("%s:\n got %q\nwant %q", sec.name, sec.got, want)
		}
	}
	opt := r.IsEdns0()
	sentOpt := q.IsEdns0()
	if (opt != nil) != (sentOpt != nil) {
		t.Fatalf("OPT in response %v, in query %v", opt != nil, sentOpt != nil)
	}
	if opt == nil {
		return
	}
	if opt.UDPSize() != 1232 {
		t.Errorf("advertised UDP size %d, want 1232", opt.UDPSize())
	}
	var sentECS, gotECS *dns.EDNS0_SUBNET
	for _, o := range sentOpt.Option {
		if e, ok := o.(*dns.EDNS0_SUBNET); ok {
			sentECS = e
		}
	}
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_SUBNET); ok {
			gotECS = e
		}
	}
	if (sentECS != nil) != (gotECS != nil) {
		t.Fatalf("ECS in response %v, in query %v", gotECS != nil, sentECS != nil)
	}
	if sentECS == nil {
		return
	}
	if gotECS.Family != sentECS.Family || gotECS.SourceNetmask != sentECS.SourceNetmask || !gotECS.Address.Equal(sentECS.Address) {
		t.Errorf("ECS echoed as %v, sent %v", gotECS, sentECS)
	}
	want := tc.scope
	if want == scopeSelect {
		a, _ := netip.AddrFromSlice(sentECS.Address)
		if sentECS.Family == 1 {
			a = a.Unmap()
		}
		name := tc.qname
		if tc.scopeOf != "" {
			name = tc.scopeOf
		}
		n := view.Snap.Zones[0].Names[strings.ToLower(name)]
		res := view.Select(n.Pool, tc.qtype, zones.Client{Addr: a, ECS: true, SourcePrefix: sentECS.SourceNetmask}, nil)
		want = int(res.Scope)
	}
	if int(gotECS.SourceScope) != want {
		t.Errorf("ECS scope %d, want %d", gotECS.SourceScope, want)
	}
}

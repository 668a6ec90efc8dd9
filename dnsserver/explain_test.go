package dnsserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// TestExplainDifferential runs every wire test case through a listening
// server and through Explain, which traces the same resolver, and holds
// them to the same rcode, AA, answer and authority. Truncated UDP answers
// are compared over TCP: explain reports the whole answer.
func TestExplainDifferential(t *testing.T) {
	s, addr := startServer(t, Config{})
	udp := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	tcp := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	for _, tc := range wireCases {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, tc.qtype)
			client, ecs := netip.MustParseAddr("127.0.0.1"), -1
			if tc.edns || tc.ecs != "" {
				m.Extra = append(m.Extra, ecsOpt(1232, tc.ecs))
			}
			if tc.ecs != "" {
				p := netip.MustParsePrefix(tc.ecs)
				ecs = p.Bits()
				if ecs > 0 {
					client = p.Addr()
				}
			}
			c := udp
			if tc.tc {
				c = tcp
			}
			r, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			tr, err := s.Explain(tc.qname, tc.qtype, client, ecs)
			if err != nil {
				t.Fatalf("explain: %v", err)
			}
			if tr.Rcode != dns.RcodeToString[r.Rcode] || tr.Authoritative != r.Authoritative {
				t.Errorf("explain rcode %s AA %v, server %s AA %v", tr.Rcode, tr.Authoritative, dns.RcodeToString[r.Rcode], r.Authoritative)
			}
			for _, sec := range []struct {
				name    string
				explain []string
				server  []dns.RR
			}{{"answer", tr.Records, r.Answer}, {"authority", tr.Authority, r.Ns}} {
				if got, want := parsedTexts(t, sec.explain), rrTexts(sec.server); !slices.Equal(got, want) {
					t.Errorf("%s: explain %q, server %q", sec.name, got, want)
				}
			}
			if tc.ecs != "" && ecs > 0 && r.Rcode == dns.RcodeSuccess {
				if o := r.IsEdns0(); o != nil {
					for _, opt := range o.Option {
						if e, ok := opt.(*dns.EDNS0_SUBNET); ok && int(e.SourceScope) != tr.Scope {
							t.Errorf("scope: explain %d, server %d", tr.Scope, e.SourceScope)
						}
					}
				}
			}
		})
	}
}

func parsedTexts(t *testing.T, texts []string) []string {
	t.Helper()
	var rrs []dns.RR
	for _, s := range texts {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("explain record %q: %v", s, err)
		}
		rrs = append(rrs, rr)
	}
	return rrTexts(rrs)
}

// TestExplain checks what the trace says beside the response: the owner
// found, wildcards, CNAMEs, delegations, the pool steps.
func TestExplain(t *testing.T) {
	s := handlerFixture(t)
	tests := []struct {
		name     string
		qname    string
		qtype    uint16
		client   string
		ecs      int
		rcode    string
		aa       bool
		nodata   bool
		owner    string
		answer   []string // pool addresses; nil: not checked
		records  int
		auth     int
		contains []string // substrings of Text()
	}{
		{name: "pool through a CNAME", qname: "API.gslb.example.com", qtype: dns.TypeA, client: "10.1.0.5", ecs: -1, rcode: "NOERROR", aa: true,
			owner: "www.gslb.example.com.", answer: []string{"192.0.2.10", "192.0.2.11"}, records: 3,
			contains: []string{"cname    api.gslb.example.com. CNAME www.gslb.example.com.", "bound to pool web", "pool web: policy failover"}},
		{name: "ECS geo client", qname: "geo.gslb.example.com.", qtype: dns.TypeA, client: "10.2.3.77", ecs: 24, rcode: "NOERROR", aa: true,
			owner: "geo.gslb.example.com.", answer: []string{"198.51.100.40"}, records: 1,
			contains: []string{"client   10.2.3.0 (ecs, source prefix /24)", "country US", "location US NA"}},
		{name: "wildcard", qname: "x.wild.gslb.example.com.", qtype: dns.TypeA, client: "127.0.0.1", ecs: -1, rcode: "NOERROR", aa: true,
			owner: "*.wild.gslb.example.com.", records: 1, contains: []string{"(wildcard)", "RFC 4592", "record   x.wild.gslb.example.com. 300 IN A 192.0.2.99"}},
		{name: "static A", qname: "static.gslb.example.com.", qtype: dns.TypeA, client: "127.0.0.1", ecs: -1, rcode: "NOERROR", aa: true,
			owner: "static.gslb.example.com.", records: 2, contains: []string{"static data"}},
		{name: "NODATA", qname: "static.gslb.example.com.", qtype: dns.TypeMX, client: "127.0.0.1", ecs: -1, rcode: "NOERROR", aa: true, nodata: true,
			owner: "static.gslb.example.com.", auth: 1, contains: []string{"has no MX records: NODATA"}},
		{name: "pool without the family", qname: "v4only.gslb.example.com.", qtype: dns.TypeAAAA, client: "127.0.0.1", ecs: -1, rcode: "NOERROR", aa: true, nodata: true,
			owner: "v4only.gslb.example.com.", auth: 1},
		{name: "empty non-terminal", qname: "ent.gslb.example.com.", qtype: dns.TypeA, client: "127.0.0.1", ecs: -1, rcode: "NOERROR", aa: true, nodata: true,
			owner: "ent.gslb.example.com.", auth: 1, contains: []string{"empty non-terminal"}},
		{name: "NXDOMAIN", qname: "nope.gslb.example.com.", qtype: dns.TypeA, client: "127.0.0.1", ecs: -1, rcode: "NXDOMAIN", aa: true, nodata: false,
			auth: 1, contains: []string{"no wildcard covers it", "answer   NXDOMAIN"}},
		{name: "referral", qname: "www.sub.gslb.example.com.", qtype: dns.TypeA, client: "127.0.0.1", ecs: -1, rcode: "NOERROR",
			auth: 2, contains: []string{"delegated at sub.gslb.example.com.: referral"}},
		{name: "DS at the cut is answered, not referred", qname: "sub.gslb.example.com.", qtype: dns.TypeDS, client: "127.0.0.1", ecs: -1, rcode: "NOERROR", aa: true, nodata: true,
			owner: "sub.gslb.example.com.", auth: 1, contains: []string{"parent side"}},
		{name: "CNAME leaving the zone", qname: "out.gslb.example.com.", qtype: dns.TypeA, client: "127.0.0.1", ecs: -1, rcode: "NOERROR", aa: true,
			owner: "out.gslb.example.com.", records: 1, contains: []string{"outside the zone"}},
		{name: "outside every zone", qname: "example.org.", qtype: dns.TypeA, client: "127.0.0.1", ecs: -1, rcode: "REFUSED",
			contains: []string{"no zone of this server"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := s.Explain(tc.qname, tc.qtype, netip.MustParseAddr(tc.client), tc.ecs)
			if err != nil {
				t.Fatal(err)
			}
			text := tr.Text()
			t.Logf("\n%s", text)
			if tr.Rcode != tc.rcode || tr.Authoritative != tc.aa || tr.NoData != tc.nodata || tr.Owner != tc.owner {
				t.Errorf("rcode %s aa %v nodata %v owner %q, want %s %v %v %q", tr.Rcode, tr.Authoritative, tr.NoData, tr.Owner, tc.rcode, tc.aa, tc.nodata, tc.owner)
			}
			if tc.answer != nil && !slices.Equal(tr.Answer, tc.answer) {
				t.Errorf("answer %v, want %v", tr.Answer, tc.answer)
			}
			if len(tr.Records) != tc.records || len(tr.Authority) != tc.auth {
				t.Errorf("records %q authority %q, want %d and %d", tr.Records, tr.Authority, tc.records, tc.auth)
			}
			for _, sub := range tc.contains {
				if !strings.Contains(text, sub) {
					t.Errorf("text lacks %q", sub)
				}
			}
			if _, err := json.Marshal(tr); err != nil {
				t.Errorf("marshal: %v", err)
			}
		})
	}
}

func TestExplainErrors(t *testing.T) {
	s := handlerFixture(t)
	for _, tc := range []struct {
		name   string
		client netip.Addr
		ecs    int
	}{
		{"geo.gslb.example.com.", netip.MustParseAddr("127.0.0.1"), 33},
		{"geo.gslb.example.com.", netip.Addr{}, -1},
		{"bad..name", netip.MustParseAddr("127.0.0.1"), -1},
	} {
		if _, err := s.Explain(tc.name, dns.TypeA, tc.client, tc.ecs); err == nil {
			t.Errorf("Explain(%q, %v, %d): no error", tc.name, tc.client, tc.ecs)
		}
	}
	if _, err := New(Config{}, nil, nil).Explain("geo.gslb.example.com.", dns.TypeA, netip.MustParseAddr("127.0.0.1"), -1); err == nil {
		t.Error("explain without a published view: no error")
	}
}

// TestExplainCountsNoQueries: explain requests leave the query counters
// alone.
func TestExplainCountsNoQueries(t *testing.T) {
	s := handlerFixture(t)
	z := s.state.Load().t.zones[string(wireName("gslb.example.com."))]
	before := z.ctr.load(qtypeIndex(dns.TypeA), rcNoError)
	if _, err := s.Explain("www.gslb.example.com.", dns.TypeA, netip.MustParseAddr("127.0.0.1"), -1); err != nil {
		t.Fatal(err)
	}
	if after := z.ctr.load(qtypeIndex(dns.TypeA), rcNoError); after != before {
		t.Errorf("A/NOERROR counter went from %d to %d", before, after)
	}
}

// TestExplainWaitsForGeoReload: while the geo database in service is
// retired for a reload (geo.DB.Retire), Explain waits for the table to
// come back and then traces as before; a reload that outlasts the wait
// gives ErrGeoReloading.
func TestExplainWaitsForGeoReload(t *testing.T) {
	city, err := filepath.Abs("../testdata/geo/city.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	files := defaultFiles()
	files["gslbd.toml"] = strings.Replace(testNode, "[[geo.networks]]", fmt.Sprintf("[geo]\ncity_db = %q\n\n[[geo.networks]]", city), 1)
	v := loadView(t, files)
	s := New(Config{}, testLogger(t), nil)
	s.Publish(v)
	client := netip.MustParseAddr("10.2.3.77") // US by override
	explain := func() (*zones.Trace, error) {
		return s.Explain("geo.gslb.example.com.", dns.TypeA, client, -1)
	}
	before, err := explain()
	if err != nil || before.Location == nil || before.Location.Country != "US" {
		t.Fatalf("explain before: %+v, %v", before, err)
	}

	v.Snap.Geo.Retire()
	type result struct {
		tr  *zones.Trace
		err error
	}
	done := make(chan result, 1)
	go func() {
		tr, err := explain()
		done <- result{tr, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("explain answered while the database was retired: %+v, %v", r.tr, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	again, err := loadSnap(t, files)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Snap.Geo.Restore(again.Geo); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.tr.Location == nil || r.tr.Location.Country != "US" || !slices.Equal(r.tr.Answer, before.Answer) {
			t.Fatalf("explain after the restore: %+v, %v", r.tr, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("explain still waiting 10 s after the restore")
	}

	defer func(w time.Duration) { explainRetiredWait = w }(explainRetiredWait)
	explainRetiredWait = 50 * time.Millisecond
	v.Snap.Geo.Retire()
	if tr, err := explain(); !errors.Is(err, ErrGeoReloading) {
		t.Fatalf("explain past the wait: %+v, %v; want ErrGeoReloading", tr, err)
	}
}

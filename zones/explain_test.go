package zones

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func explainSnap(t *testing.T) *Snapshot {
	t.Helper()
	zone := zoneText("geo", "w", "waff", "fo", "geoaff") + `
[records.child]
NS = ["ns.elsewhere.example."]
`
	return loadFiles(t, selNode, zone, selPools())
}

func TestExplainName(t *testing.T) {
	s := explainSnap(t)
	v := NewView(s, health("192.0.2.10"))
	tests := []struct {
		name     string
		qname    string
		qtype    uint16
		client   string
		ecs      int
		rcode    string
		nodata   bool
		answer   []string // nil: not checked
		static   int
		contains []string // substrings of Text()
	}{
		{name: "pool through a CNAME", qname: "App.Sel.Test", qtype: tA, client: "127.0.1.5", ecs: -1, rcode: "NOERROR",
			answer:   []string{"192.0.2.11"},
			contains: []string{"cname:    app.sel.test.", "location: DE EU (50.1109, 8.6821), from database, network 127.0.1.0/25", "fra", "country DE", "down", "mesh verdict down", "scope:    25", "no ECS"}},
		{name: "ECS client", qname: "geo.sel.test.", qtype: tA, client: "127.0.8.77", ecs: 24, rcode: "NOERROR",
			contains: []string{"127.0.8.0/24 (EDNS Client Subnet)", "country CA", "scope:    24"}},
		{name: "wildcard pool name", qname: "x.y.wild.sel.test.", qtype: tAAAA, client: "2001:db8:3::1", ecs: 56, rcode: "NOERROR",
			answer:   []string{"2001:db8:30::10"},
			contains: []string{"*.wild.sel.test. (wildcard)", "affinity client-subnet (2001:db8:3::/56)", "RFC 4592"}},
		{name: "static A", qname: "legacy.sel.test.", qtype: tA, client: "127.0.1.5", ecs: -1, rcode: "NOERROR", static: 2,
			contains: []string{"static:   legacy.sel.test.\t60\tIN\tA\t192.0.2.80"}},
		{name: "static type at a pool name", qname: "legacy.sel.test.", qtype: 16, client: "127.0.1.5", ecs: -1, rcode: "NOERROR", static: 1},
		{name: "NODATA", qname: "legacy.sel.test.", qtype: 15, client: "127.0.1.5", ecs: -1, rcode: "NOERROR", nodata: true,
			contains: []string{"NODATA"}},
		{name: "pool without the family", qname: "geo.sel.test.", qtype: 16, client: "127.0.1.5", ecs: -1, rcode: "NOERROR", nodata: true},
		{name: "empty non-terminal", qname: "deep.sub.sel.test.", qtype: tA, client: "127.0.1.5", ecs: -1, rcode: "NOERROR", nodata: true},
		{name: "NXDOMAIN", qname: "nope.sel.test.", qtype: tA, client: "127.0.1.5", ecs: -1, rcode: "NXDOMAIN",
			contains: []string{"answer:   NXDOMAIN"}},
		{name: "referral", qname: "www.child.sel.test.", qtype: tA, client: "127.0.1.5", ecs: -1, rcode: "NOERROR", static: 1,
			contains: []string{"delegated at child.sel.test."}},
		{name: "outside every zone", qname: "example.org.", qtype: tA, client: "127.0.1.5", ecs: -1, rcode: "REFUSED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := v.ExplainName(tc.qname, tc.qtype, netip.MustParseAddr(tc.client), tc.ecs)
			if err != nil {
				t.Fatal(err)
			}
			text := tr.Text()
			t.Logf("\n%s", text)
			if tr.Rcode != tc.rcode || tr.NoData != tc.nodata {
				t.Errorf("rcode %s nodata %v, want %s %v", tr.Rcode, tr.NoData, tc.rcode, tc.nodata)
			}
			if tc.answer != nil && !slices.Equal(tr.Answer, tc.answer) {
				t.Errorf("answer %v, want %v", tr.Answer, tc.answer)
			}
			if len(tr.Static) != tc.static {
				t.Errorf("static %v, want %d records", tr.Static, tc.static)
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

func TestExplainNameErrors(t *testing.T) {
	v := NewView(explainSnap(t), nil)
	if _, err := v.ExplainName("geo.sel.test.", tA, netip.MustParseAddr("127.0.1.5"), 33); err == nil {
		t.Error("ECS prefix 33 for IPv4: no error")
	}
	if _, err := v.ExplainName("geo.sel.test.", tA, netip.Addr{}, -1); err == nil {
		t.Error("no client: no error")
	}
	if _, err := v.ExplainName("bad..name", tA, netip.MustParseAddr("127.0.1.5"), -1); err == nil {
		t.Error("invalid name: no error")
	}
}

// TestExplainIsSelect: the trace reports what Select answers, because it
// is the same code. Under affinity the answer is deterministic, so they
// must agree exactly, scope included.
func TestExplainIsSelect(t *testing.T) {
	s := explainSnap(t)
	for _, v := range []*View{NewView(s, nil), NewView(s, health(siteDown("iad")...))} {
		for i := range 500 {
			c := ecs(netip.AddrFrom4([4]byte{127, 0, byte(i % 40), byte(i)}).String(), uint8(16+i%17))
			c.Addr = netip.PrefixFrom(c.Addr, int(c.SourcePrefix)).Masked().Addr()
			for _, pool := range []string{"geoaff", "waff"} {
				r := sel(v, pool, tA, c)
				tr := v.Explain(s.Pools[pool], tA, c)
				if !slices.Equal(tr.Answer, addrStrings(r.Addrs)) || tr.Scope != int(r.Scope) || tr.TTL != r.TTL {
					t.Fatalf("%s %v: explain %v scope %d ttl %d, select %v scope %d ttl %d", pool, c, tr.Answer, tr.Scope, tr.TTL, r.Addrs, r.Scope, r.TTL)
				}
				if len(tr.Pools) != 1 || tr.Pools[0].Sites[0].Site != siteName(r) {
					t.Fatalf("%s %v: explain first site %+v, select %s", pool, c, tr.Pools[0].Sites, siteName(r))
				}
			}
		}
	}
}

func TestExplainJSON(t *testing.T) {
	s := explainSnap(t)
	v := NewView(s, health("drain:geo/sin", "198.51.100.10"))
	tr, err := v.ExplainName("geo.sel.test.", tA, netip.MustParseAddr("127.0.1.0"), 24)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Client struct {
			Source       string `json:"source"`
			SourcePrefix int    `json:"source_prefix"`
		} `json:"client"`
		Location struct {
			Country, Source, Network string
		} `json:"location"`
		Pools []struct {
			Addresses []struct{ Site, Address, State, Why string } `json:"addresses"`
			Sites     []struct {
				Position int    `json:"position"`
				Site     string `json:"site"`
				Reason   string `json:"reason"`
			} `json:"sites"`
		} `json:"pools"`
		Answer      []string `json:"answer"`
		Scope       int      `json:"scope"`
		ScopeReason string   `json:"scope_reason"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Client.Source != "ecs" || got.Client.SourcePrefix != 24 || got.Location.Country != "DE" || got.Location.Source != "database" {
		t.Errorf("client/location: %s", b)
	}
	states := map[string]string{}
	for _, a := range got.Pools[0].Addresses {
		states[a.Address] = a.State
	}
	if states["203.0.113.10"] != "drained" || states["198.51.100.10"] != "down" || states["192.0.2.10"] != "up" {
		t.Errorf("address states %v", states)
	}
	if len(got.Pools[0].Sites) != 3 || got.Pools[0].Sites[0].Site != "fra" || got.Pools[0].Sites[0].Position != 1 || got.Scope != 25 || got.ScopeReason == "" {
		t.Errorf("sites/scope: %s", b)
	}
}

package zones

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"
)

// The name lookup part of explain (zones, owners, CNAMEs, delegations) is
// the DNS server's resolver with its trace hook set: dnsserver's
// explain_test.go tests it, with every wire test case.

func explainSnap(t *testing.T) *Snapshot {
	t.Helper()
	return loadFiles(t, selNode, selZone, selPools())
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
	tr := v.Explain(s.Pools["geo"], tA, ecs("127.0.1.0", 24))
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
	if len(got.Pools[0].Sites) != 3 || got.Pools[0].Sites[0].Site != "fra" || got.Pools[0].Sites[0].Position != 1 || got.Scope != 24 || got.ScopeReason == "" {
		t.Errorf("sites/scope: %s", b)
	}
}

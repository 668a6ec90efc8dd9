package zones

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"gslbd/geo"
)

// g6Pool is a geo pool of six sites, some placed only by coordinates and
// one by nothing, so that rankings come from every class (country,
// continent, distance, unplaceable) and many locations share one.
const g6Pool = `
[g6]
policy = "geo"
answers = 1
[[g6.sites]]
name = "fra"
lat = 50.11
lon = 8.68
countries = ["DE"]
addresses = ["192.0.2.10", "2001:db8:10::10"]
[[g6.sites]]
name = "lhr"
lat = 51.47
lon = -0.45
continents = ["EU"]
addresses = ["192.0.2.20", "2001:db8:11::10"]
[[g6.sites]]
name = "iad"
lat = 38.95
lon = -77.45
addresses = ["198.51.100.10", "2001:db8:20::10"]
[[g6.sites]]
name = "gru"
lat = -23.43
lon = -46.47
addresses = ["198.51.100.20", "2001:db8:21::10"]
[[g6.sites]]
name = "nrt"
lat = 35.77
lon = 140.39
countries = ["JP", "SG"]
addresses = ["203.0.113.10", "2001:db8:30::10"]
[[g6.sites]]
name = "any"
addresses = ["203.0.113.20", "2001:db8:31::10"]
`

// refOrder is the ranking of p's sites for a computed the slow way, from
// the location the geo DB gives a, without the pool's table: the
// reference the table must agree with.
func refOrder(p *Pool, db *geo.DB, a netip.Addr) []rank {
	loc, _ := db.Lookup(a)
	return geoRanks(p, loc, nil)
}

// clientIn is a random client address in base, sometimes written as
// IPv4-mapped IPv6 (prefix lengths then count from 96).
func clientIn(rng *rand.Rand, base netip.Prefix) netip.Addr {
	a := randomIn(rng, base)
	if a.Is4() && rng.IntN(4) == 0 {
		a = netip.AddrFrom16(a.As16())
	}
	return a
}

// TestSelectScopeMergedIsSafe is the property of the merged geo tables
// (README, How an answer is chosen): for random clients, every address inside the scope the
// answer carries — its first and last address and random ones — has the
// same site ranking as the client, computed independently from its own
// location; without affinity the scope is never narrower than the
// location's own network; and the answer's first site is the reference
// ranking's first (when it is not tied).
func TestSelectScopeMergedIsSafe(t *testing.T) {
	s := loadFiles(t, selNode, zoneText("geo", "geoaff", "g6"), selPools()+g6Pool)
	v := NewView(s, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	bases := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/18"), netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("192.0.2.0/23"), netip.MustParsePrefix("198.51.100.0/22"),
		netip.MustParsePrefix("203.0.112.0/23"), netip.MustParsePrefix("10.0.0.0/14"),
		netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("2001:db8::/42"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("::/0"),
		netip.MustParsePrefix("2002:7f00::/24"),
	}
	pools := []string{"geo", "geoaff", "g6"}
	widened, n := 0, 4000
	dst := make([]netip.Addr, 0, 8)
	for i := range n {
		p := s.Pools[pools[i%len(pools)]]
		x := clientIn(rng, bases[rng.IntN(len(bases))])
		r := v.Select(p, tA, Client{Addr: x, ECS: true, SourcePrefix: uint8(x.BitLen())}, dst)
		want := refOrder(p, s.Geo, x)
		scoped := netip.PrefixFrom(x, int(r.Scope)).Masked()
		samples := append([]netip.Addr{scoped.Addr(), lastAddr(scoped)}, randomIn(rng, scoped), randomIn(rng, scoped), randomIn(rng, scoped))
		for _, y := range samples {
			if got := refOrder(p, s.Geo, y); !slices.Equal(got, want) {
				t.Fatalf("%s: %v has order %s with scope %v, but %v in it has %s", p.Name, x, orderString(p, want), scoped, y, orderString(p, got))
			}
		}
		_, locBits := s.Geo.Lookup(x)
		if x.Is4In6() {
			locBits += 96
		}
		if p.Affinity == AffinityNone {
			if int(r.Scope) > locBits {
				t.Errorf("%s: %v scope /%d narrower than its location's network /%d", p.Name, x, r.Scope, locBits)
			}
			if int(r.Scope) < locBits {
				widened++
			}
		}
		if len(want) > 1 && want[1].tier != want[0].tier && r.Site != p.Sites[want[0].site] {
			t.Fatalf("%s: %v answered from %s, the reference order starts with %s", p.Name, x, r.Site.Name, orderString(p, want))
		}
	}
	if widened == 0 {
		t.Errorf("no scope wider than the location's network in %d queries: the tables do not merge", n)
	}
	t.Logf("%d of %d scopes (without affinity) wider than the location's own network", widened, n*2/3)
}

func orderString(p *Pool, o []rank) string {
	var b strings.Builder
	for i, r := range o {
		if i > 0 {
			if r.tier == o[i-1].tier {
				b.WriteString(" = ")
			} else {
				b.WriteString(" > ")
			}
		}
		b.WriteString(p.Sites[r.site].Name)
	}
	return b.String()
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestSelectScopeMerged pins networks of the test database that merge:
// neighbours with different locations but the same site ranking share
// one scope, and neighbours with different rankings do not.
func TestSelectScopeMerged(t *testing.T) {
	s := loadSel(t, selPools())
	v := NewView(s, nil)
	for _, tc := range []struct {
		client Client
		qtype  uint16
		want   uint8
		why    string
	}{
		// Lagos and Paris: neither claimed, Frankfurt nearest, then
		// Ashburn, then Singapore: the same order.
		{ecs("127.0.13.7", 32), tA, 23, "127.0.12.0/24 NG and 127.0.13.0/24 FR"},
		{ecs("127.0.12.7", 32), tA, 23, "the same /23 from its other half"},
		// CH (claimed by fra, no coordinates) and EU without a country
		// (fra by continent): fra, then Ashburn and Singapore tied.
		{ecs("127.0.30.1", 32), tA, 23, "127.0.30.0/24 CH and 127.0.31.0/24 EU"},
		{ecs("2001:db8:31::1", 128), tAAAA, 47, "2001:db8:30::/48 CH and 2001:db8:31::/48 EU"},
		{ecs("::ffff:127.0.30.1", 128), tA, 96 + 23, "IPv4-mapped: IPv4 bits count from 96"},
		{ecs("127.0.13.0", 24), tA, 23, "a /24 client network shares its answer with the whole /23"},
		{ecs("127.0.12.0", 22), tA, 22, "capped at the source prefix"},
		// Mumbai's order (Singapore first) differs from Paris's.
		{ecs("127.0.14.1", 32), tA, 24, "127.0.14.0/24 IN stays alone"},
	} {
		r := sel(v, "geo", tc.qtype, tc.client)
		tr := v.Explain(s.Pools["geo"], tc.qtype, tc.client)
		if r.Scope != tc.want || tr.Scope != int(r.Scope) {
			t.Errorf("%v/%d (%s): scope %d (explain %d), want %d (%s)", tc.client.Addr, tc.client.SourcePrefix, tc.why, r.Scope, tr.Scope, tc.want, tr.ScopeWhy)
		}
		_, locBits := s.Geo.Lookup(tc.client.Addr)
		if merged := int(tc.want) < locBits+96*b2i(tc.client.Addr.Is4In6()); merged != strings.Contains(tr.ScopeWhy, "merged") {
			t.Errorf("%v: scope reason %q does not say whether networks were merged (%v)", tc.client.Addr, tr.ScopeWhy, merged)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestGeoTableRanges checks that the per-pool tables are much smaller than
// the DB's and report what they hold.
func TestGeoTableRanges(t *testing.T) {
	s := loadFiles(t, selNode, zoneText("geo", "geoaff", "g6"), selPools()+g6Pool)
	s.Prepare()
	if s.Pools["geo"].sel.geoTab != s.Pools["geoaff"].sel.geoTab {
		t.Error("pools geo and geoaff rank the same sites but do not share a table")
	}
	if s.Pools["geo"].sel.geoTab == s.Pools["g6"].sel.geoTab {
		t.Error("pools geo and g6 rank different sites but share a table")
	}
	dbRanges := s.Geo.Info().Ranges
	for _, name := range []string{"geo", "g6"} {
		p := s.Pools[name]
		got := p.sel.geoTab.Ranges()
		t.Logf("pool %s: %d site orders, %d ranges (the DB has %d)", name, len(p.sel.geoOrders), got, dbRanges)
		if got >= dbRanges {
			t.Errorf("pool %s: %d ranges, the DB %d: nothing merged", name, got, dbRanges)
		}
		if len(p.sel.geoOrders) == 0 || !slices.Equal(p.sel.geoOrders[0], p.sel.all) {
			t.Errorf("pool %s: order 0 is %v, want the unknown location's %v", name, p.sel.geoOrders[:1], p.sel.all)
		}
	}
}

// TestAffinityKeyEqualWeights: with equal weights the cheap key (no
// logarithm) orders sites exactly as the Efraimidis–Spirakis key does,
// so the fast path changes no client's answer.
func TestAffinityKeyEqualWeights(t *testing.T) {
	s := loadSel(t, selPools())
	p := s.Pools["waff"]
	s.Prepare()
	for i := range 5000 {
		q := query{addr: netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})}
		var fast, slow [3]float64
		for k, site := range p.Sites {
			w := site.Weight
			site.Weight = 100
			fast[k], slow[k] = affinityKey(site, &q, true), affinityKey(site, &q, false)
			site.Weight = w
		}
		for a := range 3 {
			for b := range 3 {
				if (fast[a] < fast[b]) != (slow[a] < slow[b]) {
					t.Fatalf("%v: sites %d and %d ordered differently: fast %v, slow %v", q.addr, a, b, fast, slow)
				}
			}
		}
	}
}

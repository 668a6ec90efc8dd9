package zones

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestSelectGeo(t *testing.T) {
	s := loadSel(t, selPools())
	v := NewView(s, nil)
	tests := []struct {
		name   string
		client Client
		qtype  uint16
		site   string
		source string // location source in the trace
		reason string // substring of the first site's reason
	}{
		{"country DE", pkt("127.0.1.5"), tA, "fra", "database", "country DE"},
		{"continent EU (FR)", pkt("127.0.13.5"), tA, "fra", "database", "continent EU"},
		{"country CA", pkt("127.0.8.5"), tA, "iad", "database", "country CA"},
		{"continent SA (BR)", pkt("127.0.4.5"), tA, "iad", "database", "continent SA"},
		{"country SG", pkt("127.0.9.5"), tA, "sin", "database", "country SG"},
		{"continent OC (AU)", pkt("127.0.5.5"), tA, "sin", "database", "continent OC"},
		{"distance, Lagos", pkt("127.0.12.5"), tA, "fra", "database", "distance"},
		{"distance, Nairobi", pkt("127.0.17.5"), tA, "fra", "database", "distance"},
		{"country without coordinates (CH)", pkt("127.0.30.5"), tA, "fra", "database", "country CH"},
		{"continent only (EU)", pkt("127.0.31.5"), tA, "fra", "database", "continent EU"},
		{"override outside the database", pkt("10.1.2.3"), tA, "iad", "override", "country US"},
		{"override inside a database network", pkt("127.0.1.200"), tA, "sin", "override", "country JP"},
		{"ECS address, not the packet", ecs("127.0.8.0", 24), tA, "iad", "database", "country CA"},
		{"IPv6 client, AAAA", pkt("2001:db8:3::1"), tAAAA, "sin", "database", "country JP"},
		{"IPv6 client, A", pkt("2001:db8:2::1"), tA, "iad", "database", "country US"},
		{"IPv4-mapped client", pkt("::ffff:127.0.1.5"), tA, "fra", "database", "country DE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sel(v, "geo", tc.qtype, tc.client)
			if siteName(r) != tc.site || len(r.Addrs) != 1 {
				t.Fatalf("got site %q addrs %v, want one address of %s", siteName(r), r.Addrs, tc.site)
			}
			if tc.qtype == tA != r.Addrs[0].Is4() {
				t.Errorf("answer %v is not of the queried family", r.Addrs[0])
			}
			tr := v.Explain(s.Pools["geo"], tc.qtype, tc.client)
			if tr.Location == nil || tr.Location.Source != tc.source {
				t.Fatalf("trace location %+v, want source %s", tr.Location, tc.source)
			}
			if got := tr.Pools[0].Sites[0]; got.Site != tc.site || !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("trace first site %+v, want %s with reason containing %q", got, tc.site, tc.reason)
			}
		})
	}
}

// TestSelectGeoDistanceOrder checks the whole order after the claims: by
// distance, nearest first, spilling in that order.
func TestSelectGeoDistanceOrder(t *testing.T) {
	// Lagos (NG, AF): no site claims it. Frankfurt ~4900 km, Ashburn
	// ~8400 km, Singapore ~11200 km; answers = 3 spills over all three.
	pools := "[far]\npolicy = \"geo\"\nanswers = 3\n" + strings.ReplaceAll(sites3, "%[1]s", "far")
	s := loadFiles(t, selNode, zoneText("far"), pools)
	v := NewView(s, nil)
	r := sel(v, "far", tA, pkt("127.0.12.5"))
	if got := siteName(r); got != "fra" || len(r.Addrs) != 3 {
		t.Fatalf("got %s %v, want 2 from fra then 1 from iad", got, r.Addrs)
	}
	if r.Addrs[2] != netip.MustParseAddr("198.51.100.10") && r.Addrs[2] != netip.MustParseAddr("198.51.100.11") {
		t.Errorf("third address %v is not from iad (second nearest)", r.Addrs[2])
	}
	tr := v.Explain(s.Pools["far"], tA, pkt("127.0.12.5"))
	var order []string
	for _, st := range tr.Pools[0].Sites {
		order = append(order, st.Site)
		if !strings.Contains(st.Reason, "distance") {
			t.Errorf("site %s reason %q, want a distance", st.Site, st.Reason)
		}
	}
	if !slices.Equal(order, []string{"fra", "iad", "sin"}) {
		t.Errorf("order %v, want fra iad sin", order)
	}
}

// TestSelectGeoUnknownIsWeighted: an unknown client gets the weighted
// order (iad weight 300, fra and sin 100 each).
func TestSelectGeoUnknownIsWeighted(t *testing.T) {
	s := loadSel(t, selPools())
	v := NewView(s, nil)
	const n = 20000
	counts := map[string]int{}
	for range n {
		counts[siteName(sel(v, "geo", tA, pkt("127.0.50.1")))]++
	}
	checkShares(t, counts, n, map[string]float64{"fra": 0.2, "iad": 0.6, "sin": 0.2})
	tr := v.Explain(s.Pools["geo"], tA, pkt("127.0.50.1"))
	if tr.Location.Source != "unknown" || !strings.Contains(tr.Pools[0].Sites[0].Reason, "weight") {
		t.Errorf("trace %+v / %+v, want unknown location and a weighted reason", tr.Location, tr.Pools[0].Sites[0])
	}
}

// checkShares compares observed shares with expected ones. The tolerance
// is 0.02 absolute: with n = 20000 draws the standard deviation of a share
// near 0.5 is at most 0.0036, so 0.02 is more than 5.5 sigma (a spurious
// failure about once in 10^8 runs) while a wrong weighting (off by 0.05 or
// more) always fails.
func checkShares(t *testing.T, counts map[string]int, n int, want map[string]float64) {
	t.Helper()
	const tolerance = 0.02
	total := 0
	for site, c := range counts {
		total += c
		if _, ok := want[site]; !ok {
			t.Errorf("site %q answered %d times, want never", site, c)
		}
	}
	if total != n {
		t.Errorf("%d answers, want %d", total, n)
	}
	for site, w := range want {
		got := float64(counts[site]) / float64(n)
		if got < w-tolerance || got > w+tolerance {
			t.Errorf("site %s share %.4f, want %.2f ± %.2f", site, got, w, tolerance)
		}
	}
}

func TestSelectWeighted(t *testing.T) {
	pools := selPools() + `
[zero]
policy = "weighted"
answers = 1
` + strings.ReplaceAll(strings.Replace(sites3, `weight = 300`, `weight = 0`, 1), "%[1]s", "zero")
	s := loadSel(t, pools)
	v := NewView(s, nil)
	const n = 20000

	t.Run("random", func(t *testing.T) {
		counts := map[string]int{}
		for range n {
			counts[siteName(sel(v, "w", tA, pkt("127.0.1.5")))]++
		}
		checkShares(t, counts, n, map[string]float64{"fra": 0.2, "iad": 0.6, "sin": 0.2})
	})
	t.Run("second position", func(t *testing.T) {
		// Drawing without replacement: when iad is first, fra and sin
		// share the second place equally; overall P(second = iad) =
		// P(fra first)·300/400 + P(sin first)·300/400 = 0.3.
		counts := map[string]int{}
		for range n / 4 {
			tr := v.Explain(s.Pools["w"], tA, pkt("127.0.1.5"))
			counts[tr.Pools[0].Sites[1].Site]++
		}
		checkShares(t, counts, n/4, map[string]float64{"fra": 0.35, "iad": 0.3, "sin": 0.35})
	})
	t.Run("affinity over client networks", func(t *testing.T) {
		// Under affinity the draw is a hash of the /24: over many
		// networks the shares still follow the weights.
		counts := map[string]int{}
		for i := range n {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 7})
			counts[siteName(sel(v, "waff", tA, pkt(a.String())))]++
		}
		checkShares(t, counts, n, map[string]float64{"fra": 0.2, "iad": 0.6, "sin": 0.2})
	})
	t.Run("weight 0 only when nothing else", func(t *testing.T) {
		for range 2000 {
			if got := siteName(sel(v, "zero", tA, pkt("127.0.1.5"))); got == "iad" {
				t.Fatal("weight-0 site answered while others are up")
			}
		}
		v2 := NewView(s, health(append(siteDown("fra"), siteDown("sin")...)...))
		if got := siteName(sel(v2, "zero", tA, pkt("127.0.1.5"))); got != "iad" {
			t.Fatalf("got %q, want the weight-0 site iad when the others are down", got)
		}
	})
}

func TestSelectFailover(t *testing.T) {
	pools := strings.Replace(selPools(), "[fo]\npolicy = \"failover\"\nanswers = 2\n", "[fo]\npolicy = \"failover\"\nanswers = 1\n", 1)
	// Priorities: sin first, then fra, then iad (no priority: file order
	// would put it first, but it is given 3).
	pools = strings.Replace(pools, "[[fo.sites]]\nname = \"fra\"\n", "[[fo.sites]]\nname = \"fra\"\npriority = 2\n", 1)
	pools = strings.Replace(pools, "[[fo.sites]]\nname = \"iad\"\n", "[[fo.sites]]\nname = \"iad\"\npriority = 3\n", 1)
	pools = strings.Replace(pools, "[[fo.sites]]\nname = \"sin\"\n", "[[fo.sites]]\nname = \"sin\"\npriority = 1\n", 1)
	s := loadSel(t, pools)
	for _, tc := range []struct {
		down []string
		want string
	}{
		{nil, "sin"},
		{siteDown("sin"), "fra"},
		{append(siteDown("sin"), siteDown("fra")...), "iad"},
		{[]string{"drain:fo/sin"}, "fra"},
	} {
		v := NewView(s, health(tc.down...))
		for range 10 {
			if got := siteName(sel(v, "fo", tA, pkt("127.0.1.5"))); got != tc.want {
				t.Fatalf("down %v: got %q, want %q", tc.down, got, tc.want)
			}
		}
	}
}

func TestSelectFillRotationSpill(t *testing.T) {
	pools := `[rot]
policy = "failover"
answers = 1
[[rot.sites]]
name = "a"
addresses = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
[[rot.sites]]
name = "b"
addresses = ["198.51.100.1"]

[spill]
policy = "failover"
answers = 3
[[spill.sites]]
name = "a"
addresses = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
[[spill.sites]]
name = "b"
addresses = ["198.51.100.1", "198.51.100.2"]
`
	s := loadFiles(t, selNode, zoneText("rot", "spill"), pools)
	t.Run("rotation", func(t *testing.T) {
		v := NewView(s, nil)
		seen := map[netip.Addr]int{}
		for range 30 {
			r := sel(v, "rot", tA, pkt("127.0.1.5"))
			seen[r.Addrs[0]]++
		}
		for _, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
			if seen[netip.MustParseAddr(a)] != 10 {
				t.Errorf("address %s answered %d of 30 times, want 10 (rotation)", a, seen[netip.MustParseAddr(a)])
			}
		}
	})
	t.Run("rotation skips down addresses", func(t *testing.T) {
		v := NewView(s, health("192.0.2.2"))
		for range 20 {
			if r := sel(v, "rot", tA, pkt("127.0.1.5")); r.Addrs[0] == netip.MustParseAddr("192.0.2.2") {
				t.Fatal("down address answered")
			}
		}
	})
	t.Run("spill", func(t *testing.T) {
		v := NewView(s, nil)
		r := sel(v, "spill", tA, pkt("127.0.1.5"))
		got := addrStrings(sortedAddrs(r.Addrs))
		if len(got) != 3 || got[0] != "192.0.2.1" || got[1] != "192.0.2.2" || !strings.HasPrefix(got[2], "198.51.100.") {
			t.Errorf("got %v, want both IPv4 of a and one of b", got)
		}
		v = NewView(s, health("192.0.2.1"))
		r = sel(v, "spill", tA, pkt("127.0.1.5"))
		got = addrStrings(sortedAddrs(r.Addrs))
		if !slices.Equal(got, []string{"192.0.2.2", "198.51.100.1", "198.51.100.2"}) {
			t.Errorf("with 192.0.2.1 down got %v, want 192.0.2.2 and both of b", got)
		}
		// AAAA: a has one IPv6 address, b none: one answer, never more.
		r = sel(v, "spill", tAAAA, pkt("127.0.1.5"))
		if got := addrStrings(r.Addrs); !slices.Equal(got, []string{"2001:db8::1"}) {
			t.Errorf("AAAA got %v, want [2001:db8::1]", got)
		}
	})
}

func TestSelectNoDataAndAllDown(t *testing.T) {
	pools := `[v4only]
answers = 2
[[v4only.sites]]
name = "a"
lat = 1
lon = 1
addresses = ["192.0.2.1"]

[aa]
policy = "weighted"
answers = 2
when_all_down = "answer-all"
[[aa.sites]]
name = "a"
addresses = ["192.0.2.1", "192.0.2.2"]
[[aa.sites]]
name = "b"
drained = true
addresses = ["192.0.2.3"]

[nd]
when_all_down = "nodata"
[[nd.sites]]
name = "a"
addresses = ["192.0.2.1"]

[fb1]
ttl = 11
when_all_down = "fallback"
fallback = "fb2"
[[fb1.sites]]
name = "a"
addresses = ["192.0.2.1"]

[fb2]
ttl = 12
when_all_down = "fallback"
fallback = "fb3"
[[fb2.sites]]
name = "a"
addresses = ["192.0.2.2"]

[fb3]
ttl = 13
policy = "failover"
[[fb3.sites]]
name = "a"
addresses = ["198.51.100.1"]
`
	zone := zoneText("v4only", "aa", "nd", "fb1")
	s := loadFiles(t, selNode, zone, pools)

	t.Run("no address of the family", func(t *testing.T) {
		r := sel(NewView(s, nil), "v4only", tAAAA, ecs("127.0.1.0", 24))
		if !r.NoData || len(r.Addrs) != 0 || r.Scope != 0 {
			t.Errorf("got %+v, want NODATA with scope 0", r)
		}
	})
	t.Run("answer-all", func(t *testing.T) {
		r := sel(NewView(s, health("192.0.2.1", "192.0.2.2")), "aa", tA, pkt("127.0.1.5"))
		if got := addrStrings(sortedAddrs(r.Addrs)); !slices.Equal(got, []string{"192.0.2.1", "192.0.2.2"}) {
			t.Errorf("got %v, want the down but not the drained addresses", got)
		}
		tr := NewView(s, health("192.0.2.1", "192.0.2.2")).Explain(s.Pools["aa"], tA, pkt("127.0.1.5"))
		if !strings.HasPrefix(tr.Pools[0].AllDown, "answer-all") {
			t.Errorf("trace all-down %q, want answer-all", tr.Pools[0].AllDown)
		}
	})
	t.Run("answer-all with everything drained", func(t *testing.T) {
		r := sel(NewView(s, health("drain:aa/a")), "aa", tA, pkt("127.0.1.5"))
		if !r.NoData || len(r.Addrs) != 0 {
			t.Errorf("got %+v, want NODATA: drained addresses never answer", r)
		}
	})
	t.Run("nodata", func(t *testing.T) {
		r := sel(NewView(s, health("192.0.2.1")), "nd", tA, pkt("127.0.1.5"))
		if !r.NoData || len(r.Addrs) != 0 {
			t.Errorf("got %+v, want NODATA", r)
		}
	})
	t.Run("fallback chain", func(t *testing.T) {
		v := NewView(s, health("192.0.2.1"))
		r := sel(v, "fb1", tA, pkt("127.0.1.5"))
		if r.Pool.Name != "fb2" || r.TTL != 12 || addrStrings(r.Addrs)[0] != "192.0.2.2" {
			t.Errorf("one down: got pool %s ttl %d %v, want fb2 ttl 12 192.0.2.2", r.Pool.Name, r.TTL, r.Addrs)
		}
		v = NewView(s, health("192.0.2.1", "192.0.2.2"))
		r = sel(v, "fb1", tA, pkt("127.0.1.5"))
		if r.Pool.Name != "fb3" || r.TTL != 13 || addrStrings(r.Addrs)[0] != "198.51.100.1" {
			t.Errorf("two down: got pool %s ttl %d %v, want fb3 ttl 13 198.51.100.1", r.Pool.Name, r.TTL, r.Addrs)
		}
		tr := v.Explain(s.Pools["fb1"], tA, pkt("127.0.1.5"))
		if len(tr.Pools) != 3 || !strings.Contains(tr.Pools[0].AllDown, "fb2") || !strings.Contains(tr.Pools[1].AllDown, "fb3") {
			t.Errorf("trace pools %d, all-down %q / %q: want the chain fb1 → fb2 → fb3", len(tr.Pools), tr.Pools[0].AllDown, tr.Pools[1].AllDown)
		}
		// The chain ends in a pool that is itself all down: answer-all.
		v = NewView(s, health("192.0.2.1", "192.0.2.2", "198.51.100.1"))
		r = sel(v, "fb1", tA, pkt("127.0.1.5"))
		if r.Pool.Name != "fb3" || len(r.Addrs) != 1 {
			t.Errorf("all down: got pool %s %v, want fb3 answering all", r.Pool.Name, r.Addrs)
		}
	})
	t.Run("fallback depth is bounded", func(t *testing.T) {
		// The loader rejects cycles; build one behind its back to prove
		// the selection still terminates.
		s2 := loadFiles(t, selNode, zone, pools)
		s2.Pools["fb2"].Fallback = s2.Pools["fb1"]
		r := sel(NewView(s2, health("192.0.2.1", "192.0.2.2")), "fb1", tA, pkt("127.0.1.5"))
		if !r.NoData {
			t.Errorf("cycle: got %+v, want NODATA after the depth bound", r)
		}
	})
}

func TestSelectScope(t *testing.T) {
	s := loadSel(t, selPools())
	v := NewView(s, nil)
	_, unknownBits := s.Geo.Lookup(netip.MustParseAddr("127.0.50.0"))
	tests := []struct {
		pool   string
		client Client
		qtype  uint16
		h      *testHealth
		want   uint8
	}{
		{"geo", ecs("127.0.1.0", 24), tA, nil, 25},   // DE network is 127.0.1.0/25: longer than the source (RFC 7871 §7.2.1)
		{"geo", ecs("127.0.1.5", 32), tA, nil, 25},   // the /25 left by the JP override
		{"geo", ecs("127.0.1.200", 32), tA, nil, 25}, // the override itself
		{"geo", ecs("127.0.20.0", 24), tA, nil, 23},  // two Frankfurt /24s merged into a /23
		{"geo", ecs("127.0.50.0", 24), tA, nil, uint8(min(unknownBits, 24))},
		{"geo", ecs("2001:db8:1::", 56), tAAAA, nil, 48},        // geo network wider than the source
		{"geo", ecs("2001:db8:1::", 32), tAAAA, nil, 48},        // the /32 holds other answers: the /48 network
		{"geo", ecs("::ffff:127.0.1.5", 128), tA, nil, 96 + 25}, // IPv4-mapped: IPv4 bits count from 96
		{"geo", ecs("127.0.1.0", 24), tA, health(append(siteDown("iad"), siteDown("sin")...)...), 0},
		{"geoaff", ecs("2001:db8:1::", 56), tAAAA, nil, 56},
		{"geoaff", ecs("2001:db8:1::", 64), tAAAA, nil, 56},
		{"geoaff", ecs("2001:db8:1::", 48), tAAAA, nil, 56}, // affinity splits the /48 by /56
		{"geoaff", ecs("127.0.20.0", 24), tA, nil, 24},
		{"geoaff", ecs("127.0.1.5", 32), tA, nil, 25},
		{"geoaff", ecs("127.0.1.0", 24), tA, health(append(siteDown("iad"), siteDown("sin")...)...), 24}, // one site, affinity picks among its two
		{"w", ecs("127.0.1.0", 24), tA, nil, 0},
		{"waff", ecs("127.0.1.0", 24), tA, nil, 24},
		{"waff", ecs("127.0.1.5", 32), tA, nil, 24},
		{"waff", ecs("127.0.0.0", 20), tA, nil, 24}, // affinity splits the /20 by /24
		{"waff", ecs("2001:db8:1::", 64), tAAAA, nil, 56},
		{"fo", ecs("127.0.1.0", 24), tA, nil, 0},
		{"geo", ecs("127.0.1.0", 24), tAAAA, health("2001:db8:20::10", "2001:db8:30::10"), 0}, // the only eligible address
	}
	for _, tc := range tests {
		vv := v
		if tc.h != nil {
			vv = NewView(s, tc.h)
		}
		r := sel(vv, tc.pool, tc.qtype, tc.client)
		if r.Scope != tc.want {
			tr := vv.Explain(s.Pools[tc.pool], tc.qtype, tc.client)
			t.Errorf("%s %v/%d: scope %d, want %d (%s)", tc.pool, tc.client.Addr, tc.client.SourcePrefix, r.Scope, tc.want, tr.ScopeWhy)
		}
	}
}

// TestSelectScopeIsSafe checks the ECS scope promise (docs/geoip.md)
// directly: every
// address inside the scope the answer carries gets the same answer (as a
// set: rotation does not count). Pools with a random element would differ
// by chance, so the deterministic ones are checked: affinity and failover.
func TestSelectScopeIsSafe(t *testing.T) {
	s := loadSel(t, selPools())
	rng := rand.New(rand.NewPCG(1, 2))
	views := []*View{NewView(s, nil), NewView(s, health(siteDown("fra")...)), NewView(s, health("198.51.100.10", "203.0.113.11"))}
	bases := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/19"),
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("10.0.0.0/15"),
		netip.MustParsePrefix("2001:db8::/43"),
	}
	for i := range 3000 {
		v := views[i%len(views)]
		pool := []string{"geoaff", "waff", "fo"}[i%3]
		base := bases[rng.IntN(len(bases))]
		x := randomIn(rng, base)
		src := uint8(x.BitLen())
		if rng.IntN(2) == 0 {
			src = uint8(16 + rng.IntN(x.BitLen()-15))
		}
		x = netip.PrefixFrom(x, int(src)).Masked().Addr()
		qtype := tA
		if x.Is6() {
			qtype = tAAAA
		}
		r := sel(v, pool, qtype, Client{Addr: x, ECS: true, SourcePrefix: src})
		want := sortedAddrs(r.Addrs)
		scoped := netip.PrefixFrom(x, int(r.Scope)).Masked()
		for range 8 {
			y := netip.PrefixFrom(randomIn(rng, scoped), int(src)).Masked().Addr()
			r2 := sel(v, pool, qtype, Client{Addr: y, ECS: true, SourcePrefix: src})
			if got := sortedAddrs(r2.Addrs); !slices.Equal(got, want) {
				t.Fatalf("%s: %v/%d got %v with scope %d, but %v in that scope gets %v", pool, x, src, want, r.Scope, y, got)
			}
		}
	}
}

// randomIn is a random address inside p.
func randomIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		bit := i * 8
		var keep byte
		switch {
		case bit+8 <= p.Bits():
			keep = 0xff
		case bit < p.Bits():
			keep = byte(0xff << (8 - (p.Bits() - bit)))
		}
		b[i] = b[i]&keep | byte(rng.IntN(256))&^keep
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestSelectAffinity(t *testing.T) {
	s := loadSel(t, selPools())
	v := NewView(s, nil)
	for _, pool := range []string{"waff", "geoaff"} {
		t.Run(pool+" same network same answer", func(t *testing.T) {
			for n := range 200 {
				netw := netip.AddrFrom4([4]byte{10, 9, byte(n), 0})
				first := sel(v, pool, tA, pkt(netw.String()))
				for host := range 40 {
					c := netip.AddrFrom4([4]byte{10, 9, byte(n), byte(host * 6)})
					if r := sel(v, pool, tA, pkt(c.String())); !slices.Equal(r.Addrs, first.Addrs) {
						t.Fatalf("%v got %v, but %v got %v", c, r.Addrs, netw, first.Addrs)
					}
				}
			}
		})
		t.Run(pool+" a failed site moves only its clients", func(t *testing.T) {
			clients := make([]Client, 3000)
			for i := range clients {
				// Unknown-location networks, so that geoaff falls back to
				// the (hashed) weighted order over all three sites.
				clients[i] = pkt(netip.AddrFrom4([4]byte{100, 64 + byte(i>>8), byte(i), 1}).String())
			}
			before := make([]Result, len(clients))
			for i, c := range clients {
				before[i] = sel(v, pool, tA, c)
			}
			v2 := NewView(s, health(siteDown("iad")...))
			moved := 0
			for i, c := range clients {
				after := sel(v2, pool, tA, c)
				if siteName(before[i]) == "iad" {
					moved++
					if siteName(after) == "iad" {
						t.Fatalf("%v still answered from the down site", c.Addr)
					}
					continue
				}
				if !slices.Equal(after.Addrs, before[i].Addrs) {
					t.Fatalf("%v moved from %v to %v though its site %s is up", c.Addr, before[i].Addrs, after.Addrs, siteName(before[i]))
				}
			}
			if moved < len(clients)/3 {
				t.Errorf("only %d of %d clients were on iad (weight 300 of 500)", moved, len(clients))
			}
		})
	}
	t.Run("a failed address moves only its clients", func(t *testing.T) {
		// One site left (the others down) with two addresses, answers = 1:
		// the choice between them is the hashed one.
		h := append(siteDown("iad"), siteDown("sin")...)
		v1 := NewView(s, health(h...))
		v2 := NewView(s, health(append(h, "192.0.2.10")...))
		counts := map[netip.Addr]int{}
		for i := range 2000 {
			c := pkt(netip.AddrFrom4([4]byte{10, 7, byte(i >> 8), byte(i)}).String())
			a1, a2 := sel(v1, "waff", tA, c).Addrs[0], sel(v2, "waff", tA, c).Addrs[0]
			counts[a1]++
			if a1 != netip.MustParseAddr("192.0.2.10") && a1 != a2 {
				t.Fatalf("%v moved from %v to %v", c.Addr, a1, a2)
			}
		}
		if len(counts) != 2 {
			t.Errorf("hashing used %v, want both addresses", counts)
		}
	})
}

func TestSelectNotAPoolType(t *testing.T) {
	s := loadSel(t, selPools())
	r := sel(NewView(s, nil), "geo", 16 /* TXT */, pkt("127.0.1.5"))
	if !r.NoData || len(r.Addrs) != 0 {
		t.Errorf("TXT at a pool: got %+v, want NODATA", r)
	}
}

// TestSelectManySites covers the documented slow path: more sites than fit
// the stack arrays still select correctly (allocating).
func TestSelectManySites(t *testing.T) {
	var b strings.Builder
	b.WriteString("[big]\npolicy = \"geo\"\nanswers = 3\naffinity = \"client-subnet\"\n")
	for i := range maxStackSites + 6 {
		fmt.Fprintf(&b, "[[big.sites]]\nname = \"s%d\"\nlat = %d\nlon = %d\naddresses = [\"10.%d.%d.1\", \"10.%d.%d.2\"]\n", i, i%80, i, i/256, i%256, i/256, i%256)
	}
	// The last site claims DE.
	b.WriteString("countries = [\"DE\"]\n")
	s := loadFiles(t, selNode, zoneText("big"), b.String())
	v := NewView(s, nil)
	last := fmt.Sprintf("s%d", maxStackSites+5)
	r := sel(v, "big", tA, ecs("127.0.1.0", 24))
	if siteName(r) != last || len(r.Addrs) != 3 {
		t.Fatalf("got %s %v, want 2 addresses of the DE site %s and one more", siteName(r), r.Addrs, last)
	}
	for range 50 {
		checkInvariants(t, v, s.Pools["big"], tA, pkt("127.0.50.9"))
	}
}

// TestSelectUnknownLocations: a record with only a registered country
// places the client in that country; a client no site can place gets
// the pool's default_order, the same answer and scope every time, and
// its networks merge with neighbours whose ranking is the same.
func TestSelectUnknownLocations(t *testing.T) {
	pools := selPools() +
		"[def]\npolicy = \"geo\"\nanswers = 1\ndefault_order = [\"sin\", \"fra\"]\n" + fmt.Sprintf(sites3, "def") +
		"[defeu]\npolicy = \"geo\"\nanswers = 1\ndefault_order = [\"fra\", \"iad\", \"sin\"]\n" + fmt.Sprintf(sites3, "defeu")
	s := loadFiles(t, selNode, zoneText("geo", "def", "defeu"), pools)
	v := NewView(s, nil)
	siteOf := func(r Result) string {
		if r.Site == nil {
			return ""
		}
		return r.Site.Name
	}

	// 127.0.40.0/24 names only the registered country AU: Oceania
	// (sin claims it); 127.0.42.0/24 only BR: South America (iad).
	for _, tc := range []struct{ client, want string }{
		{"127.0.40.9", "sin"}, {"2001:db8:40::9", "sin"}, {"127.0.42.9", "iad"},
	} {
		qtype := tA
		if netip.MustParseAddr(tc.client).Is6() {
			qtype = tAAAA
		}
		for range 20 {
			if r := sel(v, "geo", qtype, pkt(tc.client)); siteOf(r) != tc.want {
				tr := v.Explain(s.Pools["geo"], qtype, pkt(tc.client))
				t.Fatalf("registered-country client %s: site %s, want %s\n%s", tc.client, siteOf(r), tc.want, tr.Text())
			}
		}
	}
	if loc, _ := s.Geo.Lookup(netip.MustParseAddr("127.0.40.9")); loc.Country != "AU" || loc.Continent != "OC" || !loc.HasCoords || !loc.Registered {
		t.Errorf("127.0.40.9 located at %+v, want AU, OC, the country-level coordinates, Registered", *loc)
	}

	// Unknown clients: without default_order a weighted draw among all
	// three sites; with it always the first listed site.
	seen := map[string]bool{}
	for range 200 {
		seen[siteOf(sel(v, "geo", tA, pkt("127.0.50.1")))] = true
		if r := sel(v, "def", tA, ecs("127.0.50.0", 24)); siteOf(r) != "sin" {
			t.Fatalf("unknown client with default_order [sin, fra]: site %s", siteOf(r))
		}
	}
	if len(seen) < 2 {
		t.Errorf("unknown client without default_order always went to %v, want a weighted draw", seen)
	}
	r1 := sel(v, "def", tA, ecs("127.0.50.0", 24))
	r2 := sel(NewView(s, health(siteDown("sin")...)), "def", tA, ecs("127.0.50.0", 24))
	if siteOf(r2) != "fra" || r2.Scope != r1.Scope {
		t.Errorf("sin down: site %s scope %d, want fra with the same scope %d", siteOf(r2), r2.Scope, r1.Scope)
	}
	tr := v.Explain(s.Pools["def"], tA, ecs("127.0.50.0", 24))
	if len(tr.Pools[0].Sites) == 0 || !strings.Contains(tr.Pools[0].Sites[0].Reason, "default_order position 1") {
		t.Errorf("explain does not name default_order:\n%s", tr.Text())
	}

	// 2001:db8:1::/48 (DE: fra, iad, sin by distance) follows unknown
	// space. With the default order equal to DE's ranking they merge
	// into 2001:db8::/47; without, DE keeps its /48.
	if r := sel(v, "geo", tAAAA, ecs("2001:db8:1::", 56)); r.Scope != 48 {
		t.Errorf("geo 2001:db8:1::/56: scope %d, want 48", r.Scope)
	}
	if r := sel(v, "defeu", tAAAA, ecs("2001:db8:1::", 56)); r.Scope != 47 || siteOf(r) != "fra" {
		t.Errorf("defeu 2001:db8:1::/56: site %s scope %d, want fra /47 (merged with the unknown 2001:db8::/48)", siteOf(r), r.Scope)
	}
}

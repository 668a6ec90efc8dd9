package zones

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gslbd/geo"
	"gslbd/internal/cputime"
)

// The tests here measure selection on a full-size City database from
// GSLBD_GEOLITE2 and skip without one: a real database is an optional
// input (its licence keeps it out of the repository; docs/geoip.md says
// how to fetch GeoLite2-City into .cache/), and the committed test
// database covers correctness without it.

// fullSites are twenty data centers around the world. Only countries
// with one site are claimed and no continent is: most clients are
// ranked by distance over all twenty, the case with the most distinct
// site orders and so the least merging.
var fullSites = []struct {
	name     string
	lat, lon float64
	country  string
}{
	{"fra", 50.11, 8.68, "DE"}, {"ams", 52.31, 4.76, "NL"}, {"lhr", 51.47, -0.45, "GB"},
	{"mad", 40.47, -3.56, "ES"}, {"waw", 52.17, 20.97, "PL"}, {"iad", 38.95, -77.45, ""},
	{"ord", 41.97, -87.91, ""}, {"dfw", 32.90, -97.04, ""}, {"sjc", 37.36, -121.93, ""},
	{"yyz", 43.68, -79.63, "CA"}, {"mex", 19.44, -99.07, "MX"}, {"gru", -23.43, -46.47, "BR"},
	{"scl", -33.39, -70.79, "CL"}, {"jnb", -26.14, 28.25, "ZA"}, {"dxb", 25.25, 55.36, "AE"},
	{"bom", 19.09, 72.87, "IN"}, {"sin", 1.35, 103.99, "SG"}, {"nrt", 35.77, 140.39, "JP"},
	{"syd", -33.94, 151.18, "AU"}, {"los", 6.58, 3.32, "NG"},
}

// fullPools is a 3-site geo pool claiming countries and continents (the
// usual setup) and the 20-site one.
func fullPools() string {
	var b strings.Builder
	b.WriteString("[geo3]\npolicy = \"geo\"\nanswers = 1\n")
	b.WriteString(fmt.Sprintf(sites3, "geo3"))
	b.WriteString("[geo20]\npolicy = \"geo\"\nanswers = 1\n")
	for i, s := range fullSites {
		fmt.Fprintf(&b, "[[geo20.sites]]\nname = %q\nlat = %v\nlon = %v\n", s.name, s.lat, s.lon)
		if s.country != "" {
			fmt.Fprintf(&b, "countries = [%q]\n", s.country)
		}
		fmt.Fprintf(&b, "addresses = [\"10.0.%d.1\", \"2001:db8:%x::1\"]\n", i, i)
	}
	return b.String()
}

// loadFull loads fullPools over the database at path.
func loadFull(tb testing.TB, path string) *Snapshot {
	tb.Helper()
	dir := tb.TempDir()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "zones"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "pools"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "gslbd.toml"), []byte(fmt.Sprintf(selNode, path)), 0o644))
	must(os.WriteFile(filepath.Join(dir, "zones", "sel.toml"), []byte(zoneText("geo3", "geo20")), 0o644))
	must(os.WriteFile(filepath.Join(dir, "pools", "pools.toml"), []byte(fullPools()), 0o644))
	s, err := loadTree(filepath.Join(dir, "gslbd.toml"))
	must(err)
	return s
}

func fullDB(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv("GSLBD_GEOLITE2")
	if p == "" {
		tb.Skip("GSLBD_GEOLITE2 not set: no full-size database to measure (optional, see docs/geoip.md)")
	}
	p, err := filepath.Abs(p)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// knownClients are n random client addresses the database locates
// (half IPv4, half IPv6 in 2000::/3), so that samples measure populated
// space rather than the unallocated bulk of it.
func knownClients(db *geo.DB, n int, seed uint64) []netip.Addr {
	rnd := rand.New(rand.NewPCG(seed, seed+1))
	out := make([]netip.Addr, 0, n)
	for fam := range 2 {
		// Most of 2000::/3 is unallocated: allow many tries per hit.
		for found, tries := 0, 0; found < n/2 && tries < 2000*n; tries++ {
			var a netip.Addr
			if fam == 0 {
				v := rnd.Uint32()
				a = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			} else {
				var b [16]byte
				hi, lo := 0x2000_0000_0000_0000|rnd.Uint64()>>3, rnd.Uint64()
				for k := range 8 {
					b[k], b[8+k] = byte(hi>>(56-8*k)), byte(lo>>(56-8*k))
				}
				a = netip.AddrFrom16(b)
			}
			if loc, _ := db.Lookup(a); loc.Source != geo.SourceUnknown {
				out = append(out, a)
				found++
			}
		}
	}
	return out
}

// TestSelectFull measures what the per-pool tables cost on a full City
// database (build time, memory, ranges) and what they gain: how many
// client networks get a wider ECS scope than their location's own
// network, and the median scope before (the location's network) and
// after (the merged network of the same site order). It also checks the
// safety property on the real data: sampled addresses inside each scope
// have the client's site order.
func TestSelectFull(t *testing.T) {
	path := fullDB(t)
	t0 := cputime.Now()
	s := loadFull(t, path)
	loadCPU := cputime.Now() - t0
	info := s.Geo.Info()
	t.Logf("database %s: %d ranges, %d locations, geo.Open %v; whole load (geo.Open + tables) CPU %v",
		info.Type, info.Ranges, info.Locations, info.LoadDuration.Round(1e6), loadCPU.Round(1e6))
	for _, name := range []string{"geo3", "geo20"} {
		p := s.Pools[name]
		c0 := cputime.Now()
		p.prepareGeo(s.Geo) // again, to time it alone
		cpu := cputime.Now() - c0
		orderBytes := 0
		for _, o := range p.sel.geoOrders {
			orderBytes += 8*len(o) + 24
		}
		t.Logf("pool %s (%d sites): table built in CPU %v: %d site orders (%.1f KiB), %d ranges (DB %d), table %.1f KiB",
			name, len(p.Sites), cpu.Round(1e5), len(p.sel.geoOrders), float64(orderBytes)/1024,
			p.sel.geoTab.Ranges(), info.Ranges, float64(p.sel.geoTab.Bytes())/1024)
	}

	v := NewView(s, nil)
	n := 20000
	if testing.Short() {
		n = 2000
	}
	clients := knownClients(s.Geo, n, 42)
	rng := rand.New(rand.NewPCG(9, 10))
	dst := make([]netip.Addr, 0, 8)
	for _, name := range []string{"geo3", "geo20"} {
		p := s.Pools[name]
		for fam, src := range map[string]int{"IPv4": 24, "IPv6": 56} {
			var before, after, beforeHost, afterHost []int
			wider, widerHost := 0, 0
			for _, a := range clients {
				if a.Is4() != (fam == "IPv4") {
					continue
				}
				_, locBits := s.Geo.Lookup(a)
				netw := netip.PrefixFrom(a, src).Masked().Addr()
				r := v.Select(p, tA, Client{Addr: netw, ECS: true, SourcePrefix: uint8(src)}, dst)
				before, after = append(before, min(locBits, src)), append(after, int(r.Scope))
				if int(r.Scope) < min(locBits, src) {
					wider++
				}
				rh := v.Select(p, tA, Client{Addr: a, ECS: true, SourcePrefix: uint8(a.BitLen())}, dst)
				beforeHost, afterHost = append(beforeHost, locBits), append(afterHost, int(rh.Scope))
				if int(rh.Scope) < locBits {
					widerHost++
				}
				if int(rh.Scope) > locBits {
					t.Errorf("%s: %v scope /%d narrower than its location's /%d", name, a, rh.Scope, locBits)
				}
				want := refOrder(p, s.Geo, a)
				scoped := netip.PrefixFrom(a, int(rh.Scope)).Masked()
				for _, y := range []netip.Addr{scoped.Addr(), lastAddr(scoped), randomIn(rng, scoped), randomIn(rng, scoped)} {
					if got := refOrder(p, s.Geo, y); !slices.Equal(got, want) {
						t.Fatalf("%s: %v has order %s with scope %v, but %v in it has %s", name, a, orderString(p, want), scoped, y, orderString(p, got))
					}
				}
			}
			t.Logf("pool %s, %d %s clients: as /%d client networks, %.1f%% get a wider scope, median /%d before, /%d after; "+
				"as host addresses, %.1f%% wider, median /%d before, /%d after",
				name, len(before), fam, src, 100*float64(wider)/float64(len(before)), median(before), median(after),
				100*float64(widerHost)/float64(len(before)), median(beforeHost), median(afterHost))
		}
	}
}

func median(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkSelectFull is Select for a geo pool of 3 and of 20 sites over
// random located clients of the full database, with ECS, every address
// up.
func BenchmarkSelectFull(b *testing.B) {
	s := loadFull(b, fullDB(b))
	v := NewView(s, nil)
	clients := knownClients(s.Geo, 1<<14, 7)
	for _, name := range []string{"geo3", "geo20"} {
		b.Run(name, func(b *testing.B) {
			p := s.Pools[name]
			cs := make([]Client, len(clients))
			for i, a := range clients {
				cs[i] = Client{Addr: a, ECS: true, SourcePrefix: uint8(a.BitLen())}
			}
			benchSelect(b, v, p, tA, cs)
		})
	}
}

// benchSelect runs Select over the clients in turn and reports the CPU
// time per query too: on a shared machine wall time mostly measures the
// neighbours.
func benchSelect(b *testing.B, v *View, p *Pool, qtype uint16, cs []Client) {
	dst := make([]netip.Addr, 0, 8)
	b.ReportAllocs()
	i := 0
	c0 := cputime.Now()
	for b.Loop() {
		v.Select(p, qtype, cs[i%len(cs)], dst)
		i++
	}
	b.ReportMetric(float64(cputime.Now()-c0)/float64(b.N), "cpu-ns/op")
}

package zones

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// cityDB is the generated test database (testdata/geo/README.md lists its
// networks): 127.0.1.0/24 DE, 127.0.2.0/24 US, 127.0.13.0/24 FR, …
const cityDB = "../testdata/geo/city.mmdb"

// selNode is the node config of the selection tests: the test city
// database plus overrides. Overrides win over the database.
const selNode = `
[node]
name = "t1"
[dns]
listen = []
[geo]
city_db = %q
[[geo.networks]]
cidr = "10.1.0.0/16"
country = "US"
continent = "NA"
lat = 40.71
lon = -74.0
[[geo.networks]]
cidr = "127.0.1.128/25"
country = "JP"
continent = "AS"
lat = 35.68
lon = 139.69
[zones]
dir = "zones"
[pools]
dir = "pools"
[health]
probe = false
[admin]
listen = ""
`

// zoneText is a zone binding one name per pool (the name is the pool's),
// "app" as a CNAME to the first, "*.wild" to the last, and a few static
// names for explain.
func zoneText(pools ...string) string {
	var b strings.Builder
	b.WriteString(`
origin = "sel.test."
ttl = 300
nameservers = ["ns1.sel.test."]
[soa]
rname = "hostmaster.sel.test."
serial = 1
[records.ns1]
A = ["192.0.2.53"]
[records.legacy]
A = ["192.0.2.80", "192.0.2.81"]
TXT = ["hello"]
ttl = 60
[records."x.deep.sub"]
TXT = ["below empty non-terminals"]
[records.app]
`)
	fmt.Fprintf(&b, "CNAME = %q\n", pools[0])
	fmt.Fprintf(&b, "[records.\"*.wild\"]\npool = %q\n", pools[len(pools)-1])
	for _, p := range pools {
		fmt.Fprintf(&b, "[records.%s]\npool = %q\n", p, p)
	}
	return b.String()
}

var selZone = zoneText("geo", "w", "waff", "fo", "geoaff")

// sites3 is three data centers: Frankfurt, Ashburn, Singapore, each with
// two IPv4 and one IPv6 address.
const sites3 = `
[[%[1]s.sites]]
name = "fra"
lat = 50.11
lon = 8.68
countries = ["DE", "AT", "CH"]
continents = ["EU"]
addresses = ["192.0.2.10", "192.0.2.11", "2001:db8:10::10"]
[[%[1]s.sites]]
name = "iad"
lat = 38.95
lon = -77.45
countries = ["US", "CA"]
continents = ["NA", "SA"]
weight = 300
addresses = ["198.51.100.10", "198.51.100.11", "2001:db8:20::10"]
[[%[1]s.sites]]
name = "sin"
lat = 1.35
lon = 103.82
countries = ["SG", "JP"]
continents = ["AS", "OC"]
addresses = ["203.0.113.10", "203.0.113.11", "2001:db8:30::10"]
`

func selPools() string {
	var b strings.Builder
	b.WriteString("[geo]\npolicy = \"geo\"\nanswers = 1\nttl = 30\n")
	b.WriteString(fmt.Sprintf(sites3, "geo"))
	b.WriteString("[geoaff]\npolicy = \"geo\"\nanswers = 1\nttl = 20\naffinity = \"client-subnet\"\n")
	b.WriteString(fmt.Sprintf(sites3, "geoaff"))
	b.WriteString("[w]\npolicy = \"weighted\"\nanswers = 1\nttl = 10\n")
	b.WriteString(fmt.Sprintf(sites3, "w"))
	b.WriteString("[waff]\npolicy = \"weighted\"\nanswers = 1\naffinity = \"client-subnet\"\n")
	b.WriteString(fmt.Sprintf(sites3, "waff"))
	b.WriteString("[fo]\npolicy = \"failover\"\nanswers = 2\n")
	b.WriteString(fmt.Sprintf(sites3, "fo"))
	return b.String()
}

// loadSel writes the node config, selZone and the pools text into a
// temporary directory and loads them with the real loader.
func loadSel(t testing.TB, pools string) *Snapshot {
	t.Helper()
	return loadFiles(t, selNode, selZone, pools)
}

func loadFiles(t testing.TB, node, zone, pools string) *Snapshot {
	t.Helper()
	dir := t.TempDir()
	db, err := filepath.Abs(cityDB)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "zones"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "pools"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "gslbd.toml"), []byte(fmt.Sprintf(node, db)), 0o644))
	must(os.WriteFile(filepath.Join(dir, "zones", "sel.toml"), []byte(zone), 0o644))
	must(os.WriteFile(filepath.Join(dir, "pools", "pools.toml"), []byte(pools), 0o644))
	s, err := loadTree(filepath.Join(dir, "gslbd.toml"))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return s
}

// testHealth is a Health from explicit sets, the way the mesh's verdict
// snapshot answers: by target key ("<addr>|<check>") and by drain.
type testHealth struct {
	down    map[netip.Addr]bool
	drained map[string]bool // "pool/site" or "pool/site/addr"
}

func (h *testHealth) Down(key string) bool {
	a, _, _ := strings.Cut(key, "|")
	return h.down[netip.MustParseAddr(a)]
}

func (h *testHealth) Drained(pool, site string, addr netip.Addr) bool {
	return h.drained[pool+"/"+site] || h.drained[pool+"/"+site+"/"+addr.String()]
}

// health builds a testHealth: "192.0.2.10" marks an address down,
// "drain:pool/site[/addr]" drains.
func health(items ...string) *testHealth {
	h := &testHealth{down: map[netip.Addr]bool{}, drained: map[string]bool{}}
	for _, it := range items {
		if d, ok := strings.CutPrefix(it, "drain:"); ok {
			h.drained[d] = true
			continue
		}
		h.down[netip.MustParseAddr(it)] = true
	}
	return h
}

// siteDown lists the addresses of a site of sites3, for health().
func siteDown(site string) []string {
	switch site {
	case "fra":
		return []string{"192.0.2.10", "192.0.2.11", "2001:db8:10::10"}
	case "iad":
		return []string{"198.51.100.10", "198.51.100.11", "2001:db8:20::10"}
	case "sin":
		return []string{"203.0.113.10", "203.0.113.11", "2001:db8:30::10"}
	}
	panic("unknown site " + site)
}

func pkt(a string) Client { return Client{Addr: netip.MustParseAddr(a)} }

func ecs(a string, bits uint8) Client {
	return Client{Addr: netip.MustParseAddr(a), ECS: true, SourcePrefix: bits}
}

// sel runs Select with a fresh buffer.
func sel(v *View, pool string, qtype uint16, c Client) Result {
	p := v.Snap.Pools[pool]
	if p == nil {
		panic("no pool " + pool)
	}
	return v.Select(p, qtype, c, make([]netip.Addr, 0, 8))
}

func siteName(r Result) string {
	if r.Site == nil {
		return ""
	}
	return r.Site.Name
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func sortedAddrs(as []netip.Addr) []netip.Addr {
	out := slices.Clone(as)
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

var (
	tA    = dns.TypeA
	tAAAA = dns.TypeAAAA
)

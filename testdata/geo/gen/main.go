// Command gen writes the test GeoIP databases of testdata/geo: city.mmdb
// (GeoIP2-City format), country.mmdb (GeoIP2-Country format) and the
// README.md that lists every network and its place. The networks are
// loopback and documentation ranges, so the databases can never be
// mistaken for real data, and the output is deterministic (fixed build
// time), so a test can check the committed files are current.
//
//	go run ./testdata/geo/gen -out testdata/geo
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// place is one location of the table.
type place struct {
	city, country, countryName, continent string
	lat, lon                              float64
	noCoords                              bool // a country- or continent-level record
	// registered makes a record with only registered_country (the
	// country the network is registered in, country being the place):
	// what GeoLite2 has for many anycast and hosting networks.
	registered bool
}

var (
	frankfurt    = place{"Frankfurt", "DE", "Germany", "EU", 50.1109, 8.6821, false, false}
	ashburn      = place{"Ashburn", "US", "United States", "NA", 39.0438, -77.4874, false, false}
	tokyo        = place{"Tokyo", "JP", "Japan", "AS", 35.6895, 139.6917, false, false}
	saoPaulo     = place{"São Paulo", "BR", "Brazil", "SA", -23.5505, -46.6333, false, false}
	sydney       = place{"Sydney", "AU", "Australia", "OC", -33.8688, 151.2093, false, false}
	johannesburg = place{"Johannesburg", "ZA", "South Africa", "AF", -26.2041, 28.0473, false, false}
	london       = place{"London", "GB", "United Kingdom", "EU", 51.5074, -0.1278, false, false}
	toronto      = place{"Toronto", "CA", "Canada", "NA", 43.6532, -79.3832, false, false}
	singapore    = place{"Singapore", "SG", "Singapore", "AS", 1.3521, 103.8198, false, false}
	buenosAires  = place{"Buenos Aires", "AR", "Argentina", "SA", -34.6037, -58.3816, false, false}
	auckland     = place{"Auckland", "NZ", "New Zealand", "OC", -36.8485, 174.7633, false, false}
	lagos        = place{"Lagos", "NG", "Nigeria", "AF", 6.5244, 3.3792, false, false}
	paris        = place{"Paris", "FR", "France", "EU", 48.8566, 2.3522, false, false}
	mumbai       = place{"Mumbai", "IN", "India", "AS", 19.0760, 72.8777, false, false}
	mexicoCity   = place{"Mexico City", "MX", "Mexico", "NA", 19.4326, -99.1332, false, false}
	santiago     = place{"Santiago", "CL", "Chile", "SA", -33.4489, -70.6693, false, false}
	nairobi      = place{"Nairobi", "KE", "Kenya", "AF", -1.2921, 36.8219, false, false}
	// Country- and continent-level records, as real databases have for
	// networks they cannot place more precisely.
	switzerland = place{"", "CH", "Switzerland", "EU", 0, 0, true, false}
	europe      = place{"", "", "", "EU", 0, 0, true, false}
	// A country-level record with coordinates (MaxMind places such
	// records at the country's centre), and records that name only the
	// registered country, one of a country with a country-level record
	// and one of a country without.
	australia    = place{"", "AU", "Australia", "OC", -25.0, 135.0, false, false}
	registeredAU = place{"", "AU", "Australia", "", 0, 0, true, true}
	registeredBR = place{"", "BR", "Brazil", "", 0, 0, true, true}
)

// network is one row of the table; a nil place inserts nothing (the
// network stays without data, to test unknown clients).
type network struct {
	cidr  string
	place *place
}

// table lists every network of the databases. The first three loopback
// rows are part of the contract tests of other packages: keep them.
var table = []network{
	{"127.0.1.0/24", &frankfurt},
	{"127.0.2.0/24", &ashburn},
	{"127.0.3.0/24", &tokyo},
	{"127.0.4.0/24", &saoPaulo},
	{"127.0.5.0/24", &sydney},
	{"127.0.6.0/24", &johannesburg},
	{"127.0.7.0/24", &london},
	{"127.0.8.0/24", &toronto},
	{"127.0.9.0/24", &singapore},
	{"127.0.10.0/24", &buenosAires},
	{"127.0.11.0/24", &auckland},
	{"127.0.12.0/24", &lagos},
	{"127.0.13.0/24", &paris},
	{"127.0.14.0/24", &mumbai},
	{"127.0.15.0/24", &mexicoCity},
	{"127.0.16.0/24", &santiago},
	{"127.0.17.0/24", &nairobi},
	// Two neighbours with the same place: a reader that merges answers
	// reports 127.0.20.0/23.
	{"127.0.20.0/24", &frankfurt},
	{"127.0.21.0/24", &frankfurt},
	{"127.0.30.0/24", &switzerland},
	{"127.0.31.0/24", &europe},
	{"127.0.40.0/24", &registeredAU},
	{"127.0.41.0/24", &australia},
	{"127.0.42.0/24", &registeredBR},

	{"192.0.2.0/26", &frankfurt},
	{"192.0.2.64/26", &ashburn},
	{"192.0.2.128/26", &tokyo},
	{"192.0.2.192/26", nil},
	{"198.51.100.0/26", &saoPaulo},
	{"198.51.100.64/26", &sydney},
	{"198.51.100.128/26", &johannesburg},
	{"198.51.100.192/26", &london},
	{"203.0.113.0/26", &toronto},
	{"203.0.113.64/26", &singapore},
	{"203.0.113.128/26", &auckland},
	{"203.0.113.192/26", &lagos},

	{"2001:db8:1::/48", &frankfurt},
	{"2001:db8:2::/48", &ashburn},
	{"2001:db8:3::/48", &tokyo},
	{"2001:db8:4::/48", &saoPaulo},
	{"2001:db8:5::/48", &sydney},
	{"2001:db8:6::/48", &johannesburg},
	{"2001:db8:7::/48", &london},
	{"2001:db8:8::/48", &toronto},
	{"2001:db8:9::/48", &singapore},
	{"2001:db8:a::/48", &buenosAires},
	{"2001:db8:b::/48", &auckland},
	{"2001:db8:c::/48", &lagos},
	{"2001:db8:d::/48", &paris},
	{"2001:db8:e::/48", &mumbai},
	{"2001:db8:f::/48", &mexicoCity},
	{"2001:db8:10::/48", &santiago},
	{"2001:db8:11::/48", &nairobi},
	{"2001:db8:20::/48", &frankfurt},
	{"2001:db8:21::/48", &frankfurt},
	{"2001:db8:30::/48", &switzerland},
	{"2001:db8:31::/48", &europe},
	{"2001:db8:40::/48", &registeredAU},
}

// buildEpoch is fixed so that regenerating gives the same bytes.
var buildEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

func names(s string) mmdbtype.Map {
	return mmdbtype.Map{"en": mmdbtype.String(s)}
}

var continentNames = map[string]string{
	"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America",
	"OC": "Oceania", "SA": "South America",
}

func record(p *place, city bool) mmdbtype.Map {
	if p.registered {
		return mmdbtype.Map{"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String(p.country), "names": names(p.countryName)}}
	}
	m := mmdbtype.Map{
		"continent": mmdbtype.Map{"code": mmdbtype.String(p.continent), "names": names(continentNames[p.continent])},
	}
	if p.country != "" {
		m["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(p.country), "names": names(p.countryName)}
		m["registered_country"] = m["country"]
	}
	if city && p.city != "" {
		m["city"] = mmdbtype.Map{"geoname_id": mmdbtype.Uint32(geonameID(p.city)), "names": names(p.city)}
	}
	if city && !p.noCoords {
		m["location"] = mmdbtype.Map{
			"latitude":        mmdbtype.Float64(p.lat),
			"longitude":       mmdbtype.Float64(p.lon),
			"accuracy_radius": mmdbtype.Uint16(20),
		}
	}
	return m
}

// geonameID is a stand-in for the GeoNames ID real databases give every
// city (gslbd reads only whether there is one): a hash of the name.
func geonameID(city string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(city); i++ {
		h = (h ^ uint32(city[i])) * 16777619
	}
	return h>>8 + 1
}

func write(path, dbType string, city bool) error {
	t, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		Description:             map[string]string{"en": "gslbd test database: loopback and documentation networks only"},
		Languages:               []string{"en"},
		BuildEpoch:              buildEpoch,
		IncludeReservedNetworks: true,
		RecordSize:              24,
	})
	if err != nil {
		return fmt.Errorf("new %s: %w", dbType, err)
	}
	for _, n := range table {
		if n.place == nil {
			continue
		}
		_, ipn, err := net.ParseCIDR(n.cidr)
		if err != nil {
			return fmt.Errorf("parse %s: %w", n.cidr, err)
		}
		if err := t.Insert(ipn, record(n.place, city)); err != nil {
			return fmt.Errorf("insert %s: %w", n.cidr, err)
		}
	}
	var buf bytes.Buffer
	if _, err := t.WriteTo(&buf); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func readme() []byte {
	var b strings.Builder
	b.WriteString(`# Test GeoIP databases

Generated by ` + "`go generate ./geo/`" + ` (which runs ` + "`go run ./testdata/geo/gen -out testdata/geo`" + `);
do not edit by hand. ` + "`city.mmdb`" + ` is in GeoIP2-City format (country, continent,
city name, latitude/longitude), ` + "`country.mmdb`" + ` in GeoIP2-Country format (country
and continent only) over the same networks. Only loopback (127.0.0.0/8) and
documentation networks (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
2001:db8::/32) are used. Every address not listed is unknown. "registered: AU"
marks a record with only registered_country, as GeoLite2 has for many anycast
and hosting networks. The geo tests
read this table and check every row against both databases.

To point gslbd at a real database instead, see docs/geoip.md.

| network | country | continent | city | latitude | longitude |
|---|---|---|---|---|---|
`)
	for _, n := range table {
		if n.place == nil {
			fmt.Fprintf(&b, "| %s | | | | | |\n", n.cidr)
			continue
		}
		p := n.place
		if p.registered {
			fmt.Fprintf(&b, "| %s | registered: %s | | | | |\n", n.cidr, p.country)
			continue
		}
		lat, lon := "", ""
		if !p.noCoords {
			lat, lon = fmt.Sprint(p.lat), fmt.Sprint(p.lon)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", n.cidr, p.country, p.continent, p.city, lat, lon)
	}
	return []byte(b.String())
}

func main() {
	out := flag.String("out", "testdata/geo", "directory to write city.mmdb, country.mmdb and README.md into")
	flag.Parse()
	if err := write(filepath.Join(*out, "city.mmdb"), "GeoIP2-City", true); err != nil {
		log.Fatal(err)
	}
	if err := write(filepath.Join(*out, "country.mmdb"), "GeoIP2-Country", false); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "README.md"), readme(), 0o644); err != nil {
		log.Fatal(err)
	}
}

package mmdb

import (
	"net/netip"
	"testing"

	"gslbd/geo"
)

var testDBs = []struct{ name, path string }{
	{"City", "../../testdata/geo/city.mmdb"},
	{"Country", "../../testdata/geo/country.mmdb"},
}

// TestOpen reads both test databases through the geoip2 model types and
// places a client of each (testdata/geo/README.md lists the networks).
func TestOpen(t *testing.T) {
	for _, tc := range testDBs {
		db, err := Open(tc.path, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		i := db.Info()
		if i.Networks == 0 || i.Locations < 2 {
			t.Errorf("%s: %+v", tc.name, i)
		}
		loc, _ := db.Lookup(netip.MustParseAddr("127.0.1.5"))
		if loc.Source != geo.SourceDatabase || loc.Country != "DE" || loc.Continent != "EU" {
			t.Errorf("%s: 127.0.1.5 is %+v, want DE EU from the database", tc.name, loc)
		}
		if tc.name == "City" && !loc.HasCoords {
			t.Errorf("%s: 127.0.1.5 has no coordinates", tc.name)
		}
	}
	if _, err := Open("../../testdata/geo/README.md", nil); err == nil {
		t.Error("a text file opened as a database")
	}
}

// BenchmarkOpen is the geo load time of the test databases
// (docs/geoip.md has the figures for a full City database).
func BenchmarkOpen(b *testing.B) {
	for _, tc := range testDBs {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Open(tc.path, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

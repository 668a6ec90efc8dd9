package mmdb

import (
	"bytes"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"gslbd/geo"
	"gslbd/internal/cputime"
)

// records reads the database at path and returns its reader, its data
// section and the offset of every distinct record, in walk order.
func records(tb testing.TB, path string) (*maxminddb.Reader, []byte, []uintptr) {
	tb.Helper()
	buf, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := maxminddb.OpenBytes(buf)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	seen := map[uintptr]bool{}
	var offs []uintptr
	for res := range r.Networks() {
		if !res.Found() {
			continue
		}
		if o := res.Offset(); !seen[o] {
			seen[o] = true
			offs = append(offs, o)
		}
	}
	start := r.Metadata.NodeCount * r.Metadata.RecordSize / 4
	end := bytes.LastIndex(buf, metadataMarker)
	return r, buf[start+16 : end], offs
}

// TestDecoderAgreesWithGeoip2 decodes every record of the test
// databases (and of GSLBD_GEOLITE2's, when set) with the walk's decoder
// and with geoip2.City through the reader: every part the decoder fills
// must be equal, a city's names apart (the decoder keeps only the
// GeoNameID of a city it has seen before).
func TestDecoderAgreesWithGeoip2(t *testing.T) {
	paths := []string{"../../testdata/geo/city.mmdb", "../../testdata/geo/country.mmdb"}
	if p := os.Getenv("GSLBD_GEOLITE2"); p != "" && !testing.Short() {
		paths = append(paths, p)
	}
	for _, path := range paths {
		r, data, offs := records(t, path)
		d := newDecoder(data)
		seenCity := map[uint]bool{}
		for _, off := range offs {
			rec, err := d.decode(off)
			if err != nil {
				t.Fatalf("%s: record at %d: %v", path, off, err)
			}
			var want geoip2.City
			if err := r.LookupOffset(off).Decode(&want); err != nil {
				t.Fatal(err)
			}
			got := d.city
			if seenCity[want.City.GeoNameID] {
				got.City.Names = want.City.Names
			}
			seenCity[want.City.GeoNameID] = true
			want.Postal, want.Traits = geoip2.CityPostal{}, geoip2.CityTraits{}
			if len(want.Subdivisions) == 0 {
				want.Subdivisions = got.Subdivisions[:0]
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: record at %d:\ndecoder %+v\ngeoip2  %+v", path, off, got, want)
			}
			if rec.Country != want.Country.ISOCode || rec.Continent != want.Continent.Code ||
				rec.RegisteredCountry != want.RegisteredCountry.ISOCode || rec.HasCoords != want.Location.HasCoordinates() {
				t.Fatalf("%s: record at %d: %+v from %+v", path, off, rec, want)
			}
		}
		t.Logf("%s: %d records, %d cities", path, len(offs), len(d.cities))
	}
}

// BenchmarkDecodeFull decodes every distinct record of the database at
// GSLBD_GEOLITE2 once, as a load does: with the walk's decoder (fresh,
// so its caches fill as in a load) and, for comparison, as geoip2.City
// through the reader. cpu-s/op is one pass over all records.
func BenchmarkDecodeFull(b *testing.B) {
	path := os.Getenv("GSLBD_GEOLITE2")
	if path == "" {
		b.Skip("GSLBD_GEOLITE2 not set: no full-size database to measure (optional, see docs/geoip.md)")
	}
	r, data, offs := records(b, path)
	run := func(b *testing.B, setup func(), decode func(off uintptr) error) {
		b.ReportAllocs()
		var cpu time.Duration
		for b.Loop() {
			setup()
			c0 := cputime.Now()
			for _, off := range offs {
				if err := decode(off); err != nil {
					b.Fatal(err)
				}
			}
			cpu += cputime.Now() - c0
		}
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	}
	b.Run("walk-decoder", func(b *testing.B) {
		var d *decoder
		run(b, func() { d = newDecoder(data) }, func(off uintptr) error {
			_, err := d.decode(off)
			return err
		})
	})
	b.Run("reader-geoip2.City", func(b *testing.B) {
		var c geoip2.City
		run(b, func() {}, func(off uintptr) error {
			c = geoip2.City{}
			return r.LookupOffset(off).Decode(&c)
		})
	})
}

// TestReleaseKeepsBytes: the walk hands the file back as it passes it
// (Metadata.Release, pages dropped from a mapping) and the whole file at
// its end; the load still answers, and the mapping still reads the same
// bytes afterwards.
func TestReleaseKeepsBytes(t *testing.T) {
	const path = "../../testdata/geo/city.mmdb"
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf, release, err := mapFile(f)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var calls []int
	db, err := open(path, buf, nil, func(n int) {
		calls = append(calls, n)
		dropPages(buf, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) == 0 || calls[len(calls)-1] != len(buf) {
		t.Fatalf("Release calls %v, want the last to be the whole file (%d)", calls, len(buf))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] < calls[i-1] {
			t.Fatalf("Release calls %v go backwards", calls)
		}
	}
	if !bytes.Equal(buf, want) {
		t.Fatal("the mapping reads other bytes after its pages were dropped")
	}
	if loc, _ := db.Lookup(netip.MustParseAddr("127.0.1.1")); loc.Country != "DE" {
		t.Fatalf("127.0.1.1 located in %+v, want DE", *loc)
	}
}

// TestOpenLike: a database opened like an earlier one of the same file
// (a reload of a new version: arrays sized from the earlier one, records
// decoded in file order in a pass of their own) has the same Locations
// and ranges as one opened without it. The Location IDs may differ (they
// are handed out in the order records are decoded), so the ranges are
// compared by what their Locations say.
func TestOpenLike(t *testing.T) {
	other, err := Open("../../testdata/geo/country.mmdb", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"../../testdata/geo/city.mmdb", "../../testdata/geo/country.mmdb"} {
		// Like itself, and like the other file (other sizes).
		checkLike(t, path, other)
	}
}

// TestOpenLikeFull is TestOpenLike for a full-size database
// (GSLBD_GEOLITE2), whose records lie in the file in another order than
// the search tree meets them: the in-order decoding hands out other IDs,
// and must give every range the same Location all the same.
func TestOpenLikeFull(t *testing.T) {
	path := os.Getenv("GSLBD_GEOLITE2")
	if path == "" {
		t.Skip("GSLBD_GEOLITE2 not set: no full-size database (optional, see docs/geoip.md)")
	}
	checkLike(t, path)
}

// checkLike opens path plainly, then like that plain DB and like each of
// others, and holds each to the plain one.
func checkLike(t *testing.T, path string, others ...*geo.DB) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plain, err := OpenFile(path, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, like := range append([]*geo.DB{plain}, others...) {
		db, err := OpenFileLike(path, f, nil, like)
		if err != nil {
			t.Fatal(err)
		}
		sameDB(t, path, db, plain)
	}
}

// sameDB fails unless db and want have as many Locations and the same
// ranges, each with a Location that says the same.
func sameDB(t *testing.T, path string, db, want *geo.DB) {
	t.Helper()
	if db.NumLocations() != want.NumLocations() {
		t.Fatalf("%s: %d Locations, want %d", path, db.NumLocations(), want.NumLocations())
	}
	got, exp := tableRanges(t, db), tableRanges(t, want)
	if len(got) != len(exp) {
		t.Fatalf("%s: %d ranges, want %d", path, len(got), len(exp))
	}
	ids := 0
	for i := range got {
		g, e := got[i], exp[i]
		gl, el := *db.Location(int32(g.Value)), *want.Location(int32(e.Value))
		ids += min(1, int(g.Value^e.Value))
		gl.ID, el.ID = 0, 0
		if g.From != e.From || g.To != e.To || gl != el {
			t.Fatalf("%s: range %v-%v: %+v; want %v-%v: %+v", path, g.From, g.To, gl, e.From, e.To, el)
		}
	}
	t.Logf("%s: %d ranges alike, %d of them under another Location ID", path, len(got), ids)
}

// tableRanges lists the DB's ranges with their Location IDs.
func tableRanges(t *testing.T, db *geo.DB) []geo.Range {
	t.Helper()
	ids := make([]uint32, db.NumLocations())
	for i := range ids {
		ids[i] = uint32(i)
	}
	tab, err := db.Derive(ids)
	if err != nil {
		t.Fatal(err)
	}
	var out []geo.Range
	tab.All(func(r geo.Range, _ bool) bool { out = append(out, r); return true })
	return out
}

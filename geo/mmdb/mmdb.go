// Package mmdb opens MaxMind DB files (GeoIP2/GeoLite2 City or Country,
// DB-IP City/Country Lite) into a geo.DB. It is the only package that
// uses a MaxMind reader: the query path imports geo, which holds the
// walked lookup table and nothing that reads the file format's data
// section, so the DNS server does not link the reader.
package mmdb

import (
	"bytes"
	"fmt"
	"math"
	"os"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"

	"gslbd/geo"
)

// Open loads the database at path ("" = none) with the overrides (see
// geo.Build for how they combine). The file is mapped, walked once and
// unmapped: nothing of it stays in memory.
func Open(path string, overrides []geo.Override) (*geo.DB, error) {
	if path == "" {
		return geo.New(overrides)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geo: open %s: %w", path, err)
	}
	defer f.Close() //nolint:errcheck // read-only
	return OpenFile(path, f, overrides)
}

// OpenFile is Open for a file the caller opened (and closes); path names
// it in errors. The file is mapped into memory for the walk and unmapped
// before OpenFile returns (read, where mmap is not available).
func OpenFile(path string, f *os.File, overrides []geo.Override) (*geo.DB, error) {
	return OpenFileLike(path, f, overrides, nil)
}

// OpenFileLike is OpenFile for a new version of the file like was built
// from (nil: none), which is what a reload reads: the new table is built
// in arrays of like's sizes, so that a reload does not need a second copy
// of it (geo.Metadata.Like), and the records are decoded in file order
// (geo.Metadata.InOrder), so that the file's pages do not add to the
// reload's peak.
func OpenFileLike(path string, f *os.File, overrides []geo.Override, like *geo.DB) (*geo.DB, error) {
	buf, release, err := mapFile(f)
	if err != nil {
		return nil, fmt.Errorf("geo: open %s: %w", path, err)
	}
	defer release()
	return openLike(path, buf, overrides, func(n int) { dropPages(buf, n) }, like)
}

// metadataMarker starts the metadata section of a MaxMind DB file.
var metadataMarker = []byte("\xAB\xCD\xEFMaxMind.com")

// OpenBytes is Open for a database already read into buf; path names it
// in errors. The buffer is not kept.
func OpenBytes(path string, buf []byte, overrides []geo.Override) (*geo.DB, error) {
	return open(path, buf, overrides, nil)
}

// open is OpenBytes; release, when set, is geo.Metadata.Release.
func open(path string, buf []byte, overrides []geo.Override, release func(n int)) (*geo.DB, error) {
	return openLike(path, buf, overrides, release, nil)
}

func openLike(path string, buf []byte, overrides []geo.Override, release func(n int), like *geo.DB) (*geo.DB, error) {
	r, err := maxminddb.OpenBytes(buf)
	if err != nil {
		return nil, fmt.Errorf("geo: open %s: %w", path, err)
	}
	defer r.Close() //nolint:errcheck // nothing to release for a byte buffer
	md := geo.Metadata{
		DatabaseType: r.Metadata.DatabaseType,
		BuildTime:    r.Metadata.BuildTime(),
		IPVersion:    r.Metadata.IPVersion,
		NodeCount:    r.Metadata.NodeCount,
		RecordSize:   r.Metadata.RecordSize,
		Release:      release,
		Like:         like,
		InOrder:      like != nil,
	}
	// The reader has checked the layout: the data section lies between
	// the search tree (and its 16-byte separator) and the metadata.
	start := r.Metadata.NodeCount * r.Metadata.RecordSize / 4
	end := bytes.LastIndex(buf, metadataMarker)
	if end < 0 || uint(end) < start+16 {
		return nil, fmt.Errorf("geo: open %s: corrupt database: no data section", path)
	}
	d := newDecoder(buf[start+16 : end])
	return geo.Build(path, buf, md, d.decode, overrides)
}

// decoder decodes the records of a City or Country database with
// geoip2's model types: each record into a geoip2.City (a Country
// database's records hold a subset of its parts), every part with the
// generated decoder of its geoip2 type — Continent, CountryRecord (the
// country and the registered one), RepresentedCountry, CitySubdivision,
// CityRecord and Location. Postal and traits, which say nothing about
// where a client is, are skipped.
//
// A file stores a continent, country, subdivision or city once and
// points to it from every record that has it, its names in up to eight
// languages included: GeoLite2-City has 343,000 distinct records but
// 7 continents, 250 countries, 4,100 subdivisions and 79,000 cities.
// Each is decoded once, at the first record that points to it, and
// copied from then on (a city: its GeoNameID, the one field of it the
// walk uses; a cache of whole city records would keep all their names
// through the load). That makes decoding with the model types cheaper
// than the hand-written record of six fields it replaces, and a third
// of what geoip2.City decoded record by record through the reader
// costs (docs/geoip.md has the figures).
type decoder struct {
	d *mmdbdata.Decoder

	city geoip2.City // the record being decoded, reused

	continents   offsetCache[geoip2.Continent, *geoip2.Continent]
	countries    offsetCache[geoip2.CountryRecord, *geoip2.CountryRecord]
	represented  offsetCache[geoip2.RepresentedCountry, *geoip2.RepresentedCountry]
	subdivisions offsetCache[geoip2.CitySubdivision, *geoip2.CitySubdivision]

	// cities maps the offset of a city to its GeoNameID.
	cities map[uint]uint
}

func newDecoder(data []byte) *decoder {
	return &decoder{d: mmdbdata.NewDecoder(data, 0, mmdbdata.WithStringCache())}
}

// decode is the geo.DecodeFunc: the record at off in the data section.
func (d *decoder) decode(off uintptr) (geo.Record, error) {
	c := &d.city
	if _, err := d.decodeCity(d.d.CursorAt(uint(off))); err != nil {
		return geo.Record{}, err
	}
	out := geo.Record{
		Country:           c.Country.ISOCode,
		Continent:         c.Continent.Code,
		RegisteredCountry: c.RegisteredCountry.ISOCode,
	}
	if c.Location.HasCoordinates() {
		out.Lat, out.Lon, out.HasCoords = *c.Location.Latitude, *c.Location.Longitude, true
		// A record that names no city or subdivision is a country-level
		// one: its coordinates are the country's.
		out.CountryLevel = out.Country != "" && c.City.GeoNameID == 0 && len(c.Subdivisions) == 0
	}
	return out, nil
}

// decodeCity decodes the record at cur into d.city, the same fields as
// geoip2.City's own decoder fills.
func (d *decoder) decodeCity(cur mmdbdata.Cursor) (mmdbdata.Cursor, error) {
	c := &d.city
	// Reset what a record may leave out, keeping the buffers that can
	// be reused: the subdivisions' array and the coordinates' floats.
	lat, lon := c.Location.Latitude, c.Location.Longitude
	*c = geoip2.City{Subdivisions: c.Subdivisions[:0]}
	m, err := cur.MapReader()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	next := m.First()
	for range m.Len() {
		key, v, err := next.ReadMapKey()
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
		switch string(key) {
		case "continent":
			next, err = d.continents.decode(v, &c.Continent)
		case "country":
			next, err = d.countries.decode(v, &c.Country)
		case "registered_country":
			next, err = d.countries.decode(v, &c.RegisteredCountry)
		case "represented_country":
			next, err = d.represented.decode(v, &c.RepresentedCountry)
		case "subdivisions":
			next, err = d.decodeSubdivisions(v)
		case "city":
			next, err = d.decodeCityRecord(v)
		case "location":
			next, err = d.decodeLocation(v, lat, lon)
		default:
			// postal and traits (geoip2.CityPostal, CityTraits) say
			// nothing about where a client is; decoding them would cost
			// a tenth more.
			next, err = v.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, fmt.Errorf("%s: %w", key, err)
		}
	}
	return m.End(next)
}

// decodeCityRecord decodes the city at cur into d.city.City: the whole
// geoip2.CityRecord the first time, its GeoNameID from the cache after
// that (up to maxCities cities; more are decoded every time).
func (d *decoder) decodeCityRecord(cur mmdbdata.Cursor) (mmdbdata.Cursor, error) {
	off, err := cur.Offset()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	if id, ok := d.cities[off]; ok {
		d.city.City.GeoNameID = id
		return cur.Skip()
	}
	next, err := d.city.City.UnmarshalMaxMindDBCursor(cur)
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	if d.cities == nil {
		d.cities = map[uint]uint{}
	}
	if len(d.cities) < maxCities {
		d.cities[off] = d.city.City.GeoNameID
	}
	return next, nil
}

// maxCities bounds the city cache (a few tens of MB at most; the
// 79,000 cities of GeoLite2-City take about 3).
const maxCities = 1 << 20

// decodeLocation decodes the location at cur into d.city.Location,
// reusing the floats of the last record's coordinates (lat, lon; nil
// the first time) rather than allocating two per record: they are set
// to NaN first, and one still NaN afterwards was not in the record.
func (d *decoder) decodeLocation(cur mmdbdata.Cursor, lat, lon *float64) (mmdbdata.Cursor, error) {
	l := &d.city.Location
	if lat != nil && lon != nil {
		*lat, *lon = math.NaN(), math.NaN()
		l.Latitude, l.Longitude = lat, lon
	}
	next, err := l.UnmarshalMaxMindDBCursor(cur)
	if l.Latitude != nil && math.IsNaN(*l.Latitude) {
		l.Latitude = nil
	}
	if l.Longitude != nil && math.IsNaN(*l.Longitude) {
		l.Longitude = nil
	}
	return next, err
}

func (d *decoder) decodeSubdivisions(cur mmdbdata.Cursor) (mmdbdata.Cursor, error) {
	s, err := cur.SliceMaxSize(32)
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	c := &d.city
	var next mmdbdata.Cursor
	for {
		_, v, ok := s.Next(next)
		if !ok {
			break
		}
		c.Subdivisions = append(c.Subdivisions, geoip2.CitySubdivision{})
		if next, err = d.subdivisions.decode(v, &c.Subdivisions[len(c.Subdivisions)-1]); err != nil {
			return mmdbdata.Cursor{}, err
		}
	}
	return s.End()
}

// offsetCache holds the parts decoded so far by their offset in the data
// section. Only parts the file shares through pointers repeat, and
// there are a few hundred of them; the cache stops growing at maxCached
// entries, so a file that stores every part inline costs decoding time
// rather than memory.
type offsetCache[T any, PT interface {
	*T
	mmdbdata.CursorUnmarshaler
}] struct {
	m map[uint]*T
}

const maxCached = 1 << 14

// decode decodes the value at cur into dst, from the cache when it was
// decoded before.
func (c *offsetCache[T, PT]) decode(cur mmdbdata.Cursor, dst *T) (mmdbdata.Cursor, error) {
	off, err := cur.Offset()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	if v, ok := c.m[off]; ok {
		*dst = *v
		return cur.Skip()
	}
	next, err := PT(dst).UnmarshalMaxMindDBCursor(cur)
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	if c.m == nil {
		c.m = map[uint]*T{}
	}
	if len(c.m) < maxCached {
		v := new(T)
		*v = *dst
		c.m[off] = v
	}
	return next, nil
}

// Package mmdb opens MaxMind DB files (GeoIP2/GeoLite2 City or Country,
// DB-IP City/Country Lite) into a geo.DB. It is the only package that
// uses a MaxMind reader: the query path imports geo, which holds the
// walked lookup table and nothing that reads the file format's data
// section, so the DNS server does not link the reader.
package mmdb

import (
	"fmt"
	"os"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"gslbd/geo"
)

// record is the part of a City or Country record that locates a client;
// the reader skips everything else (names, postal codes, traits), which
// keeps the one-time walk fast. The location is geoip2's model type; the
// country and continent records are not, because geoip2's carry their
// names in every language, and decoding those for every distinct record
// made a load of GeoLite2-City about 0.8 s of CPU (a quarter) slower.
// City and subdivisions only tell a country-level record (whose
// coordinates are the country's) from a finer one.
type record struct {
	Country           code            `maxminddb:"country"`
	RegisteredCountry code            `maxminddb:"registered_country"`
	Continent         continent       `maxminddb:"continent"`
	Location          geoip2.Location `maxminddb:"location"`
	City              geonameID       `maxminddb:"city"`
	Subdivisions      []geonameID     `maxminddb:"subdivisions"`
}

type code struct {
	ISOCode string `maxminddb:"iso_code"`
}

type continent struct {
	Code string `maxminddb:"code"`
}

type geonameID struct {
	GeoNameID uint `maxminddb:"geoname_id"`
}

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
	buf, release, err := mapFile(f)
	if err != nil {
		return nil, fmt.Errorf("geo: open %s: %w", path, err)
	}
	defer release()
	return OpenBytes(path, buf, overrides)
}

// OpenBytes is Open for a database already read into buf; path names it
// in errors. The buffer is not kept.
func OpenBytes(path string, buf []byte, overrides []geo.Override) (*geo.DB, error) {
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
	}
	// One record, reused: the decoder needs a pointer, and a fresh
	// variable per call would escape, which for the hundreds of
	// thousands of records of a City database is tens of MB of garbage.
	var rec record
	decode := func(off uintptr) (geo.Record, error) {
		rec = record{Subdivisions: rec.Subdivisions[:0]}
		if err := r.LookupOffset(off).Decode(&rec); err != nil {
			return geo.Record{}, err
		}
		out := geo.Record{
			Country:           rec.Country.ISOCode,
			Continent:         rec.Continent.Code,
			RegisteredCountry: rec.RegisteredCountry.ISOCode,
		}
		if rec.Location.HasCoordinates() {
			out.Lat, out.Lon, out.HasCoords = *rec.Location.Latitude, *rec.Location.Longitude, true
			out.CountryLevel = out.Country != "" && rec.City.GeoNameID == 0 && len(rec.Subdivisions) == 0
		}
		return out, nil
	}
	return geo.Build(path, buf, md, decode, overrides)
}

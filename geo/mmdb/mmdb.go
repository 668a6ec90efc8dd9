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

// record is the part of a City or Country record that locates a client,
// in geoip2's model types; the reader skips everything else (postal
// codes, traits, represented country), which keeps the one-time walk
// fast. City and subdivisions only tell a country-level record (whose
// coordinates are the country's) from a finer one.
type record struct {
	Country           geoip2.CountryRecord     `maxminddb:"country"`
	RegisteredCountry geoip2.CountryRecord     `maxminddb:"registered_country"`
	Continent         geoip2.Continent         `maxminddb:"continent"`
	Location          geoip2.Location          `maxminddb:"location"`
	City              geoip2.CityRecord        `maxminddb:"city"`
	Subdivisions      []geoip2.CitySubdivision `maxminddb:"subdivisions"`
}

// Open loads the database at path ("" = none) with the overrides (see
// geo.Build for how they combine). The file is read once and not kept
// open.
func Open(path string, overrides []geo.Override) (*geo.DB, error) {
	if path == "" {
		return geo.New(overrides)
	}
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("geo: open %s: %w", path, err)
	}
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
	decode := func(off uintptr) (geo.Record, error) {
		var rec record
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
			out.CountryLevel = out.Country != "" && !rec.City.HasData() && len(rec.Subdivisions) == 0
		}
		return out, nil
	}
	return geo.Build(path, buf, md, decode, overrides)
}

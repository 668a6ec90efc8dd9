// Package mmdb opens MaxMind DB files (GeoIP2/GeoLite2 City or Country,
// DB-IP City/Country Lite) into a geo.DB. It is the only package that
// uses a MaxMind reader: the query path imports geo, which holds the
// walked lookup table and nothing that reads the file format's data
// section, so the DNS server does not link the reader.
package mmdb

import (
	"fmt"
	"os"
	"strings"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"gslbd/geo"
)

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
	// Records decode into geoip2's model types, City for databases with
	// coordinates, Country for the others; geo.Build calls decode once per
	// distinct record, so the names and traits these types carry beside
	// what we keep cost little.
	decode := decodeCountry(r)
	if hasCoordinates(md.DatabaseType) {
		decode = decodeCity(r)
	}
	return geo.Build(path, buf, md, decode, overrides)
}

// hasCoordinates reports whether records of the database type carry a
// location (City, Enterprise and DB-IP City databases do, Country ones
// do not).
func hasCoordinates(typ string) bool {
	return strings.Contains(typ, "City") || strings.Contains(typ, "Enterprise") || strings.Contains(typ, "DBIP-Location")
}

func decodeCity(r *maxminddb.Reader) geo.DecodeFunc {
	return func(off uintptr) (geo.Record, error) {
		var c geoip2.City
		if err := r.LookupOffset(off).Decode(&c); err != nil {
			return geo.Record{}, err
		}
		out := geo.Record{Country: c.Country.ISOCode, Continent: c.Continent.Code}
		if c.Location.HasCoordinates() {
			out.Lat, out.Lon, out.HasCoords = *c.Location.Latitude, *c.Location.Longitude, true
		}
		return out, nil
	}
}

func decodeCountry(r *maxminddb.Reader) geo.DecodeFunc {
	return func(off uintptr) (geo.Record, error) {
		var c geoip2.Country
		if err := r.LookupOffset(off).Decode(&c); err != nil {
			return geo.Record{}, err
		}
		return geo.Record{Country: c.Country.ISOCode, Continent: c.Continent.Code}, nil
	}
}

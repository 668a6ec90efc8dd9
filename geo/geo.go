// Package geo locates clients: a GeoIP2/GeoLite2 City or Country database
// walked once at load into a compact, immutable lookup table, with
// operator overrides (geo.networks) checked first, and great-circle distance.
package geo

import (
	"net/netip"
)

// Source says where a Location came from.
type Source uint8

const (
	SourceUnknown  Source = iota // neither an override nor the database knows the address
	SourceOverride               // a geo.networks entry of the node config
	SourceDatabase               // the city or country database
)

// Location is where a client is. Locations are deduplicated per DB: every
// distinct (country, continent, lat, lon) gets one ID, dense from 0, so
// callers can precompute per-location data in slices indexed by ID.
type Location struct {
	ID        int32
	Country   string // ISO 3166-1 alpha-2, upper-case; "" when unknown
	Continent string // two-letter continent code (EU, NA, …); "" when unknown
	Lat, Lon  float64
	HasCoords bool
	Source    Source
}

// Override is one geo.networks entry from the node config.
type Override struct {
	Prefix    netip.Prefix
	Country   string
	Continent string
	Lat, Lon  float64
	HasCoords bool
}

// DB is an immutable client locator. The zero DB (and a nil *DB) knows no
// one.
type DB struct {
	unknown Location
}

// Lookup locates a. It never returns nil; bits is the prefix length of the
// widest network around a with the same answer.
func (db *DB) Lookup(a netip.Addr) (loc *Location, bits int) {
	// Placeholder until the database reader lands (issue 3).
	return &db.unknown, 0
}

// Open loads the database at path ("" = none) with the overrides.
func Open(path string, overrides []Override) (*DB, error) {
	// Placeholder until the database reader lands (issue 3).
	return &DB{}, nil
}

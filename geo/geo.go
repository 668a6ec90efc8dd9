// Package geo locates clients: a GeoIP2/GeoLite2 City or Country database
// walked once at load into a compact, immutable lookup table, with
// operator overrides (geo.networks) checked first, and great-circle distance.
//
// The technique is gdnsd's (libgdmaps): instead of asking the MaxMind
// reader per query, Build walks every network of the database once,
// deduplicates the records into Locations with dense IDs, lays the
// overrides over the result, and merges neighbouring networks with the
// same answer. A lookup is then a binary search in a sorted array of range
// starts, and the merged range gives the widest network around the client
// with the same answer: the ECS scope (README, How an answer is chosen).
package geo

//go:generate go run ../testdata/geo/gen -out ../testdata/geo

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Source says where a Location came from.
type Source uint8

const (
	SourceUnknown  Source = iota // neither an override nor the database knows the address
	SourceOverride               // a geo.networks entry of the node config
	SourceDatabase               // the city or country database
)

func (s Source) String() string {
	switch s {
	case SourceOverride:
		return "override"
	case SourceDatabase:
		return "database"
	default:
		return "unknown"
	}
}

// Location is where a client is. Locations are deduplicated per DB: every
// distinct (country, continent, lat, lon) gets one ID, dense from 0, so
// callers can precompute per-location data in slices indexed by ID.
// ID 0 is always the unknown location. Locations returned by a DB are
// shared and must not be modified.
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

// Info describes a loaded DB for status, metrics and `gslbd check`.
type Info struct {
	Path         string    // "" without a database
	Type         string    // database_type from the metadata, e.g. "GeoLite2-City"
	BuildTime    time.Time // zero without a database
	IPVersion    int       // 4 or 6; 0 without a database
	Networks     int       // networks with data walked in the database
	Locations    int       // distinct Locations, unknown and overrides included
	Overrides    int       // geo.networks entries
	Ranges       int       // ranges in the lookup table after merging
	TableBytes   int       // approximate memory of the lookup table
	LoadDuration time.Duration
}

// DB is an immutable client locator, safe for concurrent use. The zero DB
// (and a nil *DB) knows no one.
type DB struct {
	locs []Location

	// tab maps addresses to Location IDs; Derive builds tables of the
	// same shape mapping to the caller's values.
	tab Table

	info Info
}

// unknownLocation answers for a nil or zero DB. It is never written.
var unknownLocation Location

// Lookup locates a. It never returns nil; bits is the prefix length of the
// widest network around a in which every address gets the same answer
// (IPv4 prefix lengths for IPv4 and IPv4-mapped addresses). It does not
// allocate.
func (db *DB) Lookup(a netip.Addr) (loc *Location, bits int) {
	if db == nil || len(db.locs) == 0 {
		return &unknownLocation, 0
	}
	id, bits := db.tab.Lookup(a)
	return &db.locs[id], bits
}

// NumLocations is the number of distinct Locations: every Location.ID is
// in [0, NumLocations). It is at least 1 (the unknown location).
func (db *DB) NumLocations() int {
	if db == nil || len(db.locs) == 0 {
		return 1
	}
	return len(db.locs)
}

// Location returns the Location with the given ID, for callers that keep
// IDs; an ID out of range gives the unknown location.
func (db *DB) Location(id int32) *Location {
	if db == nil || id < 0 || int(id) >= len(db.locs) {
		return &unknownLocation
	}
	return &db.locs[id]
}

// Info describes the DB.
func (db *DB) Info() Info {
	if db == nil {
		return Info{Locations: 1}
	}
	i := db.info
	i.Locations = db.NumLocations()
	return i
}

// Metadata is what Build needs from the metadata section of a MaxMind DB
// file.
type Metadata struct {
	DatabaseType string // e.g. "GeoLite2-City"
	BuildTime    time.Time
	IPVersion    uint // 4 or 6
	NodeCount    uint // nodes of the search tree
	RecordSize   uint // bits per record: 24, 28 or 32
}

// Record is the part of a City or Country record that locates a client.
type Record struct {
	Country   string // ISO 3166-1 alpha-2, any case
	Continent string // two-letter continent code, any case
	Lat, Lon  float64
	HasCoords bool
}

// DecodeFunc decodes the record at offset in the data section of the file
// Build walks. Build calls it once per distinct record.
type DecodeFunc func(offset uintptr) (Record, error)

// locKey identifies a Location for deduplication.
type locKey struct {
	country, continent string
	lat, lon           float64
	hasCoords          bool
	source             Source
}

type builder struct {
	locs  []Location
	byKey map[locKey]uint32
	names map[string]string // interned country and continent codes
}

func (b *builder) intern(s string) string {
	if v, ok := b.names[s]; ok {
		return v
	}
	s = strings.Clone(s)
	b.names[s] = s
	return s
}

// location returns the ID of the Location with key k, adding it if new.
// A key without any data is the unknown location.
func (b *builder) location(k locKey) uint32 {
	if k.source != SourceOverride && k.country == "" && k.continent == "" && !k.hasCoords {
		return 0
	}
	if !k.hasCoords {
		k.lat, k.lon = 0, 0
	}
	if id, ok := b.byKey[k]; ok {
		return id
	}
	id := uint32(len(b.locs))
	b.locs = append(b.locs, Location{
		ID: int32(id), Country: b.intern(k.country), Continent: b.intern(k.continent),
		Lat: k.lat, Lon: k.lon, HasCoords: k.hasCoords, Source: k.source,
	})
	b.byKey[k] = id
	return id
}

// New returns a DB that knows only the overrides (a node without a
// database).
func New(overrides []Override) (*DB, error) {
	return build("", overrides, nil)
}

// Build walks the search tree of a MaxMind DB file with City or Country
// records (GeoIP2 or GeoLite2 City/Country, DB-IP City/Country Lite) whose
// whole image is data and whose metadata is md, decoding records with
// decode, and lays the overrides over it. path only names the file in
// errors and Info. Reading the file and its metadata is the caller's (see
// geo/mmdb), so that this package, which the query path imports, does not
// depend on a MaxMind reader.
//
// Overrides: for an address, the longest override prefix containing it
// decides (Source = SourceOverride); without one the database decides.
// An IPv4-mapped IPv6 override prefix (::ffff:a.b.c.d/n, n >= 96) is the
// IPv4 prefix a.b.c.d/(n-96). The bits Lookup reports are those of the
// widest network around the address in which the answer does not change,
// so inside an override that contains a longer one, an address outside
// the longer one gets a prefix that excludes it (e.g. 10.0.0.0/8 with
// 10.1.0.0/16 inside: 10.2.3.4 gets /15, 10.200.0.1 gets /9).
func Build(path string, data []byte, md Metadata, decode DecodeFunc, overrides []Override) (*DB, error) {
	return build(path, overrides, func(db *DB, b *builder, v4, v6 *runList) error {
		return db.walk(path, data, md, decode, b, v4, v6)
	})
}

func build(path string, overrides []Override, walk func(db *DB, b *builder, v4, v6 *runList) error) (*DB, error) {
	t0 := time.Now()
	b := &builder{
		locs:  []Location{{ID: 0}},
		byKey: map[locKey]uint32{},
		names: map[string]string{},
	}
	db := &DB{info: Info{Path: path, Overrides: len(overrides)}}

	v4 := newRunList(32)
	v6 := newRunList(128)
	if walk == nil {
		v4.add(u128{}, v4.spaceMax(), 0)
		v6.add(u128{}, v6.spaceMax(), 0)
	} else if err := walk(db, b, v4, v6); err != nil {
		return nil, err
	}

	var ov4, ov6 []ovEntry
	for _, o := range overrides {
		p := o.Prefix
		if !p.IsValid() {
			return nil, fmt.Errorf("geo: override %v: invalid prefix", p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		id := b.location(locKey{
			country: strings.ToUpper(o.Country), continent: strings.ToUpper(o.Continent),
			lat: o.Lat, lon: o.Lon, hasCoords: o.HasCoords, source: SourceOverride,
		})
		if p.Addr().Is4() {
			a := p.Addr().As4()
			ov4 = append(ov4, ovEntry{u128{0, uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])}, p.Bits(), id})
		} else {
			ov6 = append(ov6, ovEntry{u128From16(p.Addr().As16()), p.Bits(), id})
		}
	}
	r4, r6 := v4.runs, v6.runs
	if len(ov4) > 0 {
		r4 = overlay(r4, overrideLayer(ov4, 32), 32)
	}
	if len(ov6) > 0 {
		r6 = overlay(r6, overrideLayer(ov6, 128), 128)
	}

	db.locs = b.locs
	db.tab.build(r4, r6, 16)
	db.info.Ranges = len(r4) + len(r6)
	db.info.TableBytes = db.tab.Bytes() + len(db.locs)*64
	db.info.LoadDuration = time.Since(t0)
	return db, nil
}

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
	"unsafe"
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
	// Registered is set when the database record names only the country
	// the network is registered in (GeoLite2 has such records for many
	// anycast and hosting networks, 1.1.1.0/24 among them): the client is
	// placed in that country, with the continent and the country-level
	// coordinates the database gives that country elsewhere.
	Registered bool
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

	// Release, when set, is told which part of the file Build is done
	// with: Release(n) as the walk passes the first n bytes (the search
	// tree's nodes are numbered in the order the walk visits them in
	// the files MaxMind and mmdbwriter write, so those it has passed
	// are not read again), and Release(len(data)) when the walk is
	// over, before the table is built. A mapped file gives those pages
	// back (geo/mmdb), so that the file does not sit in memory beside
	// the new table; the bytes must stay readable all the same, for a
	// file whose nodes are in another order.
	Release func(n int)

	// Like, when set, is a database built from an earlier version of
	// the same file: the new table's arrays are allocated at its sizes
	// (plus a margin) and filled in place, instead of being collected
	// in chunks and copied into arrays of the right size at the end.
	// That copy is a second table's worth of memory at the peak of a
	// reload; a new version of a database differs from the last by a
	// few per cent.
	Like *DB
}

// Record is the part of a City or Country record that locates a client.
type Record struct {
	Country   string // ISO 3166-1 alpha-2, any case
	Continent string // two-letter continent code, any case
	Lat, Lon  float64
	HasCoords bool
	// RegisteredCountry is the country the network is registered in,
	// used when the record has no country, continent or coordinates.
	RegisteredCountry string
	// CountryLevel is set when the record has a country and coordinates
	// but names no city or subdivision: its coordinates are the
	// country's (MaxMind's country centre), which a record with only a
	// registered country of the same country borrows.
	CountryLevel bool
}

// DecodeFunc decodes the record at offset in the data section of the file
// Build walks. Build calls it once per distinct record.
type DecodeFunc func(offset uintptr) (Record, error)

// locKey identifies a Location for deduplication. The country and
// continent are codes from builder.code, so that the key is 24 bytes with
// nothing to hash byte by byte: a City database has a hundred thousand
// Locations, and this map is most of what building them costs.
type locKey struct {
	lat, lon           float64
	country, continent uint16
	hasCoords          bool
	source             Source
	registered         bool
}

type builder struct {
	locs    chunks[Location] // by ID; flattened when the walk is done
	byKey   map[locKey]uint32
	codes   map[string]uint16 // country and continent codes by name; "" is 0
	names   []string          // the names of the codes, interned
	tooMany bool              // more names than codes

	// countries is what the database says about each country elsewhere,
	// for the records that name only a registered country.
	countries map[string]*countryFacts
}

// countryFacts is a country's continent (from any record of the country)
// and its country-level coordinates (from a CountryLevel record).
type countryFacts struct {
	continent string
	lat, lon  float64
	hasCoords bool
}

// learn notes what a database record says about its country.
func (b *builder) learn(country, continent string, rec *Record) {
	if country == "" || continent == "" {
		return
	}
	f := b.countries[country]
	if f == nil {
		f = &countryFacts{continent: b.intern(continent)}
		b.countries[b.intern(country)] = f
	}
	if rec.CountryLevel && rec.HasCoords && !f.hasCoords {
		f.lat, f.lon, f.hasCoords = rec.Lat, rec.Lon, true
	}
}

// placeRegistered completes the Locations of records that name only a
// registered country with what the rest of the database says about that
// country. It runs after the walk, when every record has been seen.
func (b *builder) placeRegistered(locs []Location) {
	for i := range locs {
		l := &locs[i]
		if !l.Registered {
			continue
		}
		if f := b.countries[l.Country]; f != nil {
			l.Continent = f.continent
			l.Lat, l.Lon, l.HasCoords = f.lat, f.lon, f.hasCoords
		}
	}
}

func (b *builder) intern(s string) string { return b.names[b.code(s)] }

// code returns the code of a country or continent name (upper-case),
// adding it if new. A database has a few hundred; past 65,535 distinct
// names (a corrupt file) it sets tooMany, which fails the walk.
func (b *builder) code(s string) uint16 {
	if c, ok := b.codes[s]; ok {
		return c
	}
	if len(b.names) > 0xFFFF {
		b.tooMany = true
		return 0xFFFF
	}
	s = strings.Clone(s)
	c := uint16(len(b.names))
	b.codes[s] = c
	b.names = append(b.names, s)
	return c
}

// reserve makes room for n Locations: a City database's hundred thousand
// would otherwise grow the map a dozen times.
func (b *builder) reserve(n int) {
	m := make(map[locKey]uint32, n)
	for k, v := range b.byKey {
		m[k] = v
	}
	b.byKey = m
}

// location returns the ID of the Location with key k, adding it if new.
// A key without any data is the unknown location.
func (b *builder) location(k locKey) uint32 {
	if k.source != SourceOverride && !k.registered && k.country == 0 && k.continent == 0 && !k.hasCoords {
		return 0
	}
	if !k.hasCoords {
		k.lat, k.lon = 0, 0
	}
	if id, ok := b.byKey[k]; ok {
		return id
	}
	id := uint32(b.locs.n)
	b.locs.push(Location{
		ID: int32(id), Country: b.names[k.country], Continent: b.names[k.continent],
		Lat: k.lat, Lon: k.lon, HasCoords: k.hasCoords, Source: k.source, Registered: k.registered,
	})
	b.byKey[k] = id
	return id
}

// New returns a DB that knows only the overrides (a node without a
// database).
func New(overrides []Override) (*DB, error) {
	return build("", overrides, nil, nil)
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
	return build(path, overrides, md.Like, func(db *DB, b *builder, v4, v6 *ranges) error {
		return db.walk(path, data, md, decode, b, v4, v6)
	})
}

func build(path string, overrides []Override, like *DB, walk func(db *DB, b *builder, v4, v6 *ranges) error) (*DB, error) {
	t0 := time.Now()
	b := &builder{
		byKey: map[locKey]uint32{},
		codes: map[string]uint16{"": 0},
		names: []string{""},

		countries: map[string]*countryFacts{},
	}
	if like != nil && len(like.locs) > 0 {
		b.locs.reserve(len(like.locs) + len(like.locs)/32 + 1024)
	}
	b.locs.push(Location{ID: 0})
	db := &DB{info: Info{Path: path, Overrides: len(overrides)}}

	// The overrides are laid over the database as the walk adds its
	// networks, so they are known first.
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
			country: b.code(strings.ToUpper(o.Country)), continent: b.code(strings.ToUpper(o.Continent)),
			lat: o.Lat, lon: o.Lon, hasCoords: o.HasCoords, source: SourceOverride,
		})
		if p.Addr().Is4() {
			a := p.Addr().As4()
			ov4 = append(ov4, ovEntry{u128{0, uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])}, p.Bits(), id})
		} else {
			ov6 = append(ov6, ovEntry{u128From16(p.Addr().As16()), p.Bits(), id})
		}
	}
	v4 := newRanges(32, overrideLayer(ov4, 32))
	v6 := newRanges(128, overrideLayer(ov6, 128))
	if like != nil && len(like.locs) > 0 {
		// A new version of the same database: about as many ranges
		// and Locations as the last, give or take a few per cent.
		margin := func(n int) int { return n + n/32 + 1024 }
		v4.s4.reserve(margin(len(like.tab.s4)))
		v4.vals.reserve(margin(len(like.tab.v4)))
		v6.s6.reserve(margin(len(like.tab.s6)))
		v6.vals.reserve(margin(len(like.tab.v6)))
		v6.lo6 = make([]lo6, 0, margin(len(like.tab.lo6)))
	}
	if walk == nil {
		v4.add(u128{}, v4.spaceMax(), 0)
		v6.add(u128{}, v6.spaceMax(), 0)
	} else if err := walk(db, b, v4, v6); err != nil {
		return nil, err
	}

	db.locs = b.locs.flatten()
	b.placeRegistered(db.locs)
	db.tab.build(v4, v6, 16)
	db.info.Ranges = db.tab.Ranges()
	db.info.TableBytes = db.tab.Bytes() + len(db.locs)*int(unsafe.Sizeof(Location{}))
	db.info.LoadDuration = time.Since(t0)
	return db, nil
}

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
	"sync/atomic"
	"time"
	"unsafe"
)

// Source says where a Location came from.
type Source uint8

const (
	SourceUnknown  Source = iota // neither an override nor the database knows the address
	SourceOverride               // a geo.networks entry of the node config
	SourceDatabase               // the city or country database
	// SourceRetired: the DB's table was dropped (Retire) while a new
	// version of its file is loaded; the location is not known.
	SourceRetired
)

func (s Source) String() string {
	switch s {
	case SourceOverride:
		return "override"
	case SourceDatabase:
		return "database"
	case SourceRetired:
		return "retired"
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

// DB is a client locator, safe for concurrent use. It is immutable but
// for one step of a reload: Retire drops its table, so that the new
// version of the database is built in that memory rather than beside it,
// and Restore puts it back if the new version fails to load. The zero DB
// (and a nil *DB) knows no one.
type DB struct {
	// set is the table and its Locations; nil only when the DB was
	// built from a file and is retired. Only explain, Derive and tools
	// read it, never the query path, which reads the tables Derive
	// built.
	set atomic.Pointer[dbSet]

	// size is the length of each of the table's arrays, kept for a new
	// version of the database to size its own by (Metadata.Like), also
	// once the table is retired.
	size dbSize

	info Info
}

// dbSet is what Retire drops: the Locations by ID, and tab, which maps
// addresses to Location IDs (Derive builds tables of the same shape
// mapping to the caller's values).
type dbSet struct {
	locs []Location
	tab  Table
}

type dbSize struct{ locs, s4, s6, lo6 int }

// unknownLocation answers for a nil or zero DB, retiredLocation for a
// retired one. They are never written.
var (
	unknownLocation Location
	retiredLocation = Location{Source: SourceRetired}
)

// data is the DB's table and Locations, nil when it has none.
func (db *DB) data() *dbSet {
	if db == nil {
		return nil
	}
	if d := db.set.Load(); d != nil && len(d.locs) > 0 {
		return d
	}
	return nil
}

// Lookup locates a. It never returns nil; bits is the prefix length of the
// widest network around a in which every address gets the same answer
// (IPv4 prefix lengths for IPv4 and IPv4-mapped addresses). It does not
// allocate. A retired DB answers with a Location whose Source is
// SourceRetired.
func (db *DB) Lookup(a netip.Addr) (loc *Location, bits int) {
	d := db.data()
	if d == nil {
		if db.Retired() {
			return &retiredLocation, 0
		}
		return &unknownLocation, 0
	}
	id, bits := d.tab.Lookup(a)
	return &d.locs[id], bits
}

// NumLocations is the number of distinct Locations: every Location.ID is
// in [0, NumLocations). It is at least 1 (the unknown location).
func (db *DB) NumLocations() int {
	if d := db.data(); d != nil {
		return len(d.locs)
	}
	return 1
}

// Location returns the Location with the given ID, for callers that keep
// IDs; an ID out of range gives the unknown location.
func (db *DB) Location(id int32) *Location {
	d := db.data()
	if d == nil || id < 0 || int(id) >= len(d.locs) {
		return &unknownLocation
	}
	return &d.locs[id]
}

// Info describes the DB.
func (db *DB) Info() Info {
	if db == nil {
		return Info{Locations: 1}
	}
	i := db.info
	i.Locations = max(1, db.size.locs)
	return i
}

// Retire drops the table and Locations of a DB built from a file, for a
// reload that builds the file's new version: the running snapshot answers
// from the tables Derive built, which stay, while a full City database's
// table (about 40 MB) would otherwise be held beside the new one until
// the swap. From then on Lookup answers SourceRetired, Derive fails and
// NumLocations is 1, until Restore. A DB without a file is left alone.
func (db *DB) Retire() {
	if db == nil || db.info.Path == "" {
		return
	}
	db.set.Store(nil)
}

// Retired reports whether Retire dropped the DB's table and no Restore
// has put it back.
func (db *DB) Retired() bool { return db != nil && db.info.Path != "" && db.set.Load() == nil }

// Restore gives a retired DB back its table from from, a DB built again
// from the same file with the same overrides (after the load of a new
// version failed). It refuses one that differs: a file rewritten in place
// since, say.
func (db *DB) Restore(from *DB) error {
	if db == nil || !db.Retired() {
		return nil
	}
	d := from.data()
	switch {
	case d == nil:
		return fmt.Errorf("geo: restore %s: nothing to restore from", db.info.Path)
	case from.info.Path != db.info.Path || from.info.BuildTime != db.info.BuildTime ||
		from.info.Networks != db.info.Networks || from.info.Ranges != db.info.Ranges ||
		from.size != db.size:
		return fmt.Errorf("geo: restore %s: the file no longer holds the database in service (built %v, %d networks; now built %v, %d networks)",
			db.info.Path, db.info.BuildTime.UTC().Format(time.DateOnly), db.info.Networks, from.info.BuildTime.UTC().Format(time.DateOnly), from.info.Networks)
	}
	db.set.Store(d)
	return nil
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
	// with for now: Release(n) hands back the first n bytes. A walk
	// that decodes records as it meets them calls it as it passes
	// through the search tree (n the start of the node it reached);
	// an InOrder walk hands back the whole file every so often while
	// it walks the tree, and the data section behind the decoder while
	// it decodes. Both call Release(len(data)) when the walk is over,
	// before the table is built. A mapped file gives those pages back
	// (geo/mmdb), so that the file does not sit in memory beside the
	// new table; the bytes must stay readable all the same: the walk
	// reads some of them again (GeoLite2-City's nodes are not stored
	// in the order a walk visits them).
	Release func(n int)

	// Like, when set, is a database built from an earlier version of
	// the same file: the new table's arrays are allocated at its sizes
	// (plus a margin) and filled in place, instead of being collected
	// in chunks and copied into arrays of the right size at the end.
	// That copy is a second table's worth of memory at the peak of a
	// reload; a new version of a database differs from the last by a
	// few per cent.
	Like *DB

	// InOrder decodes the records in the order they lie in the file,
	// in a pass of their own between a first walk of the search tree,
	// which only notes which records it points to, and the walk that
	// builds the table: the records a walk meets come from all over
	// the data section, whose pages would otherwise be resident
	// through the walk, beside the new table (23 MB of GeoLite2-City).
	// The extra walk costs about 0.2 s of CPU; a reload, whose
	// peak the running snapshot's memory adds to, sets it.
	InOrder bool
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
	return build(path, overrides, md.Like, func(db *DB, tab *Table, b *builder, v4, v6 *ranges) error {
		return db.walk(path, data, md, decode, tab, b, v4, v6)
	})
}

func build(path string, overrides []Override, like *DB, walk func(db *DB, tab *Table, b *builder, v4, v6 *ranges) error) (*DB, error) {
	t0 := time.Now()
	b := &builder{
		byKey: map[locKey]uint32{},
		codes: map[string]uint16{"": 0},
		names: []string{""},

		countries: map[string]*countryFacts{},
	}
	if like != nil && like.size.locs > 0 {
		b.locs.reserve(like.size.locs + like.size.locs/32 + 1024)
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
	if like != nil && like.size.locs > 0 {
		// A new version of the same database: about as many ranges
		// and Locations as the last, give or take a few per cent.
		margin := func(n int) int { return n + n/32 + 1024 }
		v4.s4.reserve(margin(like.size.s4))
		v4.vals.reserve(margin(like.size.s4))
		v6.s6.reserve(margin(like.size.s6))
		v6.vals.reserve(margin(like.size.s6))
		v6.lo6 = make([]lo6, 0, margin(like.size.lo6))
	}
	d := &dbSet{}
	if walk == nil {
		v4.add(u128{}, v4.spaceMax(), 0)
		v6.add(u128{}, v6.spaceMax(), 0)
	} else if err := walk(db, &d.tab, b, v4, v6); err != nil {
		return nil, err
	}

	d.locs = b.locs.flatten()
	b.placeRegistered(d.locs)
	d.tab.build(v4, v6, 16)
	db.set.Store(d)
	db.size = dbSize{locs: len(d.locs), s4: len(d.tab.s4), s6: len(d.tab.s6), lo6: len(d.tab.lo6)}
	db.info.Ranges = d.tab.Ranges()
	db.info.TableBytes = d.tab.Bytes() + len(d.locs)*int(unsafe.Sizeof(Location{}))
	db.info.LoadDuration = time.Since(t0)
	return db, nil
}

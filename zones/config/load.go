// Package config reads gslbd's files — the node config (gslbd.toml), the
// zone files and the pool files — strictly and completely, and compiles
// them into a validated zones.Snapshot. Every problem of every file is
// reported at once, each as file:line:col: message, with the line found
// even where the TOML decoder does not give one (unknown keys, semantic
// errors), so `gslbd check` can point at the offending key.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"gslbd/geo"
	"gslbd/geo/mmdb"
	"gslbd/zones"
)

// Load reads every zone file (*.toml in zones.dir, one zone each) and pool
// file (*.toml in pools.dir, one or more pools each), in name order, opens
// the geo database and returns the validated snapshot. All problems of all
// files are reported at once: the error joins one *Error per problem.
func Load(cfg *NodeConfig) (*zones.Snapshot, error) {
	ld := new(Loader)
	defer ld.Close() //nolint:errcheck // read-only
	return ld.Load(cfg)
}

// Loader is Load for a process that loads again and again (reloads): it
// keeps the geo database of the last successful load and reuses it while
// the file (path, size, modification time) and geo.networks are
// unchanged, since reading and walking a full City database takes seconds
// and nearly every reload only touches zones and pools. The zero Loader is
// ready; it is safe for concurrent use.
type Loader struct {
	// build serialises the geo step of loads: it retires and restores
	// db, which one load at a time may do.
	build sync.Mutex

	mu  sync.Mutex
	key string // the file and overrides db was built from
	db  *geo.DB
	// file is db's file, kept open so that db can be rebuilt from it
	// (Restore) when its table was retired for a reload that then
	// failed: a new version of a database is usually renamed into
	// place, and the old one lives on as long as it is open. ovs are
	// the overrides db was built with.
	file *os.File
	ovs  []geo.Override
	// prev is the database before db, with its file and overrides: the
	// caller may still keep the snapshot that holds it in service (when
	// something after the load fails), and Restore it.
	prev loadedGeo
}

// loadedGeo is a database with the file and overrides it was built from.
type loadedGeo struct {
	db   *geo.DB
	file *os.File
	ovs  []geo.Override
}

// Load is the package Load, reusing the geo database when it can.
func (ld *Loader) Load(cfg *NodeConfig) (*zones.Snapshot, error) {
	return load(cfg, ld)
}

// Close closes the file of the last database loaded.
func (ld *Loader) Close() error {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	var err error
	for _, f := range []**os.File{&ld.file, &ld.prev.file} {
		if *f != nil {
			err = errors.Join(err, (*f).Close())
			*f = nil
		}
	}
	return err
}

// Restore gives db, the database of the snapshot in service, its table
// back if a load retired it (geo.DB.Retire) and the caller then kept that
// snapshot in service after all, because something after the load
// failed. It reads db's file again, which the Loader keeps open.
func (ld *Loader) Restore(db *geo.DB) error {
	ld.build.Lock()
	defer ld.build.Unlock()
	return ld.restore(db)
}

// geo returns the database for cfg, and whether it was reused. When the
// database must be built anew and retire is set (nothing else of the
// load has failed), the last database's table is retired first
// (geo.DB.Retire): the snapshot in service answers from the tables its
// pools derived from it, and the new table is built in the old one's
// memory instead of beside it, which would double a City database's
// share of a reload's peak. If the new database fails to load, the old
// one is rebuilt from its file, still open, and restored.
func (ld *Loader) geo(cfg *NodeConfig, retire bool) (*geo.DB, bool, error) {
	key := geoKey(cfg)
	ld.build.Lock()
	defer ld.build.Unlock()
	ld.mu.Lock()
	old, same := ld.db, key != "" && key == ld.key && !ld.db.Retired()
	ld.mu.Unlock()
	if same {
		return old, true, nil
	}
	var like *geo.DB // the last database, when it came from the same file
	if old != nil && cfg.Geo.CityDB != "" && old.Info().Path == cfg.Geo.CityDB {
		like = old
	}
	if retire && old != nil && old.Info().Path != "" {
		old.Retire()
		// Free the old table's memory for the new one now, rather
		// than at a later cycle when the new one has grown beside it.
		runtime.GC()
	}
	db, f, err := openGeo(cfg, like)
	if err != nil {
		if rerr := ld.restore(old); rerr != nil {
			err = fmt.Errorf("%w; and the database in service could not be read again for explain: %v", err, rerr)
		}
		return nil, false, err
	}
	// The walk leaves garbage about half the size of the new table (its
	// maps of records and Locations, decoded records): collect it now,
	// before the pools' tables are derived, so that they reuse that
	// memory instead of adding to the reload's peak (a few hundredths
	// of a second, only when the database was read again).
	runtime.GC()
	ld.mu.Lock()
	if ld.prev.file != nil {
		ld.prev.file.Close() //nolint:errcheck // read-only
	}
	ld.prev = loadedGeo{ld.db, ld.file, ld.ovs}
	ld.key, ld.db, ld.file, ld.ovs = key, db, f, overrides(cfg)
	ld.mu.Unlock()
	return db, false, nil
}

// restore gives old, retired for a load that failed (or whose snapshot
// was not put in service), its table back, rebuilt from its file. The
// caller holds ld.build.
func (ld *Loader) restore(old *geo.DB) error {
	if !old.Retired() {
		return nil
	}
	ld.mu.Lock()
	var f *os.File
	var ovs []geo.Override
	for _, g := range []loadedGeo{{ld.db, ld.file, ld.ovs}, ld.prev} {
		if g.db == old {
			f, ovs = g.file, g.ovs
		}
	}
	ld.mu.Unlock()
	if f == nil {
		return fmt.Errorf("geo: restore %s: its file is not open", old.Info().Path)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("geo: restore %s: %w", old.Info().Path, err)
	}
	again, err := mmdb.OpenFile(old.Info().Path, f, ovs)
	if err != nil {
		return err
	}
	return old.Restore(again)
}

// geoKey identifies what a geo database is built from; "" when the file
// cannot be examined (the load then reports why).
func geoKey(cfg *NodeConfig) string {
	var b strings.Builder
	if p := cfg.Geo.CityDB; p != "" {
		fi, err := os.Stat(p)
		if err != nil {
			return ""
		}
		fmt.Fprintf(&b, "%s|%d|%d", p, fi.Size(), fi.ModTime().UnixNano())
	}
	for _, o := range overrides(cfg) {
		fmt.Fprintf(&b, "|%v", o)
	}
	return b.String()
}

func load(cfg *NodeConfig, ld *Loader) (*zones.Snapshot, error) {
	l := &loader{cfg: cfg, pools: map[string]*poolSrc{}}
	digest := sha256.New()
	hashFile := func(kind, path string, data []byte) {
		fmt.Fprintf(digest, "%s %s %d\n", kind, filepath.Base(path), len(data))
		digest.Write(data)
	}
	s := &zones.Snapshot{Pools: map[string]*zones.Pool{}, LoadedAt: time.Now()}
	if cfg.display == "" {
		cfg.display = displayName(cfg.Path)
	}
	if cfg.Path != "" {
		s.Files = append(s.Files, zones.FileSummary{Path: cfg.display, Summary: nodeSummary(cfg)})
	}

	for _, f := range l.list(cfg.Pools, "pools", "pool") {
		data, _, ok := readFile(f, displayName(f), &l.errs)
		if !ok {
			continue
		}
		hashFile("pool", f, data)
		srcs := parsePoolFile(displayName(f), data, &l.errs)
		l.addPools(srcs)
		s.Files = append(s.Files, zones.FileSummary{Path: displayName(f), Summary: poolsSummary(srcs)})
	}
	l.linkFallbacks()
	names := slices.Sorted(mapKeysOf(l.pools))
	lookup := func(name string) *zones.Pool {
		if ps := l.pools[name]; ps != nil {
			ps.used = true
			return ps.pool
		}
		return nil
	}

	origins := map[string]*zoneSrc{}
	for _, f := range l.list(cfg.Zones, "zones", "zone") {
		data, fi, ok := readFile(f, displayName(f), &l.errs)
		if !ok {
			continue
		}
		hashFile("zone", f, data)
		zs := parseZoneFile(displayName(f), data, fi.ModTime(), lookup, names, &l.errs, &s.Warnings)
		if zs == nil {
			continue
		}
		z := zs.zone
		if zs.badOrigin {
			continue
		}
		if other, dup := origins[z.Origin]; dup {
			zs.d.errf([]string{"origin"}, "duplicate origin %s: also the origin of %s", z.Origin, other.zone.File)
			continue
		}
		origins[z.Origin] = zs
		loadKeys(zs, filepath.Dir(f), &s.Warnings)
		s.Zones = append(s.Zones, z)
		s.Files = append(s.Files, zones.FileSummary{Path: z.File, Summary: zoneSummary(zs)})
	}
	slices.SortFunc(s.Zones, func(a, b *zones.Zone) int {
		if na, nb := dns.CountLabel(a.Origin), dns.CountLabel(b.Origin); na != nb {
			return nb - na
		}
		return strings.Compare(a.Origin, b.Origin)
	})

	for _, ps := range l.poolList {
		if !ps.used {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: pool %s is used by no zone", ps.pool.File, ps.pool.Name))
		}
	}
	l.buildPools(s)

	db, reused, err := ld.geo(cfg, len(l.errs) == 0)
	if err != nil {
		l.nodeErr(err, []string{"geo", "city_db"}, "open geo database: %v", err)
	} else {
		s.Geo = db
		if cfg.Geo.CityDB != "" {
			i := db.Info()
			how := fmt.Sprintf("loaded in %v", i.LoadDuration.Round(time.Millisecond))
			if reused {
				how = "unchanged, reused"
			}
			s.Files = append(s.Files, zones.FileSummary{Path: displayName(cfg.Geo.CityDB), Summary: fmt.Sprintf(
				"geo database %s built %s: %d networks, %d locations, %s",
				i.Type, i.BuildTime.UTC().Format(time.DateOnly), i.Networks, i.Locations, how)})
		}
	}
	if err := joinErrors(l.errs); err != nil {
		return nil, err
	}
	s.ConfigDigest = hex.EncodeToString(digest.Sum(nil)[:8])
	if err := s.Prepare(); err != nil {
		return nil, fmt.Errorf("load: prepare answer selection: %w", err)
	}
	return s, nil
}

func mapKeysOf[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

type loader struct {
	cfg      *NodeConfig
	errs     []*Error
	pools    map[string]*poolSrc
	poolList []*poolSrc
}

// nodeErr records an error about a key of the node config.
func (l *loader) nodeErr(err error, path []string, format string, args ...any) {
	p := l.cfg.pos.lookup(path)
	l.errs = append(l.errs, &Error{File: l.cfg.display, Line: p.Line, Col: p.Col,
		Msg: displayPath(path) + ": " + fmt.Sprintf(format, args...), Err: err})
}

// list returns the *.toml files of a directory in name order. Hidden files
// (editor backups, ".#x.toml") are skipped. A directory that is missing
// while its key was not given is no error: a node may have no zones.
func (l *loader) list(sec DirSection, key, what string) []string {
	entries, err := os.ReadDir(sec.Dir)
	if err != nil {
		if os.IsNotExist(err) && !sec.explicit {
			return nil
		}
		l.nodeErr(err, []string{key, "dir"}, "cannot read %s directory %s: %v", what, displayName(sec.Dir), pathReason(err))
		return nil
	}
	var files []string
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".toml") && !e.IsDir() {
			files = append(files, filepath.Join(sec.Dir, n))
		}
	}
	return files
}

func (l *loader) addPools(srcs []*poolSrc) {
	for _, ps := range srcs {
		if other, dup := l.pools[ps.pool.Name]; dup {
			ps.errf("", "duplicate pool %s: also defined in %s", ps.pool.Name, other.pool.File)
			continue
		}
		l.pools[ps.pool.Name] = ps
		l.poolList = append(l.poolList, ps)
	}
}

// linkFallbacks resolves `fallback` names and reports unknown pools and
// cycles (a pool that, through fallbacks, falls back to itself).
func (l *loader) linkFallbacks() {
	for _, ps := range l.poolList {
		if ps.fallback == "" {
			continue
		}
		fb := l.pools[ps.fallback]
		if fb == nil {
			ps.errf("fallback", "unknown pool %q (pools: %s)", ps.fallback, strings.Join(slices.Sorted(mapKeysOf(l.pools)), ", "))
			continue
		}
		fb.used = true
		ps.pool.Fallback = fb.pool
	}
	reported := map[*zones.Pool]bool{}
	for _, ps := range l.poolList {
		chain := []*zones.Pool{ps.pool}
		for p := ps.pool.Fallback; p != nil; p = p.Fallback {
			if i := slices.Index(chain, p); i >= 0 {
				cycle := chain[i:]
				if !slices.ContainsFunc(cycle, func(q *zones.Pool) bool { return reported[q] }) {
					var names []string
					for _, q := range cycle {
						names = append(names, q.Name)
						reported[q] = true
					}
					names = append(names, p.Name)
					l.pools[cycle[0].Name].errf("fallback", "fallback cycle: %s", strings.Join(names, " -> "))
				}
				break
			}
			chain = append(chain, p)
		}
	}
	// Break the cycles so that nothing downstream loops on a failed load.
	for p := range reported {
		p.Fallback = nil
	}
}

// buildPools fills the snapshot's pools, indices and the distinct
// (address, check) targets.
func (l *loader) buildPools(s *zones.Snapshot) {
	byKey := map[string]int{}
	for i, ps := range l.poolList {
		p := ps.pool
		p.Index = i
		s.Pools[p.Name] = p
		s.PoolList = append(s.PoolList, p)
		for _, site := range p.Sites {
			for j := range site.Addrs {
				a := &site.Addrs[j]
				a.Index = s.NumAddrs
				s.NumAddrs++
				key := a.Addr.String() + "|" + site.Check.String()
				t, ok := byKey[key]
				if !ok {
					t = len(s.Targets)
					byKey[key] = t
					s.Targets = append(s.Targets, zones.Target{Key: key, Addr: a.Addr, Check: site.Check})
				}
				a.Target = t
			}
		}
	}
}

// overrides converts the validated geo.networks entries.
func overrides(cfg *NodeConfig) []geo.Override {
	var out []geo.Override
	for _, n := range cfg.Geo.Networks {
		pfx, err := netip.ParsePrefix(n.CIDR)
		if err != nil {
			continue // reported by LoadNodeConfig
		}
		o := geo.Override{Prefix: pfx, Country: strings.ToUpper(n.Country), Continent: strings.ToUpper(n.Continent)}
		if n.Lat != nil && n.Lon != nil {
			o.Lat, o.Lon, o.HasCoords = *n.Lat, *n.Lon, true
		}
		out = append(out, o)
	}
	return out
}

func nodeSummary(cfg *NodeConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: ", cfg.Node.Name)
	if len(cfg.DNS.Listen) == 0 {
		b.WriteString("no DNS")
	} else {
		fmt.Fprintf(&b, "dns %s", strings.Join(cfg.DNS.Listen, " "))
	}
	fmt.Fprintf(&b, ", cluster %s (%s", cfg.Cluster.Bind, cfg.Cluster.Profile)
	if len(cfg.Cluster.Join) > 0 {
		fmt.Fprintf(&b, ", %d join peers", len(cfg.Cluster.Join))
	}
	b.WriteString(")")
	if cfg.Admin.Listen == "" {
		b.WriteString(", no admin")
	} else {
		fmt.Fprintf(&b, ", admin %s", cfg.Admin.Listen)
	}
	if !cfg.Health.Probe {
		b.WriteString(", probes off")
	}
	if cfg.Geo.CityDB != "" {
		fmt.Fprintf(&b, ", geo %s", displayName(cfg.Geo.CityDB))
	} else {
		b.WriteString(", no geo database")
	}
	if n := len(cfg.Geo.Networks); n > 0 {
		fmt.Fprintf(&b, " + %d networks", n)
	}
	return b.String()
}

func zoneSummary(zs *zoneSrc) string {
	z := zs.zone
	s := fmt.Sprintf("zone %s: %s, %s", z.Origin, plural(zs.names, "name"), plural(zs.poolNames, "pool name"))
	if zs.cuts > 0 {
		s += ", " + plural(zs.cuts, "delegation")
	}
	s += fmt.Sprintf(", serial %d", z.SOA.Serial)
	if z.DNSSEC != nil {
		s += ", signed with " + plural(len(z.DNSSEC.Keys), "key")
	}
	return s
}

func poolsSummary(srcs []*poolSrc) string {
	parts := make([]string, 0, len(srcs))
	for _, ps := range srcs {
		p := ps.pool
		n := 0
		for _, s := range p.Sites {
			n += len(s.Addrs)
		}
		parts = append(parts, fmt.Sprintf("%s: %s, %s, %s", p.Name, p.Policy, plural(len(p.Sites), "site"), plural(n, "address")))
	}
	s := plural(len(srcs), "pool")
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, "; ") + ")"
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "s") {
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// MaxGeoDB bounds geo.city_db: the largest commercial City databases are
// a few hundred MiB.
const MaxGeoDB = 1 << 30

// openGeo loads geo.city_db, opened through OpenRegular so that a FIFO
// or a device is an error rather than a hang. like is the database last
// loaded from the same file, if any: its sizes size the new one's arrays.
// The file is returned open (nil without one), for a restore.
func openGeo(cfg *NodeConfig, like *geo.DB) (*geo.DB, *os.File, error) {
	if cfg.Geo.CityDB == "" {
		db, err := mmdb.Open("", overrides(cfg))
		return db, nil, err
	}
	f, _, err := OpenRegular(cfg.Geo.CityDB, MaxGeoDB)
	if err != nil {
		return nil, nil, fmt.Errorf("geo: open %s: %w", cfg.Geo.CityDB, err)
	}
	db, err := mmdb.OpenFileLike(cfg.Geo.CityDB, f, overrides(cfg), like)
	if err != nil {
		f.Close() //nolint:errcheck // read-only
		return nil, nil, err
	}
	return db, f, nil
}

package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"gslbd/internal/cputime"
)

// The benchmarks here load a node over a full-size City database from
// GSLBD_GEOLITE2 and skip without one: a real database is an optional
// input (its licence keeps it out of the repository; docs/geoip.md says
// how to fetch GeoLite2-City into .cache/).

// fullNode is a node with the database at %s and one 5-site geo pool,
// the set-up whose load time docs/performance.md reports.
const fullNode = `
[node]
name = "full"
[dns]
listen = []
[geo]
city_db = %q
[zones]
dir = "zones"
[pools]
dir = "pools"
`

const fullZone = `
origin = "full.test."
ttl = 300
nameservers = ["ns1.full.test."]
[soa]
rname = "hostmaster.full.test."
serial = 1
[records.ns1]
A = ["192.0.2.53"]
[records.www]
pool = "geo"
`

const fullPool = `
[geo]
policy = "geo"
answers = 1
[geo.check]
type = "none"
[[geo.sites]]
name = "fra"
lat = 50.11
lon = 8.68
addresses = ["192.0.2.1", "2001:db8:1::1"]
[[geo.sites]]
name = "iad"
lat = 38.95
lon = -77.45
addresses = ["192.0.2.2", "2001:db8:2::1"]
[[geo.sites]]
name = "sin"
lat = 1.35
lon = 103.82
addresses = ["192.0.2.3", "2001:db8:3::1"]
[[geo.sites]]
name = "gru"
lat = -23.55
lon = -46.63
addresses = ["192.0.2.4", "2001:db8:4::1"]
[[geo.sites]]
name = "syd"
lat = -33.87
lon = 151.21
addresses = ["192.0.2.5", "2001:db8:5::1"]
`

// fullConfig writes the 5-site node over the database from
// GSLBD_GEOLITE2 and returns its node config, or skips.
func fullConfig(tb testing.TB) *NodeConfig {
	tb.Helper()
	db := os.Getenv("GSLBD_GEOLITE2")
	if db == "" {
		tb.Skip("GSLBD_GEOLITE2 not set: no full-size database to measure (optional, see docs/geoip.md)")
	}
	db, err := filepath.Abs(db)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	for name, data := range map[string]string{
		"gslbd.toml":       fmt.Sprintf(fullNode, db),
		"zones/full.toml":  fullZone,
		"pools/pools.toml": fullPool,
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	cfg, err := LoadNodeConfig(filepath.Join(dir, "gslbd.toml"))
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// BenchmarkLoadFull is a node's first load: the database walked into its
// table, the pool's site orders and table built. cpu-s/op is the CPU
// time of one load (both cores counted); on a shared machine wall time
// mostly measures the neighbours.
func BenchmarkLoadFull(b *testing.B) {
	cfg := fullConfig(b)
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		runtime.GC()
		c0 := cputime.Now()
		if _, err := Load(cfg); err != nil {
			b.Fatal(err)
		}
		cpu += cputime.Now() - c0
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

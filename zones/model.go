// Package zones compiles gslbd's TOML files — the node config, the zone
// files and the pool files — into one immutable, validated Snapshot, and
// chooses the answer for a pool name (SPEC §5) from a View: a snapshot plus
// the health verdicts and drains in force.
//
// Nothing in a Snapshot or View changes after it is built, except the
// per-site rotation counters, which are atomic. Readers share them freely;
// a reload or a verdict change builds a new one to the side and swaps it in.
package zones

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"gslbd/dnssec"
	"gslbd/geo"
)

// Snapshot is everything one load of the configuration produced.
type Snapshot struct {
	Node *NodeConfig

	// Zones sorted by origin, longest (most labels) first, so the first
	// zone whose origin is a suffix of a name is the closest enclosing one.
	Zones []*Zone
	// Pools by name, and in a stable order (file, then position) for status.
	Pools    map[string]*Pool
	PoolList []*Pool
	// Targets are the distinct (address, check) pairs that monitors probe.
	// Address.Target indexes this slice.
	Targets []Target
	// NumAddrs is the number of Address values across all pools and sites;
	// Address.Index is in [0, NumAddrs).
	NumAddrs int

	// Geo locates clients; never nil (an empty DB knows no one).
	Geo *geo.DB

	// Files lists every file read, with a one-line summary, for `gslbd check`.
	Files []FileSummary
	// Warnings are problems that do not stop the load (a pool no zone uses).
	Warnings []string

	LoadedAt time.Time

	// sel is derived by prepareSelection (select.go), not loaded.
	sel snapSel
}

// FileSummary is one line of `gslbd check` output.
type FileSummary struct {
	Path    string
	Summary string // e.g. "zone gslb.example.com.: 12 names, 3 pool names"
}

// Zone is one zone file: an origin we are authoritative for.
type Zone struct {
	Origin      string // lower-case, fully qualified
	File        string
	TTL         uint32
	Nameservers []string
	SOA         *dns.SOA
	// Names maps every owner name (lower-case, fully qualified, wildcards as
	// "*.x.origin.") to its data. The apex is always present and holds the
	// SOA and NS records first. Empty non-terminals (names that exist only
	// because a name below them does) are present with no RRs and no Pool.
	Names map[string]*Name
	// DNSSEC holds the zone's keys when its file has a [dnssec] table;
	// nil for an unsigned zone.
	DNSSEC *dnssec.Zone
}

// NegativeTTL is the TTL of the SOA in negative answers (RFC 2308 §5):
// the smaller of the SOA record's TTL and its minimum field.
func (z *Zone) NegativeTTL() uint32 {
	return min(z.SOA.Hdr.Ttl, z.SOA.Minttl)
}

// Name is the data at one owner name.
type Name struct {
	Owner string // lower-case, fully qualified
	// RRs are the static records in presentation order, TTLs resolved.
	RRs []dns.RR
	// Pool, when set, answers A and AAAA at this name.
	Pool *Pool
}

// Policy orders the sites of a pool (SPEC §5.3).
type Policy uint8

const (
	PolicyGeo Policy = iota
	PolicyWeighted
	PolicyFailover
)

// Affinity says whether random and rotating choices are replaced by a hash
// of the client network (SPEC §5.5).
type Affinity uint8

const (
	AffinityNone Affinity = iota
	AffinityClientSubnet
)

// AllDown is what a pool answers when no address is eligible (SPEC §5.6).
type AllDown uint8

const (
	AllDownAnswerAll AllDown = iota
	AllDownFallback
	AllDownNoData
)

// Pool is one table of a pool file.
type Pool struct {
	Name        string
	File        string
	Policy      Policy
	Answers     int
	TTL         uint32
	Affinity    Affinity
	WhenAllDown AllDown
	Fallback    *Pool // set when WhenAllDown == AllDownFallback
	Check       Check // the pool-wide check, before per-site overrides
	Sites       []*Site
	// Index is the pool's position in Snapshot.PoolList.
	Index int

	// sel is derived by prepareSelection (select.go), not loaded.
	sel poolSel
}

// Site is one data center of a pool.
type Site struct {
	Name       string
	Pool       *Pool
	Index      int // position in Pool.Sites (file order)
	Lat, Lon   float64
	HasCoords  bool     // lat and lon were given
	Countries  []string // upper-case ISO 3166-1 alpha-2
	Continents []string // upper-case two-letter continent codes
	Weight     int
	Priority   int  // for PolicyFailover; default: file order
	Drained    bool // `drained = true` in the file
	Check      Check
	Addrs      []Address // in file order, IPv4 and IPv6 mixed

	// rr rotates among the site's eligible addresses, query to query.
	rr atomic.Uint32
	// sel is derived by prepareSelection (select.go), not loaded.
	sel siteSel
}

// Address is one VIP of a site.
type Address struct {
	Addr   netip.Addr
	Target int // index into Snapshot.Targets: what probes it
	Index  int // index across the whole snapshot, for View bitsets
}

// CheckType is how an address is probed.
type CheckType uint8

const (
	CheckNone CheckType = iota
	CheckHTTP
	CheckHTTPS
	CheckTCP
)

// Check is a fully resolved health check (pool defaults and site
// overrides applied).
type Check struct {
	Type     CheckType
	Port     uint16
	Path     string
	Host     string
	Expect   []int
	Interval time.Duration
	Timeout  time.Duration
	Rise     int
	Fall     int
	// Insecure skips TLS certificate verification for https checks
	// (`tls_skip_verify = true`).
	Insecure bool
}

// Target is one distinct (address, check) pair. Its Key is the same on
// every node that loads the same pool files, so monitors' reports about it
// can be compared across the mesh.
type Target struct {
	Key   string
	Addr  netip.Addr
	Check Check
}

// Package zones is the model of gslbd's configuration — one immutable,
// validated Snapshot of zones, pools, sites and probe targets — and
// chooses the answer for a pool name from a View: a snapshot plus the
// health verdicts and drains in force. Reading and validating the files
// that describe a Snapshot is zones/config's job; this package knows no
// file format, so what only reads snapshots does not link a decoder.
//
// Nothing in a Snapshot or View changes after it is built, except the
// per-site rotation counters, which are atomic. Readers share them freely;
// a reload or a verdict change builds a new one to the side and swaps it in.
package zones

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"gslbd/dnssec"
	"gslbd/geo"
)

// Snapshot is everything one load of the configuration produced.
type Snapshot struct {
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
	// ConfigDigest identifies the zones and pools loaded: a hash of each
	// zone and pool file's name and content, equal on every node that
	// loads the same files. Nodes gossip it to show configuration drift.
	ConfigDigest string
	// Warnings are problems that do not stop the load (a pool no zone uses).
	Warnings []string

	LoadedAt time.Time

	// sel is derived by Prepare (select.go), not loaded.
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
	// Lines[i] is the line of RRs[i] in the zone file, for errors found
	// after loading (a record the DNS server cannot pack); 0 when unknown.
	Lines []int
	// Pool, when set, answers A and AAAA at this name.
	Pool *Pool
}

// Policy orders the sites of a pool (README, How an answer is chosen).
type Policy uint8

const (
	PolicyGeo Policy = iota
	PolicyWeighted
	PolicyFailover
)

// Affinity says whether random and rotating choices are replaced by a hash
// of the client network (README, How an answer is chosen).
type Affinity uint8

const (
	AffinityNone Affinity = iota
	AffinityClientSubnet
)

// AllDown is what a pool answers when no address is eligible (README, How an answer is chosen).
type AllDown uint8

const (
	AllDownAnswerAll AllDown = iota
	AllDownFallback
	AllDownNoData
)

// Pool is one table of a pool file.
type Pool struct {
	Name    string
	File    string
	Policy  Policy
	Answers int
	TTL     uint32
	// MinTTL is the TTL of answers while an address of the pool is down or
	// its monitors disagree (health-aware TTL); 0 means TTL/4.
	MinTTL      uint32
	Affinity    Affinity
	WhenAllDown AllDown
	Fallback    *Pool // set when WhenAllDown == AllDownFallback
	Check       Check // the pool-wide check, before per-site overrides
	Sites       []*Site
	// DefaultOrder (policy geo) is the site order, as indices into Sites,
	// for clients the pool cannot place: no location, or one that no
	// site's countries, continents or coordinates rank. Sites it does
	// not list follow, tied. Empty: such clients get a weighted order.
	DefaultOrder []int
	// Index is the pool's position in Snapshot.PoolList.
	Index int

	// sel is derived by Prepare (select.go), not loaded.
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
	// sel is derived by Prepare (select.go), not loaded.
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
	CheckDNS
	// NumCheckTypes bounds CheckType values, for tables indexed by type.
	NumCheckTypes = iota
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
	// Headers are extra request headers of http and https checks, sorted
	// by name (canonical form).
	Headers []Header
	// BodyMatch, when not empty, must occur in the first BodyMatchBytes
	// bytes of an http or https response body.
	BodyMatch string

	// A dns check asks QName (fully qualified) for QType and wants RCode
	// back, and, when Answer is set, a record of QType in the answer
	// section whose RDATA in presentation form is Answer.
	QName  string
	QType  uint16
	RCode  int
	Answer string
}

// Header is one configured request header of an HTTP check.
type Header struct{ Name, Value string }

// BodyMatchBytes is how much of a response body body_match searches, as
// Route 53's string matching does.
const BodyMatchBytes = 5120

// Target is one distinct (address, check) pair. Its Key is the same on
// every node that loads the same pool files, so monitors' reports about it
// can be compared across the mesh.
type Target struct {
	Key   string
	Addr  netip.Addr
	Check Check
}

// Zone returns the closest enclosing zone of name (fully qualified, any
// case), or nil when no zone holds it. It does not allocate.
func (s *Snapshot) Zone(name string) *Zone {
	for _, z := range s.Zones {
		if inZone(name, z.Origin) {
			return z
		}
	}
	return nil
}

// inZone reports whether name is origin or below it, ignoring case.
func inZone(name, origin string) bool {
	if origin == "." {
		return true
	}
	n, o := len(name), len(origin)
	if n < o || !strings.EqualFold(name[n-o:], origin) {
		return false
	}
	return n == o || name[n-o-1] == '.' && !escapedDot(name, n-o-1)
}

// escapedDot reports whether the dot at i is escaped ("a\.b" is one label).
func escapedDot(name string, i int) bool {
	bs := 0
	for j := i - 1; j >= 0 && name[j] == '\\'; j-- {
		bs++
	}
	return bs%2 == 1
}

func (p Policy) String() string {
	switch p {
	case PolicyWeighted:
		return "weighted"
	case PolicyFailover:
		return "failover"
	default:
		return "geo"
	}
}

func (t CheckType) String() string {
	switch t {
	case CheckHTTP:
		return "http"
	case CheckHTTPS:
		return "https"
	case CheckTCP:
		return "tcp"
	case CheckDNS:
		return "dns"
	default:
		return "none"
	}
}

// String is the canonical form of the check, part of Target.Key: equal
// checks give equal strings on every node, different checks different
// strings. Examples: "none", "tcp:443?i=5s&t=2s&r=2&f=3",
// "http:80/healthz?host=www.example.com&expect=200,301&i=5s&t=2s&r=2&f=3".
func (c Check) String() string {
	if c.Type == CheckNone {
		return "none"
	}
	var b strings.Builder
	b.WriteString(c.Type.String())
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(int(c.Port)))
	sep := byte('?')
	param := func(k, v string) {
		b.WriteByte(sep)
		sep = '&'
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	switch c.Type {
	case CheckHTTP, CheckHTTPS:
		b.WriteString(escapeKey(c.Path))
		if c.Host != "" {
			param("host", escapeKey(c.Host))
		}
		codes := make([]string, len(c.Expect))
		for i, e := range c.Expect {
			codes[i] = strconv.Itoa(e)
		}
		param("expect", strings.Join(codes, ","))
		for _, h := range c.Headers {
			param("h", escapeKey(h.Name)+":"+escapeKey(h.Value))
		}
		if c.BodyMatch != "" {
			param("body", escapeKey(c.BodyMatch))
		}
	case CheckDNS:
		param("name", escapeKey(c.QName))
		param("qtype", dns.TypeToString[c.QType])
		param("rcode", dns.RcodeToString[c.RCode])
		if c.Answer != "" {
			param("answer", escapeKey(c.Answer))
		}
	}
	param("i", c.Interval.String())
	param("t", c.Timeout.String())
	param("r", strconv.Itoa(c.Rise))
	param("f", strconv.Itoa(c.Fall))
	if c.Insecure {
		param("insecure", "1")
	}
	return b.String()
}

// escapeKey percent-encodes the bytes that structure a check string, so a
// path holding "?" or "&" cannot make two checks look alike.
func escapeKey(s string) string {
	const special = "%?&|=, "
	if !strings.ContainsAny(s, special) && !hasCtl(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; strings.IndexByte(special, c) >= 0 || c < 0x20 || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

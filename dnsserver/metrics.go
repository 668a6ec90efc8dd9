package dnsserver

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"gslbd/dnssec"
)

// Counting on the hot path is one atomic add into a cell the table found at
// Publish time; the cells live here, outside any one snapshot, so a reload
// does not reset them, and a custom Collector reads them at scrape time.

// qtypes are the query types counted by name; everything else is "other".
var qtypeNames = [...]string{"A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "PTR", "NS", "SOA", "ANY", "other"}

const qtypeOther = len(qtypeNames) - 1

func qtypeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeCNAME:
		return 2
	case dns.TypeMX:
		return 3
	case dns.TypeTXT:
		return 4
	case dns.TypeSRV:
		return 5
	case dns.TypeCAA:
		return 6
	case dns.TypePTR:
		return 7
	case dns.TypeNS:
		return 8
	case dns.TypeSOA:
		return 9
	case dns.TypeANY:
		return 10
	}
	return qtypeOther
}

// rcodes counted; BADVERS is an extended rcode carried in the OPT record.
var rcodeNames = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "BADCOOKIE"}

const (
	rcNoError = iota
	rcFormErr
	rcServFail
	rcNXDomain
	rcNotImp
	rcRefused
	rcBadVers
	rcBadCookie
)

// rcodeWire is the 12-bit rcode of each counted index.
var rcodeWire = [...]int{dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError, dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers, dns.RcodeBadCookie}

// Hot counters are kept per shard: one shard per UDP reader, and shard 0
// for TCP, Handle's other callers and everything not on a reader. A
// reader adds only to its own cells, so on N cores the readers never
// pull the same cache line back and forth; a scrape sums the shards.

// cacheLine is the size the shards are padded to.
const cacheLine = 64

// zoneShard is one shard's query counts of a zone: 12 × 8 counters, 768
// bytes, a whole number of cache lines.
type zoneShard [len(qtypeNames)][len(rcodeNames)]atomic.Uint64

type zoneCounters struct {
	s []zoneShard
}

func newZoneCounters(shards int) *zoneCounters {
	return &zoneCounters{s: make([]zoneShard, shards)}
}

func (z *zoneCounters) add(shard, qt, rc int) { z.s[shard][qt][rc].Add(1) }

func (z *zoneCounters) load(qt, rc int) uint64 {
	var n uint64
	for i := range z.s {
		n += z.s[i][qt][rc].Load()
	}
	return n
}

// paddedCounter is a counter alone on its cache line.
type paddedCounter struct {
	atomic.Uint64
	_ [cacheLine - 8]byte
}

// shardedCounter is one counter with a cell per shard.
type shardedCounter struct {
	s []paddedCounter
}

func newShardedCounter(shards int) *shardedCounter {
	return &shardedCounter{s: make([]paddedCounter, shards)}
}

func (c *shardedCounter) add(shard int) { c.s[shard].Add(1) }

func (c *shardedCounter) load() uint64 {
	var n uint64
	for i := range c.s {
		n += c.s[i].Load()
	}
	return n
}

// hotCounters are the per-query counters of one shard outside the zones.
type hotCounters struct {
	ecs       atomic.Uint64
	truncated atomic.Uint64
	dropped   atomic.Uint64
	_         [cacheLine - 24]byte
}

// counterSet owns every counter of a Server.
type counterSet struct {
	mu    sync.Mutex // guards the maps, taken at Publish and scrape, never per query
	zones map[string]*zoneCounters
	// sites by pool name, then site name
	sites map[string]map[string]*shardedCounter

	shards     int
	noZone     *zoneCounters // queries answered outside every zone, or before any header sense
	hot        []hotCounters // by shard
	tcpOpened  atomic.Uint64
	tcpRefused atomic.Uint64
	// tcpSourceRefused counts the refusals due to the per-source cap.
	tcpSourceRefused atomic.Uint64
	tcpOpen          atomic.Int64
	sampled          atomic.Uint64

	rrlLimited [rrlClasses]atomic.Uint64
	rrlSlipped [rrlClasses]atomic.Uint64
	cookies    [len(cookieStateNames)]atomic.Uint64

	// sigs is the server's signature cache, whose own counters are
	// exported at scrape time.
	sigs *dnssec.Cache
}

// newCounterSet makes counters with the given number of shards (at least 1).
func newCounterSet(shards int) *counterSet {
	shards = max(shards, 1)
	return &counterSet{zones: map[string]*zoneCounters{}, sites: map[string]map[string]*shardedCounter{},
		shards: shards, noZone: newZoneCounters(shards), hot: make([]hotCounters, shards)}
}

// ecs, truncated and dropped sum the hot counters over the shards.
func (c *counterSet) ecs() (n uint64) {
	for i := range c.hot {
		n += c.hot[i].ecs.Load()
	}
	return n
}

func (c *counterSet) truncated() (n uint64) {
	for i := range c.hot {
		n += c.hot[i].truncated.Load()
	}
	return n
}

func (c *counterSet) dropped() (n uint64) {
	for i := range c.hot {
		n += c.hot[i].dropped.Load()
	}
	return n
}

func (c *counterSet) zone(origin string) *zoneCounters {
	c.mu.Lock()
	defer c.mu.Unlock()
	z := c.zones[origin]
	if z == nil {
		z = newZoneCounters(c.shards)
		c.zones[origin] = z
	}
	return z
}

func (c *counterSet) site(pool, site string) *shardedCounter {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.sites[pool]
	if m == nil {
		m = map[string]*shardedCounter{}
		c.sites[pool] = m
	}
	s := m[site]
	if s == nil {
		s = newShardedCounter(c.shards)
		m[site] = s
	}
	return s
}

var (
	descQueries    = prometheus.NewDesc("gslbd_dns_queries_total", "DNS queries answered, by zone (\"\" outside every zone), query type and response code.", []string{"zone", "qtype", "rcode"}, nil)
	descAnswers    = prometheus.NewDesc("gslbd_dns_pool_answers_total", "Pool answers, by pool and the first site answered from.", []string{"pool", "site"}, nil)
	descECS        = prometheus.NewDesc("gslbd_dns_ecs_queries_total", "Queries that carried a valid EDNS Client Subnet option.", nil, nil)
	descTruncated  = prometheus.NewDesc("gslbd_dns_truncated_total", "UDP responses truncated with TC set.", nil, nil)
	descDropped    = prometheus.NewDesc("gslbd_dns_dropped_total", "Packets dropped without a reply (short, a response, or unreadable).", nil, nil)
	descTCPOpened  = prometheus.NewDesc("gslbd_dns_tcp_connections_total", "TCP connections accepted.", nil, nil)
	descTCPRefused = prometheus.NewDesc("gslbd_dns_tcp_connections_rejected_total", "TCP connections closed at once because max_tcp_conns, or max_tcp_conns_per_source of their source, were open.", nil, nil)
	descTCPSource  = prometheus.NewDesc("gslbd_dns_tcp_connections_source_rejected_total", "TCP connections closed at once because their source had max_tcp_conns_per_source open.", nil, nil)
	descTCPOpen    = prometheus.NewDesc("gslbd_dns_tcp_connections_open", "TCP connections open now.", nil, nil)
	descRRLLimited = prometheus.NewDesc("gslbd_dns_rrl_limited_total", "UDP responses over their rate limit (dropped or slipped), by answer class.", []string{"class"}, nil)
	descRRLSlipped = prometheus.NewDesc("gslbd_dns_rrl_slipped_total", "Limited UDP responses sent anyway, truncated or BADCOOKIE, by answer class.", []string{"class"}, nil)
	descCookies    = prometheus.NewDesc("gslbd_dns_cookie_queries_total", "Queries with a DNS COOKIE option, by what their server cookie was: client_only, invalid or valid.", []string{"state"}, nil)
	descSigLookups = prometheus.NewDesc("gslbd_dnssec_signature_cache_lookups_total", "RRsets of signed answers looked up in the signature cache, by result: hit, or miss (then signed).", []string{"result"}, nil)
	descSigned     = prometheus.NewDesc("gslbd_dnssec_signatures_total", "RRSIG records made (one per RRset and signing key).", nil, nil)
	descSignFailed = prometheus.NewDesc("gslbd_dnssec_signing_failures_total", "RRsets of signed zones sent without signatures: no key of the zone was active, or signing failed.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *counterSet) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueries, descAnswers, descECS, descTruncated, descDropped, descTCPOpened, descTCPRefused, descTCPSource, descTCPOpen, descRRLLimited, descRRLSlipped, descCookies, descSigLookups, descSigned, descSignFailed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: only non-zero query cells are
// exported, so the label space stays as small as the traffic.
func (c *counterSet) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	origins := make([]string, 0, len(c.zones))
	for o := range c.zones {
		origins = append(origins, o)
	}
	sort.Strings(origins)
	zs := make([]*zoneCounters, len(origins))
	for i, o := range origins {
		zs[i] = c.zones[o]
	}
	type siteCell struct {
		pool, site string
		v          *shardedCounter
	}
	var sites []siteCell
	for p, m := range c.sites {
		for s, v := range m {
			sites = append(sites, siteCell{p, s, v})
		}
	}
	c.mu.Unlock()

	emit := func(origin string, z *zoneCounters) {
		for qi := range len(qtypeNames) {
			for ri := range len(rcodeNames) {
				if v := z.load(qi, ri); v > 0 {
					ch <- prometheus.MustNewConstMetric(descQueries, prometheus.CounterValue, float64(v), origin, qtypeNames[qi], rcodeNames[ri])
				}
			}
		}
	}
	emit("", c.noZone)
	for i, o := range origins {
		emit(o, zs[i])
	}
	for _, s := range sites {
		ch <- prometheus.MustNewConstMetric(descAnswers, prometheus.CounterValue, float64(s.v.load()), s.pool, s.site)
	}
	ch <- prometheus.MustNewConstMetric(descECS, prometheus.CounterValue, float64(c.ecs()))
	ch <- prometheus.MustNewConstMetric(descTruncated, prometheus.CounterValue, float64(c.truncated()))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(c.dropped()))
	ch <- prometheus.MustNewConstMetric(descTCPOpened, prometheus.CounterValue, float64(c.tcpOpened.Load()))
	ch <- prometheus.MustNewConstMetric(descTCPRefused, prometheus.CounterValue, float64(c.tcpRefused.Load()))
	ch <- prometheus.MustNewConstMetric(descTCPSource, prometheus.CounterValue, float64(c.tcpSourceRefused.Load()))
	ch <- prometheus.MustNewConstMetric(descTCPOpen, prometheus.GaugeValue, float64(c.tcpOpen.Load()))
	for i, name := range rrlClassNames {
		ch <- prometheus.MustNewConstMetric(descRRLLimited, prometheus.CounterValue, float64(c.rrlLimited[i].Load()), name)
		ch <- prometheus.MustNewConstMetric(descRRLSlipped, prometheus.CounterValue, float64(c.rrlSlipped[i].Load()), name)
	}
	for i := cookieClient; i < len(cookieStateNames); i++ {
		ch <- prometheus.MustNewConstMetric(descCookies, prometheus.CounterValue, float64(c.cookies[i].Load()), cookieStateNames[i])
	}
	if c.sigs != nil {
		st := c.sigs.Stats()
		ch <- prometheus.MustNewConstMetric(descSigLookups, prometheus.CounterValue, float64(st.Hits), "hit")
		ch <- prometheus.MustNewConstMetric(descSigLookups, prometheus.CounterValue, float64(st.Misses), "miss")
		ch <- prometheus.MustNewConstMetric(descSigned, prometheus.CounterValue, float64(st.Signed))
		ch <- prometheus.MustNewConstMetric(descSignFailed, prometheus.CounterValue, float64(st.Failed))
	}
}

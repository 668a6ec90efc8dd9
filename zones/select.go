package zones

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"gslbd/geo"
)

// Answer selection (README, How an answer is chosen). The hot path is View.Select; View.Explain runs
// the very same selectPool with a *Trace attached, so what explain prints is
// what the server does. Everything that does not depend on the client or on
// the health verdicts is computed once per snapshot (Prepare);
// everything that depends on the verdicts but not on the client once per
// view (NewView); a query only looks the client up, orders the sites that
// still have an eligible address and copies addresses out.

const (
	fam4 = 0
	fam6 = 1

	// setUp selects a site's eligible addresses (up and not drained),
	// setLive its non-drained ones, used by when_all_down = "answer-all".
	setUp   = 0
	setLive = 1

	// maxStackSites is how many sites a pool may have before the site order
	// of a query no longer fits in arrays on the stack. Bigger pools work
	// but allocate per query: no realistic GSLB pool has 64 data centers.
	maxStackSites = 64
	// maxStackAddrs is the same bound for the addresses of one site under
	// affinity, where they are ranked by hash.
	maxStackAddrs = 64

	// maxFallbackDepth bounds fallback chains. The loader rejects cycles;
	// this only keeps a bug there from becoming unbounded recursion here.
	maxFallbackDepth = 8

	// affinityBits4 and affinityBits6 are the client networks that share an
	// answer under affinity = "client-subnet" (README, How an answer is chosen).
	affinityBits4 = 24
	affinityBits6 = 56
)

// Geo site classes, in order of preference (README, How an answer is chosen).
const (
	classCountry   = iota // the site lists the client's country
	classContinent        // the site lists the client's continent
	classDistance         // both have coordinates: by great-circle distance
	classRest             // no way to rank: weighted order among these
)

// rank is one position of a precomputed site order: sites with the same
// tier are tied and get the weighted (or affinity) order among themselves.
type rank struct {
	site int32 // Site.Index
	tier int32
}

// snapSel is what Prepare derives for a whole snapshot.
type snapSel struct {
	once     sync.Once
	numSites int // sites across all pools; siteSel.seq is in [0, numSites)
	numPools int
}

// poolSel is what Prepare derives for a pool.
type poolSel struct {
	seq int     // position among Snapshot.PoolList, for View state
	has [2]bool // the pool has an address of the family at all
	all []rank  // every site in file order, one tier (weighted; unknown location)
	fo  []rank  // failover: by priority, then file order, each its own tier
	// Geo: the site ranking for a client address a is
	// geoOrders[v] where v, bits = geoTab.Lookup(a), and every address of
	// the /bits network around a has the same ranking. Locations are many
	// (a city database has ~10^5), distinct rankings few, so they are
	// deduplicated, and the table merges neighbouring networks with the
	// same ranking: a few thousand ranges instead of millions, and the
	// widest correct ECS scope. geoOrders[0] is the ranking of the
	// unknown location (all sites tied: weighted order).
	geoTab    *geo.Table
	geoOrders [][]rank
}

// siteSel is what Prepare derives for a site.
type siteSel struct {
	seq  int    // position among all sites of the snapshot, for View state
	seed uint64 // rendezvous identity: hash of pool and site name, stable across reloads and nodes
}

// Prepare precomputes, once per snapshot, what the answer selection needs
// (per-pool site orders by client location). The loader (zones/config)
// calls it last, after every pool and the geo database are in place;
// NewView calls it too, so a snapshot built by hand works. It runs once.
func (s *Snapshot) Prepare() error {
	s.sel.once.Do(s.prepare)
	return nil
}

func (s *Snapshot) prepare() {
	seq := 0
	// Pools over the same data centers (www, api, cdn, …) rank sites the
	// same way: they share one table instead of each holding megabytes.
	shared := map[string]*poolSel{}
	for pi, p := range s.PoolList {
		p.sel = poolSel{seq: pi, all: make([]rank, len(p.Sites))}
		for i, site := range p.Sites {
			site.sel = siteSel{seq: seq, seed: siteSeed(p.Name, site.Name)}
			seq++
			p.sel.all[i] = rank{site: int32(i)}
			for _, a := range site.Addrs {
				p.sel.has[familyOfAddr(a.Addr)] = true
			}
		}
		switch p.Policy {
		case PolicyFailover:
			p.sel.fo = slices.Clone(p.sel.all)
			slices.SortStableFunc(p.sel.fo, func(a, b rank) int {
				return cmp.Compare(p.Sites[a.site].Priority, p.Sites[b.site].Priority)
			})
			for i := range p.sel.fo {
				p.sel.fo[i].tier = int32(i)
			}
		case PolicyGeo:
			k := geoKey(p)
			if o, ok := shared[k]; ok {
				p.sel.geoTab, p.sel.geoOrders = o.geoTab, o.geoOrders
			} else {
				p.prepareGeo(s.Geo)
				shared[k] = &p.sel
			}
		}
	}
	s.sel.numSites = seq
	s.sel.numPools = len(s.PoolList)
}

// prepareGeo ranks p's sites for every location the geo DB knows and
// derives from the DB a table straight from address to ranking, the way
// gdnsd precomputes its per-map network tree of datacenter lists: a query
// then costs one table lookup, and the network that lookup returns spans
// every neighbouring network with the same ranking, whatever their
// locations. Two locations whose rankings are equal (every German city
// for a pool with one site in Germany) give the same answer to every
// client under every health state, so merging them is safe (README, How an answer is chosen).
func (p *Pool) prepareGeo(db *geo.DB) {
	n := db.NumLocations()
	byLoc := make([]uint32, n)
	p.sel.geoOrders = nil
	seen := map[string]uint32{}
	buf := make([]rank, 0, len(p.Sites))
	key := make([]byte, 0, 8*len(p.Sites))
	for id := range n {
		// ID 0 is the unknown location: it gets order 0, which the
		// zero table falls back to.
		buf = geoRanks(p, db.Location(int32(id)), buf)
		if len(p.DefaultOrder) > 0 && !placeable(p, db.Location(int32(id))) {
			buf = defaultRanks(p, buf)
		}
		key = key[:0]
		for _, r := range buf {
			key = binary.LittleEndian.AppendUint32(key, uint32(r.site))
			key = binary.LittleEndian.AppendUint32(key, uint32(r.tier))
		}
		i, ok := seen[string(key)]
		if !ok {
			i = uint32(len(p.sel.geoOrders))
			seen[string(key)] = i
			p.sel.geoOrders = append(p.sel.geoOrders, slices.Clone(buf))
		}
		byLoc[id] = i
	}
	tab, err := db.Derive(byLoc)
	if err != nil {
		// Cannot happen (one value per location, each below the number
		// of locations). The zero table answers the unknown order with
		// scope 0 everywhere: the same answer for every client, so the
		// scope is still correct.
		tab = &geo.Table{}
	}
	p.sel.geoTab = tab
}

// placeable reports whether any site of p can rank a client at loc by
// a claim or by distance: when none can, every site ties, and the pool's
// default_order (if any) decides instead.
func placeable(p *Pool, loc *geo.Location) bool {
	for _, s := range p.Sites {
		if c, _ := geoClass(s, loc); c != classRest {
			return true
		}
	}
	return false
}

// defaultRanks is p's default_order: the listed sites, each its own
// tier, then the others tied. The order is fixed, so the answer and its
// ECS scope are stable for every client that gets it, and networks that
// get it merge with their neighbours whose ranking is the same.
func defaultRanks(p *Pool, dst []rank) []rank {
	dst = dst[:0]
	for i, si := range p.DefaultOrder {
		dst = append(dst, rank{site: int32(si), tier: int32(i)})
	}
	for i := range p.Sites {
		if !slices.Contains(p.DefaultOrder, i) {
			dst = append(dst, rank{site: int32(i), tier: int32(len(p.DefaultOrder))})
		}
	}
	return dst
}

// geoKey is what geoRanks and defaultRanks read of p's sites, in file
// order: two pools with the same key have the same rankings for every
// location.
func geoKey(p *Pool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v;", p.DefaultOrder)
	for _, s := range p.Sites {
		fmt.Fprintf(&b, "%v|%v|%v|%v|%v;", s.HasCoords, math.Float64bits(s.Lat), math.Float64bits(s.Lon), s.Countries, s.Continents)
	}
	return b.String()
}

func siteSeed(pool, site string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(pool))
	h.Write([]byte{0})
	h.Write([]byte(site))
	return mix64(h.Sum64())
}

// mix64 is the murmur3 finalizer: a cheap bijection whose output bits each
// depend on every input bit, enough for rendezvous scores.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// unit maps a hash to (0, 1], the domain -ln needs.
func unit(h uint64) float64 { return float64(h>>11+1) / (1 << 53) }

func addrSeed(a netip.Addr) uint64 {
	b := a.As16()
	return mix64(binary.BigEndian.Uint64(b[:8]) ^ mix64(binary.BigEndian.Uint64(b[8:])))
}

func familyOfAddr(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return fam4
	}
	return fam6
}

func familyOfType(qtype uint16) (int, bool) {
	switch qtype {
	case dns.TypeA:
		return fam4, true
	case dns.TypeAAAA:
		return fam6, true
	}
	return 0, false
}

// query is the per-query state that outlives one pool (a fallback pool may
// need the location or affinity key the first one did not). It lives on
// Select's stack.
type query struct {
	addr   netip.Addr // client address, IPv4-mapped IPv6 unmapped
	mapped bool       // addr was IPv4-mapped: prefix lengths count from 96
	fam    int

	located bool
	loc     *geo.Location
	locBits int

	keyed  bool
	aff    uint64 // mixed key of the client's /24 or /56
	affNet netip.Prefix
}

// unknownLocation is what a snapshot without a geo DB answers. Read-only.
var unknownLocation = geo.Location{Source: geo.SourceUnknown}

func (q *query) locate(db *geo.DB) {
	if q.located {
		return
	}
	q.located = true
	if db == nil || !q.addr.IsValid() {
		q.loc, q.locBits = &unknownLocation, 0
		return
	}
	q.loc, q.locBits = db.Lookup(q.addr)
	if q.loc == nil {
		q.loc, q.locBits = &unknownLocation, 0
	}
}

func (q *query) key() uint64 {
	if q.keyed {
		return q.aff
	}
	q.keyed = true
	var k uint64
	switch {
	case q.addr.Is4():
		b := q.addr.As4()
		k = uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | 4
		q.affNet = netip.PrefixFrom(q.addr, affinityBits4).Masked()
	case q.addr.Is6():
		b := q.addr.As16()
		k = binary.BigEndian.Uint64(b[:8])&^0xff | 6
		q.affNet = netip.PrefixFrom(q.addr, affinityBits6).Masked()
	}
	q.aff = mix64(k + 0x9e3779b97f4a7c15)
	return q.aff
}

// affinityBits is the prefix length the affinity network has in the
// client's address family as the resolver sent it.
func (q *query) affinityBits() int {
	switch {
	case q.mapped:
		return 96 + affinityBits4
	case q.addr.Is4():
		return affinityBits4
	}
	return affinityBits6
}

func (q *query) geoBits() int {
	if q.mapped {
		return 96 + q.locBits
	}
	return q.locBits
}

// Select chooses the addresses for a query of type qtype (A or AAAA) at a
// name bound to pool p, appending them to dst[:0] (README, How an answer is chosen). It does not
// allocate when dst has room for p.Answers addresses and the pools of the
// fallback chain have at most 64 sites (bigger pools work, allocating).
func (v *View) Select(p *Pool, qtype uint16, c Client, dst []netip.Addr) Result {
	return v.run(p, qtype, c, dst, nil)
}

func (v *View) run(p *Pool, qtype uint16, c Client, dst []netip.Addr, tr *Trace) Result {
	fam, ok := familyOfType(qtype)
	if !ok {
		if tr != nil {
			tr.Notef("type %s is not A or AAAA: the pool does not answer it", dns.TypeToString[qtype])
		}
		return Result{Addrs: dst[:0], TTL: v.pools[p.sel.seq].ttl, NoData: true, Pool: p}
	}
	q := query{fam: fam, addr: c.Addr}
	if q.addr.Is4In6() {
		q.addr, q.mapped = q.addr.Unmap(), true
	}
	r := v.selectPool(p, &q, dst, tr, 0)
	if c.ECS && r.Scope > c.SourcePrefix && tr != nil {
		// RFC 7871 §7.2.1: the source prefix was too short to decide the
		// answer; a longer scope tells the resolver to send longer
		// prefixes for this network (gdnsd does the same).
		tr.ScopeWhy += fmt.Sprintf(", longer than the source prefix /%d: networks inside it get different answers", c.SourcePrefix)
	}
	if tr != nil {
		if !c.ECS {
			tr.ScopeWhy += " (the query carried no ECS: the response carries no scope)"
		}
		tr.finish(r)
	}
	return r
}

// selectPool chooses the answer of one pool; tr is nil on the hot path.
func (v *View) selectPool(p *Pool, q *query, dst []netip.Addr, tr *Trace, depth int) Result {
	r := Result{Addrs: dst[:0], TTL: v.pools[p.sel.seq].ttl, Pool: p}
	var pt *PoolTrace
	if tr != nil {
		pt = tr.addPool(v, p, q)
		if r.TTL < p.TTL {
			tr.Notef("pool %s answers with its min_ttl %d instead of ttl %d: an address is down or its monitors disagree (health-aware TTL)", p.Name, r.TTL, p.TTL)
		}
	}
	if !p.sel.has[q.fam] {
		r.NoData = true
		if pt != nil {
			pt.Note = "the pool has no address of this family: NODATA (README, How an answer is chosen)"
			tr.ScopeWhy = "the answer does not depend on the client"
		}
		return r
	}
	set := setUp
	ps := &v.pools[p.sel.seq]
	if ps.n[setUp][q.fam] == 0 {
		switch p.WhenAllDown {
		case AllDownAnswerAll:
			if pt != nil {
				pt.AllDown = "answer-all: no address is eligible, so every non-drained address counts as up (fail open)"
			}
			if ps.n[setLive][q.fam] == 0 {
				r.NoData = true
				if pt != nil {
					pt.AllDown += "; every address of the family is drained: NODATA"
					tr.ScopeWhy = "the answer does not depend on the client"
				}
				return r
			}
			set = setLive
		case AllDownFallback:
			if p.Fallback == nil || depth >= maxFallbackDepth {
				r.NoData = true
				if pt != nil {
					pt.AllDown = "fallback: no fallback pool within reach (chain too long or missing): NODATA"
					tr.ScopeWhy = "the answer does not depend on the client"
				}
				return r
			}
			if pt != nil {
				pt.AllDown = "fallback: no address is eligible, answering from pool " + p.Fallback.Name
			}
			return v.selectPool(p.Fallback, q, dst, tr, depth+1)
		default:
			r.NoData = true
			if pt != nil {
				pt.AllDown = "nodata: no address is eligible, NOERROR without answer"
				tr.ScopeWhy = "the answer does not depend on the client"
			}
			return r
		}
	}

	affinity := p.Affinity == AffinityClientSubnet
	var base []rank
	orderBits := 0 // the network around the client with the same base order
	switch p.Policy {
	case PolicyGeo:
		var oid uint32
		oid, orderBits = p.sel.geoTab.Lookup(q.addr)
		if q.mapped {
			orderBits += 96
		}
		base = p.sel.geoOrders[oid]
	case PolicyFailover:
		base = p.sel.fo
	default:
		base = p.sel.all
	}

	// Keep the sites with an eligible address, then order each run of tied
	// sites by weight: at random, or by rendezvous score under affinity.
	var obuf [maxStackSites]int32
	var kbuf [maxStackSites]float64
	ord, keys := obuf[:0], kbuf[:0]
	if len(base) > maxStackSites {
		ord, keys = make([]int32, 0, len(base)), make([]float64, 0, len(base))
	}
	// Sites past those that fill the answer do not change it: the hot
	// path stops after the tier that completes it (explain orders all).
	have := 0
	for i := 0; i < len(base) && (have < p.Answers || tr != nil); {
		j := i + 1
		for j < len(base) && base[j].tier == base[i].tier {
			j++
		}
		start := len(ord)
		for _, rk := range base[i:j] {
			if n := len(v.sites[p.Sites[rk.site].sel.seq].addrs[set][q.fam]); n > 0 {
				ord = append(ord, rk.site)
				have += n
			}
		}
		if n := len(ord) - start; n > 1 {
			if affinity {
				keys = keys[:len(ord)]
				equal := true
				for k := start; k < len(ord); k++ {
					equal = equal && p.Sites[ord[k]].Weight == p.Sites[ord[start]].Weight
				}
				for k := start; k < len(ord); k++ {
					keys[k] = affinityKey(p.Sites[ord[k]], q, equal)
				}
				sortByKey(ord[start:], keys[start:len(ord)])
			} else {
				drawWeighted(p, ord[start:])
			}
		}
		i = j
	}
	if pt != nil {
		pt.traceOrder(v, p, q, base, ord, set, affinity)
	}

	// Fill: from the first site, spill into the next until Answers.
	need := p.Answers
	total, sites := ps.n[set][q.fam], ps.sites[set][q.fam]
	for _, si := range ord {
		if need <= 0 {
			break
		}
		site := p.Sites[si]
		addrs := v.sites[site.sel.seq].addrs[set][q.fam]
		take := min(need, len(addrs))
		if r.Site == nil {
			r.Site = site
		}
		before := len(r.Addrs)
		if affinity {
			r.Addrs = appendByScore(r.Addrs, addrs, take, q.key())
		} else {
			start := int(site.rr.Add(1)-1) % len(addrs)
			for k := 0; k < take; k++ {
				r.Addrs = append(r.Addrs, addrs[(start+k)%len(addrs)])
			}
		}
		if pt != nil {
			pt.traceTaken(site, r.Addrs[before:], affinity, len(addrs))
		}
		need -= take
	}

	// Scope (README, How an answer is chosen): as wide as the networks in which the answer cannot
	// differ. When every eligible address is answered, or one site answers
	// without affinity, the answer set is the same for every client
	// (rotation only changes the order).
	geoScope, affScope := 0, 0
	switch {
	case total <= p.Answers, sites == 1 && !affinity:
	default:
		if p.Policy == PolicyGeo && sites > 1 {
			geoScope = orderBits
		}
		if affinity {
			affScope = q.affinityBits()
		}
	}
	r.Scope = uint8(max(geoScope, affScope))
	if tr != nil {
		tr.ScopeWhy = scopeReason(p, total, sites, affinity, geoScope, affScope)
		if geoScope > 0 && geoScope < q.geoBits() {
			tr.ScopeWhy += fmt.Sprintf(" (wider than the location's own /%d network: neighbouring networks whose site order is the same are merged)", q.geoBits())
		}
	}
	return r
}

// scopeReason explains the scope selectPool chose, for the trace.
func scopeReason(p *Pool, total, sites int, affinity bool, geoScope, affScope int) string {
	switch {
	case total <= p.Answers:
		return "every eligible address is in the answer: it does not depend on the client"
	case sites == 1 && !affinity:
		return "one site answers, rotating among its addresses: the answer does not depend on the client"
	case p.Policy == PolicyGeo && sites > 1 && affinity && geoScope == affScope:
		return fmt.Sprintf("the site order depends on the client location, the same in the whole /%d network, and affinity hashes the same /%d", geoScope, affScope)
	case p.Policy == PolicyGeo && sites > 1 && affinity && geoScope > affScope:
		return fmt.Sprintf("the site order depends on the client location, the same in the whole /%d network, which lies inside the affinity network /%d", geoScope, affScope)
	case affinity && p.Policy == PolicyGeo && sites > 1:
		return fmt.Sprintf("affinity hashes the client network /%d, inside the /%d geo network", affScope, geoScope)
	case affinity:
		return fmt.Sprintf("affinity hashes the client network /%d", affScope)
	case p.Policy == PolicyGeo:
		return fmt.Sprintf("the site order depends on the client location, the same in the whole /%d network", geoScope)
	}
	return "the order does not depend on the client (" + policyName(p.Policy) + " without affinity)"
}

// affinityKey is the Efraimidis–Spirakis key of a site under affinity:
// sorting by it ascending draws sites without replacement with
// probability ∝ weight, where the uniform draw is the rendezvous score of
// the client network and the site, so a site's key does not depend on
// the other sites: when one disappears, only its clients move. When every
// tied site has the same weight, -ln(u)/w orders them as -u does, and the
// logarithm is skipped. Weight 0 sorts last (only used when nothing else
// is eligible), in file order.
func affinityKey(s *Site, q *query, equalWeights bool) float64 {
	if s.Weight <= 0 {
		return math.Inf(1)
	}
	u := unit(mix64(q.key() ^ s.sel.seed))
	if equalWeights {
		return -u
	}
	return -math.Log(u) / float64(s.Weight)
}

// drawWeighted orders tied sites at random, each next one drawn among the
// rest with probability ∝ weight (successive sampling: the same
// distribution as sorting by Efraimidis–Spirakis keys, without a
// logarithm per site). Sites of weight 0 stay last, in file order.
func drawWeighted(p *Pool, ord []int32) {
	var total uint64
	for _, si := range ord {
		total += uint64(max(p.Sites[si].Weight, 0))
	}
	for pos := 0; pos < len(ord)-1 && total > 0; pos++ {
		r := rand.Uint64N(total)
		i := pos
		for ; i < len(ord)-1; i++ {
			w := uint64(max(p.Sites[ord[i]].Weight, 0))
			if r < w {
				break
			}
			r -= w
		}
		// Move the drawn site to pos, keeping the others in order so
		// that weight-0 sites stay in file order.
		si := ord[i]
		copy(ord[pos+1:i+1], ord[pos:i])
		ord[pos] = si
		total -= uint64(p.Sites[si].Weight)
	}
}

// sortByKey is an insertion sort of ord by keys, stable: the slices are a
// handful of sites, and sort.Slice would allocate.
func sortByKey(ord []int32, keys []float64) {
	for i := 1; i < len(ord); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
			ord[j], ord[j-1] = ord[j-1], ord[j]
		}
	}
}

// appendByScore appends the take addresses of addrs with the highest
// rendezvous score for the client network, best first.
func appendByScore(dst, addrs []netip.Addr, take int, key uint64) []netip.Addr {
	var sbuf [maxStackAddrs]uint64
	var ibuf [maxStackAddrs]int32
	scores, idx := sbuf[:0], ibuf[:0]
	if len(addrs) > maxStackAddrs {
		scores, idx = make([]uint64, 0, len(addrs)), make([]int32, 0, len(addrs))
	}
	for i, a := range addrs {
		scores = append(scores, mix64(key^addrSeed(a)))
		idx = append(idx, int32(i))
	}
	// Partial selection sort: take is small.
	for k := 0; k < take; k++ {
		best := k
		for i := k + 1; i < len(scores); i++ {
			if scores[i] > scores[best] {
				best = i
			}
		}
		scores[k], scores[best] = scores[best], scores[k]
		idx[k], idx[best] = idx[best], idx[k]
		dst = append(dst, addrs[idx[k]])
	}
	return dst
}

// geoClass places a site for a client location (policy "geo").
func geoClass(s *Site, loc *geo.Location) (class int, km float64) {
	if loc.Source == geo.SourceUnknown {
		return classRest, 0
	}
	if loc.Country != "" && slices.Contains(s.Countries, loc.Country) {
		return classCountry, 0
	}
	if loc.Continent != "" && slices.Contains(s.Continents, loc.Continent) {
		return classContinent, 0
	}
	if loc.HasCoords && s.HasCoords {
		return classDistance, geo.Distance(loc.Lat, loc.Lon, s.Lat, s.Lon)
	}
	return classRest, 0
}

// geoRanks ranks every site of p for a client at loc: country claims, then
// continent claims, then by distance, then sites that cannot be placed.
// Sites in the same claim class, at the same distance, or unplaceable tie.
func geoRanks(p *Pool, loc *geo.Location, dst []rank) []rank {
	type placed struct {
		class int
		km    float64
	}
	var pbuf [maxStackSites]placed
	pl := pbuf[:0]
	if len(p.Sites) > maxStackSites {
		pl = make([]placed, 0, len(p.Sites))
	}
	dst = dst[:0]
	for i, s := range p.Sites {
		c, km := geoClass(s, loc)
		pl = append(pl, placed{c, km})
		dst = append(dst, rank{site: int32(i)})
	}
	less := func(a, b placed) bool {
		if a.class != b.class {
			return a.class < b.class
		}
		return a.class == classDistance && a.km < b.km
	}
	for i := 1; i < len(dst); i++ {
		for j := i; j > 0 && less(pl[dst[j].site], pl[dst[j-1].site]); j-- {
			dst[j], dst[j-1] = dst[j-1], dst[j]
		}
	}
	tier := int32(0)
	for i := range dst {
		if i > 0 && pl[dst[i].site] != pl[dst[i-1].site] {
			tier++
		}
		dst[i].tier = tier
	}
	return dst
}

func policyName(p Policy) string {
	switch p {
	case PolicyWeighted:
		return "weighted"
	case PolicyFailover:
		return "failover"
	}
	return "geo"
}

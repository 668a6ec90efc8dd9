package zones

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"gslbd/geo"
)

// Trace is how an answer was chosen, step by step: what `gslbd explain`
// prints and GET /api/v1/explain returns. It is filled by the same code
// that answers queries (selectPool with a non-nil trace).
type Trace struct {
	Name string `json:"name,omitempty"`
	Type string `json:"type"`
	// Zone is the zone that answers; Owner the owner name whose data
	// answers (the wildcard owner when one was used).
	Zone     string   `json:"zone,omitempty"`
	Owner    string   `json:"owner,omitempty"`
	Wildcard bool     `json:"wildcard,omitempty"`
	CNAMEs   []string `json:"cname_chain,omitempty"` // CNAME records followed, in order
	// Rcode is the response code the server gives ("NOERROR", "NXDOMAIN",
	// "REFUSED").
	Rcode string `json:"rcode"`
	// Static lists the static records that answer, in presentation format.
	Static []string `json:"static,omitempty"`

	Client   TraceClient    `json:"client"`
	Location *TraceLocation `json:"location,omitempty"`
	// Pools are the pools consulted: the asked one, then any fallbacks.
	Pools []*PoolTrace `json:"pools,omitempty"`

	Answer []string `json:"answer"`
	TTL    uint32   `json:"ttl"`
	NoData bool     `json:"nodata,omitempty"`
	// Scope is the ECS scope prefix of the response (SPEC §5.7), ScopeWhy
	// the reason for it.
	Scope    int      `json:"scope"`
	ScopeWhy string   `json:"scope_reason"`
	Notes    []string `json:"notes,omitempty"`
}

// TraceClient is the address the answer was chosen for.
type TraceClient struct {
	Address string `json:"address"`
	// Source is "ecs" (EDNS Client Subnet) or "packet" (the source address).
	Source       string `json:"source"`
	SourcePrefix *int   `json:"source_prefix,omitempty"`
}

// TraceLocation is where the client was placed.
type TraceLocation struct {
	Country   string   `json:"country,omitempty"`
	Continent string   `json:"continent,omitempty"`
	Lat       *float64 `json:"lat,omitempty"`
	Lon       *float64 `json:"lon,omitempty"`
	// Network is the network around the client that has this location.
	Network string `json:"network"`
	// Source is "override" (geo.networks), "database", "database
	// (registered country only)" or "unknown".
	Source string `json:"source"`
}

// PoolTrace is one pool's part of a trace.
type PoolTrace struct {
	Pool     string `json:"pool"`
	Policy   string `json:"policy"`
	Affinity string `json:"affinity"`
	// AffinityNet is the client network hashed under affinity.
	AffinityNet string `json:"affinity_network,omitempty"`
	Answers     int    `json:"answers"`
	TTL         uint32 `json:"ttl"`
	Family      string `json:"family"`
	// Addresses is every address of the family, with its state.
	Addresses []AddrTrace `json:"addresses"`
	// AllDown is the when_all_down rule, when it applied.
	AllDown string `json:"all_down,omitempty"`
	// Sites is the site order, the sites skipped for lack of an eligible
	// address last.
	Sites []SiteTrace `json:"sites,omitempty"`
	Note  string      `json:"note,omitempty"`
}

// AddrTrace is one address and why it is (not) eligible.
type AddrTrace struct {
	Site    string `json:"site"`
	Address string `json:"address"`
	State   string `json:"state"` // "up", "down" or "drained"
	Why     string `json:"why"`
}

// SiteTrace is one position of the site order.
type SiteTrace struct {
	Position int    `json:"position,omitempty"` // 1-based; 0 when skipped
	Site     string `json:"site"`
	Reason   string `json:"reason"`
	Eligible int    `json:"eligible"`
	Skipped  bool   `json:"skipped,omitempty"`
	// Taken are the addresses answered from this site, How how they were
	// picked among its eligible ones.
	Taken []string `json:"taken,omitempty"`
	How   string   `json:"how,omitempty"`
}

func (t *Trace) notef(format string, args ...any) {
	t.Notes = append(t.Notes, fmt.Sprintf(format, args...))
}

func (t *Trace) addPool(v *View, p *Pool, q *query) *PoolTrace {
	pt := &PoolTrace{
		Pool:     p.Name,
		Policy:   policyName(p.Policy),
		Affinity: "none",
		Answers:  p.Answers,
		TTL:      p.TTL,
		Family:   [2]string{"IPv4", "IPv6"}[q.fam],
	}
	if p.Affinity == AffinityClientSubnet {
		pt.Affinity = "client-subnet"
		q.key()
		pt.AffinityNet = q.affNet.String()
	}
	for _, s := range p.Sites {
		for _, a := range s.Addrs {
			if familyOfAddr(a.Addr) != q.fam {
				continue
			}
			at := AddrTrace{Site: s.Name, Address: a.Addr.String(), State: "up", Why: "mesh verdict up"}
			switch {
			case s.Drained:
				at.State, at.Why = "drained", "site drained in the pool file"
			case v.drained[a.Index]:
				at.State, at.Why = "drained", "drained through the admin API"
			case v.down[a.Index]:
				at.State, at.Why = "down", "mesh verdict down on "+v.Snap.Targets[a.Target].Key
			}
			pt.Addresses = append(pt.Addresses, at)
		}
	}
	if p.Policy == PolicyGeo {
		q.locate(v.Snap.Geo)
		t.setLocation(q)
	}
	t.Pools = append(t.Pools, pt)
	return pt
}

func (t *Trace) setLocation(q *query) {
	if t.Location != nil {
		return
	}
	l := q.loc
	tl := &TraceLocation{Country: l.Country, Continent: l.Continent}
	if l.HasCoords {
		lat, lon := l.Lat, l.Lon
		tl.Lat, tl.Lon = &lat, &lon
	}
	switch l.Source {
	case geo.SourceOverride:
		tl.Source = "override"
	case geo.SourceDatabase:
		tl.Source = "database"
		if l.Registered {
			tl.Source = "database (registered country only)"
		}
	default:
		tl.Source = "unknown"
	}
	if q.addr.IsValid() {
		if pfx, err := q.addr.Prefix(q.locBits); err == nil {
			tl.Network = pfx.String()
		}
	}
	t.Location = tl
}

// traceOrder records the site order chosen and the reason for each place.
func (pt *PoolTrace) traceOrder(v *View, p *Pool, q *query, base []rank, ord []int32, set int, affinity bool) {
	inOrd := make(map[int32]bool, len(ord))
	tiers := make(map[int32]int32, len(base))
	tierSize := make(map[int32]int, len(base))
	for _, rk := range base {
		tiers[rk.site] = rk.tier
	}
	for _, si := range ord {
		inOrd[si] = true
		tierSize[tiers[si]]++
	}
	for i, si := range ord {
		s := p.Sites[si]
		st := SiteTrace{Position: i + 1, Site: s.Name, Eligible: len(v.sites[s.sel.seq].addrs[set][q.fam])}
		var why []string
		switch p.Policy {
		case PolicyGeo:
			if k := slices.Index(p.DefaultOrder, int(si)); len(p.DefaultOrder) > 0 && !placeable(p, q.loc) {
				if k >= 0 {
					why = append(why, fmt.Sprintf("no site can place the client: default_order position %d", k+1))
				} else {
					why = append(why, "no site can place the client, and default_order does not list this site")
				}
				break
			}
			why = append(why, geoReason(s, q.loc))
		case PolicyFailover:
			why = append(why, fmt.Sprintf("priority %d, file position %d", s.Priority, s.Index+1))
		}
		if tierSize[tiers[si]] > 1 || p.Policy == PolicyWeighted {
			why = append(why, tieReason(s, affinity, q, p.Policy == PolicyWeighted))
		}
		st.Reason = strings.Join(why, "; ")
		pt.Sites = append(pt.Sites, st)
	}
	for _, rk := range base {
		if inOrd[rk.site] {
			continue
		}
		s := p.Sites[rk.site]
		pt.Sites = append(pt.Sites, SiteTrace{Site: s.Name, Skipped: true, Reason: "no eligible address of the family"})
	}
}

func geoReason(s *Site, loc *geo.Location) string {
	class, km := geoClass(s, loc)
	switch class {
	case classCountry:
		return "claims the client's country " + loc.Country
	case classContinent:
		return "claims the client's continent " + loc.Continent
	case classDistance:
		return fmt.Sprintf("distance %.0f km", km)
	}
	switch {
	case loc.Source == geo.SourceUnknown:
		return "client location unknown"
	case !loc.HasCoords:
		return "no claim, client has no coordinates"
	}
	return "no claim, site has no coordinates"
}

func tieReason(s *Site, affinity bool, q *query, weighted bool) string {
	prefix := "tied: "
	if weighted {
		prefix = ""
	}
	if s.Weight <= 0 {
		return prefix + "weight 0: only after every weighted site"
	}
	if affinity {
		u := unit(mix64(q.key() ^ s.sel.seed))
		return fmt.Sprintf("%sweight %d, affinity hash of %s (key %.4f)", prefix, s.Weight, q.affNet, -math.Log(u)/float64(s.Weight))
	}
	return fmt.Sprintf("%sweight %d, weighted random draw", prefix, s.Weight)
}

func (pt *PoolTrace) traceTaken(s *Site, taken []netip.Addr, affinity bool, eligible int) {
	for i := range pt.Sites {
		st := &pt.Sites[i]
		if st.Site != s.Name || st.Skipped {
			continue
		}
		for _, a := range taken {
			st.Taken = append(st.Taken, a.String())
		}
		switch {
		case affinity:
			st.How = fmt.Sprintf("%d of %d by affinity hash of the client network", len(taken), eligible)
		default:
			st.How = fmt.Sprintf("%d of %d, rotating query to query", len(taken), eligible)
		}
		return
	}
}

func (t *Trace) finish(r Result) {
	t.Answer = t.Answer[:0]
	for _, a := range r.Addrs {
		t.Answer = append(t.Answer, a.String())
	}
	t.TTL = r.TTL
	t.NoData = r.NoData
	t.Scope = int(r.Scope)
	if t.Rcode == "" {
		t.Rcode = "NOERROR"
	}
}

func newTrace(qtype uint16, c Client) *Trace {
	t := &Trace{Type: typeName(qtype), Answer: []string{}}
	t.Client.Address = c.Addr.String()
	t.Client.Source = "packet"
	if c.ECS {
		t.Client.Source = "ecs"
		sp := int(c.SourcePrefix)
		t.Client.SourcePrefix = &sp
	}
	return t
}

func typeName(qtype uint16) string {
	if s, ok := dns.TypeToString[qtype]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", qtype)
}

// Explain runs Select for pool p with a trace attached and returns it.
func (v *View) Explain(p *Pool, qtype uint16, c Client) *Trace {
	t := newTrace(qtype, c)
	v.run(p, qtype, c, make([]netip.Addr, 0, max(p.Answers, 1)), t)
	return t
}

// maxCNAMEHops bounds in-zone CNAME chains in explain, like the server.
const maxCNAMEHops = 8

// ExplainName explains the answer to a query for name and qtype from
// client: which zone and owner answer (exact, wildcard per RFC 4592, in-zone
// CNAMEs followed), and for pool names the whole selection. ecsPrefix < 0
// means the query carried no ECS (client is the packet source); otherwise
// client is the ECS address, masked to ecsPrefix bits.
func (v *View) ExplainName(name string, qtype uint16, client netip.Addr, ecsPrefix int) (*Trace, error) {
	if !client.IsValid() {
		return nil, errors.New("explain: a client address is required")
	}
	c := Client{Addr: client}
	if ecsPrefix >= 0 {
		pfx, err := client.Prefix(ecsPrefix)
		if err != nil {
			return nil, fmt.Errorf("explain: ecs prefix %d for %s: %w", ecsPrefix, client, err)
		}
		c = Client{Addr: pfx.Addr(), ECS: true, SourcePrefix: uint8(ecsPrefix)}
	}
	name = dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("explain: invalid name %q", name)
	}
	t := newTrace(qtype, c)
	t.Name = name
	z := v.Snap.Zone(name)
	if z == nil {
		t.Rcode = "REFUSED"
		t.notef("no zone encloses %s", name)
		return t, nil
	}
	t.Zone = z.Origin
	for hop := 0; ; hop++ {
		n, wild, why := z.lookup(name)
		if n == nil {
			t.Rcode = "NXDOMAIN"
			if why != "" {
				t.Rcode, t.NoData = "NOERROR", true
				t.notef("%s", why)
			} else {
				t.notef("%s does not exist and no wildcard covers it: NXDOMAIN", name)
			}
			t.ScopeWhy = "static data: the answer does not depend on the client"
			return t, nil
		}
		t.Owner, t.Wildcard = n.Owner, wild
		if wild {
			t.notef("%s synthesised from wildcard %s (RFC 4592)", name, n.Owner)
		}
		if del := z.delegation(n.Owner); del != nil && qtype != dns.TypeDS {
			t.notef("%s is delegated at %s: referral", name, del.Owner)
			for _, rr := range del.RRs {
				if rr.Header().Rrtype == dns.TypeNS {
					t.Static = append(t.Static, rr.String())
				}
			}
			t.Rcode = "NOERROR"
			t.ScopeWhy = "static data: the answer does not depend on the client"
			return t, nil
		}
		var cname *dns.CNAME
		for _, rr := range n.RRs {
			if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if cname != nil && qtype != dns.TypeCNAME {
			t.CNAMEs = append(t.CNAMEs, ownerString(cname, name))
			target := dns.CanonicalName(cname.Target)
			if hop >= maxCNAMEHops || !dns.IsSubDomain(z.Origin, target) {
				t.notef("CNAME target %s is not followed (outside the zone or chain too long)", target)
				t.Rcode = "NOERROR"
				t.ScopeWhy = "static data: the answer does not depend on the client"
				return t, nil
			}
			name = target
			continue
		}
		if n.Pool != nil && (qtype == dns.TypeA || qtype == dns.TypeAAAA) {
			t.notef("%s is bound to pool %s", n.Owner, n.Pool.Name)
			v.run(n.Pool, qtype, c, make([]netip.Addr, 0, max(n.Pool.Answers, 1)), t)
			return t, nil
		}
		for _, rr := range n.RRs {
			if rr.Header().Rrtype == qtype {
				t.Static = append(t.Static, ownerString(rr, name))
			}
		}
		if qtype == dns.TypeSOA && n.Owner == z.Origin && z.SOA != nil {
			t.Static = append(t.Static, z.SOA.String())
		}
		if len(t.Static) == 0 {
			t.NoData = true
			t.notef("%s has no %s records: NODATA", n.Owner, t.Type)
		}
		t.Rcode = "NOERROR"
		t.ScopeWhy = "static data: the answer does not depend on the client"
		return t, nil
	}
}

// ownerString prints rr as if it were owned by name (wildcard synthesis).
func ownerString(rr dns.RR, name string) string {
	c := dns.Copy(rr)
	c.Header().Name = name
	return c.String()
}

// delegation is the NS set below the apex at or above owner, if any.
func (z *Zone) delegation(owner string) *Name {
	for name := owner; name != z.Origin && dns.IsSubDomain(z.Origin, name); {
		if n := z.Names[name]; n != nil {
			for _, rr := range n.RRs {
				if rr.Header().Rrtype == dns.TypeNS {
					return n
				}
			}
		}
		i, end := dns.NextLabel(name, 0)
		if end {
			break
		}
		name = name[i:]
	}
	return nil
}

// lookup finds the data for name: the exact owner, else the wildcard at
// the closest encloser (RFC 4592 §3.3.1). When nothing matches, why is ""
// for NXDOMAIN and a reason for NODATA (an empty non-terminal).
func (z *Zone) lookup(name string) (n *Name, wildcard bool, why string) {
	if n := z.Names[name]; n != nil {
		return n, false, ""
	}
	if z.hasDescendant(name) {
		return nil, false, name + " is an empty non-terminal: NODATA"
	}
	// The closest encloser is the longest existing ancestor; a delegation
	// above it is handled by the caller through the ancestor's name.
	for ce := name; ce != z.Origin; {
		i, end := dns.NextLabel(ce, 0)
		if end {
			break
		}
		ce = ce[i:]
		if z.Names[ce] != nil || z.hasDescendant(ce) || ce == z.Origin {
			// A zone cut at or above the closest encloser wins over a
			// wildcard: the data below it is not ours.
			if d := z.delegation(ce); d != nil {
				return d, false, ""
			}
			if w := z.Names["*."+ce]; w != nil {
				return w, true, ""
			}
			return nil, false, ""
		}
	}
	if w := z.Names["*."+z.Origin]; w != nil {
		return w, true, ""
	}
	return nil, false, ""
}

// hasDescendant reports whether some owner lies below name (name is then
// an empty non-terminal if it has no data of its own).
func (z *Zone) hasDescendant(name string) bool {
	suffix := "." + name
	for owner := range z.Names {
		if strings.HasSuffix(owner, suffix) {
			return true
		}
	}
	return false
}

// Text renders the trace for people (`gslbd explain`).
func (t *Trace) Text() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	q := t.Name
	if q == "" {
		q = "(pool)"
	}
	w("query:    %s %s", q, t.Type)
	client := t.Client.Address + " (packet source)"
	if t.Client.Source == "ecs" && t.Client.SourcePrefix != nil {
		client = fmt.Sprintf("%s/%d (EDNS Client Subnet)", t.Client.Address, *t.Client.SourcePrefix)
	}
	w("client:   %s", client)
	switch {
	case t.Owner != "":
		owner := t.Owner
		if t.Wildcard {
			owner += " (wildcard)"
		}
		w("zone:     %s  owner: %s", t.Zone, owner)
	case t.Zone != "":
		w("zone:     %s", t.Zone)
	}
	for _, c := range t.CNAMEs {
		w("cname:    %s", c)
	}
	if l := t.Location; l != nil {
		where := strings.TrimSpace(l.Country + " " + l.Continent)
		if where == "" {
			where = "unknown"
		}
		if l.Lat != nil && l.Lon != nil {
			where += fmt.Sprintf(" (%.4f, %.4f)", *l.Lat, *l.Lon)
		}
		w("location: %s, from %s, network %s", where, l.Source, l.Network)
	}
	for _, p := range t.Pools {
		b.WriteString("\n")
		line := fmt.Sprintf("pool %s: policy %s, answers %d, ttl %d, affinity %s", p.Pool, p.Policy, p.Answers, p.TTL, p.Affinity)
		if p.AffinityNet != "" {
			line += " (" + p.AffinityNet + ")"
		}
		w("%s", line)
		w("  %s addresses:", p.Family)
		if len(p.Addresses) == 0 {
			w("    (none)")
		}
		for _, a := range p.Addresses {
			w("    %-8s %-39s %-7s %s", a.Site, a.Address, a.State, a.Why)
		}
		if p.Note != "" {
			w("  %s", p.Note)
		}
		if p.AllDown != "" {
			w("  all down → %s", p.AllDown)
		}
		if len(p.Sites) > 0 {
			w("  site order:")
		}
		for _, s := range p.Sites {
			if s.Skipped {
				w("    -  %-8s skipped: %s", s.Site, s.Reason)
				continue
			}
			w("    %d. %-8s %s (%d eligible)", s.Position, s.Site, s.Reason, s.Eligible)
			if len(s.Taken) > 0 {
				w("       answers %s — %s", strings.Join(s.Taken, " "), s.How)
			}
		}
	}
	b.WriteString("\n")
	for _, n := range t.Notes {
		w("note:     %s", n)
	}
	for _, s := range t.Static {
		w("static:   %s", s)
	}
	ans := strings.Join(t.Answer, " ")
	switch {
	case t.Rcode != "" && t.Rcode != "NOERROR":
		ans = t.Rcode
	case t.NoData:
		ans = "NODATA (NOERROR, no answer)"
	case ans == "" && len(t.Static) > 0:
		ans = "the static records above"
	}
	if len(t.Pools) > 0 {
		w("answer:   %s  ttl %d", ans, t.TTL)
	} else {
		w("answer:   %s", ans)
	}
	w("scope:    %d — %s", t.Scope, t.ScopeWhy)
	return b.String()
}

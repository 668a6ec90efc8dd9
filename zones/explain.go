package zones

import (
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/miekg/dns"

	"gslbd/geo"
)

// Trace is how an answer was chosen, step by step: what `gslbd explain`
// prints and GET /api/v1/explain returns. It is filled by the code that
// answers queries: the DNS server's resolver with its trace hook set,
// which runs Select with a non-nil trace for pool names.
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
	// "REFUSED"); Authoritative its AA bit (clear on referrals).
	Rcode         string `json:"rcode"`
	Authoritative bool   `json:"aa"`
	// Records, Authority and Additional are the sections of the response,
	// in presentation format, as the server sends them.
	Records    []string `json:"records,omitempty"`
	Authority  []string `json:"authority,omitempty"`
	Additional []string `json:"additional,omitempty"`

	Client   TraceClient    `json:"client"`
	Location *TraceLocation `json:"location,omitempty"`
	// Pools are the pools consulted: the asked one, then any fallbacks.
	Pools []*PoolTrace `json:"pools,omitempty"`

	// Answer is the addresses chosen from pools.
	Answer []string `json:"answer"`
	TTL    uint32   `json:"ttl"`
	NoData bool     `json:"nodata,omitempty"`
	// Scope is the ECS scope prefix of the response (README, How an answer is chosen), ScopeWhy
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

// Notef adds a step to the trace.
func (t *Trace) Notef(format string, args ...any) {
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
	case geo.SourceRetired:
		tl.Source = sourceRetired
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

// sourceRetired is the location source of a trace made while the geo
// database in service was retired for a reload (geo.DB.Retire).
const sourceRetired = "unavailable: the geo database is being reloaded"

// GeoRetired reports whether the trace could not locate the client
// because the geo database was being reloaded: the answer itself is
// right (the pools' tables stay), but the reasons cannot name the
// location. Explain again once the reload is over.
func (t *Trace) GeoRetired() bool { return t.Location != nil && t.Location.Source == sourceRetired }

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

// NewTrace starts the trace of a query of type qtype from client c.
func NewTrace(qtype uint16, c Client) *Trace {
	t := &Trace{Type: typeName(qtype), Answer: []string{}}
	t.SetClient(c)
	return t
}

// SetClient records the client the answer is chosen for.
func (t *Trace) SetClient(c Client) {
	t.Client = TraceClient{Address: c.Addr.String(), Source: "packet"}
	if c.ECS {
		t.Client.Source = "ecs"
		sp := int(c.SourcePrefix)
		t.Client.SourcePrefix = &sp
	}
}

func typeName(qtype uint16) string {
	if s, ok := dns.TypeToString[qtype]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", qtype)
}

// Explain runs Select for pool p with a trace attached and returns it.
func (v *View) Explain(p *Pool, qtype uint16, c Client) *Trace {
	t := NewTrace(qtype, c)
	v.run(p, qtype, c, make([]netip.Addr, 0, max(p.Answers, 1)), t)
	return t
}

// SelectTrace is Select with every step recorded in tr: what the DNS
// server's resolver calls for a pool name when it answers an explain
// request instead of a query.
func (v *View) SelectTrace(p *Pool, qtype uint16, c Client, dst []netip.Addr, tr *Trace) Result {
	return v.run(p, qtype, c, dst, tr)
}

// Text renders the trace for people (`gslbd explain`), step by step in the
// order the server decides: name lookup, client location, per pool the
// addresses, the site order and what was taken, then the response and its
// ECS scope.
func (t *Trace) Text() string {
	var b strings.Builder
	t.write(&b)
	return b.String()
}

func (t *Trace) write(w io.Writer) {
	fmt.Fprintf(w, "query    %s %s\n", t.Name, t.Type)
	client := t.Client.Address + " (" + t.Client.Source
	if t.Client.SourcePrefix != nil {
		client += fmt.Sprintf(", source prefix /%d", *t.Client.SourcePrefix)
	}
	fmt.Fprintf(w, "client   %s)\n", client)
	if t.Zone != "" {
		owner := t.Owner
		if t.Wildcard {
			owner += " (wildcard)"
		}
		fmt.Fprintf(w, "zone     %s", t.Zone)
		if owner != "" {
			fmt.Fprintf(w, "  owner %s", owner)
		}
		fmt.Fprintln(w)
	}
	for _, c := range t.CNAMEs {
		fmt.Fprintf(w, "cname    %s\n", oneSpaced(c))
	}
	if l := t.Location; l != nil {
		var parts []string
		for _, p := range []string{l.Country, l.Continent} {
			if p != "" {
				parts = append(parts, p)
			}
		}
		if l.Lat != nil && l.Lon != nil {
			parts = append(parts, strconv.FormatFloat(*l.Lat, 'f', 2, 64)+","+strconv.FormatFloat(*l.Lon, 'f', 2, 64))
		}
		if len(parts) == 0 {
			parts = append(parts, "unknown")
		}
		fmt.Fprintf(w, "location %s (%s", strings.Join(parts, " "), l.Source)
		if l.Network != "" {
			fmt.Fprintf(w, ", network %s", l.Network)
		}
		fmt.Fprintln(w, ")")
	}
	for _, n := range t.Notes {
		fmt.Fprintf(w, "note     %s\n", n)
	}
	for _, p := range t.Pools {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "pool %s: policy %s, %s, ttl %d, affinity %s", p.Pool, p.Policy, plural(p.Answers, "answer"), p.TTL, p.Affinity)
		if p.AffinityNet != "" {
			fmt.Fprintf(w, " (%s)", p.AffinityNet)
		}
		fmt.Fprintf(w, ", %s\n", p.Family)
		if p.Note != "" {
			fmt.Fprintf(w, "  %s\n", p.Note)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  SITE\tADDRESS\tSTATE\tWHY")
		for _, a := range p.Addresses {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", a.Site, a.Address, a.State, a.Why)
		}
		tw.Flush()
		if len(p.Sites) > 0 {
			fmt.Fprintln(w, "  site order:")
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			for _, s := range p.Sites {
				pos := strconv.Itoa(s.Position) + "."
				if s.Skipped {
					pos = "-"
				}
				taken := ""
				if len(s.Taken) > 0 {
					taken = "→ " + strings.Join(s.Taken, " ")
					if s.How != "" {
						taken += " (" + s.How + ")"
					}
				}
				if taken != "" {
					taken = "\t" + taken // no empty last cell: it would pad the line with spaces
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d eligible%s\n", pos, s.Site, s.Reason, s.Eligible, taken)
			}
			tw.Flush()
		}
		if p.AllDown != "" {
			fmt.Fprintf(w, "  all down: %s\n", p.AllDown)
		}
	}
	fmt.Fprintln(w)
	for _, s := range t.Records {
		fmt.Fprintf(w, "record   %s\n", oneSpaced(s))
	}
	for _, s := range t.Authority {
		fmt.Fprintf(w, "auth     %s\n", oneSpaced(s))
	}
	answer := strings.Join(t.Answer, " ")
	switch {
	case t.NoData:
		answer = "(no data)"
	case answer == "" && len(t.Records) > 0:
		answer = "(the records above)"
	case answer == "":
		answer = "(empty)"
	}
	fmt.Fprintf(w, "answer   %s %s", t.Rcode, answer)
	if len(t.Answer) > 0 {
		fmt.Fprintf(w, "  ttl %d", t.TTL)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "scope    /%d", t.Scope)
	if t.ScopeWhy != "" {
		fmt.Fprintf(w, "  %s", t.ScopeWhy)
	}
	fmt.Fprintln(w)
}

// oneSpaced turns the tabs of an RR's presentation format into single
// spaces, so records do not break the column layout.
func oneSpaced(rr string) string { return strings.Join(strings.Fields(rr), " ") }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

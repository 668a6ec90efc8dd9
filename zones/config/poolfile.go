package config

import (
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// Defaults of pool files (docs/configuration.md).
const (
	DefaultAnswers       = 2
	DefaultPoolTTL       = 30
	DefaultWeight        = 100
	DefaultCheckInterval = zones.DefaultCheckInterval
	DefaultCheckTimeout  = zones.DefaultCheckTimeout
	DefaultCheckRise     = 2
	DefaultCheckFall     = 3
	DefaultCheckPath     = "/"
	// MaxAnswers bounds `answers`: the DNS server sizes its per-query
	// buffers by it, and more addresses than this do not fit a UDP answer.
	MaxAnswers = 64
)

var (
	poolKeys  = []string{"policy", "answers", "ttl", "min_ttl", "affinity", "when_all_down", "fallback", "check", "sites", "default_order"}
	siteKeys  = []string{"name", "lat", "lon", "countries", "continents", "weight", "priority", "drained", "addresses", "check"}
	checkKeys = []string{"type", "port", "path", "host", "expect", "interval", "timeout", "rise", "fall", "tls_skip_verify",
		"headers", "body_match", "name", "qtype", "rcode", "answer"}
)

// poolSrc is a pool with where it came from, for errors found later
// (fallbacks, duplicates across files, pools no zone uses).
type poolSrc struct {
	pool     *zones.Pool
	d        *doc
	fallback string // name given in `fallback`
	used     bool
}

func (ps *poolSrc) errf(key string, format string, args ...any) {
	path := []string{ps.pool.Name}
	if key != "" {
		path = append(path, key)
	}
	ps.d.errf(path, format, args...)
}

// checkSpec is a [check] table as written: nil fields were not given.
// from remembers where each given key is, to point at it when the merged
// check is wrong.
type checkSpec struct {
	typ               *zones.CheckType
	port              *uint16
	path, host        *string
	expect            []int
	interval, timeout *time.Duration
	rise, fall        *int
	insecure          *bool
	headers           []zones.Header // nil: not given
	bodyMatch         *string
	qname, answer     *string
	qtype             *uint16
	rcode             *int
	from              map[string][]string
	d                 *doc
	table             []string
}

var checkTypes = map[string]zones.CheckType{"none": zones.CheckNone, "http": zones.CheckHTTP, "https": zones.CheckHTTPS, "tcp": zones.CheckTCP, "dns": zones.CheckDNS}

// Request headers a check may not set: the probe writes them itself (the
// User-Agent names the monitor; host has its own key).
var reservedHeaders = []string{"Host", "User-Agent", "Connection", "Content-Length", "Transfer-Encoding", "Te", "Trailer", "Upgrade"}

func parseCheckSpec(t *table) *checkSpec {
	c := &checkSpec{from: map[string][]string{}, d: t.d, table: t.path}
	if t == nil {
		return c
	}
	mark := func(k string) { c.from[k] = child(t.path, k) }
	var s string
	if t.str("type", &s) {
		if ct, ok := checkTypes[s]; ok {
			c.typ = &ct
			mark("type")
		} else {
			t.errf("type", "unknown check type %q (allowed: http, https, tcp, dns, none)", s)
		}
	}
	var port int
	if t.intVal("port", 1, 65535, &port) {
		p := uint16(port)
		c.port = &p
		mark("port")
	}
	if t.str("path", &s) {
		if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \t\r\n") {
			t.errf("path", "invalid path %q: want an absolute URL path such as \"/healthz\"", s)
		} else {
			v := s
			c.path = &v
			mark("path")
		}
	}
	if t.str("host", &s) {
		if s == "" || strings.ContainsAny(s, " \t\r\n/") {
			t.errf("host", "invalid host %q: want a host name for the Host header and TLS server name", s)
		} else {
			v := strings.ToLower(s)
			c.host = &v
			mark("host")
		}
	}
	if v, ok := t.get("expect"); ok {
		arr, isArr := v.([]any)
		if !isArr || len(arr) == 0 {
			t.errf("expect", "want a non-empty array of HTTP status codes such as [200, 301], got %s", describe(v))
		} else {
			good := true
			for i, e := range arr {
				n, isInt := e.(int64)
				if !isInt || n < 100 || n > 599 {
					t.d.errf(t.elemPath("expect", i), "invalid status code %s: want an integer 100..599", describe(e))
					good = false
					continue
				}
				c.expect = append(c.expect, int(n))
			}
			if good {
				slices.Sort(c.expect)
				c.expect = slices.Compact(c.expect)
				mark("expect")
			} else {
				c.expect = nil
			}
		}
	}
	var d time.Duration
	if t.duration("interval", &d) {
		v := d
		c.interval = &v
		mark("interval")
	}
	if t.duration("timeout", &d) {
		v := d
		c.timeout = &v
		mark("timeout")
	}
	var n int
	if t.intVal("rise", 1, 100, &n) {
		v := n
		c.rise = &v
		mark("rise")
	}
	if t.intVal("fall", 1, 100, &n) {
		v := n
		c.fall = &v
		mark("fall")
	}
	var b bool
	if t.boolean("tls_skip_verify", &b) {
		c.insecure = &b
		mark("tls_skip_verify")
	}
	parseHTTPExtras(t, c, mark)
	parseDNSCheck(t, c, mark)
	t.done(checkKeys...)
	return c
}

// parseHTTPExtras reads headers (a table of name = value) and body_match.
func parseHTTPExtras(t *table, c *checkSpec, mark func(string)) {
	if h := t.sub("headers"); h != nil {
		hs := []zones.Header{}
		good := true
		for name, v := range h.m {
			h.used[name] = true
			value, isStr := v.(string)
			canon := textproto.CanonicalMIMEHeaderKey(name)
			switch {
			case !validHeaderName(name):
				h.errf(name, "invalid header name %q: want a token such as \"X-Health-Token\"", name)
				good = false
			case slices.Contains(reservedHeaders, canon):
				h.errf(name, "header %s is set by the probe itself (use host for Host)", canon)
				good = false
			case !isStr:
				h.typeErr(name, "a string", v)
				good = false
			case strings.ContainsAny(value, "\r\n\x00"):
				h.errf(name, "invalid value for header %s: no line breaks or NUL", canon)
				good = false
			default:
				hs = append(hs, zones.Header{Name: canon, Value: value})
			}
		}
		if good {
			slices.SortFunc(hs, func(a, b zones.Header) int { return strings.Compare(a.Name, b.Name) })
			for i := 1; i < len(hs); i++ {
				if hs[i].Name == hs[i-1].Name {
					t.errf("headers", "header %s given twice (names are case-insensitive)", hs[i].Name)
					good = false
				}
			}
		}
		if good {
			c.headers = hs
			mark("headers")
		}
	}
	var s string
	if t.str("body_match", &s) {
		if s == "" || len(s) > zones.BodyMatchBytes {
			t.errf("body_match", "invalid body_match: want a non-empty string of at most %d bytes", zones.BodyMatchBytes)
		} else {
			c.bodyMatch = &s
			mark("body_match")
		}
	}
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// parseDNSCheck reads the keys of a dns check: name, qtype, rcode and
// answer (checked against name and qtype in resolve).
func parseDNSCheck(t *table, c *checkSpec, mark func(string)) {
	var s string
	if t.str("name", &s) {
		if _, ok := dns.IsDomainName(s); !ok || s == "" {
			t.errf("name", "invalid name %q: want a domain name such as \"www.example.com.\"", s)
		} else {
			v := dns.Fqdn(s)
			c.qname = &v
			mark("name")
		}
	}
	if t.str("qtype", &s) {
		if qt, ok := dns.StringToType[strings.ToUpper(s)]; !ok || qt == dns.TypeOPT || qt == dns.TypeAXFR || qt == dns.TypeIXFR {
			t.errf("qtype", "unknown query type %q: want a type such as \"A\", \"AAAA\" or \"SOA\"", s)
		} else {
			c.qtype = &qt
			mark("qtype")
		}
	}
	if t.str("rcode", &s) {
		if rc, ok := dns.StringToRcode[strings.ToUpper(s)]; !ok || rc > 15 {
			t.errf("rcode", "unknown rcode %q (allowed: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, NOTIMP, FORMERR, …)", s)
		} else {
			c.rcode = &rc
			mark("rcode")
		}
	}
	if t.str("answer", &s) {
		if strings.TrimSpace(s) == "" {
			t.errf("answer", "empty answer: omit the key to accept any answer")
		} else {
			v := strings.TrimSpace(s)
			c.answer = &v
			mark("answer")
		}
	}
}

// over returns c with the keys given in o replacing c's.
func (c *checkSpec) over(o *checkSpec) *checkSpec {
	m := *c
	m.from = map[string][]string{}
	for k, v := range c.from {
		m.from[k] = v
	}
	for k, v := range o.from {
		m.from[k] = v
	}
	m.table = o.table
	overlay(&m.typ, o.typ)
	overlay(&m.port, o.port)
	overlay(&m.path, o.path)
	overlay(&m.host, o.host)
	if o.expect != nil {
		m.expect = o.expect
	}
	overlay(&m.interval, o.interval)
	overlay(&m.timeout, o.timeout)
	overlay(&m.rise, o.rise)
	overlay(&m.fall, o.fall)
	overlay(&m.insecure, o.insecure)
	if o.headers != nil {
		m.headers = o.headers
	}
	overlay(&m.bodyMatch, o.bodyMatch)
	overlay(&m.qname, o.qname)
	overlay(&m.qtype, o.qtype)
	overlay(&m.rcode, o.rcode)
	overlay(&m.answer, o.answer)
	return &m
}

// overlay replaces *dst with src when the override set the key.
func overlay[T any](dst **T, src *T) {
	if src != nil {
		*dst = src
	}
}

// resolve applies the defaults and checks the combination. Keys that do
// not apply to the type (a path for tcp) are dropped, so that equal probes
// get equal Target keys.
func (c *checkSpec) resolve() (zones.Check, bool) {
	at := func(k string) []string {
		if p, ok := c.from[k]; ok {
			return p
		}
		return c.table
	}
	ck := zones.Check{Type: zones.CheckNone, Interval: DefaultCheckInterval, Timeout: DefaultCheckTimeout,
		Rise: DefaultCheckRise, Fall: DefaultCheckFall}
	if c.typ != nil {
		ck.Type = *c.typ
	}
	if ck.Type == zones.CheckNone {
		// Always up: nothing else matters, and every "none" address is
		// one target whatever else was written.
		return ck, true
	}
	ok := true
	if c.interval != nil {
		ck.Interval = *c.interval
	}
	if c.timeout != nil {
		ck.Timeout = *c.timeout
	}
	if ck.Timeout >= ck.Interval {
		where := "timeout"
		if _, ok := c.from["timeout"]; !ok {
			where = "interval"
		}
		c.d.errf(at(where), "check timeout %v must be shorter than its interval %v", ck.Timeout, ck.Interval)
		ok = false
	}
	if c.rise != nil {
		ck.Rise = *c.rise
	}
	if c.fall != nil {
		ck.Fall = *c.fall
	}
	switch ck.Type {
	case zones.CheckHTTP:
		ck.Port = 80
	case zones.CheckHTTPS:
		ck.Port = 443
	}
	if c.port != nil {
		ck.Port = *c.port
	} else if ck.Type == zones.CheckTCP {
		c.d.errf(at("type"), "a tcp check needs a port")
		ok = false
	}
	if ck.Type == zones.CheckHTTP || ck.Type == zones.CheckHTTPS {
		ck.Path = DefaultCheckPath
		if c.path != nil {
			ck.Path = *c.path
		}
		if c.host != nil {
			ck.Host = *c.host
		}
		ck.Expect = []int{200}
		if c.expect != nil {
			ck.Expect = c.expect
		}
	}
	if c.insecure != nil && *c.insecure {
		if ck.Type != zones.CheckHTTPS {
			c.d.errf(at("tls_skip_verify"), "tls_skip_verify applies to https checks only (this one is %s)", ck.Type)
			ok = false
		}
		ck.Insecure = true
	}
	httpish := ck.Type == zones.CheckHTTP || ck.Type == zones.CheckHTTPS
	for key, given := range map[string]bool{"headers": c.headers != nil, "body_match": c.bodyMatch != nil} {
		if given && !httpish {
			c.d.errf(at(key), "%s applies to http and https checks only (this one is %s)", key, ck.Type)
			ok = false
		}
	}
	for key, given := range map[string]bool{"name": c.qname != nil, "qtype": c.qtype != nil, "rcode": c.rcode != nil, "answer": c.answer != nil} {
		if given && ck.Type != zones.CheckDNS {
			c.d.errf(at(key), "%s applies to dns checks only (this one is %s)", key, ck.Type)
			ok = false
		}
	}
	if httpish {
		if len(c.headers) > 0 {
			ck.Headers = c.headers
		}
		if c.bodyMatch != nil {
			ck.BodyMatch = *c.bodyMatch
		}
	}
	if ck.Type == zones.CheckDNS {
		if c.port == nil {
			ck.Port = 53
		}
		ck.QType, ck.RCode = dns.TypeA, dns.RcodeSuccess
		if c.qtype != nil {
			ck.QType = *c.qtype
		}
		if c.rcode != nil {
			ck.RCode = *c.rcode
		}
		if c.qname == nil {
			c.d.errf(at("type"), "a dns check needs a name to ask for, e.g. name = \"www.example.com.\"")
			ok = false
		} else {
			ck.QName = *c.qname
		}
		if c.answer != nil && c.qname != nil {
			// The expected RDATA as a record of the asked type parses it
			// and gives its canonical form ("192.0.2.1", not "192.000.2.1").
			rr, err := dns.NewRR(ck.QName + " 0 IN " + dns.TypeToString[ck.QType] + " " + *c.answer)
			if err != nil || rr == nil {
				c.d.errf(at("answer"), "invalid answer %q for query type %s: want the RDATA of such a record, e.g. \"192.0.2.1\" for A", *c.answer, dns.TypeToString[ck.QType])
				ok = false
			} else {
				ck.Answer = strings.TrimPrefix(rr.String(), rr.Header().String())
			}
		}
	}
	return ck, ok
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_' || c == '.')) {
			return false
		}
	}
	return true
}

// parsePoolFile decodes one pool file; every top-level table is a pool.
// Pools come back in file order.
func parsePoolFile(display string, data []byte, errs *[]*Error) []*poolSrc {
	d := parseDoc(display, data, errs)
	if d == nil {
		return nil
	}
	names := make([]string, 0, len(d.root))
	for k := range d.root {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		pa, pb := d.pos.lookup([]string{a}), d.pos.lookup([]string{b})
		if pa.Line != pb.Line {
			return pa.Line - pb.Line
		}
		if pa.Col != pb.Col {
			return pa.Col - pb.Col
		}
		return strings.Compare(a, b)
	})
	var out []*poolSrc
	for _, name := range names {
		m, ok := d.root[name].(map[string]any)
		if !ok {
			d.errf([]string{name}, "want a pool table ([%s]), got %s", name, describe(d.root[name]))
			continue
		}
		if !validName(name) {
			d.errf([]string{name}, "invalid pool name: want letters, digits, '-', '_' or '.', starting with a letter or digit, at most 63 characters")
		}
		out = append(out, parsePool(d, name, d.table([]string{name}, m)))
	}
	return out
}

func parsePool(d *doc, name string, t *table) *poolSrc {
	p := &zones.Pool{Name: name, File: d.file, Answers: DefaultAnswers, TTL: DefaultPoolTTL}
	ps := &poolSrc{pool: p, d: d}
	var s string
	if t.str("policy", &s) {
		switch s {
		case "geo":
			p.Policy = zones.PolicyGeo
		case "weighted":
			p.Policy = zones.PolicyWeighted
		case "failover":
			p.Policy = zones.PolicyFailover
		default:
			t.errf("policy", "unknown policy %q (allowed: geo, weighted, failover)", s)
		}
	}
	t.intVal("answers", 1, MaxAnswers, &p.Answers)
	t.u32("ttl", 0, 1<<31-1, &p.TTL)
	if t.u32("min_ttl", 1, 1<<31-1, &p.MinTTL) && p.MinTTL > p.TTL {
		t.errf("min_ttl", "min_ttl %d is above ttl %d: want 1..%d", p.MinTTL, p.TTL, p.TTL)
	}
	if t.str("affinity", &s) {
		switch s {
		case "none":
			p.Affinity = zones.AffinityNone
		case "client-subnet":
			p.Affinity = zones.AffinityClientSubnet
		default:
			t.errf("affinity", "unknown affinity %q (allowed: none, client-subnet)", s)
		}
	}
	if t.str("when_all_down", &s) {
		switch s {
		case "answer-all":
			p.WhenAllDown = zones.AllDownAnswerAll
		case "fallback":
			p.WhenAllDown = zones.AllDownFallback
		case "nodata":
			p.WhenAllDown = zones.AllDownNoData
		default:
			t.errf("when_all_down", "unknown value %q (allowed: answer-all, fallback, nodata)", s)
		}
	}
	if t.str("fallback", &ps.fallback) {
		if p.WhenAllDown != zones.AllDownFallback {
			t.errf("fallback", "fallback %q is set but when_all_down is not \"fallback\"", ps.fallback)
			ps.fallback = ""
		} else if ps.fallback == "" {
			t.errf("fallback", "empty pool name")
		}
	} else if p.WhenAllDown == zones.AllDownFallback && !t.has("fallback") {
		t.errf("when_all_down", "when_all_down = \"fallback\" needs a fallback pool: set fallback = \"POOL\"")
	}

	cs := &checkSpec{from: map[string][]string{}, d: d, table: t.path}
	if ct := t.sub("check"); ct != nil {
		cs = parseCheckSpec(ct)
	}
	p.Check, _ = cs.resolve()

	seenSite := map[string]int{}
	seenAddr := map[netip.Addr]string{}
	sites := t.tables("sites")
	if len(sites) == 0 && !t.has("sites") {
		t.errf("", "no sites: add at least one [[%s.sites]] with addresses", name)
	}
	for i, st := range sites {
		site := parseSite(st, p, i, cs, seenAddr)
		if site.Name != "" {
			if j, dup := seenSite[site.Name]; dup {
				st.errf("name", "duplicate site %q (also %s.sites[%d])", site.Name, name, j)
			}
			seenSite[site.Name] = i
		}
		p.Sites = append(p.Sites, site)
	}
	parseDefaultOrder(t, p)
	if p.Policy == zones.PolicyWeighted && len(p.Sites) > 0 && !slices.ContainsFunc(p.Sites, func(s *zones.Site) bool { return s.Weight > 0 }) {
		t.errf("policy", "weighted pool where every site has weight 0: no site could ever be chosen")
	}
	t.done(poolKeys...)
	return ps
}

// parseDefaultOrder reads default_order: site names, each at most once,
// giving the site order of a geo pool for clients it cannot place.
func parseDefaultOrder(t *table, p *zones.Pool) {
	var names []string
	if !t.has("default_order") {
		return
	}
	t.strs("default_order", false, &names) // wrong elements are reported, the rest checked
	if names == nil {
		return // not an array: reported
	}
	if p.Policy != zones.PolicyGeo {
		t.errf("default_order", "default_order applies to policy \"geo\" only (this pool is %s)", p.Policy)
		return
	}
	if len(names) == 0 {
		t.errf("default_order", "empty: name at least one site, or leave default_order out for a weighted order")
		return
	}
	var all []string
	for _, s := range p.Sites {
		all = append(all, s.Name)
	}
	seen := map[int]bool{}
	for j, name := range names {
		i := slices.IndexFunc(p.Sites, func(s *zones.Site) bool { return s.Name == name })
		switch {
		case i < 0:
			t.d.errf(t.elemPath("default_order", j), "unknown site %q (the pool's sites: %s)", name, strings.Join(all, ", "))
		case seen[i]:
			t.d.errf(t.elemPath("default_order", j), "site %q listed twice", name)
		default:
			seen[i] = true
			p.DefaultOrder = append(p.DefaultOrder, i)
		}
	}
}

func parseSite(t *table, p *zones.Pool, i int, pool *checkSpec, seenAddr map[netip.Addr]string) *zones.Site {
	s := &zones.Site{Pool: p, Index: i, Weight: DefaultWeight, Priority: i + 1}
	if t.str("name", &s.Name) {
		if !validName(s.Name) {
			t.errf("name", "invalid site name %q: want letters, digits, '-', '_' or '.', starting with a letter or digit, at most 63 characters", s.Name)
		}
	} else if !t.has("name") {
		t.errf("", "missing site name: set name = \"...\"")
	}
	hasLat := t.float("lat", -90, 90, &s.Lat)
	hasLon := t.float("lon", -180, 180, &s.Lon)
	if t.has("lat") != t.has("lon") {
		t.errf("", "lat and lon go together: give both or neither")
	}
	s.HasCoords = hasLat && hasLon
	var list []string
	if t.strs("countries", false, &list) {
		for j, c := range list {
			u := strings.ToUpper(c)
			if !isCountry(u) {
				t.d.errf(t.elemPath("countries", j), "invalid country %q: want a two-letter ISO 3166-1 code such as \"DE\"", c)
				continue
			}
			if !slices.Contains(s.Countries, u) {
				s.Countries = append(s.Countries, u)
			}
		}
	}
	list = nil
	if t.strs("continents", false, &list) {
		for j, c := range list {
			u := strings.ToUpper(c)
			if !slices.Contains(continents, u) {
				t.d.errf(t.elemPath("continents", j), "invalid continent %q (allowed: %s)", c, strings.Join(continents, " "))
				continue
			}
			if !slices.Contains(s.Continents, u) {
				s.Continents = append(s.Continents, u)
			}
		}
	}
	t.intVal("weight", 0, 1_000_000, &s.Weight)
	t.intVal("priority", 0, 1_000_000, &s.Priority)
	t.boolean("drained", &s.Drained)
	list = nil
	if t.strs("addresses", false, &list) {
		if len(list) == 0 {
			t.errf("addresses", "empty: a site needs at least one address")
		}
		for j, a := range list {
			ep := t.elemPath("addresses", j)
			ip, err := netip.ParseAddr(a)
			switch {
			case err != nil:
				t.d.errf(ep, "invalid address %q: want an IPv4 or IPv6 literal", a)
				continue
			case ip.Zone() != "":
				t.d.errf(ep, "invalid address %q: IPv6 zones are not allowed", a)
				continue
			case ip.Is4In6():
				t.d.errf(ep, "invalid address %q: write the IPv4 address as %s", a, ip.Unmap())
				continue
			}
			if other, dup := seenAddr[ip]; dup {
				t.d.errf(ep, "duplicate address %s in pool %s (also in site %s)", ip, p.Name, other)
				continue
			}
			seenAddr[ip] = s.Name
			s.Addrs = append(s.Addrs, zones.Address{Addr: ip})
		}
	} else if !t.has("addresses") {
		t.errf("", "missing addresses: a site needs at least one, e.g. addresses = [\"192.0.2.10\"]")
	}
	cs := pool
	if ct := t.sub("check"); ct != nil {
		cs = pool.over(parseCheckSpec(ct))
	}
	s.Check, _ = cs.resolve()
	t.done(siteKeys...)
	return s
}

package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// Defaults of zone files (docs/configuration.md).
const (
	DefaultZoneTTL    = 300
	DefaultSOARefresh = 3600
	DefaultSOARetry   = 600
	DefaultSOAExpire  = 86400
	DefaultSOAMinimum = 60
)

// recordTypes are the record type keys a [records.NAME] table may hold, in
// the order used when two are written on one line (inline tables).
var recordTypes = []string{"A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "NS", "PTR", "DS", "SSHFP", "TLSA", "NAPTR", "DNAME"}

const maxTTL = 1<<31 - 1 // RFC 2181 §8

// zoneSrc is a zone with where it came from.
type zoneSrc struct {
	zone      *zones.Zone
	d         *doc
	badOrigin bool // missing or invalid: no duplicate check
	names     int  // names written in the file (not counting empty non-terminals)
	poolNames int
	cuts      int
	// keyFiles are the [dnssec] key_files entries, read by loadKeys.
	keyFiles []keyRef
	signed   bool // the file has a [dnssec] table
}

// keyRef is one key_files entry and where it is written.
type keyRef struct {
	file string
	at   []string
}

// nameSrc is one [records.NAME] table while the zone is checked.
type nameSrc struct {
	t     *table
	name  *zones.Name
	types map[string][]string // record type → path of its key
	pool  []string            // path of the pool key, nil without one
}

// parseZoneFile decodes one zone file. lookupPool resolves pool names (nil
// when unknown); poolNames lists them all for messages. mtime is the
// default SOA serial.
func parseZoneFile(display string, data []byte, mtime time.Time, lookupPool func(string) *zones.Pool, poolNames []string, errs *[]*Error, warns *[]string) *zoneSrc {
	d := parseDoc(display, data, errs)
	if d == nil {
		return nil
	}
	root := d.table(nil, d.root)
	z := &zones.Zone{File: display, TTL: DefaultZoneTTL, Names: map[string]*zones.Name{}}
	zs := &zoneSrc{zone: z, d: d}

	if root.str("origin", &z.Origin) {
		o := strings.ToLower(z.Origin)
		if _, ok := dns.IsDomainName(o); !ok || !dns.IsFqdn(o) || strings.Contains(o, "*") {
			root.errf("origin", "invalid origin %q: want a fully qualified domain name ending in a dot, e.g. \"gslb.example.com.\"", z.Origin)
			o = "origin.invalid."
			zs.badOrigin = true
		}
		z.Origin = o
	} else {
		if !root.has("origin") {
			root.errf("", "missing origin: set origin = \"gslb.example.com.\"")
		}
		z.Origin = "origin.invalid."
		zs.badOrigin = true
	}
	root.u32("ttl", 0, maxTTL, &z.TTL)

	if root.strs("nameservers", false, &z.Nameservers) {
		for i, ns := range z.Nameservers {
			l := strings.ToLower(ns)
			if _, ok := dns.IsDomainName(l); !ok || !dns.IsFqdn(l) || strings.Contains(l, "*") {
				d.errf(root.elemPath("nameservers", i), "invalid nameserver %q: want a fully qualified host name ending in a dot", ns)
			} else if slices.Contains(z.Nameservers[:i], l) {
				d.errf(root.elemPath("nameservers", i), "duplicate nameserver %q", ns)
			}
			z.Nameservers[i] = l
		}
		if len(z.Nameservers) == 0 {
			root.errf("nameservers", "empty: a zone needs at least one nameserver")
		}
	} else if !root.has("nameservers") {
		root.errf("", "missing nameservers: set nameservers = [\"ns1.example.com.\", ...]")
	}

	z.SOA = &dns.SOA{
		Hdr:     dns.RR_Header{Name: z.Origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: z.TTL},
		Refresh: DefaultSOARefresh, Retry: DefaultSOARetry, Expire: DefaultSOAExpire, Minttl: DefaultSOAMinimum,
		Serial: uint32(mtime.Unix()),
	}
	if len(z.Nameservers) > 0 {
		z.SOA.Ns = z.Nameservers[0]
	}
	if st := root.sub("soa"); st != nil {
		if st.str("rname", &z.SOA.Mbox) {
			z.SOA.Mbox = checkMailbox(st, z.SOA.Mbox)
		} else if !st.has("rname") {
			st.errf("", "missing rname: the zone contact as a domain name, e.g. rname = \"hostmaster.example.com.\"")
		}
		if st.str("mname", &z.SOA.Ns) {
			l := strings.ToLower(z.SOA.Ns)
			if _, ok := dns.IsDomainName(l); !ok || !dns.IsFqdn(l) {
				st.errf("mname", "invalid mname %q: want a fully qualified host name ending in a dot", z.SOA.Ns)
			}
			z.SOA.Ns = l
		}
		st.u32("serial", 0, 1<<32-1, &z.SOA.Serial)
		st.u32("refresh", 0, maxTTL, &z.SOA.Refresh)
		st.u32("retry", 0, maxTTL, &z.SOA.Retry)
		st.u32("expire", 0, maxTTL, &z.SOA.Expire)
		st.u32("minimum", 0, maxTTL, &z.SOA.Minttl)
		st.done("rname", "mname", "serial", "refresh", "retry", "expire", "minimum")
	} else if !root.has("soa") {
		root.errf("", "missing [soa] table: it needs at least rname = \"hostmaster.example.com.\"")
	}
	z.SOA.Hdr.Ttl = z.TTL

	apex := &zones.Name{Owner: z.Origin, RRs: []dns.RR{z.SOA}, Lines: []int{d.pos.lookup([]string{"soa"}).Line}}
	for i, ns := range z.Nameservers {
		apex.RRs = append(apex.RRs, &dns.NS{Hdr: dns.RR_Header{Name: z.Origin, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: z.TTL}, Ns: ns})
		apex.Lines = append(apex.Lines, d.pos.lookup([]string{"nameservers", indexSeg(i)}).Line)
	}
	z.Names[z.Origin] = apex

	var srcs []*nameSrc
	if rt := root.sub("records"); rt != nil {
		written := map[string]string{} // owner → key that wrote it
		for _, e := range collectNames(d, rt) {
			owner, ok := ownerName(d, e.path, e.key, z.Origin)
			if !ok {
				continue
			}
			if other, dup := written[owner]; dup {
				d.errf(e.path, "duplicate name %s (also written as records.%s)", owner, displayPath([]string{other}))
				continue
			}
			written[owner] = e.key
			nt := d.table(e.path, e.m)
			for _, c := range e.children {
				nt.used[c] = true
			}
			ns := parseName(nt, z, owner, lookupPool, poolNames)
			if owner == z.Origin {
				// The apex keeps its SOA and NS first.
				apex.RRs = append(apex.RRs, ns.name.RRs...)
				apex.Lines = append(apex.Lines, ns.name.Lines...)
				ns.name = apex
			} else {
				z.Names[owner] = ns.name
			}
			srcs = append(srcs, ns)
		}
		rt.done()
	}
	if dt := root.sub("dnssec"); dt != nil {
		zs.signed = true
		var files []string
		if dt.strs("key_files", false, &files) {
			if len(files) == 0 {
				dt.errf("key_files", "empty: list the .key files of the zone's keys, e.g. key_files = [\"K%s+013+12345.key\"]", z.Origin)
			}
			for i, f := range files {
				zs.keyFiles = append(zs.keyFiles, keyRef{file: f, at: dt.elemPath("key_files", i)})
			}
		} else if !dt.has("key_files") {
			dt.errf("", "missing key_files: list the .key files of the zone's keys (BIND key pairs, each .private beside its .key)")
		}
		dt.done("key_files")
	}
	root.done("origin", "ttl", "nameservers", "soa", "records", "dnssec")

	checkZoneNames(zs, srcs, warns)
	zs.names = 1
	for _, ns := range srcs {
		if ns.name != apex {
			zs.names++
		}
		if ns.name.Pool != nil {
			zs.poolNames++
		}
	}
	addEmptyNonTerminals(z)
	return zs
}

// nameEntry is one table under [records]: its relative name as written
// and the sub-tables that are names below it.
type nameEntry struct {
	key      string
	path     []string
	m        map[string]any
	children []string
}

// collectNames finds the name tables under records. TOML reads
// [records.ns.sub] as a table "sub" inside "ns"; we take such nesting as
// the dotted name "ns.sub", as the operator wrote it. A table that holds
// only deeper names is no name of its own.
func collectNames(d *doc, rt *table) []nameEntry {
	var out []nameEntry
	var walk func(prefix string, path []string, m map[string]any, depth int)
	walk = func(prefix string, path []string, m map[string]any, depth int) {
		e := nameEntry{key: prefix, path: path, m: m}
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok && !slices.Contains(recordTypes, k) && depth < 127 {
				e.children = append(e.children, k)
				name := k
				if prefix != "@" {
					name = prefix + "." + k
				}
				walk(name, child(path, k), sub, depth+1)
			}
		}
		if len(e.children) < len(m) || len(m) == 0 {
			out = append(out, e)
		}
	}
	for k, v := range rt.m {
		rt.used[k] = true
		m, ok := v.(map[string]any)
		if !ok {
			d.errf(child(rt.path, k), "want a table of records ([records.%s]), got %s", displayPath([]string{k}), describe(v))
			continue
		}
		walk(k, child(rt.path, k), m, 0)
	}
	slices.SortFunc(out, func(a, b nameEntry) int {
		pa, pb := d.pos.lookup(a.path), d.pos.lookup(b.path)
		if pa.Line != pb.Line {
			return pa.Line - pb.Line
		}
		if pa.Col != pb.Col {
			return pa.Col - pb.Col
		}
		return strings.Compare(a.key, b.key)
	})
	return out
}

func sortedKeys(d *doc, t *table) []string {
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		pa, pb := d.pos.lookup(child(t.path, a)), d.pos.lookup(child(t.path, b))
		if pa.Line != pb.Line {
			return pa.Line - pb.Line
		}
		if pa.Col != pb.Col {
			return pa.Col - pb.Col
		}
		return strings.Compare(a, b)
	})
	return keys
}

// checkMailbox validates the SOA rname, which is a domain name (the "@" of
// the mail address written as a dot).
func checkMailbox(t *table, s string) string {
	l := strings.ToLower(s)
	if at := strings.IndexByte(l, '@'); at >= 0 {
		t.errf("rname", "invalid rname %q: write the mail address as a domain name, e.g. %q", s, strings.Replace(strings.TrimSuffix(l, ".")+".", "@", ".", 1))
		return l
	}
	if _, ok := dns.IsDomainName(l); !ok || !dns.IsFqdn(l) {
		t.errf("rname", "invalid rname %q: want a fully qualified domain name ending in a dot, e.g. \"hostmaster.example.com.\"", s)
	}
	return l
}

// ownerName turns a key of [records] into a lower-case fully qualified
// owner name inside origin.
func ownerName(d *doc, path []string, key, origin string) (string, bool) {
	var owner string
	switch {
	case key == "@":
		owner = origin
	case strings.HasSuffix(key, "."):
		owner = strings.ToLower(key)
	case origin == ".":
		owner = strings.ToLower(key) + "."
	default:
		owner = strings.ToLower(key) + "." + origin
	}
	if _, ok := dns.IsDomainName(owner); !ok || key == "" || strings.HasPrefix(key, ".") || strings.Contains(key, "..") {
		d.errf(path, "invalid name %q: want a name relative to the origin (\"www\", \"*.eu\"), \"@\" for the apex, or a fully qualified name inside %s", key, origin)
		return "", false
	}
	if !dns.IsSubDomain(origin, owner) {
		d.errf(path, "name %s is outside the origin %s", owner, origin)
		return "", false
	}
	for i, l := range dns.SplitDomainName(owner) {
		if strings.Contains(l, "*") && (i > 0 || l != "*") {
			d.errf(path, "invalid name %q: a wildcard \"*\" must be the whole leftmost label, as in \"*.eu\"", key)
			return "", false
		}
	}
	return owner, true
}

// parseName decodes one [records.NAME] table.
func parseName(t *table, z *zones.Zone, owner string, lookupPool func(string) *zones.Pool, poolNames []string) *nameSrc {
	ns := &nameSrc{t: t, name: &zones.Name{Owner: owner}, types: map[string][]string{}}
	ttl := z.TTL
	t.u32("ttl", 0, maxTTL, &ttl)
	var pool string
	if t.str("pool", &pool) {
		ns.pool = child(t.path, "pool")
		if p := lookupPool(pool); p != nil {
			ns.name.Pool = p
		} else {
			t.errf("pool", "unknown pool %q (pools: %s)", pool, listOrNone(poolNames))
		}
	}
	for _, typ := range sortedKeys(t.d, t) {
		if typ == "ttl" || typ == "pool" {
			continue
		}
		if !slices.Contains(recordTypes, typ) {
			switch {
			case slices.Contains(recordTypes, strings.ToUpper(typ)):
				t.errf(typ, "record types are upper-case: write %s", strings.ToUpper(typ))
			case strings.EqualFold(typ, "SOA"):
				t.errf(typ, "the SOA record comes from the [soa] table")
			default:
				t.errf(typ, "unknown key (allowed: ttl, pool and the record types %s)", strings.Join(recordTypes, ", "))
			}
			t.used[typ] = true
			continue
		}
		var rdatas []string
		if !t.strs(typ, typ == "CNAME" || typ == "DNAME", &rdatas) {
			continue
		}
		if len(rdatas) == 0 {
			t.errf(typ, "empty: give at least one %s record or remove the key", typ)
			continue
		}
		if (typ == "CNAME" || typ == "DNAME") && len(rdatas) > 1 {
			t.errf(typ, "a name has at most one %s record, got %d", typ, len(rdatas))
			continue
		}
		ns.types[typ] = child(t.path, typ)
		rrtype := dns.StringToType[typ]
		for i, rdata := range rdatas {
			ep := t.elemPath(typ, i)
			hdr := dns.RR_Header{Name: owner, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
			rr, err := parseRR(hdr, typ, rdata, z.Origin)
			if err != nil {
				t.d.errf(ep, "invalid %s record %q: %v", typ, rdata, err)
				continue
			}
			if slices.ContainsFunc(ns.name.RRs, func(o dns.RR) bool { return dns.IsDuplicate(o, rr) }) {
				t.d.errf(ep, "duplicate %s record %q", typ, rdata)
				continue
			}
			ns.name.RRs = append(ns.name.RRs, rr)
			ns.name.Lines = append(ns.name.Lines, t.d.pos.lookup(ep).Line)
		}
	}
	onlyTTL := true
	for k, v := range t.m {
		if _, sub := v.(map[string]any); k != "ttl" && !(sub && t.used[k] && !slices.Contains(recordTypes, k)) {
			onlyTTL = false
		}
	}
	if onlyTTL {
		t.errf("", "no records: give a pool or at least one of %s", strings.Join(recordTypes, ", "))
	}
	return ns
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none defined"
	}
	return strings.Join(names, ", ")
}

// parseRR builds one record from its presentation RDATA. Relative domain
// names in the RDATA are relative to origin, as in a zone file.
func parseRR(hdr dns.RR_Header, typ, rdata, origin string) (dns.RR, error) {
	switch typ {
	case "A", "AAAA":
		ip, err := netip.ParseAddr(strings.TrimSpace(rdata))
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("want an %s address literal", map[string]string{"A": "IPv4", "AAAA": "IPv6"}[typ])
		}
		if typ == "A" {
			if !ip.Is4() {
				return nil, fmt.Errorf("not an IPv4 address (IPv6 goes under AAAA)")
			}
			return &dns.A{Hdr: hdr, A: net.IP(ip.AsSlice())}, nil
		}
		if !ip.Is6() || ip.Is4In6() {
			return nil, fmt.Errorf("not an IPv6 address (IPv4 goes under A)")
		}
		return &dns.AAAA{Hdr: hdr, AAAA: net.IP(ip.AsSlice())}, nil
	case "TXT":
		return &dns.TXT{Hdr: hdr, Txt: txtStrings(rdata)}, nil
	}
	if strings.TrimSpace(rdata) == "" {
		return nil, fmt.Errorf("empty RDATA")
	}
	if err := checkRdataSyntax(rdata); err != nil {
		return nil, err
	}
	line := hdr.Name + " " + strconv.FormatUint(uint64(hdr.Ttl), 10) + " IN " + typ + " " + rdata + "\n"
	zp := dns.NewZoneParser(strings.NewReader(line), origin, "")
	rr, ok := zp.Next()
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("%s", cleanParseError(err))
	}
	if !ok || rr == nil {
		return nil, fmt.Errorf("no record parsed")
	}
	if _, more := zp.Next(); more || zp.Err() != nil {
		return nil, fmt.Errorf("more than one record")
	}
	rr.Header().Name = hdr.Name
	return rr, nil
}

// checkRdataSyntax rejects what would make the zone-file parser read
// something other than one line of RDATA: newlines, comments and
// parentheses outside quotes.
func checkRdataSyntax(s string) error {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == '\n' || c == '\r':
			return fmt.Errorf("newline in RDATA")
		case !quoted && (c == ';' || c == '(' || c == ')'):
			return fmt.Errorf("%q outside quotes (comments and parentheses are not allowed here)", string(c))
		}
	}
	if quoted {
		return fmt.Errorf("unterminated quote")
	}
	return nil
}

// cleanParseError keeps the reason of a miekg/dns parse error without the
// position in our one-line scratch zone, which means nothing to the user.
func cleanParseError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "dns: ")
	if i := strings.LastIndex(s, " at line: "); i >= 0 {
		s = s[:i]
	}
	return s
}

// txtStrings splits text into character-strings of at most 255 bytes, in
// the escaped form miekg/dns packs (backslash, quote and non-printable
// bytes escaped).
func txtStrings(text string) []string {
	var out []string
	for {
		n := min(len(text), 255)
		out = append(out, escapeTXT(text[:n]))
		text = text[n:]
		if text == "" {
			return out
		}
	}
}

func escapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// checkZoneNames checks what involves several names or types: pool
// beside A/AAAA, CNAME beside anything, the apex, delegations and glue.
func checkZoneNames(zs *zoneSrc, srcs []*nameSrc, warns *[]string) {
	z, d := zs.zone, zs.d
	cuts := map[string]bool{}
	dnames := map[string]bool{}
	for _, ns := range srcs {
		owner := ns.name.Owner
		apex := owner == z.Origin
		if ns.pool != nil {
			for _, typ := range []string{"A", "AAAA"} {
				if p, ok := ns.types[typ]; ok {
					d.errf(p, "a name with a pool cannot also have static %s records (the pool answers A and AAAA)", typ)
				}
			}
		}
		if p, ok := ns.types["CNAME"]; ok {
			switch {
			case apex:
				d.errf(p, "CNAME at the zone apex is not allowed (the apex has SOA and NS records)")
			case ns.pool != nil || len(ns.types) > 1:
				d.errf(p, "CNAME cannot stand beside other data at %s (found %s)", owner, otherData(ns, "CNAME"))
			}
		}
		if p, ok := ns.types["NS"]; ok {
			if apex {
				d.errf(p, "NS at the apex comes from nameservers; remove it here")
			} else {
				cuts[owner] = true
			}
		}
		if p, ok := ns.types["DS"]; ok {
			if apex {
				d.errf(p, "DS at the apex belongs in the parent zone")
			} else if _, hasNS := ns.types["NS"]; !hasNS {
				d.errf(p, "DS belongs at a delegation point: add NS records at %s", owner)
			}
		}
		if _, ok := ns.types["DNAME"]; ok {
			dnames[owner] = true
		}
	}
	zs.cuts = len(cuts)
	for _, ns := range srcs {
		owner := ns.name.Owner
		// The closest delegation at or above owner, below the apex.
		var cut string
		var dname string
		for n := owner; n != z.Origin && n != "."; {
			if cuts[n] && cut == "" {
				cut = n
			}
			if dnames[n] && n != owner && dname == "" {
				dname = n
			}
			i, end := dns.NextLabel(n, 0)
			if end {
				break
			}
			n = n[i:]
		}
		if dname != "" {
			d.errf(ns.t.path, "name %s is below the DNAME at %s, which redirects everything under it", owner, dname)
		}
		if cut == "" {
			continue
		}
		if ns.pool != nil {
			d.errf(ns.pool, "pool at %s, which is delegated (NS at %s): only glue A/AAAA records may be there", owner, cut)
		}
		for _, typ := range slices.Sorted(maps.Keys(ns.types)) {
			allowed := typ == "A" || typ == "AAAA" || owner == cut && (typ == "NS" || typ == "DS")
			if !allowed {
				d.errf(ns.types[typ], "%s record at %s, which is delegated (NS at %s): only NS and DS at the cut and glue A/AAAA may be there", typ, owner, cut)
			}
		}
	}
	// Glue: a delegation whose nameserver lies inside it cannot be reached
	// without the addresses, and apex nameservers inside the zone need
	// addresses for the parent's glue.
	hasAddr := func(name string) bool {
		n := z.Names[name]
		return n != nil && (n.Pool != nil || slices.ContainsFunc(n.RRs, func(rr dns.RR) bool {
			t := rr.Header().Rrtype
			return t == dns.TypeA || t == dns.TypeAAAA
		}))
	}
	for _, ns := range srcs {
		for _, rr := range ns.name.RRs {
			nsrr, ok := rr.(*dns.NS)
			if !ok || ns.name.Owner == z.Origin {
				continue
			}
			if dns.IsSubDomain(ns.name.Owner, nsrr.Ns) && !hasAddr(nsrr.Ns) {
				*warns = append(*warns, fmt.Sprintf("%s: delegation %s: nameserver %s is inside the delegated zone but has no glue A/AAAA record", z.File, ns.name.Owner, nsrr.Ns))
			}
		}
	}
	for _, n := range z.Nameservers {
		if dns.IsSubDomain(z.Origin, n) && !hasAddr(n) {
			*warns = append(*warns, fmt.Sprintf("%s: nameserver %s is inside zone %s but has no A/AAAA record (the parent zone needs its address as glue)", z.File, n, z.Origin))
		}
	}
}

func otherData(ns *nameSrc, except string) string {
	var other []string
	if ns.pool != nil {
		other = append(other, "pool")
	}
	for _, t := range slices.Sorted(maps.Keys(ns.types)) {
		if t != except {
			other = append(other, t)
		}
	}
	return strings.Join(other, ", ")
}

// addEmptyNonTerminals adds a Name without records for every name between
// an owner and the apex that has no data of its own (RFC 8020: such a name
// exists, so it answers NODATA rather than NXDOMAIN, and it stops wildcard
// matching below it, RFC 4592 §2.2.2).
func addEmptyNonTerminals(z *zones.Zone) {
	var ents []string
	for owner := range z.Names {
		for n := owner; n != z.Origin; {
			i, end := dns.NextLabel(n, 0)
			if end {
				break
			}
			n = n[i:]
			if n == z.Origin || !dns.IsSubDomain(z.Origin, n) {
				break
			}
			if _, ok := z.Names[n]; !ok {
				ents = append(ents, n)
			}
		}
	}
	for _, n := range ents {
		z.Names[n] = &zones.Name{Owner: n}
	}
}

package dnsserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"gslbd/dnssec"
	"gslbd/zones"
)

// table is everything the hot path needs from one zones.Snapshot, compiled
// once when the snapshot is first published: owner names keyed by their
// lower-case wire form, and every static RRset packed to wire bytes except
// its owner, which the writer adds as a compression pointer.
type table struct {
	snap  *zones.Snapshot
	zones map[string]*zone // by lower-case wire origin
	// maxAddrs is the most addresses any Select call can append: the size
	// of the per-query scratch slice, so Select never grows it.
	maxAddrs int
	// sites counts pool answers: [Pool.Index][Site.Index].
	sites [][]*shardedCounter
	// hinfo is the RFC 8482 §4.2 answer to ANY at a name with only pool data.
	hinfo *rrset
}

type zone struct {
	origin string // presentation, for logs
	wire   []byte // lower-case wire origin
	names  map[string]*node
	// soaNeg is the SOA as it goes into the authority section of negative
	// answers: its TTL is min(SOA TTL, SOA minimum) (RFC 2308 §5).
	soaNeg []byte
	apex   *node
	ctr    *zoneCounters // this origin's query counters, kept across reloads

	// keys sign the zone; nil when it is unsigned. soaSigned is the
	// negative-answer SOA as the signer sees it.
	keys      *dnssec.Zone
	soaSigned dnssec.RRset
}

// node is one owner name of a zone, or an empty non-terminal (no rrsets,
// no pool), which exists for RFC 4592 closest-encloser purposes and answers
// NODATA rather than NXDOMAIN.
type node struct {
	wire   []byte // lower-case wire owner
	rrsets []*rrset
	cname  *rrset // set when the name is an alias
	pool   *zones.Pool
	// cut is the topmost delegation point at or above this name (strictly
	// below the apex), nil when the name is in authoritative data.
	cut   *node
	isCut bool
	// types lists the types at the name, ascending, for the NSEC bitmap
	// of signed negative answers: at a cut only NS and DS, the types the
	// parent side is authoritative for.
	types []uint16
}

// rrset is one packed RRset. Each tail is TYPE CLASS TTL RDLENGTH RDATA,
// ready to follow an owner name; names inside RDATA are uncompressed.
type rrset struct {
	rtype uint16
	tails [][]byte
	size  int // sum of len(tails)
	// additional holds complete A/AAAA records (owner included) for
	// in-zone names that NS, MX and SRV records point at.
	additional [][]byte
	// target is the alias target of a CNAME, lower-case wire.
	target []byte
	// ttl is the RRset's TTL and rdata the records' RDATA, sorted: what
	// a signature covers, besides the owner and type.
	ttl   uint32
	rdata [][]byte
}

func (s *rrset) wireLen(ownerLen int) int { return s.size + len(s.tails)*ownerLen }

// compile builds the lookup table of snap. A record or name that cannot be
// packed is left out and reported in the error as file:line: the loader
// validates records as text, and this is where they become wire bytes, so
// a reload compiles before it swaps anything in (Server.Compile) and fails
// on such a record with the old table still serving.
func compile(snap *zones.Snapshot, ctrs *counterSet) (*table, error) {
	var c compiler
	t := &table{snap: snap, zones: make(map[string]*zone, len(snap.Zones))}
	t.hinfo = c.packRRsets("", []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: 3600},
		Cpu: "RFC8482",
	}}, nil)[0]
	for _, p := range snap.PoolList {
		n := p.Answers
		for _, s := range p.Sites {
			n = max(n, len(s.Addrs))
		}
		total := 0
		for _, s := range p.Sites {
			total += len(s.Addrs)
		}
		t.maxAddrs = max(t.maxAddrs, n, total)
		cells := make([]*shardedCounter, len(p.Sites))
		for i, site := range p.Sites {
			cells[i] = ctrs.site(p.Name, site.Name)
		}
		for len(t.sites) <= p.Index {
			t.sites = append(t.sites, nil)
		}
		t.sites[p.Index] = cells
	}
	for _, zz := range snap.Zones {
		origin, err := packName(zz.Origin)
		if err != nil {
			c.errf(zz.File, 0, "origin %s: %v", zz.Origin, err)
			continue
		}
		z := &zone{origin: zz.Origin, wire: origin, names: make(map[string]*node, len(zz.Names)*2)}
		z.ctr = ctrs.zone(zz.Origin)
		soaLine := 0
		z.keys = zz.DNSSEC
		for owner, nm := range zz.Names {
			w, err := packName(owner)
			if err != nil {
				line := 0
				if len(nm.Lines) > 0 {
					line = nm.Lines[0]
				}
				c.errf(zz.File, line, "name %s: %v", owner, err)
				continue
			}
			n := z.ensure(w)
			n.pool = nm.Pool
			n.rrsets = c.packRRsets(zz.File, nm.RRs, nm.Lines)
			if owner == zz.Origin && len(nm.Lines) > 0 {
				soaLine = nm.Lines[0]
			}
		}
		apex := z.names[string(z.wire)]
		if apex == nil {
			apex = z.ensure(z.wire)
		}
		z.apex = apex
		if zz.SOA != nil {
			soa := *zz.SOA
			soa.Hdr.Ttl = zz.NegativeTTL()
			z.soaNeg = c.packTail(zz.File, soaLine, &soa)
			if z.soaNeg != nil {
				z.soaSigned = dnssec.RRset{Owner: z.wire, Type: dns.TypeSOA, TTL: soa.Hdr.Ttl, Rdata: [][]byte{z.soaNeg[10:]}}
			}
			if !hasType(apex, dns.TypeSOA) {
				if rs := c.packRRsets(zz.File, []dns.RR{zz.SOA}, []int{soaLine}); len(rs) > 0 {
					apex.rrsets = append([]*rrset{rs[0]}, apex.rrsets...)
				}
			}
		}
		// Empty non-terminals: every ancestor of an owner, down from the apex,
		// exists as a name (RFC 4592 §2.2.2).
		for _, n := range snapshotNodes(z) {
			for w := parentWire(n.wire); len(w) > len(z.wire); w = parentWire(w) {
				z.ensure(w)
			}
		}
		nodes := snapshotNodes(z)
		for _, n := range nodes {
			n.isCut = n != apex && hasType(n, dns.TypeNS)
			for _, rs := range n.rrsets {
				if rs.rtype == dns.TypeCNAME {
					n.cname = rs
				}
			}
		}
		for _, n := range nodes {
			// The topmost cut wins: data below a lower cut is still glue of
			// the upper delegation.
			for w := n.wire; len(w) > len(z.wire); w = parentWire(w) {
				if a := z.names[string(w)]; a != nil && a.isCut {
					n.cut = a
				}
			}
		}
		for _, n := range nodes {
			for _, rs := range n.rrsets {
				rs.additional = z.additionalFor(rs)
			}
			n.types = nodeTypes(n, n == apex && z.keys != nil)
		}
		t.zones[string(z.wire)] = z
	}
	return t, c.err()
}

// compiler collects what does not compile.
type compiler struct{ errs []string }

func (c *compiler) errf(file string, line int, format string, args ...any) {
	at := file
	if line > 0 {
		at += ":" + strconv.Itoa(line)
	}
	if at == "" {
		at = "built-in record"
	}
	c.errs = append(c.errs, at+": "+fmt.Sprintf(format, args...))
}

func (c *compiler) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	slices.Sort(c.errs) // names come from a map: keep the report stable
	errs := make([]error, len(c.errs))
	for i, e := range c.errs {
		errs[i] = errors.New(e)
	}
	return errors.Join(errs...)
}

func hasType(n *node, t uint16) bool {
	for _, rs := range n.rrsets {
		if rs.rtype == t {
			return true
		}
	}
	return false
}

func (n *node) find(t uint16) *rrset {
	for _, rs := range n.rrsets {
		if rs.rtype == t {
			return rs
		}
	}
	return nil
}

// snapshotNodes lists the names of z, so that compile can add names to
// the map while it walks them.
func snapshotNodes(z *zone) []*node {
	out := make([]*node, 0, len(z.names))
	for _, n := range z.names {
		out = append(out, n)
	}
	return out
}

func (z *zone) ensure(w []byte) *node {
	if n := z.names[string(w)]; n != nil {
		return n
	}
	n := &node{wire: w}
	z.names[string(w)] = n
	return n
}

// additionalFor collects the in-zone addresses NS, MX and SRV records point
// at: glue for referrals and the usual helpful additional data.
func (z *zone) additionalFor(rs *rrset) [][]byte {
	var out [][]byte
	for _, tail := range rs.tails {
		var target []byte
		switch rs.rtype {
		case dns.TypeNS:
			target = tail[10:]
		case dns.TypeMX:
			target = tail[12:]
		case dns.TypeSRV:
			target = tail[16:]
		default:
			return nil
		}
		tw := lowerWire(target)
		n := z.names[string(tw)]
		if n == nil {
			continue
		}
		for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
			if a := n.find(t); a != nil {
				for _, at := range a.tails {
					rec := append(append([]byte(nil), tw...), at...)
					out = append(out, rec)
				}
			}
		}
	}
	return out
}

// packRRsets groups rrs by type, in order of first appearance, and packs
// each record without its owner. lines[i] is the line of rrs[i] in file.
func (c *compiler) packRRsets(file string, rrs []dns.RR, lines []int) []*rrset {
	var out []*rrset
	for i, rr := range rrs {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		tail := c.packTail(file, line, rr)
		if tail == nil {
			continue
		}
		var target []byte
		if cn, ok := rr.(*dns.CNAME); ok {
			w, err := packName(strings.ToLower(cn.Target))
			if err != nil {
				c.errf(file, line, "CNAME target %s: %v", cn.Target, err)
				continue
			}
			target = w
		}
		t := rr.Header().Rrtype
		var rs *rrset
		for _, x := range out {
			if x.rtype == t {
				rs = x
			}
		}
		if rs == nil {
			rs = &rrset{rtype: t}
			out = append(out, rs)
		}
		rs.tails = append(rs.tails, tail)
		rs.size += len(tail)
		rs.ttl = binary.BigEndian.Uint32(tail[4:])
		rs.rdata = append(rs.rdata, tail[10:])
		slices.SortFunc(rs.rdata, bytes.Compare)
		if target != nil {
			rs.target = target
		}
	}
	return out
}

// packTail packs rr with the root as owner and returns everything after
// that one-byte owner, or nil (and an error noted) when it does not pack:
// RDATA longer than 65535 bytes, a name in it longer than 255, a record
// type the packer does not know.
func (c *compiler) packTail(file string, line int, rr dns.RR) []byte {
	cp := dns.Copy(rr)
	cp.Header().Name = "."
	cp.Header().Class = dns.ClassINET
	n := dns.Len(cp)
	if n > maxTCP {
		c.errf(file, line, "%s record of %s: %d bytes, more than fits in a DNS message", dns.TypeToString[rr.Header().Rrtype], rr.Header().Name, n)
		return nil
	}
	buf := make([]byte, n+64)
	n, err := dns.PackRR(cp, buf, 0, nil, false)
	if err != nil {
		c.errf(file, line, "%s record of %s cannot be packed: %v", dns.TypeToString[rr.Header().Rrtype], rr.Header().Name, err)
		return nil
	}
	return buf[1:n:n]
}

// packName is the lower-case uncompressed wire form of a presentation name.
func packName(name string) ([]byte, error) {
	name = dns.Fqdn(strings.ToLower(name))
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("pack name: %w", err)
	}
	return buf[:n:n], nil
}

// wireName is packName for names known to be valid (tests, constants).
func wireName(name string) []byte {
	w, err := packName(name)
	if err != nil {
		panic(fmt.Sprintf("pack name %q: %v", name, err))
	}
	return w
}

// lowerWire copies an uncompressed wire name in lower case.
func lowerWire(w []byte) []byte {
	out := make([]byte, 0, len(w))
	i := 0
	for i < len(w) {
		l := int(w[i])
		out = append(out, w[i])
		if l == 0 {
			break
		}
		for _, c := range w[i+1 : i+1+l] {
			out = append(out, toLower(c))
		}
		i += 1 + l
	}
	return out
}

// parentWire strips the first label of an uncompressed wire name.
func parentWire(w []byte) []byte {
	if len(w) <= 1 {
		return w[:0]
	}
	return w[1+int(w[0]):]
}

func toLower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// nodeTypes lists the types at n for NSEC bitmaps, ascending. signedApex
// adds the key RRsets that the zone's keys put at the apex.
func nodeTypes(n *node, signedApex bool) []uint16 {
	var ts []uint16
	for _, rs := range n.rrsets {
		if !n.isCut || rs.rtype == dns.TypeNS || rs.rtype == dns.TypeDS {
			ts = append(ts, rs.rtype)
		}
	}
	if n.pool != nil && !n.isCut {
		ts = append(ts, dns.TypeA, dns.TypeAAAA)
	}
	if signedApex {
		ts = append(ts, dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY)
	}
	slices.Sort(ts)
	return slices.Compact(ts)
}

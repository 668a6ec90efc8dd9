package dnsserver

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"gslbd/dnssec"
)

// DNSSEC on the query path. A zone with keys is signed online: every
// RRset of an answer to a query with the DO bit goes out with its RRSIGs
// (RFC 4035 §3.1), made by the dnssec.Cache, which signs each distinct
// content once and serves the cached signatures after that. Queries
// without DO get exactly the answers of an unsigned zone, plus the
// DNSKEY, CDS and CDNSKEY RRsets at the apex.
//
// Denial is compact (RFC 9824, the "black lies" of online signers): a name
// that does not exist gets a NOERROR answer with one NSEC record at the
// name itself, whose next name is its immediate successor (\000.name) and
// whose bitmap holds only RRSIG, NSEC and NXNAME; a NODATA answer gets the
// same NSEC with the types that do exist at the name. Nothing can be
// learnt by walking such records, and each negative answer carries one
// signature besides the SOA's. A wildcard answer is signed as the name
// that was asked for, which therefore needs no proof that the name does
// not exist. A signed RRset and its signatures go out together or not at
// all: when they do not fit, the response is truncated (TC).

// Stack memory of the signing path, sized for what real answers need;
// larger ones still work, on the heap.
const (
	keyBuf     = 512 // a content key: owner, type, TTL, RDATA
	nsecBuf    = 320 // an NSEC's RDATA: next name (≤ 257) and bitmap
	stackAddrs = 16  // addresses of a pool answer
)

// signing is the per-query DNSSEC state, set by Handle when the zone has
// keys.
type signing struct {
	st   *dnssec.State // the zone's keys now; nil for an unsigned zone
	now  time.Time
	sign bool // the query has DO: sign what goes out
}

// keySet is the apex RRset of type t (DNSKEY, CDS or CDNSKEY) that
// st publishes, in dst; false when it has none.
func keySet(st *dnssec.State, t uint16, dst *rrset) bool {
	p := st.Set(t)
	if p == nil {
		return false
	}
	*dst = rrset{rtype: p.Type, tails: p.Tails, size: p.Size, ttl: p.TTL, rdata: p.Rdata}
	return true
}

// sigsLen is the size of sigs written at owner o.
func sigsLen(o owner, sigs [][]byte) int {
	n := 0
	for _, s := range sigs {
		n += o.len() + len(s)
	}
	return n
}

// putSigs writes sigs at owner o; the caller has made sure they fit.
func (w *writer) putSigs(o owner, sigs [][]byte, count *uint16) {
	for _, s := range sigs {
		w.putOwner(o)
		w.n += copy(w.b[w.n:], s)
	}
	*count += uint16(len(sigs))
}

// put writes rs at owner o (name is the owner in lower-case wire form)
// and, when the query is signed, its RRSIGs; both or, setting TC,
// neither. It returns the offset of the first record's RDATA, 0 when
// nothing was written.
func (r *resolver) put(s *Server, o owner, name []byte, rs *rrset, count *uint16) int {
	if !r.sg.sign {
		return r.w.rrset(o, rs, count)
	}
	set := dnssec.RRset{Owner: name, Type: rs.rtype, TTL: rs.ttl, Rdata: rs.rdata}
	var kb [keyBuf]byte
	sigs := s.sigs.Sigs(r.sg.st, &set, r.sg.now, kb[:0])
	w := r.w
	if w.tc || w.n+rs.wireLen(o.len())+sigsLen(o, sigs) > w.limit {
		w.tc = true
		return 0
	}
	first := w.rrset(o, rs, count)
	w.putSigs(o, sigs, count)
	return first
}

// putAddrs writes a pool answer and, when signed, its RRSIGs. The
// signature covers the addresses in sorted order, so an answer that
// rotates among the same addresses reuses it.
func (r *resolver) putAddrs(s *Server, o owner, name []byte, ttl uint32, as []netip.Addr) {
	if !r.sg.sign {
		r.w.addrs(o, r.q.qtype, ttl, as)
		return
	}
	// The working memory is on the stack for answers of up to
	// stackAddrs addresses, as every real pool answer is.
	var sortedA [stackAddrs]netip.Addr
	var flatA [stackAddrs * 16]byte
	sorted, flat := sortedA[:], flatA[:]
	if len(as) > stackAddrs {
		sorted, flat = make([]netip.Addr, len(as)), make([]byte, 16*len(as))
	}
	sorted = sorted[:copy(sorted, as)]
	sortAddrs(sorted)
	size := 4
	if r.q.qtype == dns.TypeAAAA {
		size = 16
	}
	flat = flat[:0]
	for _, a := range sorted {
		if size == 4 {
			a4 := a.As4()
			flat = append(flat, a4[:]...)
		} else {
			a16 := a.As16()
			flat = append(flat, a16[:]...)
		}
	}
	set := dnssec.RRset{Owner: name, Type: r.q.qtype, TTL: ttl, Flat: flat, Size: size}
	var kb [keyBuf]byte
	sigs := s.sigs.Sigs(r.sg.st, &set, r.sg.now, kb[:0])
	w := r.w
	if w.tc || w.n+len(as)*(o.len()+10+size)+sigsLen(o, sigs) > w.limit {
		w.tc = true
		return
	}
	w.addrs(o, r.q.qtype, ttl, as)
	w.putSigs(o, sigs, &w.an)
}

// sortAddrs sorts a few addresses of one family in place (insertion
// sort: no allocation, and answers hold a handful).
func sortAddrs(as []netip.Addr) {
	for i := 1; i < len(as); i++ {
		for j := i; j > 0 && as[j].Less(as[j-1]); j-- {
			as[j], as[j-1] = as[j-1], as[j]
		}
	}
}

// deny writes the authority section of a signed negative answer: the
// SOA and the compact-denial NSEC at the name the answer is about (o,
// name; n is its node, nil when it does not exist), each with its
// RRSIGs. A name that does not exist gets NOERROR, as RFC 9824 answers
// it, with NXNAME in the bitmap telling a validator what it is.
func (r *resolver) deny(s *Server, rc int, o owner, name []byte, n *node) int {
	z, w := r.z, r.w
	if len(z.soaNeg) == 0 {
		return rc
	}
	var types []uint16
	nxname := rc == rcNXDomain
	if n != nil && !nxname {
		types = n.types
	}
	var nb [nsecBuf]byte
	rd := dnssec.AppendNSEC(nb[:0], name, types, r.q.qtype, nxname)
	rds := [1][]byte{rd}
	nsec := dnssec.RRset{Owner: name, Type: dns.TypeNSEC, TTL: z.soaSigned.TTL, Rdata: rds[:]}
	var kb [keyBuf]byte
	soaSigs := s.sigs.Sigs(r.sg.st, &z.soaSigned, r.sg.now, kb[:0])
	nsecSigs := s.sigs.Sigs(r.sg.st, &nsec, r.sg.now, kb[:0])
	soaOwner := owner{ptr: r.soaPtr}
	need := 2 + len(z.soaNeg) + sigsLen(soaOwner, soaSigs) + o.len() + 10 + len(rd) + sigsLen(o, nsecSigs)
	if w.tc || w.n+need > w.limit {
		w.tc = true
		return rcNoError
	}
	w.putOwner(soaOwner)
	w.n += copy(w.b[w.n:], z.soaNeg)
	w.ns++
	w.putSigs(soaOwner, soaSigs, &w.ns)
	w.putOwner(o)
	b := w.b[w.n:]
	binary.BigEndian.PutUint16(b, dns.TypeNSEC)
	binary.BigEndian.PutUint16(b[2:], dns.ClassINET)
	binary.BigEndian.PutUint32(b[4:], z.soaSigned.TTL)
	binary.BigEndian.PutUint16(b[8:], uint16(len(rd)))
	w.n += 10 + copy(b[10:], rd)
	w.ns++
	w.putSigs(o, nsecSigs, &w.ns)
	return rcNoError
}

// denyDS writes the proof that a delegation has no DS (an unsigned
// child): the NSEC at the cut, listing NS and no DS (RFC 4035 §3.1.4).
func (r *resolver) denyDS(s *Server, o owner, cut *node) {
	w := r.w
	var nb [nsecBuf]byte
	rd := dnssec.AppendNSEC(nb[:0], cut.wire, cut.types, dns.TypeDS, false)
	rds := [1][]byte{rd}
	nsec := dnssec.RRset{Owner: cut.wire, Type: dns.TypeNSEC, TTL: r.z.soaSigned.TTL, Rdata: rds[:]}
	var kb [keyBuf]byte
	sigs := s.sigs.Sigs(r.sg.st, &nsec, r.sg.now, kb[:0])
	if w.tc || w.n+o.len()+10+len(rd)+sigsLen(o, sigs) > w.limit {
		w.tc = true
		return
	}
	w.putOwner(o)
	b := w.b[w.n:]
	binary.BigEndian.PutUint16(b, dns.TypeNSEC)
	binary.BigEndian.PutUint16(b[2:], dns.ClassINET)
	binary.BigEndian.PutUint32(b[4:], r.z.soaSigned.TTL)
	binary.BigEndian.PutUint16(b[8:], uint16(len(rd)))
	w.n += 10 + copy(b[10:], rd)
	w.ns++
	w.putSigs(o, sigs, &w.ns)
}

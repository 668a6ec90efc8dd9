package dnsserver

import (
	"bytes"
	"net/netip"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// resolver answers one question inside its closest enclosing zone,
// writing answer, authority and additional records through w.
type resolver struct {
	st     *published
	z      *zone
	q      *query
	w      *writer
	soaPtr uint16 // compression pointer to the zone origin inside the question
	sg     signing

	aa    bool
	scope uint8

	// tr, when set, hears every decision (explain); nil on the hot path.
	// The trace functions take copies of what they record, never r, so
	// that nothing of the per-query state escapes to the heap.
	tr *zones.Trace
}

// resolve follows RFC 1034 §4.3.2: exact match, delegation, CNAME
// (followed while it stays in the zone), wildcard (RFC 4592: only below
// the closest encloser, never below an existing name), otherwise
// NXDOMAIN. It returns the rcode index. In a signed zone every write goes
// through put, putAddrs, negative and referral, which add what DNSSEC
// asks for when the query has DO (sign.go).
func (r *resolver) resolve(s *Server, client zones.Client) int {
	r.aa = true
	q, z := r.q, r.z
	name := q.lname[:q.qlen]
	o := owner{ptr: headerLen}
	var visited [maxCNAMEHops]*node
	var wild [257]byte
	for hop := 0; ; hop++ {
		n := z.names[string(name)]
		if n == nil {
			// The closest encloser exists: the apex is always a suffix.
			var ce *node
			for off := int(name[0]) + 1; off < len(name); off += int(name[off]) + 1 {
				if ce = z.names[string(name[off:])]; ce != nil {
					break
				}
			}
			if ce == nil {
				return r.negative(s, rcNXDomain, o, name, nil)
			}
			if ce.cut != nil {
				if r.tr != nil {
					traceCut(r.tr, name, ce.cut.wire, hop)
				}
				if hop > 0 {
					return rcNoError // the chain leaves our authority
				}
				return r.referral(s, ce.cut)
			}
			l := copy(wild[:], "\x01*")
			l += copy(wild[l:], ce.wire)
			if n = z.names[string(wild[:l])]; n == nil {
				if r.tr != nil {
					r.tr.Notef("%s does not exist and no wildcard covers it: NXDOMAIN", wireString(name))
				}
				return r.negative(s, rcNXDomain, o, name, nil)
			}
			if r.tr != nil {
				traceOwner(r.tr, name, n.wire, true)
			}
		} else if n.cut != nil && !(n.cut == n && q.qtype == dns.TypeDS) {
			// DS at the cut belongs to the parent side; everything else
			// at or below it is the child's.
			if r.tr != nil {
				traceOwner(r.tr, name, n.wire, false)
				traceCut(r.tr, name, n.cut.wire, hop)
			}
			if hop > 0 {
				return rcNoError
			}
			return r.referral(s, n.cut)
		} else if r.tr != nil {
			traceOwner(r.tr, name, n.wire, false)
			if n.cut == n {
				r.tr.Notef("DS at the zone cut %s is the parent side's data (RFC 4035 §2.4): answered here, not referred", wireString(n.wire))
			}
		}
		if n.cname == nil || q.qtype == dns.TypeCNAME || q.qtype == dns.TypeANY {
			return r.answer(s, client, n, o, name)
		}
		for _, v := range visited[:hop] {
			if v == n {
				if r.tr != nil {
					r.tr.Notef("CNAME loop at %s: stop with the records written so far", wireString(n.wire))
				}
				return rcNoError // a loop: stop with what was written
			}
		}
		first := r.put(s, o, name, n.cname, &r.w.an)
		if r.tr != nil {
			traceCNAME(r.tr, name, n.cname.target, first == 0, hop+1 == maxCNAMEHops, !inZone(n.cname.target, z.wire))
		}
		if first == 0 || hop+1 == maxCNAMEHops || !inZone(n.cname.target, z.wire) {
			return rcNoError
		}
		visited[hop] = n
		name = n.cname.target
		// The target's owner is a pointer to the CNAME's RDATA just written.
		o = owner{name: name}
		if first < 0x4000 {
			o = owner{ptr: uint16(first)}
		}
	}
}

// answer writes the data of qtype at n (which is not a delegation); name
// is the owner asked for, in lower-case wire form.
func (r *resolver) answer(s *Server, client zones.Client, n *node, o owner, name []byte) int {
	qt := r.q.qtype
	switch {
	case qt == dns.TypeANY:
		// RFC 8482 §4.2: one RRset is enough; a name with only pool data
		// gets the synthesized HINFO.
		if r.tr != nil {
			r.tr.Notef("ANY gets a minimal answer: one RRset, or HINFO at a pool name (RFC 8482)")
		}
		if len(n.rrsets) > 0 {
			r.put(s, o, name, n.rrsets[0], &r.w.an)
			return rcNoError
		}
		if n.pool != nil {
			r.put(s, o, name, r.st.t.hinfo, &r.w.an)
			return rcNoError
		}
		return r.negative(s, rcNoError, o, name, n)
	case (qt == dns.TypeA || qt == dns.TypeAAAA) && n.pool != nil:
		if r.tr != nil {
			r.tr.Notef("%s is bound to pool %s", wireString(n.wire), n.pool.Name)
		}
		return r.pool(s, client, n, o, name)
	}
	rs := n.find(qt)
	var keys rrset
	if rs == nil && n == r.z.apex && r.sg.st != nil && keySet(r.sg.st, qt, &keys) {
		rs = &keys
	}
	if rs == nil {
		if r.tr != nil {
			traceNoData(r.tr, n.wire, qt, len(n.rrsets) == 0 && n.pool == nil)
		}
		return r.negative(s, rcNoError, o, name, n)
	}
	// Signed answers leave out the helpful additional addresses rather
	// than carry them unsigned (RFC 4035 §3.1.1 wants their RRSIGs too).
	if r.put(s, o, name, rs, &r.w.an) != 0 && !r.sg.sign {
		r.w.extra(rs.additional)
	}
	return rcNoError
}

// pool answers from the view's selection. s and client are passed apart
// from r: Select's arguments leak to the heap as far as escape analysis
// can tell, and anything loaded from r would drag the per-query structs r
// points at (query, writer) to the heap with them.
func (r *resolver) pool(s *Server, client zones.Client, n *node, o owner, name []byte) int {
	p := n.pool
	sc := s.scratch.Get().(*scratch)
	if cap(sc.addrs) < r.st.t.maxAddrs {
		sc.addrs = make([]netip.Addr, 0, r.st.t.maxAddrs)
	}
	var res zones.Result
	if r.tr == nil {
		res = r.st.view.Select(p, r.q.qtype, client, sc.addrs[:0])
	} else {
		res = r.st.view.SelectTrace(p, r.q.qtype, client, sc.addrs[:0], r.tr)
	}
	if client.ECS {
		r.scope = res.Scope
	}
	rc := rcNoError
	if res.NoData || len(res.Addrs) == 0 {
		rc = r.negative(s, rcNoError, o, name, n)
	} else {
		r.putAddrs(s, o, name, res.TTL, res.Addrs)
		if r.tr == nil && res.Pool != nil && res.Site != nil && res.Pool.Index < len(r.st.t.sites) {
			if cells := r.st.t.sites[res.Pool.Index]; res.Site.Index < len(cells) {
				cells[res.Site.Index].add(r.q.shard)
			}
		}
	}
	sc.addrs = res.Addrs[:0]
	s.scratch.Put(sc)
	return rc
}

// negative puts the zone SOA, with the negative-caching TTL, in the
// authority section (RFC 2308 §3); signed, the compact denial of deny
// for the name at o (name in lower-case wire form, n its node or nil).
func (r *resolver) negative(s *Server, rc int, o owner, name []byte, n *node) int {
	if r.sg.sign {
		return r.deny(s, rc, o, name, n)
	}
	w := r.w
	if len(r.z.soaNeg) == 0 {
		return rc
	}
	if w.tc || w.n+2+len(r.z.soaNeg) > w.limit {
		w.tc = true
		return rc
	}
	w.putOwner(owner{ptr: r.soaPtr})
	w.n += copy(w.b[w.n:], r.z.soaNeg)
	w.ns++
	return rc
}

// referral answers a name at or below a delegation: not authoritative,
// the cut's NS in authority and their in-zone addresses as glue.
// Signed, it adds the cut's DS RRset with its RRSIGs or the NSEC that
// proves there is none (RFC 4035 §3.1.4); NS and glue are never signed.
func (r *resolver) referral(s *Server, cut *node) int {
	r.aa = false
	ns := cut.find(dns.TypeNS)
	o := owner{ptr: uint16(headerLen + r.q.qlen - len(cut.wire))}
	if r.w.rrset(o, ns, &r.w.ns) == 0 {
		return rcNoError
	}
	if r.sg.sign {
		if ds := cut.find(dns.TypeDS); ds != nil {
			r.put(s, o, cut.wire, ds, &r.w.ns)
		} else {
			r.denyDS(s, o, cut)
		}
	}
	r.w.extra(ns.additional)
	return rcNoError
}

// inZone reports whether wire name n is at or below origin, at a label
// boundary.
func inZone(n, origin []byte) bool {
	if len(n) < len(origin) || !bytes.Equal(n[len(n)-len(origin):], origin) {
		return false
	}
	for off := 0; off < len(n); off += int(n[off]) + 1 {
		if off == len(n)-len(origin) {
			return true
		}
	}
	return false
}

// scratch is per-query memory that escapes to the heap (Select's
// destination), pooled so the hot path does not allocate it.
type scratch struct {
	addrs []netip.Addr
}

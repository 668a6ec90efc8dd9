package dnsserver

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// Wire constants of RFC 1035 §4.1.1 and RFC 6891 §6.
const (
	headerLen    = 12
	maxUDPNoEDNS = 512
	maxTCP       = 65535
	optECS       = 8 // RFC 7871 option code
	maxCNAMEHops = 8
)

// query is what Handle parsed out of a packet: the header, the question
// (its name lower-cased into lname for lookups; the original bytes are
// echoed so 0x20 case randomisation survives) and the OPT/ECS record.
type query struct {
	shard  int // the counter cells of the reader that took it
	id     uint16
	flags  uint16
	qEnd   int // end offset of the question in the packet
	lname  [255]byte
	qlen   int
	qtype  uint16
	qclass uint16

	edns    bool
	udpSize uint16
	version uint8
	do      bool

	ecs       bool
	ecsFamily uint16
	ecsSource uint8
	ecsAddr   []byte // the address bytes as sent, echoed back
	ecsIP     netip.Addr

	// DNS Cookies (cookie.go): the option as sent, then its verdict.
	hasCookie    bool
	clientCookie [clientCookieLen]byte
	srvCookie    []byte // the server cookie as sent, up to 32 bytes
	cookie       uint8  // cookieNone, cookieClient, cookieInvalid, cookieValid
	echoCookie   bool   // the valid server cookie is fresh: send it back

	// Rate limiting (rrl.go): the limiter when this response is charged
	// (UDP without a valid cookie), and what names its bucket.
	src   netip.Addr
	rrl   *limiter
	zoff  int  // offset of the zone's origin in lname; -1 outside every zone
	synth bool // answered from a wildcard or below a delegation
}

// Handle answers one DNS message. It writes the response into dst's backing
// array (allocating only if dst has less capacity than the response may
// need: 65535 bytes over TCP, the UDP limit otherwise) and returns it, or
// returns nil when the packet is dropped without a reply. src is the
// packet's source; tcp selects the TCP size limit (no truncation). dst
// must not overlap pkt.
//
// It is safe for concurrent use and allocates nothing for well-formed
// queries once warmed up.
func (s *Server) Handle(dst, pkt []byte, src netip.AddrPort, tcp bool) []byte {
	return s.handle(dst, pkt, src, tcp, 0, nil)
}

// handle is Handle with a trace hook: nil on the hot path; Explain sets it
// to have the resolver record each decision, and then leaves the query
// counters alone (an explain request is not a query).
//
// shard selects the counter cells: a UDP reader's own, 0 for the rest.
func (s *Server) handle(dst, pkt []byte, src netip.AddrPort, tcp bool, shard int, tr *zones.Trace) []byte {
	hot := &s.ctr.hot[shard]
	// Junk is judged on the 12-byte header alone and dropped without a
	// reply: answering it would make us an amplifier, and a reply to a
	// response could start a loop between two servers.
	if len(pkt) < headerLen || pkt[2]&0x80 != 0 {
		hot.dropped.Add(1)
		return nil
	}
	var q query
	q.src, q.zoff, q.shard = src.Addr().Unmap(), -1, shard
	if !tcp {
		q.rrl = s.rrl.Load()
	}
	q.id = binary.BigEndian.Uint16(pkt)
	q.flags = binary.BigEndian.Uint16(pkt[2:])
	opcode := int(pkt[2]>>3) & 0xF

	limit := maxUDPNoEDNS
	if tcp {
		limit = maxTCP
	}
	if cap(dst) < limit {
		dst = make([]byte, 0, max(limit, int(s.cfg.UDPSize)))
	}
	w := writer{b: dst[:cap(dst)], limit: limit}

	if opcode != dns.OpcodeQuery {
		return s.finish(&w, &q, nil, rcNotImp)
	}
	switch binary.BigEndian.Uint16(pkt[4:]) {
	case 1:
		if !q.parseQuestion(pkt) {
			return s.finish(&w, &q, nil, rcFormErr)
		}
	case 0:
		// Only a client asking for a server cookie may leave the question
		// out (RFC 7873 §5.4); anything else without one is malformed.
		q.qEnd = headerLen
	default:
		return s.finish(&w, &q, nil, rcFormErr)
	}
	rc, ok := q.parseRest(pkt)
	if !ok {
		// Echo the question: it parsed, only what follows it did not.
		if q.qEnd == headerLen {
			return s.finish(&w, &q, nil, rc)
		}
		return s.finish(&w, &q, pkt, rc)
	}
	if q.hasCookie {
		s.ctr.cookies[s.cookieCheck(&q)].Add(1)
		if q.cookie == cookieValid {
			q.rrl = nil // the client proved its address: never limited
		}
	}
	if q.qEnd == headerLen {
		if !q.hasCookie {
			return s.finish(&w, &q, nil, rcFormErr)
		}
		if q.edns && !tcp {
			w.limit = min(max(int(q.udpSize), maxUDPNoEDNS), int(s.cfg.UDPSize), len(w.b))
		}
		rc = rcNoError
		if q.cookie == cookieInvalid {
			rc = rcBadCookie
		}
		return s.finish(&w, &q, nil, rc)
	}
	if q.edns && !tcp {
		// RFC 6891 §6.2.5: below 512 means 512. Never past the buffer a
		// caller gave us.
		w.limit = min(max(int(q.udpSize), maxUDPNoEDNS), int(s.cfg.UDPSize), len(w.b))
	}
	if q.edns && q.version > 0 {
		q.ecs, q.hasCookie = false, false // BADVERS answers carry no options (RFC 6891 §6.1.3)
		return s.finish(&w, &q, pkt, rcBadVers)
	}
	if q.ecs && tr == nil {
		hot.ecs.Add(1)
	}

	st := s.state.Load()
	if st == nil {
		return s.finish(&w, &q, pkt, rcServFail)
	}
	if q.qclass != dns.ClassINET {
		return s.finish(&w, &q, pkt, rcRefused)
	}
	if q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR {
		// gslbd serves no zone transfers: its answers are computed per
		// client, and secondaries of a GSLB zone would serve stale ones.
		return s.finish(&w, &q, pkt, rcRefused)
	}
	if q.qtype == dns.TypeNXNAME {
		// RFC 9824 §3.5: NXNAME is a meta-type of compact denial, never a
		// question.
		return s.finish(&w, &q, pkt, rcFormErr)
	}
	// The closest enclosing zone: the longest suffix of the name, at a
	// label boundary, that is an origin of ours.
	var z *zone
	zoff := 0
	for off := 0; off < q.qlen; off += int(q.lname[off]) + 1 {
		if z = st.t.zones[string(q.lname[off:q.qlen])]; z != nil {
			zoff = off
			break
		}
	}
	if z == nil {
		if tr != nil {
			tr.Notef("no zone of this server encloses the name: REFUSED")
		}
		return s.finish(&w, &q, pkt, rcRefused)
	}
	q.zoff = zoff
	// Room for the OPT record (and the ECS option echoed in it) is kept
	// back so truncation never drops it (RFC 6891 §7).
	w.n = headerLen + (q.qEnd - headerLen)
	copy(w.b[headerLen:], pkt[headerLen:q.qEnd])
	reserve := 0
	if q.edns {
		reserve = 11
		if q.ecs {
			reserve += 8 + len(q.ecsAddr)
		}
		if q.hasCookie {
			reserve += 4 + clientCookieLen + serverCookieLen
		}
	}
	w.limit -= reserve

	client := zones.Client{Addr: src.Addr().Unmap()}
	if q.ecs && q.ecsSource > 0 {
		// RFC 7871 §7.1.2: source prefix 0 means the resolver gives no
		// client information; use the packet source.
		client = zones.Client{Addr: q.ecsIP, ECS: true, SourcePrefix: q.ecsSource}
	}
	r := resolver{st: st, z: z, q: &q, w: &w, soaPtr: uint16(headerLen + zoff), tr: tr}
	if tr != nil {
		tr.Zone = z.origin
		tr.SetClient(client)
	}
	if z.keys != nil {
		r.sg.now = time.Unix(s.unixNow(), 0) // key timing and signatures count whole seconds
		r.sg.st = z.keys.At(r.sg.now)
		r.sg.sign = q.do
		if tr != nil {
			traceSigning(tr, z.origin, r.sg.st, q.do)
		}
	}
	rc = r.resolve(s, client)
	if q.rrl != nil && rc == rcNoError {
		q.synth = z.names[string(q.lname[:q.qlen])] == nil
	}
	w.limit += reserve
	if tr != nil {
		return s.writeTail(&w, &q, 1, rc, r.aa, r.scope)
	}
	if w.tc && !tcp {
		hot.truncated.Add(1)
	}
	z.ctr.add(shard, qtypeIndex(q.qtype), rc)
	return s.writeTail(&w, &q, 1, rc, r.aa, r.scope)
}

// finish writes a response without answer data: the header, the question
// when pkt is non-nil, and OPT when the query had one.
// These never reached a zone, so they are counted under zone "".
func (s *Server) finish(w *writer, q *query, pkt []byte, rc int) []byte {
	w.n = headerLen
	qd := uint16(0)
	if pkt != nil {
		copy(w.b[headerLen:], pkt[headerLen:q.qEnd])
		w.n = q.qEnd
		qd = 1
	}
	s.ctr.noZone.add(q.shard, qtypeIndex(q.qtype), rc)
	return s.writeTail(w, q, qd, rc, false, 0)
}

// writeTail appends OPT (when the query had EDNS) and writes the header.
func (s *Server) writeTail(w *writer, q *query, qd uint16, rc int, aa bool, scope uint8) []byte {
	if q.rrl != nil {
		switch s.rateLimit(q.rrl, q, rc) {
		case rrlDrop:
			return nil
		case rrlSlip:
			// An empty answer that tells the client to come back over TCP,
			// or, when it sent a cookie, to come back with the server
			// cookie this one carries (which exempts it).
			w.n = headerLen
			if qd == 1 {
				w.n = q.qEnd
			}
			w.an, w.ns, w.ar = 0, 0, 0
			if q.hasCookie {
				rc = rcBadCookie
			} else {
				w.tc = true
			}
		}
	}
	code := rcodeWire[rc]
	if q.edns {
		b := w.b[w.n:]
		b[0] = 0 // root owner
		binary.BigEndian.PutUint16(b[1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(b[3:], s.cfg.UDPSize)
		b[5] = byte(code >> 4) // extended rcode, upper 8 bits
		b[6] = 0               // version
		b[7] = 0
		if q.do {
			b[7] = 0x80 // RFC 3225 §3: DO is copied into the response
		}
		b[8] = 0
		rdlen := 0
		if q.ecs {
			o := b[11:]
			binary.BigEndian.PutUint16(o, optECS)
			binary.BigEndian.PutUint16(o[2:], uint16(4+len(q.ecsAddr)))
			binary.BigEndian.PutUint16(o[4:], q.ecsFamily)
			o[6] = q.ecsSource
			o[7] = scope
			copy(o[8:], q.ecsAddr)
			rdlen = 8 + len(q.ecsAddr)
		}
		if q.hasCookie {
			o := b[11+rdlen:]
			binary.BigEndian.PutUint16(o, optCookie)
			binary.BigEndian.PutUint16(o[2:], clientCookieLen+serverCookieLen)
			copy(o[4:], q.clientCookie[:])
			q.putServerCookie(o[4+clientCookieLen:], s.cookies.Load(), q.src, uint32(s.unixNow()))
			rdlen += 4 + clientCookieLen + serverCookieLen
		}
		binary.BigEndian.PutUint16(b[9:], uint16(rdlen))
		w.n += 11 + rdlen
		w.ar++
	}
	h := w.b[:headerLen]
	binary.BigEndian.PutUint16(h, q.id)
	// QR, opcode copied, AA, TC, RD copied; RA never (no recursion); CD
	// copied as RFC 6840 §5.9 asks.
	f := uint16(0x8000) | q.flags&0x7800 | q.flags&0x0100 | q.flags&0x0010
	if aa {
		f |= 0x0400
	}
	if w.tc {
		f |= 0x0200
	}
	f |= uint16(code & 0xF)
	binary.BigEndian.PutUint16(h[2:], f)
	binary.BigEndian.PutUint16(h[4:], qd)
	binary.BigEndian.PutUint16(h[6:], w.an)
	binary.BigEndian.PutUint16(h[8:], w.ns)
	binary.BigEndian.PutUint16(h[10:], w.ar)
	return w.b[:w.n]
}

// truncated rewrites resp, an answer Handle wrote, in place into the same
// answer cut down to its question and OPT record, with TC set: what a
// UDP reader sends instead when the kernel refuses an answer as larger
// than the outgoing interface's MTU (EMSGSIZE; answers are never
// fragmented, see dontFragment). The client asks again over TCP. OPT
// keeps its ECS scope and cookie (RFC 6891 §7). It returns nil when resp
// does not parse.
func truncated(resp []byte) []byte {
	if len(resp) < headerLen {
		return nil
	}
	off := headerLen
	for range binary.BigEndian.Uint16(resp[4:]) {
		if off = skipName(resp, off); off < 0 || off+4 > len(resp) {
			return nil
		}
		off += 4
	}
	qEnd := off
	records := int(binary.BigEndian.Uint16(resp[6:])) + int(binary.BigEndian.Uint16(resp[8:])) + int(binary.BigEndian.Uint16(resp[10:]))
	optStart, optEnd := 0, 0
	for range records {
		start := off
		if off = skipName(resp, off); off < 0 || off+10 > len(resp) {
			return nil
		}
		end := off + 10 + int(binary.BigEndian.Uint16(resp[off+8:]))
		if end > len(resp) {
			return nil
		}
		if binary.BigEndian.Uint16(resp[off:]) == dns.TypeOPT {
			optStart, optEnd = start, end
		}
		off = end
	}
	n := qEnd + copy(resp[qEnd:], resp[optStart:optEnd])
	resp[2] |= 0x02 // TC
	binary.BigEndian.PutUint16(resp[6:], 0)
	binary.BigEndian.PutUint16(resp[8:], 0)
	ar := uint16(0)
	if optEnd > 0 {
		ar = 1
	}
	binary.BigEndian.PutUint16(resp[10:], ar)
	return resp[:n]
}

// parseQuestion reads the one question. Its name must be uncompressed: a
// pointer in the first name of a message can only point into the header.
func (q *query) parseQuestion(pkt []byte) bool {
	off := headerLen
	n := 0
	for {
		if off >= len(pkt) {
			return false
		}
		l := int(pkt[off])
		if l&0xC0 != 0 {
			return false
		}
		if n+1+l > len(q.lname) || off+1+l > len(pkt) {
			return false
		}
		q.lname[n] = byte(l)
		for i := 1; i <= l; i++ {
			q.lname[n+i] = toLower(pkt[off+i])
		}
		n += 1 + l
		off += 1 + l
		if l == 0 {
			break
		}
	}
	if off+4 > len(pkt) {
		return false
	}
	q.qlen = n
	q.qtype = binary.BigEndian.Uint16(pkt[off:])
	q.qclass = binary.BigEndian.Uint16(pkt[off+2:])
	q.qEnd = off + 4
	return true
}

// parseRest walks the answer, authority and additional sections, looking
// only for the OPT record. Names are skipped, never followed, so
// compression-pointer loops cost nothing.
func (q *query) parseRest(pkt []byte) (int, bool) {
	off := q.qEnd
	an := int(binary.BigEndian.Uint16(pkt[6:]))
	ns := int(binary.BigEndian.Uint16(pkt[8:]))
	ar := int(binary.BigEndian.Uint16(pkt[10:]))
	for i := 0; i < an+ns+ar; i++ {
		start := off
		off = skipName(pkt, off)
		if off < 0 || off+10 > len(pkt) {
			return rcFormErr, false
		}
		t := binary.BigEndian.Uint16(pkt[off:])
		rdlen := int(binary.BigEndian.Uint16(pkt[off+8:]))
		rd := off + 10
		if rd+rdlen > len(pkt) {
			return rcFormErr, false
		}
		if t == dns.TypeOPT {
			// RFC 6891 §6.1.1: one OPT, in the additional section, owned by
			// the root.
			if q.edns || i < an+ns || off-start != 1 {
				q.edns = false // which OPT would we answer? none
				q.ecs = false
				return rcFormErr, false
			}
			q.edns = true
			q.udpSize = binary.BigEndian.Uint16(pkt[off+2:])
			q.version = pkt[off+5]
			q.do = pkt[off+6]&0x80 != 0
			if !q.parseOptions(pkt[rd : rd+rdlen]) {
				q.ecs, q.hasCookie = false, false
				return rcFormErr, false
			}
		}
		off = rd + rdlen
	}
	return rcNoError, true
}

// parseOptions reads the options of OPT, validating ECS (RFC 7871 §6):
// a known family, a source prefix the family can hold, exactly enough
// address bytes for it and no bits set beyond it. Other options are
// ignored (RFC 6891 §6.1.2).
func (q *query) parseOptions(rd []byte) bool {
	for len(rd) > 0 {
		if len(rd) < 4 {
			return false
		}
		code := binary.BigEndian.Uint16(rd)
		olen := int(binary.BigEndian.Uint16(rd[2:]))
		if 4+olen > len(rd) {
			return false
		}
		opt := rd[4 : 4+olen]
		rd = rd[4+olen:]
		if code == optCookie {
			// RFC 7873 §5.2.2: a client cookie alone, or with a server
			// cookie of 8 to 32 bytes; anything else, or a second one, is
			// malformed.
			if q.hasCookie || (olen != clientCookieLen && (olen < clientCookieLen+8 || olen > clientCookieLen+32)) {
				return false
			}
			q.hasCookie = true
			copy(q.clientCookie[:], opt)
			q.srvCookie = opt[clientCookieLen:]
			continue
		}
		if code != optECS {
			continue
		}
		if q.ecs || len(opt) < 4 {
			return false
		}
		fam := binary.BigEndian.Uint16(opt)
		src := opt[2]
		addr := opt[4:]
		var maxBits uint8
		switch fam {
		case 1:
			maxBits = 32
		case 2:
			maxBits = 128
		default:
			return false
		}
		if src > maxBits || len(addr) != int(src+7)/8 {
			return false
		}
		if src%8 != 0 && addr[len(addr)-1]&(0xFF>>(src%8)) != 0 {
			return false
		}
		if fam == 1 {
			var a [4]byte
			copy(a[:], addr)
			q.ecsIP = netip.AddrFrom4(a)
		} else {
			var a [16]byte
			copy(a[:], addr)
			q.ecsIP = netip.AddrFrom16(a)
		}
		q.ecs = true
		q.ecsFamily = fam
		q.ecsSource = src
		q.ecsAddr = addr
	}
	return true
}

// skipName returns the offset after the name at off, or -1.
func skipName(pkt []byte, off int) int {
	for n := 0; n < 128; n++ {
		if off >= len(pkt) {
			return -1
		}
		l := int(pkt[off])
		switch l & 0xC0 {
		case 0:
			if l == 0 {
				return off + 1
			}
			off += 1 + l
		case 0xC0:
			if off+2 > len(pkt) {
				return -1
			}
			return off + 2
		default:
			return -1
		}
	}
	return -1
}

// writer builds a response in place. limit is the size the response may
// reach without the reserved OPT; tc records that an RRset was left out.
type writer struct {
	b          []byte
	n          int
	limit      int
	tc         bool
	an, ns, ar uint16
}

// owner is how an owner name is written: a compression pointer when ptr
// is non-zero, else the uncompressed wire name.
type owner struct {
	ptr  uint16
	name []byte
}

func (o owner) len() int {
	if o.ptr != 0 {
		return 2
	}
	return len(o.name)
}

func (w *writer) putOwner(o owner) {
	if o.ptr != 0 {
		binary.BigEndian.PutUint16(w.b[w.n:], 0xC000|o.ptr)
		w.n += 2
		return
	}
	w.n += copy(w.b[w.n:], o.name)
}

// rrset writes a whole RRset or, when it does not fit, nothing and sets
// TC: RFC 2181 §9 forbids partial RRsets. It returns the offset of the
// first record's RDATA (0 when not written).
func (w *writer) rrset(o owner, rs *rrset, count *uint16) int {
	if w.tc || w.n+rs.wireLen(o.len()) > w.limit {
		w.tc = true
		return 0
	}
	first := 0
	for i, t := range rs.tails {
		w.putOwner(o)
		if i == 0 {
			first = w.n + 10
		}
		w.n += copy(w.b[w.n:], t)
	}
	*count += uint16(len(rs.tails))
	return first
}

// extra writes additional records that fit; leaving some out does not set
// TC (RFC 2181 §9: only data the answer needs does).
func (w *writer) extra(recs [][]byte) {
	for _, r := range recs {
		if w.n+len(r) > w.limit {
			return
		}
		w.n += copy(w.b[w.n:], r)
		w.ar++
	}
}

// addrs writes the A or AAAA records of a pool answer as one RRset.
func (w *writer) addrs(o owner, qtype uint16, ttl uint32, as []netip.Addr) {
	rdlen := 4
	if qtype == dns.TypeAAAA {
		rdlen = 16
	}
	if w.tc || w.n+len(as)*(o.len()+10+rdlen) > w.limit {
		w.tc = true
		return
	}
	for _, a := range as {
		w.putOwner(o)
		b := w.b[w.n:]
		binary.BigEndian.PutUint16(b, qtype)
		binary.BigEndian.PutUint16(b[2:], dns.ClassINET)
		binary.BigEndian.PutUint32(b[4:], ttl)
		binary.BigEndian.PutUint16(b[8:], uint16(rdlen))
		if rdlen == 4 {
			a4 := a.As4()
			copy(b[10:], a4[:])
		} else {
			a16 := a.As16()
			copy(b[10:], a16[:])
		}
		w.n += 10 + rdlen
	}
	w.an += uint16(len(as))
}

// cookieCheck judges the query's cookie against the secrets in force and
// returns the verdict.
func (s *Server) cookieCheck(q *query) uint8 {
	q.checkCookie(s.cookies.Load(), q.src, uint32(s.unixNow()))
	return q.cookie
}

// unixNow is the query path's clock, in Unix seconds: the coarse clock
// of a started server (tick), else the system's. Reading the system clock
// on a virtual machine can cost more than the rest of the rate limiter.
func (s *Server) unixNow() int64 {
	if t := s.clock.Load(); t != 0 {
		return t
	}
	return time.Now().Unix()
}

// tick keeps the coarse clock: whole seconds, good to clockTick, which
// is all that rate limiting and cookie timestamps need.
func (s *Server) tick() {
	defer s.wg.Done()
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		s.clock.Store(time.Now().Unix())
		select {
		case <-t.C:
		case <-s.done:
			return
		}
	}
}

const clockTick = 100 * time.Millisecond

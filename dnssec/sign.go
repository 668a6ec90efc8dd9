package dnssec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Signature lifetimes. RFC 4035 §3.1.5 leaves them to the signer; these
// suit online signing, where a signature can be re-made at any time.
const (
	// Backdate puts the inception this far before the moment of signing,
	// so a validator whose clock runs behind ours still accepts it.
	Backdate = time.Hour
	// InceptionJitter and ValidityJitter add a random part to the
	// inception backdate and to the validity, so that the signatures made
	// in one burst (after a start, a reload with new keys or a key roll)
	// do not all expire, and get re-made, at the same moment.
	InceptionJitter = 15 * time.Minute
	// Validity is the least a signature lasts after it is made.
	Validity       = 4 * 24 * time.Hour
	ValidityJitter = 24 * time.Hour
	// Reuse is how long a cached signature is served before it is made
	// anew: a served signature has at least Validity-Reuse (three days)
	// left, far more than any TTL it covers.
	Reuse = 24 * time.Hour
)

// RRset is an RRset to sign as the query path holds it. Equal content
// must come with equal Rdata order (sorted, for example) to share a
// cached signature; the order of records in the response is free.
type RRset struct {
	Owner []byte // lower-case uncompressed wire name
	Type  uint16
	TTL   uint32
	Rdata [][]byte
	// Flat holds the RDATA of records of one fixed size (addresses)
	// back to back, Size bytes each, instead of Rdata, so that a caller
	// can build it without pointers on its stack.
	Flat []byte
	Size int
}

// each calls f with the RDATA of every record of set.
func (set *RRset) each(f func(rd []byte)) {
	if set.Size > 0 {
		for i := 0; i+set.Size <= len(set.Flat); i += set.Size {
			f(set.Flat[i : i+set.Size])
		}
		return
	}
	for _, rd := range set.Rdata {
		f(rd)
	}
}

// Cache makes RRSIGs and keeps them by RRset content: owner, type, TTL
// and RDATA, and the keys that sign. A pool answer that rotates among a
// few addresses, or the same static RRset asked again, reuses its
// signatures; only new content is signed. It holds a fixed number of
// entries (two candidate slots per content, the older one replaced), so
// its memory is bounded whatever the queries. Safe for concurrent use; a
// hit takes no lock and allocates nothing.
type Cache struct {
	seed  maphash.Seed
	slots []atomic.Pointer[entry]
	mask  uint64

	hits, misses, signed, failed atomic.Uint64
}

type entry struct {
	hash    uint64
	key     []byte
	id      uint64 // State.ID of the keys that signed
	refresh int64  // unix seconds: re-sign from then
	sigs    [][]byte
}

// DefaultCacheEntries is the cache size when NewCache gets 0: about 20
// MiB at most with pool answers of a few addresses.
const DefaultCacheEntries = 1 << 16

// NewCache returns a cache of about entries signatures (rounded up to a
// power of two; 0 means DefaultCacheEntries).
func NewCache(entries int) *Cache {
	if entries <= 0 {
		entries = DefaultCacheEntries
	}
	n := 2
	for n < entries {
		n <<= 1
	}
	return &Cache{seed: maphash.MakeSeed(), slots: make([]atomic.Pointer[entry], n), mask: uint64(n - 1)}
}

// Stats are the cache's counters.
type Stats struct {
	Hits, Misses uint64 // lookups answered from the cache, and not
	Signed       uint64 // signatures made
	Failed       uint64 // signing attempts that failed (answers left unsigned)
}

// Stats returns the counters since NewCache.
func (c *Cache) Stats() Stats {
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Signed: c.signed.Load(), Failed: c.failed.Load()}
}

// Sigs returns the RRSIG records covering set, one per key that signs its
// type in st, each packed as TYPE CLASS TTL RDLENGTH RDATA for the caller
// to write after the owner name. The slices are shared and must not be
// modified. It returns nil when no key signs (all retired) or signing
// failed; both are counted. buf is memory for the content key: a buffer
// on the caller's stack of a few hundred bytes keeps a hit free of
// allocations.
func (c *Cache) Sigs(st *State, set *RRset, now time.Time, buf []byte) [][]byte {
	keys := st.Signers(set.Type)
	if len(keys) == 0 {
		c.failed.Add(1)
		return nil
	}
	k := appendKey(buf[:0], set)
	h := maphash.Bytes(c.seed, k)
	i := h & c.mask &^ 1
	t := now.Unix()
	for j := i; j <= i+1; j++ {
		if e := c.slots[j].Load(); e != nil && e.hash == h && e.id == st.ID && t < e.refresh && bytes.Equal(e.key, k) {
			c.hits.Add(1)
			return e.sigs
		}
	}
	c.misses.Add(1)
	sigs, err := sign(st.Zone.Origin, keys, set, now)
	if err != nil {
		c.failed.Add(1)
		return nil
	}
	c.signed.Add(uint64(len(sigs)))
	e := &entry{hash: h, key: bytes.Clone(k), id: st.ID, refresh: now.Add(Reuse).Unix(), sigs: sigs}
	// Two slots per content: take an empty or stale one, else the one
	// due for re-signing first.
	a, b := c.slots[i].Load(), c.slots[i+1].Load()
	switch {
	case a == nil || a.refresh <= t:
		c.slots[i].Store(e)
	case b == nil || b.refresh <= t:
		c.slots[i+1].Store(e)
	case a.refresh <= b.refresh:
		c.slots[i].Store(e)
	default:
		c.slots[i+1].Store(e)
	}
	return sigs
}

// appendKey appends set's content key: owner, type, TTL, and each RDATA
// with its length.
func appendKey(b []byte, set *RRset) []byte {
	b = append(b, set.Owner...)
	b = binary.BigEndian.AppendUint16(b, set.Type)
	b = binary.BigEndian.AppendUint32(b, set.TTL)
	if set.Size > 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(set.Size))
		return append(b, set.Flat...)
	}
	for _, rd := range set.Rdata {
		b = binary.BigEndian.AppendUint16(b, uint16(len(rd)))
		b = append(b, rd...)
	}
	return b
}

// sign makes one RRSIG per key over set with miekg/dns, which puts the
// records in canonical form and order (RFC 4034 §6). The Labels field is
// the owner's label count: the query path signs a wildcard answer under
// the name that was asked for, as if that name existed, which is how
// compact denial treats every name. (A signature under the wildcard
// owner would need a proof that the asked name does not exist, and the
// one NSEC of compact denial says the opposite.)
func sign(origin string, keys []*Key, set *RRset, now time.Time) ([][]byte, error) {
	var rrs []dns.RR
	var buf []byte
	var err error
	set.each(func(rd []byte) {
		buf = append(buf[:0], set.Owner...)
		buf = binary.BigEndian.AppendUint16(buf, set.Type)
		buf = binary.BigEndian.AppendUint16(buf, dns.ClassINET)
		buf = binary.BigEndian.AppendUint32(buf, set.TTL)
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(rd)))
		buf = append(buf, rd...)
		rr, _, uerr := dns.UnpackRR(buf, 0)
		if uerr != nil {
			err = fmt.Errorf("sign: unpack %s record: %w", dns.TypeToString[set.Type], uerr)
			return
		}
		rrs = append(rrs, rr)
	})
	if err != nil {
		return nil, err
	}
	if len(rrs) == 0 {
		return nil, fmt.Errorf("sign: empty %s RRset", dns.TypeToString[set.Type])
	}
	out := make([][]byte, 0, len(keys))
	for _, k := range keys {
		inc := now.Add(-Backdate - rand.N(InceptionJitter))
		exp := now.Add(Validity + rand.N(ValidityJitter))
		sig := &dns.RRSIG{
			Hdr:        dns.RR_Header{Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: set.TTL},
			Algorithm:  k.DNSKEY.Algorithm,
			SignerName: origin,
			KeyTag:     k.Tag,
			OrigTtl:    set.TTL,
			Inception:  uint32(inc.Unix()),
			Expiration: uint32(exp.Unix()),
		}
		if err := sig.Sign(k.Signer, rrs); err != nil {
			return nil, fmt.Errorf("sign %s %s with key %d: %w", rrs[0].Header().Name, dns.TypeToString[set.Type], k.Tag, err)
		}
		out = append(out, packTail(sig))
	}
	return out, nil
}

// AppendNSEC appends the RDATA of the compact-denial NSEC record at owner
// (RFC 9824): the next name is the owner's immediate successor, \000.owner,
// so the record covers no other name and nothing can be learnt by walking
// the zone; the bitmap lists types (sorted, ascending) without exclude,
// plus RRSIG and NSEC, and NXNAME when the name does not exist at all.
func AppendNSEC(dst, owner []byte, types []uint16, exclude uint16, nxname bool) []byte {
	dst = appendSuccessor(dst, owner)
	var extra [3]uint16
	ne := 0
	extra[ne] = dns.TypeRRSIG
	ne++
	extra[ne] = dns.TypeNSEC
	ne++
	if nxname {
		extra[ne] = dns.TypeNXNAME
		ne++
	}
	// Merge the two sorted lists window by window (RFC 4034 §4.1.2).
	i, j := 0, 0
	next := func() (uint16, bool) {
		for {
			var t uint16
			switch {
			case i < len(types) && (j >= ne || types[i] <= extra[j]):
				t = types[i]
				if j < ne && types[i] == extra[j] {
					j++
				}
				i++
			case j < ne:
				t = extra[j]
				j++
			default:
				return 0, false
			}
			if t != exclude {
				return t, true
			}
		}
	}
	t, ok := next()
	for ok {
		win := byte(t >> 8)
		var bits [32]byte
		n := 0
		for ok && byte(t>>8) == win {
			b := byte(t)
			bits[b/8] |= 0x80 >> (b % 8)
			n = int(b/8) + 1
			t, ok = next()
		}
		dst = append(dst, win, byte(n))
		dst = append(dst, bits[:n]...)
	}
	return dst
}

// appendSuccessor appends the canonical successor of owner (RFC 4471
// §3.1.2): \000.owner, or, when that would pass the 255-octet limit (no
// name can then exist below owner), the first label with a zero octet
// added or, at the label limit, its last octet incremented.
func appendSuccessor(dst, owner []byte) []byte {
	if len(owner)+2 <= 255 {
		dst = append(dst, 1, 0)
		return append(dst, owner...)
	}
	l := int(owner[0])
	if len(owner)+1 <= 255 && l < 63 {
		dst = append(dst, byte(l+1))
		dst = append(dst, owner[1:1+l]...)
		dst = append(dst, 0)
		return append(dst, owner[1+l:]...)
	}
	start := len(dst)
	dst = append(dst, owner...)
	if l > 0 && dst[start+l] < 0xff {
		dst[start+l]++
	}
	return dst
}

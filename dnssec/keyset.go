package dnssec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Zone is the signing material of one zone: its keys and what follows
// from their timing. It is immutable apart from the State it caches, which
// it replaces whole when the clock passes a key's timing event.
type Zone struct {
	Origin string // lower-case, fully qualified: the signer name
	Keys   []*Key
	// TTL is the TTL of the DNSKEY, CDS and CDNSKEY RRsets.
	TTL uint32

	state atomic.Pointer[State]
}

// NewZone checks that keys can sign origin together: one algorithm (an
// algorithm rollover needs every RRset signed with both, which gslbd does
// not do) and no key tag twice.
func NewZone(origin string, keys []*Key, ttl uint32) (*Zone, error) {
	origin = strings.ToLower(dns.Fqdn(origin))
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	for i, k := range keys {
		if k.DNSKEY.Hdr.Name != origin {
			return nil, fmt.Errorf("key %s belongs to %s, not %s", k.BaseName(), k.DNSKEY.Hdr.Name, origin)
		}
		if k.DNSKEY.Algorithm != keys[0].DNSKEY.Algorithm {
			return nil, fmt.Errorf("key %s has algorithm %d and key %s has %d: a zone signs with one algorithm",
				k.BaseName(), k.DNSKEY.Algorithm, keys[0].BaseName(), keys[0].DNSKEY.Algorithm)
		}
		for _, o := range keys[:i] {
			if o.Tag == k.Tag && o.DNSKEY.PublicKey == k.DNSKEY.PublicKey {
				return nil, fmt.Errorf("key %s is listed twice", k.BaseName())
			}
		}
	}
	return &Zone{Origin: origin, Keys: keys, TTL: ttl}, nil
}

// State is which keys do what during one stretch of time in which no key
// timing event falls: [From, Until).
type State struct {
	Zone        *Zone
	From, Until time.Time
	// ID identifies the keys that sign: signatures cached under another ID
	// were made by keys that no longer sign (or not for this zone).
	ID uint64
	// Published keys form the DNSKEY RRset; ZSKs sign every other RRset
	// and KSKs the DNSKEY, CDS and CDNSKEY RRsets. Without an active
	// ZSK the KSKs sign everything (a combined key), and without an active
	// KSK the ZSKs sign the DNSKEY RRset too.
	Published []*Key
	KSKs      []*Key
	ZSKs      []*Key
	// DNSKEY, CDS and CDNSKEY are the apex RRsets. CDS and CDNSKEY
	// (RFC 7344) name the SEP keys that are published and not yet
	// retired, so a parent that reads them follows a KSK rollover; they
	// are empty when no such key exists.
	DNSKEY, CDS, CDNSKEY Packed
}

// Packed is an RRset packed for a writer: each tail is TYPE CLASS TTL
// RDLENGTH RDATA (the owner is the writer's to add), in canonical order.
type Packed struct {
	Type  uint16
	TTL   uint32
	Tails [][]byte
	Rdata [][]byte // the RDATA of each tail
	Size  int      // the tails' total length
}

func (p *Packed) add(tail []byte) {
	p.Tails = append(p.Tails, tail)
	p.Rdata = append(p.Rdata, tail[10:])
	p.Size += len(tail)
}

// Set returns the apex RRset of type t (DNSKEY, CDS or CDNSKEY), nil for
// another type or when it is empty.
func (st *State) Set(t uint16) *Packed {
	var p *Packed
	switch t {
	case dns.TypeDNSKEY:
		p = &st.DNSKEY
	case dns.TypeCDS:
		p = &st.CDS
	case dns.TypeCDNSKEY:
		p = &st.CDNSKEY
	}
	if p == nil || len(p.Tails) == 0 {
		return nil
	}
	return p
}

// foreverUnix is the Until of a state that no timing event ends.
const foreverUnix = 1 << 40

// At returns the state at t, computing it when t lies outside the cached
// one. Computing allocates; it happens once per timing event (and when a
// clock moves backwards), so the query path does it almost never.
func (z *Zone) At(t time.Time) *State {
	if st := z.state.Load(); st != nil && !t.Before(st.From) && t.Before(st.Until) {
		return st
	}
	st := z.compute(t)
	z.state.Store(st)
	return st
}

func (z *Zone) compute(t time.Time) *State {
	st := &State{Zone: z, Until: time.Unix(foreverUnix, 0)}
	for _, k := range z.Keys {
		for _, e := range []time.Time{k.Publish, k.Activate, k.Inactive, k.Delete} {
			if e.IsZero() {
				continue
			}
			if e.After(t) && e.Before(st.Until) {
				st.Until = e
			}
			if !e.After(t) && e.After(st.From) {
				st.From = e
			}
		}
		if k.Published(t) {
			st.Published = append(st.Published, k)
		}
		if !k.Active(t) {
			continue
		}
		if k.SEP() {
			st.KSKs = append(st.KSKs, k)
		} else {
			st.ZSKs = append(st.ZSKs, k)
		}
	}
	if len(st.ZSKs) == 0 {
		st.ZSKs = st.KSKs
	}
	if len(st.KSKs) == 0 {
		st.KSKs = st.ZSKs
	}
	h := fnv.New64a()
	h.Write([]byte(z.Origin))
	for _, set := range [][]*Key{st.KSKs, st.ZSKs} {
		h.Write([]byte{0xff})
		for _, k := range set {
			var b [3]byte
			binary.BigEndian.PutUint16(b[:], k.Tag)
			b[2] = k.DNSKEY.Algorithm
			h.Write(b[:])
			h.Write([]byte(k.DNSKEY.PublicKey))
		}
	}
	st.ID = h.Sum64()

	sep := false
	for _, k := range st.Published {
		sep = sep || k.SEP()
	}
	var dnskey, cds, cdnskey [][]byte
	for _, k := range st.Published {
		dnskey = append(dnskey, packTail(withTTL(k.DNSKEY, z.TTL)))
		if (k.SEP() || !sep) && (k.Inactive.IsZero() || t.Before(k.Inactive)) {
			ds := k.DNSKEY.ToDS(dns.SHA256)
			ds.Hdr.Ttl = z.TTL
			cds = append(cds, packTail(ds.ToCDS()))
			cdnskey = append(cdnskey, packTail(withTTL(k.DNSKEY, z.TTL).ToCDNSKEY()))
		}
	}
	for _, set := range []struct {
		dst   *Packed
		t     uint16
		tails [][]byte
	}{{&st.DNSKEY, dns.TypeDNSKEY, dnskey}, {&st.CDS, dns.TypeCDS, cds}, {&st.CDNSKEY, dns.TypeCDNSKEY, cdnskey}} {
		slices.SortFunc(set.tails, func(a, b []byte) int { return bytes.Compare(a[10:], b[10:]) })
		set.dst.Type, set.dst.TTL = set.t, z.TTL
		for _, tail := range set.tails {
			set.dst.add(tail)
		}
	}
	return st
}

// Signers returns the keys that sign an RRset of type t.
func (st *State) Signers(t uint16) []*Key {
	switch t {
	case dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY:
		return st.KSKs
	}
	return st.ZSKs
}

func withTTL(k *dns.DNSKEY, ttl uint32) *dns.DNSKEY {
	c := *k
	c.Hdr.Ttl = ttl
	return &c
}

// packTail packs rr with the root as owner and returns what follows that
// one-byte owner.
func packTail(rr dns.RR) []byte {
	c := dns.Copy(rr)
	c.Header().Name = "."
	buf := make([]byte, dns.Len(c)+16)
	n, err := dns.PackRR(c, buf, 0, nil, false)
	if err != nil {
		// Only records this package built come here; they always pack.
		panic(fmt.Sprintf("dnssec: pack %s: %v", rr, err))
	}
	return buf[1:n:n]
}

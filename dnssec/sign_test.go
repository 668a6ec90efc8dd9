package dnssec

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const origin = "gslb.example.com."

func newKey(t testing.TB, alg uint8, ksk bool, tm Timing) *Key {
	t.Helper()
	k, err := Generate(origin, alg, ksk, 3600, tm)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newZone(t testing.TB, keys ...*Key) *Zone {
	t.Helper()
	z, err := NewZone(origin, keys, 3600)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func wire(name string) []byte {
	b := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(name), b, 0, nil, false)
	if err != nil {
		panic(err)
	}
	return b[:n]
}

func addrSet(owner string, ttl uint32, addrs ...string) *RRset {
	set := &RRset{Owner: wire(owner), Type: dns.TypeA, TTL: ttl}
	for _, a := range addrs {
		b := netip.MustParseAddr(a).As4()
		set.Rdata = append(set.Rdata, b[:])
	}
	return set
}

// verify checks sigs over set with the zone's keys, as a validator would.
func verify(t *testing.T, z *Zone, set *RRset, sigs [][]byte, now time.Time) {
	t.Helper()
	if len(sigs) == 0 {
		t.Fatal("no signatures")
	}
	var rrs []dns.RR
	for _, rd := range set.Rdata {
		rrs = append(rrs, unpackTail(t, set.Owner, append(rrHead(set), byte(len(rd)>>8), byte(len(rd))), rd))
	}
	for _, tail := range sigs {
		sig := unpackTail(t, set.Owner, tail, nil).(*dns.RRSIG)
		var key *dns.DNSKEY
		for _, k := range z.Keys {
			if k.Tag == sig.KeyTag {
				key = k.DNSKEY
			}
		}
		if key == nil {
			t.Fatalf("signature by unknown key %d", sig.KeyTag)
		}
		if err := sig.Verify(key, rrs); err != nil {
			t.Fatalf("verify %v: %v", sig, err)
		}
		if !sig.ValidityPeriod(now) || !sig.ValidityPeriod(now.Add(-Backdate+time.Minute)) || !sig.ValidityPeriod(now.Add(Validity-Reuse)) {
			t.Errorf("validity %d..%d does not cover %v-1h..%v+3d", sig.Inception, sig.Expiration, now, now)
		}
		if int(sig.Labels) != dns.CountLabel(sig.Hdr.Name) || sig.OrigTtl != set.TTL || sig.Hdr.Ttl != set.TTL {
			t.Errorf("labels %d ttl %d/%d for %s ttl %d", sig.Labels, sig.OrigTtl, sig.Hdr.Ttl, sig.Hdr.Name, set.TTL)
		}
	}
}

func rrHead(set *RRset) []byte {
	return []byte{byte(set.Type >> 8), byte(set.Type), 0, 1, byte(set.TTL >> 24), byte(set.TTL >> 16), byte(set.TTL >> 8), byte(set.TTL)}
}

func unpackTail(t *testing.T, owner, tail, rd []byte) dns.RR {
	t.Helper()
	b := append(append(append([]byte(nil), owner...), tail...), rd...)
	rr, _, err := dns.UnpackRR(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

func TestCacheSignsAndReuses(t *testing.T) {
	now := time.Now()
	for _, alg := range []uint8{ECDSAP256SHA256, ED25519} {
		z := newZone(t, newKey(t, alg, true, Timing{}))
		c := NewCache(64)
		st := z.At(now)
		set := addrSet("www."+origin, 30, "192.0.2.1", "192.0.2.2")
		sigs := c.Sigs(st, set, now, nil)
		verify(t, z, set, sigs, now)
		again := c.Sigs(st, addrSet("www."+origin, 30, "192.0.2.1", "192.0.2.2"), now.Add(time.Hour), nil)
		if len(again) != 1 || &again[0][0] != &sigs[0][0] {
			t.Error("the same content was signed again")
		}
		// Another TTL, other addresses, another owner: other signatures.
		for _, other := range []*RRset{
			addrSet("www."+origin, 31, "192.0.2.1", "192.0.2.2"),
			addrSet("www."+origin, 30, "192.0.2.1"),
			addrSet("api."+origin, 30, "192.0.2.1", "192.0.2.2"),
		} {
			s := c.Sigs(st, other, now, nil)
			verify(t, z, other, s, now)
			if bytes.Equal(s[0], sigs[0]) {
				t.Error("different content shares a signature")
			}
		}
		// After Reuse the signature is made anew.
		later := now.Add(Reuse + time.Second)
		if s := c.Sigs(st, set, later, nil); bytes.Equal(s[0], sigs[0]) {
			t.Error("a signature was served past Reuse")
		}
		if st := c.Stats(); st.Signed != 5 || st.Hits != 1 || st.Misses != 5 || st.Failed != 0 {
			t.Errorf("stats %+v", st)
		}
	}
}

func TestCacheBounded(t *testing.T) {
	z := newZone(t, newKey(t, ED25519, true, Timing{}))
	c := NewCache(16)
	now := time.Now()
	st := z.At(now)
	for i := range 200 {
		c.Sigs(st, addrSet("www."+origin, uint32(i), "192.0.2.1"), now, nil)
	}
	n := 0
	for i := range c.slots {
		if c.slots[i].Load() != nil {
			n++
		}
	}
	if n > 16 {
		t.Errorf("%d entries in a cache of 16", n)
	}
	// Recent content is still found.
	before := c.Stats().Signed
	c.Sigs(st, addrSet("www."+origin, 199, "192.0.2.1"), now, nil)
	if c.Stats().Signed != before {
		t.Error("the latest entry was evicted at once")
	}
}

func TestCacheHitAllocs(t *testing.T) {
	z := newZone(t, newKey(t, ECDSAP256SHA256, true, Timing{}))
	c := NewCache(0)
	now := time.Now()
	st := z.At(now)
	set := addrSet("www."+origin, 30, "192.0.2.1", "192.0.2.2")
	c.Sigs(st, set, now, nil)
	if n := testing.AllocsPerRun(1000, func() {
		var buf [256]byte
		c.Sigs(z.At(now), set, now, buf[:0])
	}); n != 0 {
		t.Errorf("%v allocations per cache hit, want 0", n)
	}
}

func TestKeyRolesAndTiming(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	ksk := newKey(t, ECDSAP256SHA256, true, Timing{})
	zsk1 := newKey(t, ECDSAP256SHA256, false, Timing{Inactive: h(2), Delete: h(3)})
	zsk2 := newKey(t, ECDSAP256SHA256, false, Timing{Publish: h(1), Activate: h(2)})
	z := newZone(t, ksk, zsk1, zsk2)
	tags := func(ks []*Key) []uint16 {
		var out []uint16
		for _, k := range ks {
			out = append(out, k.Tag)
		}
		return out
	}
	for _, c := range []struct {
		at             time.Time
		pub, ksks, zsk []*Key
	}{
		{h(0), []*Key{ksk, zsk1}, []*Key{ksk}, []*Key{zsk1}},
		{h(1), []*Key{ksk, zsk1, zsk2}, []*Key{ksk}, []*Key{zsk1}},
		{h(2), []*Key{ksk, zsk1, zsk2}, []*Key{ksk}, []*Key{zsk2}},
		{h(3), []*Key{ksk, zsk2}, []*Key{ksk}, []*Key{zsk2}},
	} {
		st := z.At(c.at)
		if !slices.Equal(tags(st.Published), tags(c.pub)) || !slices.Equal(tags(st.KSKs), tags(c.ksks)) || !slices.Equal(tags(st.ZSKs), tags(c.zsk)) {
			t.Errorf("at %v: published %v ksk %v zsk %v", c.at, tags(st.Published), tags(st.KSKs), tags(st.ZSKs))
		}
		if len(st.DNSKEY.Tails) != len(c.pub) || len(st.CDS.Tails) != 1 || len(st.CDNSKEY.Tails) != 1 {
			t.Errorf("at %v: %d DNSKEY %d CDS %d CDNSKEY", c.at, len(st.DNSKEY.Tails), len(st.CDS.Tails), len(st.CDNSKEY.Tails))
		}
		if z.At(c.at.Add(30*time.Minute)) != st {
			t.Errorf("at %v: state recomputed within its stretch", c.at)
		}
	}
	if z.At(h(1)).ID != z.At(h(0)).ID || z.At(h(2)).ID == z.At(h(1)).ID {
		t.Error("ID must change exactly when the signing keys change")
	}

	// One combined key signs everything; a lone ZSK too.
	for _, k := range []*Key{newKey(t, ED25519, true, Timing{}), newKey(t, ED25519, false, Timing{})} {
		st := newZone(t, k).At(t0)
		if len(st.Signers(dns.TypeA)) != 1 || len(st.Signers(dns.TypeDNSKEY)) != 1 || len(st.CDS.Tails) != 1 {
			t.Errorf("single key (sep %v): %d signers of A, %d of DNSKEY, %d CDS", k.SEP(), len(st.Signers(dns.TypeA)), len(st.Signers(dns.TypeDNSKEY)), len(st.CDS.Tails))
		}
	}

	// Every key retired: nothing signs, and Sigs says so.
	old := newKey(t, ED25519, true, Timing{Inactive: h(0)})
	st := newZone(t, old).At(h(1))
	c := NewCache(4)
	if c.Sigs(st, addrSet("www."+origin, 30, "192.0.2.1"), h(1), nil) != nil || c.Stats().Failed != 1 {
		t.Error("signed without an active key")
	}
}

func TestNewZoneChecks(t *testing.T) {
	a := newKey(t, ECDSAP256SHA256, true, Timing{})
	b := newKey(t, ED25519, false, Timing{})
	if _, err := NewZone(origin, []*Key{a, b}, 60); err == nil {
		t.Error("two algorithms accepted")
	}
	if _, err := NewZone(origin, []*Key{a, a}, 60); err == nil {
		t.Error("a key twice accepted")
	}
	if _, err := NewZone("other.example.", []*Key{a}, 60); err == nil {
		t.Error("a key of another zone accepted")
	}
}

func TestAppendNSEC(t *testing.T) {
	owner := wire("Nope." + origin)
	for _, c := range []struct {
		types   []uint16
		exclude uint16
		nxname  bool
		want    []uint16
	}{
		{nil, dns.TypeA, true, []uint16{dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNXNAME}},
		{nil, dns.TypeA, false, []uint16{dns.TypeRRSIG, dns.TypeNSEC}},
		{[]uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCAA}, dns.TypeAAAA, false, []uint16{dns.TypeA, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeCAA}},
		{[]uint16{dns.TypeA, dns.TypeNS, dns.TypeSOA, dns.TypeMX, dns.TypeTXT, dns.TypeAAAA, dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY}, dns.TypeSRV, false,
			[]uint16{dns.TypeA, dns.TypeNS, dns.TypeSOA, dns.TypeMX, dns.TypeTXT, dns.TypeAAAA, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY}},
	} {
		got := AppendNSEC(nil, owner, c.types, c.exclude, c.nxname)
		want := &dns.NSEC{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeNSEC, Class: dns.ClassINET},
			NextDomain: "\\000.Nope." + origin, TypeBitMap: c.want}
		full := packTail(want)
		if !bytes.Equal(got, full[10:]) {
			t.Errorf("types %v -%d nx %v:\n got %x\nwant %x", c.types, c.exclude, c.nxname, got, full[10:])
		}
	}
	// Names at the length limit get a successor that still fits.
	long := []byte{}
	for len(long) < 250 {
		long = append(long, 4, 'a', 'b', 'c', 'd')
	}
	long = append(long[:250], 3, 'c', 'o', 'm', 0) // 255 octets: the limit
	long[245] = 4
	if n := AppendNSEC(nil, long, nil, 0, true); n[0] != long[0] || bytes.Equal(n[:len(long)], long) {
		t.Errorf("successor of a 255-octet name: %x", n[:8])
	}
}

func BenchmarkCacheHit(b *testing.B) {
	z := newZone(b, newKey(b, ECDSAP256SHA256, true, Timing{}))
	c := NewCache(0)
	now := time.Now()
	set := addrSet("www."+origin, 30, "192.0.2.1", "192.0.2.2")
	c.Sigs(z.At(now), set, now, nil)
	b.ReportAllocs()
	var buf [256]byte
	for b.Loop() {
		c.Sigs(z.At(now), set, now, buf[:0])
	}
}

func BenchmarkSign(b *testing.B) {
	for _, alg := range []uint8{ECDSAP256SHA256, ED25519} {
		b.Run(dns.AlgorithmToString[alg], func(b *testing.B) {
			z := newZone(b, newKey(b, alg, true, Timing{}))
			now := time.Now()
			st := z.At(now)
			set := addrSet("www."+origin, 30, "192.0.2.1", "192.0.2.2")
			b.ReportAllocs()
			for b.Loop() {
				sign(origin, st.ZSKs, set, now)
			}
		})
	}
}

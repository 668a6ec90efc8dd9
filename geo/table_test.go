package geo

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// derivations are mappings of location IDs a caller might derive tables
// with: the identity (nothing merges beyond the DB), by continent (much
// merges), everything the same, and by the parity of the country code.
func derivations(db *DB) map[string][]uint32 {
	n := db.NumLocations()
	out := map[string][]uint32{
		"identity": make([]uint32, n), "continent": make([]uint32, n),
		"constant": make([]uint32, n), "country-parity": make([]uint32, n),
	}
	conts := map[string]uint32{}
	for id := range n {
		l := db.Location(int32(id))
		out["identity"][id] = uint32(id)
		c, ok := conts[l.Continent]
		if !ok {
			c = uint32(len(conts))
			conts[l.Continent] = c
		}
		out["continent"][id] = c
		out["constant"][id] = 7
		if l.Country != "" {
			out["country-parity"][id] = 1 + uint32(l.Country[1])%2
		}
	}
	return out
}

// derivedAddrs are the table probes plus random addresses anywhere and
// in the test networks.
func derivedAddrs(t *testing.T) []netip.Addr {
	addrs := probes(readTable(t), testOverrides)
	addrs = append(addrs, randomAddrs(2000)...)
	rnd := rand.New(rand.NewPCG(11, 12))
	for range 500 {
		v := 0x7f000000 | rnd.Uint32()&0xffff // 127.0.0.0/16
		addrs = append(addrs, addr4(v))
		var b [16]byte
		copy(b[:], netip.MustParseAddr("2001:db8::").AsSlice())
		for k := 4; k < 16; k++ {
			b[k] = byte(rnd.Uint32())
		}
		b[4], b[5] = 0, byte(rnd.IntN(0x50)) // 2001:db8:0-4f::/48
		addrs = append(addrs, netip.AddrFrom16(b))
	}
	return addrs
}

// TestDerive checks a derived table against its DB: the value is the
// mapped location, the network is at least as wide as the DB's, every
// address sampled in it (first, last, random) has the same value, and the
// ranges are normalized (neighbours differ), which with prefixBits makes
// the network the widest correct one.
func TestDerive(t *testing.T) {
	addrs := derivedAddrs(t)
	for _, ovs := range [][]Override{nil, testOverrides} {
		db := mustOpen(t, cityDB, ovs)
		for name, byLoc := range derivations(db) {
			tab, err := db.Derive(byLoc)
			if err != nil {
				t.Fatal(err)
			}
			rnd := rand.New(rand.NewPCG(5, 6))
			for _, a := range addrs {
				loc, dbBits := db.Lookup(a)
				v, bits := tab.Lookup(a)
				if v != byLoc[loc.ID] {
					t.Fatalf("%s: Lookup(%v) = %d, want %d (location %d)", name, a, v, byLoc[loc.ID], loc.ID)
				}
				if bits > dbBits {
					t.Errorf("%s: Lookup(%v) /%d narrower than the DB's /%d", name, a, bits, dbBits)
				}
				if name == "identity" && bits != dbBits {
					t.Errorf("identity: Lookup(%v) /%d, the DB says /%d", a, bits, dbBits)
				}
				p := netip.PrefixFrom(a.Unmap(), bits).Masked()
				if a.Is4In6() {
					p = netip.PrefixFrom(a, 96+bits).Masked()
				}
				for _, e := range append([]netip.Addr{p.Addr(), lastAddr(p)}, randomIn(rnd, p, 4)...) {
					if l, _ := db.Lookup(e); byLoc[l.ID] != v {
						t.Fatalf("%s: Lookup(%v) = %d in %v, but %v in it is location %d, value %d", name, a, v, p, e, l.ID, byLoc[l.ID])
					}
				}
			}
			checkNormalized(t, name, tab)
		}
	}
}

func randomIn(rnd *rand.Rand, p netip.Prefix, n int) []netip.Addr {
	var out []netip.Addr
	for range n {
		b := p.Addr().AsSlice()
		for i := p.Bits(); i < len(b)*8; i++ {
			if rnd.IntN(2) == 1 {
				b[i/8] |= 0x80 >> (i % 8)
			}
		}
		a, _ := netip.AddrFromSlice(b)
		out = append(out, a)
	}
	return out
}

// checkNormalized checks that All covers each space once, in order, with
// neighbouring ranges of different values.
func checkNormalized(t *testing.T, name string, tab *Table) {
	t.Helper()
	var prev Range
	var prevAlias, started bool
	n := 0
	tab.All(func(r Range, alias bool) bool {
		n++
		first := r.From == netip.IPv4Unspecified() || r.From == netip.IPv6Unspecified()
		switch {
		case first:
			if started && prev.To != netip.MustParseAddr("255.255.255.255") {
				t.Errorf("%s: IPv4 ranges end at %v", name, prev.To)
			}
		case prev.To.Next() != r.From:
			t.Errorf("%s: range %v-%v does not follow %v-%v", name, r.From, r.To, prev.From, prev.To)
		case !alias && !prevAlias && prev.Value == r.Value:
			t.Errorf("%s: neighbours %v-%v and %v-%v both have %d: not merged", name, prev.From, prev.To, r.From, r.To, r.Value)
		}
		prev, prevAlias, started = r, alias, true
		return true
	})
	if n != tab.Ranges() {
		t.Errorf("%s: All gave %d ranges, Ranges says %d", name, n, tab.Ranges())
	}
}

func TestDeriveMerges(t *testing.T) {
	db := mustOpen(t, cityDB, testOverrides)
	d := derivations(db)
	konst, err := db.Derive(d["constant"])
	if err != nil {
		t.Fatal(err)
	}
	// IPv4 is one range; IPv6 the non-aliased space around the aliases.
	if v, bits := konst.Lookup(netip.MustParseAddr("127.0.1.1")); v != 7 || bits != 0 {
		t.Errorf("constant: 127.0.1.1 = %d /%d, want 7 /0", v, bits)
	}
	if v, bits := konst.Lookup(netip.MustParseAddr("::ffff:127.0.1.1")); v != 7 || bits != 0 {
		t.Errorf("constant: ::ffff:127.0.1.1 = %d /%d, want 7 /0 (IPv4 prefix lengths)", v, bits)
	}
	id, err := db.Derive(d["identity"])
	if err != nil {
		t.Fatal(err)
	}
	cont, err := db.Derive(d["continent"])
	if err != nil {
		t.Fatal(err)
	}
	if !(konst.Ranges() < cont.Ranges() && cont.Ranges() < id.Ranges()) {
		t.Errorf("ranges: constant %d, continent %d, identity %d: coarser values must merge more", konst.Ranges(), cont.Ranges(), id.Ranges())
	}
	if id.Ranges() != db.Info().Ranges {
		t.Errorf("identity has %d ranges, the DB %d", id.Ranges(), db.Info().Ranges)
	}
}

func TestDeriveErrors(t *testing.T) {
	db := mustOpen(t, cityDB, nil)
	if _, err := db.Derive(make([]uint32, db.NumLocations()-1)); err == nil {
		t.Error("Derive with too few values: no error")
	}
	big := make([]uint32, db.NumLocations())
	big[1] = MaxValue + 1
	if _, err := db.Derive(big); err == nil {
		t.Error("Derive with a value above MaxValue: no error")
	}
	var none *DB
	tab, err := none.Derive([]uint32{3})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"192.0.2.1", "2001:db8::1", "::ffff:10.0.0.1"} {
		if v, bits := tab.Lookup(netip.MustParseAddr(s)); v != 3 || bits != 0 {
			t.Errorf("nil DB derived: Lookup(%s) = %d /%d, want 3 /0", s, v, bits)
		}
	}
	if v, bits := tab.Lookup(netip.Addr{}); v != 3 || bits != 0 {
		t.Errorf("invalid address: %d /%d, want the unknown location's 3 /0", v, bits)
	}
	var zero Table
	if v, bits := zero.Lookup(netip.MustParseAddr("192.0.2.1")); v != 0 || bits != 0 {
		t.Errorf("zero Table: %d /%d, want 0 /0", v, bits)
	}
}

func TestDerivedLookupAllocs(t *testing.T) {
	db := mustOpen(t, cityDB, testOverrides)
	tab, err := db.Derive(derivations(db)["continent"])
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"127.0.1.1", "2001:db8:1::1", "::ffff:127.0.2.1", "2002:7f00:301::1", "10.1.2.3"} {
		a := netip.MustParseAddr(s)
		if n := testing.AllocsPerRun(1000, func() { _, _ = tab.Lookup(a) }); n != 0 {
			t.Errorf("Table.Lookup(%s) allocates %v times per run", s, n)
		}
	}
}

// TestChunksReserve: elements pushed after a reserve come back in order
// whether they fit the reserved array (returned as it is, no copy), spill
// over into blocks, or fill only a small part of a much larger
// reservation (copied to their size).
func TestChunksReserve(t *testing.T) {
	for _, tc := range []struct {
		name       string
		reserve, n int
		same       bool // flatten returns the reserved array itself
	}{
		{"none", 0, 5000, false},
		{"fits", 5000, 4990, true},
		{"exact", 5000, 5000, true},
		{"spills", 5000, 200_000, false},
		{"far too large", 1_000_000, 3000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c chunks[uint32]
			if tc.reserve > 0 {
				c.reserve(tc.reserve)
			}
			first := c.first
			for i := range tc.n {
				c.push(uint32(i))
			}
			out := c.flatten()
			if len(out) != tc.n {
				t.Fatalf("%d elements, want %d", len(out), tc.n)
			}
			for i, v := range out {
				if v != uint32(i) {
					t.Fatalf("element %d is %d", i, v)
				}
			}
			if same := cap(first) > 0 && &out[0] == &first[:1][0]; same != tc.same {
				t.Fatalf("returned the reserved array: %v, want %v", same, tc.same)
			}
			if cap(out) > tc.n+tc.n/8+1024 {
				t.Fatalf("capacity %d for %d elements", cap(out), tc.n)
			}
		})
	}
}

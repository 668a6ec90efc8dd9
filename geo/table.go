package geo

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
)

// Table maps every address to a small integer, with the widest network
// around the address in which the integer is the same. A DB holds one
// mapping to Location IDs; Derive builds others from it, so a caller whose
// answers depend on the location only through some coarser value (a site
// order, say) gets ranges merged by that value: fewer ranges and wider
// networks of equal answers — gdnsd's per-map merging of networks whose
// datacenter lists are identical. Tables are immutable and safe for
// concurrent use.
//
// The layout is dense, because a full City database has millions of
// ranges: IPv4 range starts and values in two uint32 arrays (8 bytes a
// range), IPv6 starts as their first 64 bits with the value (12 bytes a
// range) — databases do not split networks longer than /64 but in a
// handful of places, whose low 64 bits sit in a short side list. The
// binary search reads only the starts.
type Table struct {
	s4  []uint32 // sorted IPv4 range starts
	v4  []uint32 // their values
	s6  []uint64 // sorted IPv6 range starts, first 64 bits
	lo6 []lo6    // the starts whose low 64 bits are not zero, by index
	// v6 are the IPv6 values; one with aliasFlag set sends the lookup to
	// the IPv4 table (see aliases).
	v6  []uint32
	ix4 index
	ix6 index

	// aliases[i] is the prefix length of an IPv6 subtree that the
	// database maps onto its IPv4 subtree: the 32 bits after it are the
	// IPv4 address (::/96 and ::ffff:0:0/96 at 96, 6to4 2002::/16 at 16).
	// Derived tables share their DB's.
	aliases []uint8

	// unknown is the value of the unknown location, for an address that
	// is not valid.
	unknown uint32
}

// lo6 is the low half of the IPv6 range start at index i.
type lo6 struct {
	i  uint32
	lo uint64
}

// MaxValue is the largest value a derived table can hold.
const MaxValue = aliasFlag - 1

// build copies the collected ranges into their arrays and indexes them; l1 is
// the number of address bits the first level of each index splits by.
func (t *Table) build(r4, r6 *ranges, l1 uint) {
	t.s4, t.v4 = r4.s4.flatten(), r4.vals.flatten()
	t.s6, t.v6, t.lo6 = r6.s6.flatten(), r6.vals.flatten(), slices.Clip(r6.lo6)
	t.ix4 = newIndex(len(t.s4), func(i int) uint64 { return uint64(t.s4[i]) << 32 }, l1, min(15, 24-l1))
	t.ix6 = newIndex(len(t.s6), func(i int) uint64 { return t.s6[i] }, l1, 12)
}

// low6 is the low 64 bits of the start of IPv6 range i.
func (t *Table) low6(i int) uint64 {
	if len(t.lo6) == 0 {
		return 0
	}
	k, ok := slices.BinarySearchFunc(t.lo6, uint32(i), func(e lo6, i uint32) int {
		switch {
		case e.i < i:
			return -1
		case e.i > i:
			return 1
		}
		return 0
	})
	if !ok {
		return 0
	}
	return t.lo6[k].lo
}

func (t *Table) start6(i int) u128 { return u128{t.s6[i], t.low6(i)} }

// Derive returns a table that maps every address to byLoc[id], where id
// is the Location ID Lookup gives it, merging neighbouring ranges with the
// same value: its Lookup answers byLoc[loc.ID] with a prefix at least as
// wide as Lookup's. byLoc must have NumLocations entries, each at most
// MaxValue. It walks the DB's ranges twice (a few milliseconds per
// million): once to count the merged ranges, once to fill arrays of
// exactly that size.
func (db *DB) Derive(byLoc []uint32) (*Table, error) {
	if len(byLoc) != db.NumLocations() {
		return nil, fmt.Errorf("geo: derive: %d values for %d locations", len(byLoc), db.NumLocations())
	}
	for id, v := range byLoc {
		if v > MaxValue {
			return nil, fmt.Errorf("geo: derive: value %d of location %d above %d", v, id, MaxValue)
		}
	}
	if db.Retired() {
		return nil, fmt.Errorf("geo: derive: the database %s is retired", db.info.Path)
	}
	d := db.data()
	if d == nil {
		t := &Table{unknown: byLoc[0]}
		r4, r6 := newRanges(32, nil), newRanges(128, nil)
		r4.put(u128{}, r4.spaceMax(), byLoc[0])
		r6.put(u128{}, r6.spaceMax(), byLoc[0])
		t.build(r4, r6, 4)
		return t, nil
	}
	src := &d.tab
	val6 := func(i int) uint32 {
		if v := src.v6[i]; v&aliasFlag == 0 {
			return byLoc[v]
		}
		return src.v6[i]
	}
	n4, n6 := 0, 0
	for i, id := range src.v4 {
		if i == 0 || byLoc[id] != byLoc[src.v4[i-1]] {
			n4++
		}
	}
	for i := range src.v6 {
		if i == 0 || val6(i) != val6(i-1) {
			n6++
		}
	}
	t := &Table{aliases: src.aliases, unknown: byLoc[0],
		s4: make([]uint32, 0, n4), v4: make([]uint32, 0, n4),
		s6: make([]uint64, 0, n6), v6: make([]uint32, 0, n6)}
	for i, id := range src.v4 {
		if v := byLoc[id]; i == 0 || v != t.v4[len(t.v4)-1] {
			t.s4 = append(t.s4, src.s4[i])
			t.v4 = append(t.v4, v)
		}
	}
	k := 0 // position in src.lo6
	for i := range src.v6 {
		if v := val6(i); i == 0 || v != t.v6[len(t.v6)-1] {
			for k < len(src.lo6) && int(src.lo6[k].i) < i {
				k++
			}
			if k < len(src.lo6) && int(src.lo6[k].i) == i {
				t.lo6 = append(t.lo6, lo6{uint32(len(t.s6)), src.lo6[k].lo})
			}
			t.s6 = append(t.s6, src.s6[i])
			t.v6 = append(t.v6, v)
		}
	}
	// A first level of 2^l1 slots with about one range each keeps the
	// search as short as the DB's while the index of a table with a few
	// thousand ranges stays a few tens of KiB instead of the DB's 512.
	l1 := uint(min(16, max(4, bits.Len(uint(max(n4, n6))))))
	t.ix4 = newIndex(len(t.s4), func(i int) uint64 { return uint64(t.s4[i]) << 32 }, l1, min(15, 24-l1))
	t.ix6 = newIndex(len(t.s6), func(i int) uint64 { return t.s6[i] }, l1, 12)
	return t, nil
}

// Lookup returns the value of a and the prefix length of the widest
// network around a in which every address has that value (IPv4 prefix
// lengths for IPv4 and IPv4-mapped addresses). It does not allocate.
// The zero Table maps everything to 0 with prefix length 0; an invalid
// address gets the value of the unknown location with prefix length 0.
func (t *Table) Lookup(a netip.Addr) (v uint32, bits int) {
	if len(t.s4) == 0 {
		return 0, 0
	}
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return t.lookup4(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
	}
	if !a.Is6() {
		return t.unknown, 0
	}
	x := u128From16(a.As16())
	i := t.find6(x)
	end := maxU128
	if i+1 < len(t.s6) {
		end = t.start6(i + 1).sub1()
	}
	bits = prefixBits(x, t.start6(i), end, 128)
	v = t.v6[i]
	if v&aliasFlag != 0 {
		at := int(t.aliases[v&^aliasFlag])
		var b4 int
		v, b4 = t.lookup4(uint32(x.shl(at).hi >> 32))
		bits = max(bits, at+b4)
	}
	return v, bits
}

func (t *Table) lookup4(x uint32) (id uint32, bits int) {
	lo, hi := t.ix4.bounds(uint64(x) << 32)
	s := t.s4
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if s[m] <= x {
			lo = m
		} else {
			hi = m
		}
	}
	end := uint64(1<<32 - 1)
	if lo+1 < len(s) {
		end = uint64(s[lo+1]) - 1
	}
	return t.v4[lo], prefixBits(u128{0, uint64(x)}, u128{0, uint64(s[lo])}, u128{0, end}, 32)
}

func (t *Table) find6(x u128) int {
	lo, hi := t.ix6.bounds(x.hi)
	s := t.s6
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if h := s[m]; h < x.hi || (h == x.hi && t.low6(m) <= x.lo) {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

// Ranges is the number of ranges of equal value, IPv4 and IPv6 counted
// apart (an IPv6 subtree that aliases the IPv4 table counts as one).
func (t *Table) Ranges() int { return len(t.s4) + len(t.s6) }

// Bytes is the approximate memory of the table, its index included and
// the aliases it shares with its DB not.
func (t *Table) Bytes() int {
	return 8*len(t.s4) + 12*len(t.s6) + 16*len(t.lo6) + t.ix4.bytes() + t.ix6.bytes()
}

// Range is one range of a table: addresses From through To (both
// inclusive, the same family) have Value.
type Range struct {
	From, To netip.Addr
	Value    uint32
}

// All calls f with every range of the table, IPv4 first, in address
// order, until f returns false. An IPv6 range that aliases the IPv4 table
// (::ffff:0:0/96, 2002::/16, …) is reported with Alias set and Value 0:
// its addresses have the values of the IPv4 addresses embedded in them.
// It is for tests and tools, not for the query path.
func (t *Table) All(f func(r Range, alias bool) bool) {
	for i, s := range t.s4 {
		end := uint32(1<<32 - 1)
		if i+1 < len(t.s4) {
			end = t.s4[i+1] - 1
		}
		if !f(Range{From: addr4(s), To: addr4(end), Value: t.v4[i]}, false) {
			return
		}
	}
	for i := range t.s6 {
		end := maxU128
		if i+1 < len(t.s6) {
			end = t.start6(i + 1).sub1()
		}
		r := Range{From: netipFrom(t.start6(i)), To: netipFrom(end), Value: t.v6[i]}
		alias := t.v6[i]&aliasFlag != 0
		if alias {
			r.Value = 0
		}
		if !f(r, alias) {
			return
		}
	}
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

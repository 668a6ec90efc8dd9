package geo

import (
	"fmt"
	"math/bits"
	"net/netip"
)

// Table maps every address to a small integer, with the widest network
// around the address in which the integer is the same. A DB holds one
// mapping to Location IDs; Derive builds others from it, so a caller whose
// answers depend on the location only through some coarser value (a site
// order, say) gets ranges merged by that value: fewer ranges and wider
// networks of equal answers — gdnsd's per-map merging of networks whose
// datacenter lists are identical. Tables are immutable and safe for
// concurrent use.
type Table struct {
	// Sorted range starts with the value of each range, IPv4 and IPv6.
	// An IPv6 value with aliasFlag set sends the lookup to the IPv4 table
	// (see aliases).
	v4  []ent4
	v6  []ent6
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

type ent4 struct{ start, id uint32 }

type ent6 struct {
	hi, lo uint64
	id     uint32
}

// MaxValue is the largest value a derived table can hold.
const MaxValue = aliasFlag - 1

// build fills t from normalized run lists; l1 is the number of address
// bits the first level of each index splits by.
func (t *Table) build(r4, r6 []run, l1 uint) {
	t.v4 = make([]ent4, len(r4))
	for i, r := range r4 {
		t.v4[i] = ent4{uint32(r.start.lo), r.id}
	}
	t.ix4 = newIndex(len(t.v4), func(i int) uint64 { return uint64(t.v4[i].start) << 32 }, l1, min(15, 24-l1))
	t.v6 = make([]ent6, len(r6))
	for i, r := range r6 {
		t.v6[i] = ent6{r.start.hi, r.start.lo, r.id}
	}
	t.ix6 = newIndex(len(t.v6), func(i int) uint64 { return t.v6[i].hi }, l1, 12)
}

// Derive returns a table that maps every address to byLoc[id], where id
// is the Location ID Lookup gives it, merging neighbouring ranges with the
// same value: its Lookup answers byLoc[loc.ID] with a prefix at least as
// wide as Lookup's. byLoc must have NumLocations entries, each at most
// MaxValue. It walks the DB's ranges once (a few milliseconds per million).
func (db *DB) Derive(byLoc []uint32) (*Table, error) {
	if len(byLoc) != db.NumLocations() {
		return nil, fmt.Errorf("geo: derive: %d values for %d locations", len(byLoc), db.NumLocations())
	}
	for id, v := range byLoc {
		if v > MaxValue {
			return nil, fmt.Errorf("geo: derive: value %d of location %d above %d", v, id, MaxValue)
		}
	}
	if db == nil || len(db.locs) == 0 {
		t := &Table{unknown: byLoc[0]}
		t.build([]run{{u128{}, byLoc[0]}}, []run{{u128{}, byLoc[0]}}, 4)
		return t, nil
	}
	var r4, r6 []run
	for _, e := range db.tab.v4 {
		v := byLoc[e.id]
		if n := len(r4); n == 0 || r4[n-1].id != v {
			r4 = append(r4, run{u128{0, uint64(e.start)}, v})
		}
	}
	for _, e := range db.tab.v6 {
		v := e.id
		if v&aliasFlag == 0 {
			v = byLoc[v]
		}
		if n := len(r6); n == 0 || r6[n-1].id != v {
			r6 = append(r6, run{u128{e.hi, e.lo}, v})
		}
	}
	t := &Table{aliases: db.tab.aliases, unknown: byLoc[0]}
	// A first level of 2^l1 slots with about one range each keeps the
	// search as short as the DB's while the index of a table with a few
	// thousand ranges stays a few tens of KiB instead of the DB's 512.
	l1 := uint(min(16, max(4, bits.Len(uint(max(len(r4), len(r6)))))))
	t.build(r4, r6, l1)
	return t, nil
}

// Lookup returns the value of a and the prefix length of the widest
// network around a in which every address has that value (IPv4 prefix
// lengths for IPv4 and IPv4-mapped addresses). It does not allocate.
// The zero Table maps everything to 0 with prefix length 0; an invalid
// address gets the value of the unknown location with prefix length 0.
func (t *Table) Lookup(a netip.Addr) (v uint32, bits int) {
	if len(t.v4) == 0 {
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
	if i+1 < len(t.v6) {
		end = u128{t.v6[i+1].hi, t.v6[i+1].lo}.sub1()
	}
	e := &t.v6[i]
	bits = prefixBits(x, u128{e.hi, e.lo}, end, 128)
	v = e.id
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
	s := t.v4
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if s[m].start <= x {
			lo = m
		} else {
			hi = m
		}
	}
	end := uint64(1<<32 - 1)
	if lo+1 < len(s) {
		end = uint64(s[lo+1].start) - 1
	}
	return s[lo].id, prefixBits(u128{0, uint64(x)}, u128{0, uint64(s[lo].start)}, u128{0, end}, 32)
}

func (t *Table) find6(x u128) int {
	lo, hi := t.ix6.bounds(x.hi)
	s := t.v6
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if v := &s[m]; v.hi < x.hi || (v.hi == x.hi && v.lo <= x.lo) {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

// Ranges is the number of ranges of equal value, IPv4 and IPv6 counted
// apart (an IPv6 subtree that aliases the IPv4 table counts as one).
func (t *Table) Ranges() int { return len(t.v4) + len(t.v6) }

// Bytes is the approximate memory of the table, its index included and
// the aliases it shares with its DB not.
func (t *Table) Bytes() int {
	return 8*len(t.v4) + 24*len(t.v6) + t.ix4.bytes() + t.ix6.bytes()
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
	for i, e := range t.v4 {
		end := uint32(1<<32 - 1)
		if i+1 < len(t.v4) {
			end = t.v4[i+1].start - 1
		}
		if !f(Range{From: addr4(e.start), To: addr4(end), Value: e.id}, false) {
			return
		}
	}
	for i, e := range t.v6 {
		end := maxU128
		if i+1 < len(t.v6) {
			end = u128{t.v6[i+1].hi, t.v6[i+1].lo}.sub1()
		}
		r := Range{From: netipFrom(u128{e.hi, e.lo}), To: netipFrom(end), Value: e.id}
		alias := e.id&aliasFlag != 0
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

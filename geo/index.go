package geo

import "math/bits"

// index narrows a binary search over sorted range starts to a few
// entries, so that a lookup touches three or four cache lines instead of
// the twenty levels of a search over millions of ranges (or of the
// database's own bit-by-bit tree). Level 1 splits the space by the top 16
// bits of the address (fewer in a small derived Table); a level-1 bucket holding many ranges (the busy
// /16s of IPv4, and 2001::/16, 2a02::/16, … of IPv6) gets a level-2 table
// over just enough of the next bits to leave about two ranges per slot,
// which keeps the index near 4 bytes per range.
type index struct {
	l1    []idxEntry // 1<<l1bits + 1 entries
	l2    []uint32
	shift uint // 64 - l1bits: top>>shift is the level-1 bucket
}

type idxEntry struct {
	first uint32 // first range whose start is in this bucket or later
	sub   uint32 // offset of the level-2 table in l2 << 4 | its bits; 0: none
}

// heavyBucket is the number of ranges above which a level-1 bucket gets a
// level-2 table; below it a binary search stays within a few cache lines.
const heavyBucket = 8

// newIndex indexes n sorted starts whose top 64 bits top(i) returns;
// level 1 splits by the top l1bits bits (at most 16), level-2 tables use
// at most maxBits bits (at most 15, l1bits+maxBits at most 64).
func newIndex(n int, top func(i int) uint64, l1bits, maxBits uint) index {
	ix := index{l1: make([]idxEntry, 1<<l1bits+1), shift: 64 - l1bits}
	k := 0
	for b := range 1<<l1bits + 1 {
		for k < n && top(k)>>ix.shift < uint64(b) {
			k++
		}
		ix.l1[b] = idxEntry{first: uint32(k)}
	}
	// The level-2 tables' total size first, so that l2 is allocated once
	// (appending to it would copy it a dozen times on a full database).
	size := 0
	for b := range 1 << l1bits {
		if n := int(ix.l1[b+1].first - ix.l1[b].first); n > heavyBucket {
			size += 1<<min(uint(bits.Len(uint(n)/2)), maxBits) + 1
		}
	}
	ix.l2 = make([]uint32, 0, size)
	for b := range 1 << l1bits {
		lo, hi := int(ix.l1[b].first), int(ix.l1[b+1].first)
		if hi-lo <= heavyBucket {
			continue
		}
		nb := min(uint(bits.Len(uint(hi-lo)/2)), maxBits)
		ix.l1[b].sub = uint32(len(ix.l2))<<4 | uint32(nb)
		k := lo
		for j := range uint64(1) << nb {
			bound := uint64(b)<<ix.shift | j<<(ix.shift-nb)
			for k < hi && top(k) < bound {
				k++
			}
			ix.l2 = append(ix.l2, uint32(k))
		}
		ix.l2 = append(ix.l2, uint32(hi))
	}
	return ix
}

// bounds returns [lo, hi): the range containing an address whose top 64
// bits are top has an index in it.
func (ix *index) bounds(top uint64) (lo, hi int) {
	b := top >> ix.shift
	e := ix.l1[b]
	if nb := uint(e.sub & 15); nb == 0 {
		lo, hi = int(e.first), int(ix.l1[b+1].first)
	} else {
		j := int(e.sub>>4) + int(top>>(ix.shift-nb)&(1<<nb-1))
		lo, hi = int(ix.l2[j]), int(ix.l2[j+1])
	}
	if lo > 0 {
		lo-- // the range containing the slot's first address starts before it
	}
	return lo, hi
}

func (ix *index) bytes() int { return 8*len(ix.l1) + 4*len(ix.l2) }

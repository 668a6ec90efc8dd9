package geo

import (
	"math/bits"
	"net/netip"
)

// u128 is a 128-bit unsigned integer, big-endian in meaning: hi holds the
// first 64 bits of an IPv6 address. The table builder does its range
// arithmetic in it so that IPv4 (32-bit) and IPv6 (128-bit) spaces share
// one implementation.
type u128 struct{ hi, lo uint64 }

var maxU128 = u128{^uint64(0), ^uint64(0)}

func u128From16(b [16]byte) u128 {
	return u128{
		hi: uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
			uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7]),
		lo: uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 |
			uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15]),
	}
}

func (a u128) bytes16() [16]byte {
	var b [16]byte
	for i := range 8 {
		b[i] = byte(a.hi >> (56 - 8*i))
		b[8+i] = byte(a.lo >> (56 - 8*i))
	}
	return b
}

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) xor(b u128) u128 { return u128{a.hi ^ b.hi, a.lo ^ b.lo} }

func (a u128) not() u128 { return u128{^a.hi, ^a.lo} }

func (a u128) add1() u128 {
	lo, c := bits.Add64(a.lo, 1, 0)
	return u128{a.hi + c, lo}
}

func (a u128) sub1() u128 {
	lo, b := bits.Sub64(a.lo, 1, 0)
	return u128{a.hi - b, lo}
}

func (a u128) sub(b u128) u128 {
	lo, br := bits.Sub64(a.lo, b.lo, 0)
	return u128{a.hi - b.hi - br, lo}
}

// lz counts leading zero bits (128 for zero).
func (a u128) lz() int {
	if a.hi != 0 {
		return bits.LeadingZeros64(a.hi)
	}
	return 64 + bits.LeadingZeros64(a.lo)
}

// tz counts trailing zero bits (128 for zero).
func (a u128) tz() int {
	if a.lo != 0 {
		return bits.TrailingZeros64(a.lo)
	}
	return 64 + bits.TrailingZeros64(a.hi)
}

// shl shifts left by n in [0, 128].
func (a u128) shl(n int) u128 {
	switch {
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{a.lo << (n - 64), 0}
	case n == 0:
		return a
	default:
		return u128{a.hi<<n | a.lo>>(64-n), a.lo << n}
	}
}

// hostMask has the low 128-n bits set: the host part of a /n.
func hostMask(n int) u128 {
	return maxU128.shl(128 - n).not()
}

// prefixBits is the widest prefix length L such that the aligned network
// of length L around a lies inside [s, e] (all three in a w-bit space,
// s <= a <= e). It is the ECS scope of a range of equal answers.
func prefixBits(a, s, e u128, w int) int {
	// Lower bound: a/L starts at or after s when s is aligned to L (its
	// low w-L bits are zero) or when L reaches past the first bit in
	// which a and s differ.
	l1 := 128 - s.tz()
	if a != s {
		l1 = min(l1, a.xor(s).lz()+1)
	}
	// Upper bound: the same with e and trailing ones.
	l2 := 128 - e.not().tz()
	if a != e {
		l2 = min(l2, a.xor(e).lz()+1)
	}
	return max(l1, l2, 128-w) - (128 - w)
}

func netipFrom(a u128) netip.Addr { return netip.AddrFrom16(a.bytes16()) }

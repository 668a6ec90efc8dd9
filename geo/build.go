package geo

import (
	"cmp"
	"slices"
)

// run is the start of a range of equal answers; it lasts until the next
// run's start (or the end of the space). Only the override layer, a few
// entries, is kept as runs; the database's millions of ranges go
// straight into a Table's compact arrays (ranges).
type run struct {
	start u128
	id    uint32
}

// aliasFlag marks an id in the IPv6 table that is not a Location but an
// index into DB.aliases: a subtree of the database that points back into
// its IPv4 subtree (::/96, ::ffff:0:0/96, 2002::/16, …).
const aliasFlag = uint32(1) << 31

// noOverride is the id of the parts of the override layer no override
// covers.
const noOverride = ^uint32(0)

// ranges collects the ranges of one address family, in address order,
// for the arrays a Table searches: adjacent ranges with the same id merge
// as they are added, which is what makes prefixBits return the widest
// correct network (gdnsd's list normalisation, done on ranges).
// Overrides, when there are any, are laid over what is added on the way
// in, so the walk of a database builds its table with no intermediate
// list of runs. The ranges go into fixed-size chunks rather than slices
// that grow by copying: a full City database has millions, and growing
// an array to that size by appending allocates about four times its
// final size in copies; chunks are copied once, into arrays of exactly
// the right length (Table.build).
type ranges struct {
	w    int // 32 or 128
	s4   chunks[uint32]
	s6   chunks[uint64]
	lo6  []lo6 // starts of s6 whose low 64 bits are not zero
	vals chunks[uint32]
	next u128 // first address not yet covered
	done bool // the whole space is covered
	last uint32

	// ov is the override layer (nil: none) and j the position in it.
	ov []run
	j  int
}

func newRanges(w int, ov []run) *ranges { return &ranges{w: w, ov: ov} }

func (l *ranges) spaceMax() u128 {
	if l.w == 32 {
		return u128{0, 1<<32 - 1}
	}
	return maxU128
}

// add covers [s, e] with id; s must be l.next. Where an override
// applies, it wins.
func (l *ranges) add(s, e u128, id uint32) {
	if l.ov == nil {
		l.put(s, e, id)
		return
	}
	for {
		for l.j+1 < len(l.ov) && !s.less(l.ov[l.j+1].start) {
			l.j++
		}
		end := e
		if l.j+1 < len(l.ov) && l.ov[l.j+1].start.sub1().less(end) {
			end = l.ov[l.j+1].start.sub1()
		}
		v := id
		if o := l.ov[l.j].id; o != noOverride {
			v = o
		}
		l.put(s, end, v)
		if end == e {
			return
		}
		s = end.add1()
	}
}

// put appends [s, e] with id, merging with the last range when the id is
// the same.
func (l *ranges) put(s, e u128, id uint32) {
	if l.vals.n == 0 || l.last != id {
		l.vals.push(id)
		l.last = id
		if l.w == 32 {
			l.s4.push(uint32(s.lo))
		} else {
			if s.lo != 0 {
				l.lo6 = append(l.lo6, lo6{uint32(l.s6.n), s.lo})
			}
			l.s6.push(s.hi)
		}
	}
	if e == l.spaceMax() {
		l.done = true
		return
	}
	l.next = e.add1()
}

// prefixRange is the first and last address of p/bits in a w-bit space.
func prefixRange(a u128, bits, w int) (s, e u128) {
	h := hostMask(128 - w + bits)
	s = u128{a.hi &^ h.hi, a.lo &^ h.lo}
	e = u128{s.hi | h.hi, s.lo | h.lo}
	return s, e
}

// alignedPrefixes splits [s, e] into the fewest aligned networks, calling
// f with each network's start and prefix length (128-bit space).
func alignedPrefixes(s, e u128, f func(start u128, bits int)) {
	for {
		k := min(s.tz(), 128) // host bits of the largest network starting at s
		for k > 0 {
			last := u128{s.hi | hostMask(128-k).hi, s.lo | hostMask(128-k).lo}
			if !e.less(last) {
				break
			}
			k--
		}
		f(s, 128-k)
		last := u128{s.hi | hostMask(128-k).hi, s.lo | hostMask(128-k).lo}
		if last == e || last == maxU128 {
			return
		}
		s = last.add1()
	}
}

// overrideLayer paints the overrides of one space, shortest prefix first,
// so a longer (more specific) override wins where it lies inside a
// shorter one. Runs without an override carry noOverride. Without
// overrides it is nil.
func overrideLayer(ovs []ovEntry, w int) []run {
	if len(ovs) == 0 {
		return nil
	}
	slices.SortStableFunc(ovs, func(a, b ovEntry) int { return cmp.Compare(a.bits, b.bits) })
	rs := []run{{u128{}, noOverride}}
	spaceMax := newRanges(w, nil).spaceMax()
	for _, o := range ovs {
		s, e := prefixRange(o.addr, o.bits, w)
		out := make([]run, 0, len(rs)+2)
		for _, r := range rs {
			if r.start.less(s) {
				out = append(out, r)
			}
		}
		out = append(out, run{s, o.id})
		if e != spaceMax {
			n := e.add1()
			after := noOverride // the answer at n before this paint
			for _, r := range rs {
				if !n.less(r.start) {
					after = r.id
				}
			}
			out = append(out, run{n, after})
			for _, r := range rs {
				if n.less(r.start) {
					out = append(out, r)
				}
			}
		}
		rs = out
	}
	return rs
}

// chunks is an append-only list in blocks that are never copied; the
// first blocks are small, so a small table stays small. With a size hint
// (reserve) the elements go into one array of that capacity first, which
// flatten returns as it is when they fitted: no copy at all.
type chunks[T any] struct {
	first []T // reserved; filled before any block
	full  [][]T
	cur   []T
	n     int
}

const maxChunk = 1 << 16

// reserve allocates room for n elements before the first push.
func (c *chunks[T]) reserve(n int) { c.first = make([]T, 0, n) }

func (c *chunks[T]) push(x T) {
	if len(c.first) < cap(c.first) {
		c.first = append(c.first, x)
		c.n++
		return
	}
	if len(c.cur) == cap(c.cur) {
		size := 16
		if c.cur != nil {
			c.full = append(c.full, c.cur)
			size = min(2*cap(c.cur), maxChunk)
		}
		c.cur = make([]T, 0, size)
	}
	c.cur = append(c.cur, x)
	c.n++
}

// flatten returns the elements in one array of exactly their number and
// lets go of the chunks.
func (c *chunks[T]) flatten() []T {
	if c.cur == nil && cap(c.first)-c.n <= c.n/8+1024 {
		// Everything fitted in the reserved array, which is not much
		// larger than needed (a hint from a much larger database is
		// copied to its size instead of wasting the rest).
		out := c.first
		*c = chunks[T]{}
		return out
	}
	out := make([]T, 0, c.n)
	out = append(out, c.first...)
	for _, f := range c.full {
		out = append(out, f...)
	}
	out = append(out, c.cur...)
	*c = chunks[T]{}
	return out
}

type ovEntry struct {
	addr u128
	bits int
	id   uint32
}

package geo

import (
	"cmp"
	"slices"
)

// run is the start of a range of equal answers; it lasts until the next
// run's start (or the end of the space).
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

// runList builds a normalized run list in address order: adjacent ranges
// with the same id merge, which is what makes prefixBits return the
// widest correct network (gdnsd's list normalisation, done on ranges).
type runList struct {
	w    int // 32 or 128
	runs []run
	next u128 // first address not yet covered
	done bool // the whole space is covered
}

func newRunList(w int) *runList { return &runList{w: w} }

func (l *runList) spaceMax() u128 {
	if l.w == 32 {
		return u128{0, 1<<32 - 1}
	}
	return maxU128
}

// add appends [s, e] with id; s must be l.next.
func (l *runList) add(s, e u128, id uint32) {
	if n := len(l.runs); n == 0 || l.runs[n-1].id != id {
		l.runs = append(l.runs, run{s, id})
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
// shorter one. Runs without an override carry noOverride.
func overrideLayer(ovs []ovEntry, w int) []run {
	slices.SortStableFunc(ovs, func(a, b ovEntry) int { return cmp.Compare(a.bits, b.bits) })
	rs := []run{{u128{}, noOverride}}
	spaceMax := newRunList(w).spaceMax()
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

type ovEntry struct {
	addr u128
	bits int
	id   uint32
}

// overlay combines the database runs with the override layer: where an
// override applies it wins, elsewhere the database answers. The result is
// normalized again, so an override that repeats its neighbour merges.
func overlay(db, ov []run, w int) []run {
	out := newRunList(w)
	spaceMax := out.spaceMax()
	i, j := 0, 0
	pos := u128{}
	for {
		id := ov[j].id
		if id == noOverride {
			id = db[i].id
		}
		// The current piece ends before the next boundary of either list.
		end := spaceMax
		if i+1 < len(db) {
			end = db[i+1].start.sub1()
		}
		if j+1 < len(ov) && ov[j+1].start.sub1().less(end) {
			end = ov[j+1].start.sub1()
		}
		out.add(pos, end, id)
		if out.done {
			return out.runs
		}
		pos = end.add1()
		if i+1 < len(db) && db[i+1].start == pos {
			i++
		}
		if j+1 < len(ov) && ov[j+1].start == pos {
			j++
		}
	}
}

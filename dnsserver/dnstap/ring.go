package dnstap

import (
	"math/bits"
	"sync/atomic"
)

// ring is a bounded multi-producer, single-consumer queue of slots that
// never blocks and takes no lock (Dmitry Vyukov's bounded queue): each
// cell carries a sequence number that says whose turn it is. A producer
// claims the cell at tail with one compare-and-swap, fills the slot in
// place and publishes it by advancing the cell's sequence; the consumer
// takes cells in order and hands each back by advancing its sequence a
// lap. A full ring is seen at once (the cell at tail still holds the
// entry of a lap ago) and the caller drops instead of waiting.
//
// A channel would do the same with a mutex per send and receive, and
// with the consumer parked on it, a goroutine wake-up per send.
type ring struct {
	cells []cell
	mask  uint64
	_     [64]byte // tail on its own cache line: producers write it, the consumer only reads head's
	tail  atomic.Uint64
	_     [56]byte
	head  atomic.Uint64 // written by the consumer only; atomic so len can read it
}

type cell struct {
	seq atomic.Uint64
	slot
}

// newRing returns a ring of at least n cells (rounded up to a power of two).
func newRing(n int) *ring {
	size := uint64(1) << bits.Len64(uint64(max(n, 2))-1)
	r := &ring{cells: make([]cell, size), mask: size - 1}
	for i := range r.cells {
		r.cells[i].seq.Store(uint64(i))
	}
	return r
}

// claim returns a free cell to fill and publish, or nil when the ring is
// full.
func (r *ring) claim() *cell {
	for {
		pos := r.tail.Load()
		c := &r.cells[pos&r.mask]
		seq := c.seq.Load()
		switch {
		case seq == pos:
			if r.tail.CompareAndSwap(pos, pos+1) {
				return c
			}
		case seq < pos:
			return nil // still holds the entry of a lap ago: full
		}
		// Another producer took pos first: try the next one.
	}
}

// publish hands a claimed cell to the consumer.
func (r *ring) publish(c *cell) {
	// The cell at position p was claimed with seq == p; p+1 means "filled".
	c.seq.Add(1)
}

// next returns the oldest filled cell, or nil when there is none (or the
// oldest is still being filled). Consumer only.
func (r *ring) next() *cell {
	pos := r.head.Load()
	c := &r.cells[pos&r.mask]
	if c.seq.Load() != pos+1 {
		return nil
	}
	return c
}

// done returns the cell next gave to the producers. Consumer only.
func (r *ring) done(c *cell) {
	pos := r.head.Load()
	c.seq.Store(pos + r.mask + 1)
	r.head.Store(pos + 1)
}

// len is the number of claimed cells not yet consumed.
func (r *ring) len() int { return int(r.tail.Load() - r.head.Load()) }

package cluster

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"time"
)

// entry is one monitor's report on one target key. Seq is the monitor's own
// sequence number at the time it made the report; the pair (monitor, seq)
// orders reports about the same key. Gone marks a tombstone: the monitor
// stopped probing the key, so it has no vote on it.
type entry struct {
	Seq    uint64
	Up     bool
	Gone   bool
	Reason string
}

// beats reports whether e replaces cur in a merge. Higher sequence numbers
// win; equal sequence numbers with different content can only come from two
// incarnations of one monitor, and are ordered by content so that every node
// picks the same one whatever the arrival order.
func (e entry) beats(cur entry) bool {
	if e.Seq != cur.Seq {
		return e.Seq > cur.Seq
	}
	if c := cmp.Compare(b2i(e.Gone), b2i(cur.Gone)); c != 0 {
		return c > 0
	}
	if c := cmp.Compare(b2i(!e.Up), b2i(!cur.Up)); c != 0 {
		return c > 0
	}
	return e.Reason > cur.Reason
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hash is the entry's contribution to its monitor's digest. Digests XOR the
// hashes of all entries, so they are independent of map order and can be
// updated in O(1) when one entry changes.
func (e entry) hash(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	var b [10]byte
	binary.LittleEndian.PutUint64(b[:8], e.Seq)
	b[8] = byte(b2i(e.Up))
	b[9] = byte(b2i(e.Gone))
	h.Write(b[:])
	return h.Sum64()
}

// record is an entry as this node holds it: with the time this node learned
// it, on this node's clock, and whether it is counted in its key's tally.
type record struct {
	entry
	heard   time.Time
	counted bool
}

// monitorState is everything this node knows about one monitor's reports.
type monitorState struct {
	entries map[string]*record
	// digest of entries: count and XOR of entry hashes.
	hash uint64
	// confirmed is when the monitor last confirmed that our copy of its
	// state is complete (a matching digest or its own full state).
	confirmed time.Time
	// lastTick is the newest digest tick seen from it, to drop relayed
	// duplicates.
	lastTick uint64
	// lastHeard is when anything about this monitor last arrived; a monitor
	// that is not a live member is forgotten once this is older than the
	// retention.
	lastHeard time.Time
	// counted is how many of entries are counted in tallies.
	counted int
	// expiry holds the records by freshness window, in the order they
	// expire (see expiry.go); queued counts its items, replaced and
	// removed records included until they are dropped.
	expiry []*expiryQueue
	queued int
	// gone counts the tombstones among entries, so that reaping skips
	// monitors without any.
	gone int
}

func (ms *monitorState) digest() (n int, h uint64) { return len(ms.entries), ms.hash }

// heardAt is when the entry was last confirmed by its monitor.
func (ms *monitorState) heardAt(r *record) time.Time {
	if ms.confirmed.After(r.heard) {
		return ms.confirmed
	}
	return r.heard
}

// drainKey names a drain: a whole site when Addr is the zero Addr.
type drainKey struct {
	Pool, Site string
	Addr       netip.Addr
}

// drainVal is a drain or its tombstone (On false), ordered by its clock,
// then by the name of the node that set it. The clock is a hybrid logical
// clock: a new write takes the larger of the highest clock seen plus one
// and the writer's time in microseconds, so clocks stay comparable with
// wall time (which bounds what a peer may send, and dates tombstones) and
// still order every write after everything its writer had seen.
type drainVal struct {
	On    bool
	Clock uint64
	Node  string
}

func (v drainVal) beats(cur drainVal) bool {
	if v.Clock != cur.Clock {
		return v.Clock > cur.Clock
	}
	if v.Node != cur.Node {
		return v.Node > cur.Node
	}
	return v.On && !cur.On
}

// store is the replicated state: every monitor's entries and the drains.
// It is not safe for concurrent use; Mesh guards it with its mutex. Merges
// are idempotent and commutative: the result depends only on the set of
// entries and drains merged, not on their order or repetition.
type store struct {
	monitors   map[string]*monitorState
	drains     map[drainKey]drainVal
	drainClock uint64
}

func newStore() *store {
	return &store{monitors: map[string]*monitorState{}, drains: map[drainKey]drainVal{}}
}

func (s *store) monitor(name string) *monitorState {
	ms := s.monitors[name]
	if ms == nil {
		ms = &monitorState{entries: map[string]*record{}}
		s.monitors[name] = ms
	}
	return ms
}

// mergeEntry applies one report and says whether it was new to this node.
// The record it replaces, if any, must not be counted in a tally.
func (s *store) mergeEntry(mon, key string, e entry, now time.Time) bool {
	ms := s.monitor(mon)
	ms.lastHeard = now
	cur := ms.entries[key]
	if cur != nil && !e.beats(cur.entry) {
		return false
	}
	if cur != nil {
		ms.hash ^= cur.hash(key)
		ms.gone -= b2i(cur.Gone)
	}
	ms.entries[key] = &record{entry: e, heard: now}
	ms.hash ^= e.hash(key)
	ms.gone += b2i(e.Gone)
	return true
}

// removeEntry forgets mon's entry on key (reaped, or withdrawn by the
// monitor's own full state). The record must not be counted in a tally.
func (s *store) removeEntry(ms *monitorState, key string) {
	if cur := ms.entries[key]; cur != nil {
		ms.hash ^= cur.hash(key)
		ms.gone -= b2i(cur.Gone)
		delete(ms.entries, key)
	}
}

// mergeDrain applies one drain or tombstone and says whether it won.
func (s *store) mergeDrain(k drainKey, v drainVal) bool {
	s.drainClock = max(s.drainClock, v.Clock)
	if cur, ok := s.drains[k]; ok && !v.beats(cur) {
		return false
	}
	s.drains[k] = v
	return true
}

// clockTime is the wall time a sequence number or drain clock was taken
// at (both are microseconds since the epoch, or less for legacy clocks).
func clockTime(c uint64) time.Time {
	return time.UnixMicro(int64(min(c, 1<<62)))
}

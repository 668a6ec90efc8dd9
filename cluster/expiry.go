package cluster

import (
	"slices"
	"time"
)

// Freshness expiry. A report of another monitor stops counting when this
// node has not heard the monitor confirm it for longer than its key's
// window: at max(monitor confirmed, record heard) + window. The sweep must
// find those records without rescanning every entry of every monitor that
// stopped confirming, so each monitor keeps its records in one queue per
// window length, in the order this node heard them. Along a queue
// max(confirmed, heard) never decreases: records are appended as they are
// heard (the owner's clock only moves forward), and a confirmation lifts
// every record heard before it to the same time. So the first record of a
// queue is the next to expire, and a sweep pops what expired and stops at
// the first record still fresh.
//
// Records leave their queue lazily: one replaced or removed stays until it
// reaches the front (or a compaction), and is then dropped. A popped record
// is stale for good unless the monitor confirms again, and a confirmation
// after a lapse longer than minWindow (the only kind that can follow an
// expiry, as every window is longer) rebuilds the monitor's queues, as does
// any change of the windows or of which monitors are live.

// expiryQueue is one monitor's records whose keys have the freshness
// window w, oldest first.
type expiryQueue struct {
	w     time.Duration
	items []expiryItem
	head  int
}

type expiryItem struct {
	key string
	r   *record
}

func (q *expiryQueue) len() int { return len(q.items) - q.head }

func (q *expiryQueue) pop() {
	q.items[q.head] = expiryItem{}
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 64 && 2*q.head > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
}

// queueFor is ms's queue for window w, created when missing.
func (ms *monitorState) queueFor(w time.Duration) *expiryQueue {
	for _, q := range ms.expiry {
		if q.w == w {
			return q
		}
	}
	q := &expiryQueue{w: w}
	ms.expiry = append(ms.expiry, q)
	return q
}

// track queues mon's record r on key, just heard, for expiry. The caller
// holds m.mu.
func (m *Mesh) track(mon string, ms *monitorState, key string, r *record) {
	if mon == m.opts.Name || r.Gone {
		return // own reports never go stale; tombstones never count
	}
	q := ms.queueFor(m.window(key))
	q.items = append(q.items, expiryItem{key, r})
	ms.queued++
	if ms.queued > 2*len(ms.entries)+64 {
		m.compact(ms)
	}
}

// compact drops the replaced and removed records from ms's queues,
// keeping the order of the others.
func (m *Mesh) compact(ms *monitorState) {
	ms.queued = 0
	for _, q := range ms.expiry {
		live := q.items[:0]
		for _, it := range q.items[q.head:] {
			if ms.entries[it.key] == it.r {
				live = append(live, it)
			}
		}
		clear(q.items[len(live):])
		q.items, q.head = live, 0
		ms.queued += len(live)
	}
}

// retrack rebuilds ms's queues from its entries: those heard before its
// last confirmation expire together, the others in the order heard. The
// caller holds m.mu.
func (m *Mesh) retrack(mon string, ms *monitorState) {
	for _, q := range ms.expiry {
		clear(q.items)
	}
	ms.expiry, ms.queued = ms.expiry[:0], 0
	if mon == m.opts.Name {
		return
	}
	var recent []expiryItem
	for key, r := range ms.entries {
		switch {
		case r.Gone:
		case r.heard.After(ms.confirmed):
			recent = append(recent, expiryItem{key, r})
		default:
			q := ms.queueFor(m.window(key))
			q.items = append(q.items, expiryItem{key, r})
			ms.queued++
		}
	}
	slices.SortFunc(recent, func(a, b expiryItem) int { return a.r.heard.Compare(b.r.heard) })
	for _, it := range recent {
		q := ms.queueFor(m.window(it.key))
		q.items = append(q.items, it)
		ms.queued++
	}
}

// sweep uncounts the records that went stale: per queue, what expired
// before now, so a sweep costs one comparison per queue plus the records
// it pops. The caller holds m.mu.
func (m *Mesh) sweep(now time.Time) {
	for mon, ms := range m.st.monitors {
		if mon == m.opts.Name {
			continue
		}
		for _, q := range ms.expiry {
			for q.len() > 0 {
				it := q.items[q.head]
				if ms.entries[it.key] == it.r {
					if !now.After(ms.heardAt(it.r).Add(q.w)) {
						break
					}
					if it.r.counted {
						m.settle(mon, ms, it.key, it.r, now)
					}
				}
				q.pop()
				ms.queued--
			}
		}
	}
}

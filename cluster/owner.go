package cluster

import (
	"context"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"gslbd/zones"
)

// Pacing of the owner goroutine.
const (
	// publishEvery is the shortest time between two published verdict
	// snapshots: a burst of merges costs one snapshot, and a lone change
	// is published at once.
	publishEvery = 50 * time.Millisecond
	// tickEvery paces freshness sweeps and digests.
	tickEvery = 250 * time.Millisecond
	// batch is how many inbox items are merged under one hold of the
	// mutex, so API callers never wait behind a long backlog.
	batch = 256
)

// Bounds of the inbox: messages beyond them are dropped and counted.
const (
	maxInboxItems = 16 << 10
	maxInboxBytes = 64 << 20
	// maxMonitorStates bounds the monitors held (live ones, and gone ones
	// until the retention reaps them).
	maxMonitorStates = 4 * maxMonitors
)

// inItem is one piece of work for the owner, copied from memberlist.
type inItem struct {
	kind byte // itemMsg, itemFull, itemMember or itemSync
	buf  []byte
	join bool
	ev   memberEvent
	done chan struct{}
}

const (
	itemMsg byte = iota
	itemFull
	itemMember
	itemSync
)

type memberEvent struct {
	node  memberlist.Node // Name, Addr, Port
	meta  []byte
	state string // "alive" or "dead"
}

// inbox is the queue between memberlist's goroutines and the owner.
type inbox struct {
	mu    sync.Mutex
	items []inItem
	bytes int
	wake  chan struct{}
}

// push appends it and wakes the owner. Messages (bounded) are refused when
// the inbox is full; membership events and syncs never are: they are few,
// and losing one would leave a member's state wrong until it changes again.
func (in *inbox) push(it inItem, bounded bool) bool {
	in.mu.Lock()
	if bounded && (len(in.items) >= maxInboxItems || in.bytes+len(it.buf) > maxInboxBytes) {
		in.mu.Unlock()
		return false
	}
	in.items = append(in.items, it)
	in.bytes += len(it.buf)
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
	return true
}

func (in *inbox) take() []inItem {
	in.mu.Lock()
	defer in.mu.Unlock()
	items := in.items
	in.items, in.bytes = nil, 0
	return items
}

// kick wakes the owner to publish what an API call changed.
func (m *Mesh) kick() {
	select {
	case m.in.wake <- struct{}{}:
	default:
	}
}

// sync waits until the owner has merged everything queued before it.
func (m *Mesh) sync(ctx context.Context) {
	done := make(chan struct{})
	m.in.push(inItem{kind: itemSync, done: done}, false)
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// owner merges the inbox, keeps verdicts fresh, announces this monitor's
// digest, reaps what the retention forgets and publishes snapshots. Its
// ticks start at a random offset so that nodes do not tick in step.
func (m *Mesh) owner(ctx context.Context) {
	defer m.wg.Done()
	tick := time.NewTimer(rand.N(tickEvery))
	defer tick.Stop()
	pub := time.NewTimer(time.Hour)
	pub.Stop()
	defer pub.Stop()
	m.mu.Lock() // digestEvery is read under mu: tests change it on a running mesh
	nextDigest := time.Now().Add(rand.N(m.digestEvery))
	m.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.in.wake:
		case <-pub.C:
		case <-tick.C:
			tick.Reset(tickEvery)
			now := time.Now()
			m.mu.Lock()
			m.sweep(now)
			if !now.Before(m.reapAt) {
				m.reap(now)
				m.reapAt = now.Add(min(max(m.opts.Retention/8, 100*time.Millisecond), time.Minute))
			}
			if m.opts.Monitor && !now.Before(nextDigest) {
				nextDigest = now.Add(m.digestEvery)
				m.tick = max(m.tick+1, m.nowMicro())
				n, h := m.st.monitor(m.opts.Name).digest()
				m.queueDigest("d\x00"+m.opts.Name, encode(msgDigest, wireDigest{M: m.opts.Name, T: m.tick, N: n, H: h}))
			}
			m.mu.Unlock()
		}
		m.process()
		m.mu.Lock()
		wait := m.publish(time.Now())
		m.mu.Unlock()
		if wait > 0 {
			pub.Reset(wait)
		}
	}
}

// process merges everything in the inbox: decoding outside the mutex, then
// applying a batch at a time under it.
func (m *Mesh) process() {
	items := m.in.take()
	for len(items) > 0 {
		n := min(len(items), batch)
		applies := make([]func(time.Time), 0, n)
		for _, it := range items[:n] {
			if f := m.prepare(it); f != nil {
				applies = append(applies, f)
			}
		}
		items = items[n:]
		m.mu.Lock()
		now := time.Now()
		for _, f := range applies {
			f(now)
		}
		m.mu.Unlock()
	}
}

// prepare decodes and validates one item and returns what applies it
// (under m.mu), or nil when it was dropped.
func (m *Mesh) prepare(it inItem) func(time.Time) {
	switch it.kind {
	case itemSync:
		return func(now time.Time) {
			// Whoever waits reads Health next: publish what came before.
			m.lastPub = time.Time{}
			m.publish(now)
			close(it.done)
		}
	case itemMember:
		return func(now time.Time) { m.onMember(it.ev, now) }
	case itemFull:
		f, err := m.prepareFull(it.buf)
		if err != nil {
			m.stats.dropErr(err)
			m.log.Debug("dropped remote state", "bytes", len(it.buf), "join", it.join, "err", err)
		}
		return f
	}
	buf := it.buf
	var f func(time.Time)
	var err error
	switch buf[0] {
	case msgReport:
		f, err = m.prepareReport(buf)
	case msgDigest:
		f, err = m.prepareDigest(buf)
	case msgDrain:
		f, err = m.prepareDrain(buf)
	case msgStateReq:
		f, err = m.prepareStateReq(buf)
	case msgState:
		f, err = m.prepareState(buf)
	case msgLeave:
		f, err = m.prepareLeave(buf)
	default:
		err = errUnknownType
	}
	if err != nil {
		m.stats.dropErr(err)
		m.log.Debug("dropped gossip message", "type", buf[0], "bytes", len(buf), "err", err)
		return nil
	}
	return f
}

// tally counts the counted reports on one target and the down ones among
// them.
type tally struct{ n, down int32 }

// counts says whether mon's record r on key is a vote now: not a
// tombstone, from a live monitor assigned to key, and fresh. The caller
// holds m.mu.
func (m *Mesh) counts(mon string, ms *monitorState, key string, r *record, now time.Time) bool {
	if r.Gone || !m.live[mon] {
		return false
	}
	if m.opts.MonitorsPerTarget > 0 && !slices.Contains(m.assigned[key], mon) {
		return false
	}
	return mon == m.opts.Name || now.Sub(ms.heardAt(r)) <= m.window(key)
}

// setCounted adds r to or removes it from key's tally and updates the
// verdict. The caller holds m.mu.
func (m *Mesh) setCounted(ms *monitorState, key string, r *record, want bool) {
	if r.counted == want {
		return
	}
	r.counted = want
	d := int32(1)
	if !want {
		d = -1
	}
	ms.counted += int(d)
	t := m.tallies[key]
	if t == nil {
		t = &tally{}
		m.tallies[key] = t
	}
	t.n += d
	if !r.Up {
		t.down += d
	}
	isDown := 2*t.down > t.n
	disputed := t.down > 0 && t.down < t.n
	if t.n == 0 {
		delete(m.tallies, key)
	}
	if _, was := m.disputed[key]; was != disputed {
		if disputed {
			m.disputed[key] = struct{}{}
		} else {
			delete(m.disputed, key)
		}
		m.dirty = true
	}
	if _, was := m.down[key]; was != isDown {
		if isDown {
			m.down[key] = struct{}{}
		} else {
			delete(m.down, key)
		}
		m.dirty = true
	}
}

// settle brings r's place in the tallies up to date.
func (m *Mesh) settle(mon string, ms *monitorState, key string, r *record, now time.Time) {
	m.setCounted(ms, key, r, m.counts(mon, ms, key, r, now))
}

// settleMonitor settles every record of mon and rebuilds its expiry
// queues.
func (m *Mesh) settleMonitor(mon string, now time.Time) {
	if ms := m.st.monitors[mon]; ms != nil {
		for key, r := range ms.entries {
			m.settle(mon, ms, key, r, now)
		}
		m.retrack(mon, ms)
	}
}

// putEntry merges mon's entry on key into the store and the tallies and
// says whether it was new. A tombstone older than the retention removes
// what it beats and is not kept. The caller holds m.mu.
func (m *Mesh) putEntry(mon, key string, e entry, now time.Time) bool {
	ms := m.st.monitors[mon]
	if ms == nil {
		if len(m.st.monitors) >= maxMonitorStates {
			m.stats.drop(dropSize)
			return false
		}
	} else if cur := ms.entries[key]; cur != nil {
		if !e.beats(cur.entry) {
			ms.lastHeard = now
			return false
		}
		m.setCounted(ms, key, cur, false)
	}
	if e.Gone && m.now().Sub(clockTime(e.Seq)) > m.opts.Retention {
		if ms != nil {
			m.st.removeEntry(ms, key)
		}
		return false
	}
	m.st.mergeEntry(mon, key, e, now)
	ms = m.st.monitors[mon]
	r := ms.entries[key]
	m.settle(mon, ms, key, r, now)
	m.track(mon, ms, key, r)
	return true
}

// confirm records that mon confirmed its whole state now. Records that
// had gone stale count again.
func (m *Mesh) confirm(mon string, ms *monitorState, now time.Time) {
	prev := ms.confirmed
	ms.confirmed = now
	ms.lastHeard = now
	if now.Sub(prev) > minWindow {
		m.settleMonitor(mon, now)
	}
}

// publish stores new Health and Assignment snapshots when something
// changed and the last publish is at least publishEvery ago; otherwise it
// returns how long to wait. The caller holds m.mu.
func (m *Mesh) publish(now time.Time) time.Duration {
	if !m.dirty && !m.assignDirty {
		return 0
	}
	if wait := m.lastPub.Add(publishEvery).Sub(now); wait > 0 {
		return wait
	}
	m.lastPub = now
	changed := false
	if m.dirty {
		m.dirty = false
		h := &health{down: maps.Clone(m.down), disputed: maps.Clone(m.disputed), drained: map[drainKey]struct{}{}}
		for k, v := range m.st.drains {
			if v.On {
				h.drained[k] = struct{}{}
			}
		}
		old := m.health.Load()
		if !maps.Equal(old.down, h.down) || !maps.Equal(old.disputed, h.disputed) || !maps.Equal(old.drained, h.drained) {
			m.health.Store(h)
			m.log.Debug("verdicts changed", "down", len(h.down), "drains", len(h.drained))
			changed = true
		}
	}
	if m.assignDirty {
		m.assignDirty = false
		a := &Assignment{self: m.opts.Name, k: m.opts.MonitorsPerTarget, all: m.liveList()}
		if a.k > 0 {
			a.by = maps.Clone(m.assigned)
		}
		m.assign.Store(a)
		changed = true
	}
	if changed {
		select {
		case m.changes <- struct{}{}:
		default:
		}
	}
	return 0
}

// onMember applies a membership event. The caller holds m.mu.
func (m *Mesh) onMember(ev memberEvent, now time.Time) {
	name := ev.node.Name
	state := ev.state
	switch state {
	case "alive":
		delete(m.leaving, name)
	case "dead":
		// memberlist's Node.State is not kept current, so a leave and a
		// failure look the same here; the leave notice tells them apart.
		if t := m.leaving[name]; !t.IsZero() && now.Sub(t) < time.Minute {
			state = "left"
		}
	}
	mi := m.members[name]
	if mi == nil {
		mi = &memberInfo{}
		m.members[name] = mi
	}
	revived := state == "alive" && mi.state != "alive" && mi.state != ""
	if mi.state != state {
		mi.since = now
	}
	mi.node, mi.state, mi.meta = ev.node, state, parseMeta(ev.meta)
	if ms := m.st.monitors[name]; revived && name != m.opts.Name && ms != nil && len(ms.entries) > 0 {
		// Back after a partition: what we hold of it has gone stale; its
		// own state confirms it now rather than at its next digest.
		m.requestState(name, mi, now)
	}
	alive := 0
	for _, mi := range m.members {
		if mi.state == "alive" {
			alive++
		}
	}
	m.numAlive.Store(int64(alive))
	m.updateLive(now)
}

// updateLive recomputes the live monitors and, for each that came or
// went, its assignments and the place of its records in the tallies.
func (m *Mesh) updateLive(now time.Time) {
	want := map[string]bool{}
	if m.opts.Monitor {
		want[m.opts.Name] = true
	}
	for name, mi := range m.members {
		if mi.state == "alive" && name != m.opts.Name && mi.meta.monitor() {
			want[name] = true
		}
	}
	var added, removed []string
	for name := range want {
		if !m.live[name] {
			added = append(added, name)
		}
	}
	for name := range m.live {
		if !want[name] {
			removed = append(removed, name)
		}
	}
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	m.live = want
	m.assignDirty = true
	changed := map[string][]string{} // key → its monitors before
	if m.opts.MonitorsPerTarget > 0 {
		for _, x := range added {
			m.rankAdd(x, changed)
		}
		for _, x := range removed {
			m.rankRemove(x, changed)
		}
	}
	for _, x := range slices.Concat(added, removed) {
		m.settleMonitor(x, now)
	}
	m.applyRankChanges(changed, now)
}

// liveList is the live monitors, sorted.
func (m *Mesh) liveList() []string {
	return slices.Sorted(maps.Keys(m.live))
}

// Rendezvous hashing: each (monitor, key) pair has a score, and a key's
// monitors are the K live monitors with the highest scores. When a
// monitor comes or goes only the keys it ranks in move, and every node
// with the same view of the live monitors computes the same assignment.

func strHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// score mixes the two name hashes with the splitmix64 finaliser, so that
// scores of one key under different monitors are independent.
func score(hk, hm uint64) uint64 {
	z := hk ^ (hm * 0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// better orders candidates by score, then name (ties are astronomically
// rare, but every node must break them the same way).
func better(sa uint64, a string, sb uint64, b string) bool {
	if sa != sb {
		return sa > sb
	}
	return a < b
}

// named is a monitor name with its hash.
type named struct {
	h    uint64
	name string
}

// liveHashes is the live monitors with their name hashes.
func (m *Mesh) liveHashes() []named {
	out := make([]named, 0, len(m.live))
	for name := range m.live {
		out = append(out, named{strHash(name), name})
	}
	return out
}

// rankAmong computes key's top K among mons.
func (m *Mesh) rankAmong(key string, mons []named) []string {
	k := m.opts.MonitorsPerTarget
	hk := strHash(key)
	type cand struct {
		s    uint64
		name string
	}
	top := make([]cand, 0, k+1)
	for _, mon := range mons {
		c := cand{score(hk, mon.h), mon.name}
		i := len(top)
		for i > 0 && better(c.s, c.name, top[i-1].s, top[i-1].name) {
			i--
		}
		if i >= k {
			continue
		}
		top = slices.Insert(top, i, c)
		if len(top) > k {
			top = top[:k]
		}
	}
	out := make([]string, len(top))
	for i, c := range top {
		out[i] = c.name
	}
	return out
}

// rankAll assigns every key anew (targets changed).
func (m *Mesh) rankAll(now time.Time) {
	changed := map[string][]string{}
	next := make(map[string][]string, len(m.intervals))
	mons := m.liveHashes()
	for key := range m.intervals {
		next[key] = m.rankAmong(key, mons)
		if !slices.Equal(next[key], m.assigned[key]) {
			changed[key] = m.assigned[key]
		}
	}
	for key, old := range m.assigned {
		if _, ok := next[key]; !ok {
			changed[key] = old
		}
	}
	m.assigned = next
	m.applyRankChanges(changed, now)
}

// rankAdd places monitor x, newly live, in the keys where it ranks in the
// top K, remembering their former monitors in changed.
func (m *Mesh) rankAdd(x string, changed map[string][]string) {
	k := m.opts.MonitorsPerTarget
	hx := strHash(x)
	for key := range m.intervals {
		cur := m.assigned[key]
		hk := strHash(key)
		sx := score(hk, hx)
		if len(cur) >= k {
			last := cur[len(cur)-1]
			if !better(sx, x, score(hk, strHash(last)), last) {
				continue
			}
		}
		if _, ok := changed[key]; !ok {
			changed[key] = cur
		}
		i := len(cur)
		for i > 0 && better(sx, x, score(hk, strHash(cur[i-1])), cur[i-1]) {
			i--
		}
		next := slices.Insert(slices.Clone(cur), i, x)
		if len(next) > k {
			next = next[:k]
		}
		m.assigned[key] = next
	}
}

// rankRemove takes monitor x, no longer live, out of its keys, which get
// the next monitor in their ranking.
func (m *Mesh) rankRemove(x string, changed map[string][]string) {
	var mons []named
	for key, cur := range m.assigned {
		if !slices.Contains(cur, x) {
			continue
		}
		if _, ok := changed[key]; !ok {
			changed[key] = cur
		}
		if mons == nil {
			mons = m.liveHashes()
		}
		m.assigned[key] = m.rankAmong(key, mons)
	}
}

// applyRankChanges settles the records of the monitors that a changed key
// had or has, and withdraws this monitor's report on keys it lost.
func (m *Mesh) applyRankChanges(changed map[string][]string, now time.Time) {
	if len(changed) == 0 {
		return
	}
	m.assignDirty = true
	for key, old := range changed {
		cur := m.assigned[key]
		for _, mon := range slices.Concat(old, cur) {
			if ms := m.st.monitors[mon]; ms != nil {
				if r := ms.entries[key]; r != nil {
					m.settle(mon, ms, key, r, now)
				}
			}
		}
		if m.opts.Monitor && slices.Contains(old, m.opts.Name) && !slices.Contains(cur, m.opts.Name) {
			if r := m.st.monitor(m.opts.Name).entries[key]; r != nil && !r.Gone {
				m.setOwn(key, entry{Gone: true, Reason: "assigned to other monitors"}, now)
			}
		}
	}
}

// reassign redoes the assignment and the tallies after the targets
// changed. The caller holds m.mu.
func (m *Mesh) reassign(now time.Time) {
	if m.opts.MonitorsPerTarget > 0 {
		m.rankAll(now)
	}
	m.assignDirty = true
	// Freshness windows depend on the intervals: settle everything.
	for mon := range m.st.monitors {
		m.settleMonitor(mon, now)
	}
}

// reap forgets members and monitors dead or gone longer than the
// retention, tombstones older than it, and stale leave notices. Ages of
// members and monitors are on this node's clock; tombstones are dated by
// their own clocks, so every node drops them at about the same time and
// none hands them back to another. The caller holds m.mu.
func (m *Mesh) reap(now time.Time) {
	ret := m.opts.Retention
	wall := m.now()
	for name, mi := range m.members {
		if name != m.opts.Name && mi.state != "alive" && now.Sub(mi.since) > ret {
			delete(m.members, name)
			m.stats.reaped[reapMember].Add(1)
		}
	}
	for name, t := range m.leaving {
		if now.Sub(t) > time.Minute {
			delete(m.leaving, name)
		}
	}
	for mon, ms := range m.st.monitors {
		if mon != m.opts.Name && !m.live[mon] {
			mi := m.members[mon]
			if now.Sub(ms.lastHeard) > ret && (mi == nil || now.Sub(mi.since) > ret) {
				for key, r := range ms.entries {
					m.setCounted(ms, key, r, false)
				}
				delete(m.st.monitors, mon)
				m.stats.reaped[reapMonitor].Add(1)
				continue
			}
		}
		if ms.gone == 0 {
			continue
		}
		for key, r := range ms.entries {
			if r.Gone && wall.Sub(clockTime(r.Seq)) > ret {
				m.setCounted(ms, key, r, false)
				m.st.removeEntry(ms, key)
				m.stats.reaped[reapEntry].Add(1)
			}
		}
	}
	for k, v := range m.st.drains {
		if !v.On && wall.Sub(clockTime(v.Clock)) > ret {
			delete(m.st.drains, k)
			m.stats.reaped[reapDrain].Add(1)
		}
	}
	// Go maps keep their peak size: after a wave of churn, copy the ones
	// that shrank a lot so that the memory goes too (into fresh maps:
	// maps.Clone keeps the original's size).
	for i := range m.peak {
		m.peak[i] = max(m.peak[i], [...]int{len(m.members), len(m.st.monitors), len(m.st.drains)}[i])
	}
	if n := len(m.members); m.peak[0] > 4*n+64 {
		m.members, m.peak[0] = resized(m.members), n
	}
	if n := len(m.st.monitors); m.peak[1] > 4*n+64 {
		m.st.monitors, m.peak[1] = resized(m.st.monitors), n
	}
	if n := len(m.st.drains); m.peak[2] > 4*n+64 {
		m.st.drains, m.peak[2] = resized(m.st.drains), n
	}
}

// resized copies m into a map of its current size.
func resized[K comparable, V any](m map[K]V) map[K]V {
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// reconnectLoop tries, every ReconnectInterval ±25%, a push/pull with
// every failed member and every join peer that is not a live member:
// memberlist never contacts a dead member again by itself, so without
// this a healed partition stays split. After an exchange succeeded it
// tries once more a second later, as the first exchange only makes both
// sides refute their deaths (see the package doc).
func (m *Mesh) reconnectLoop(ctx context.Context, peers []string) {
	defer m.wg.Done()
	iv := m.opts.ReconnectInterval
	jitter := func() time.Duration { return iv*3/4 + rand.N(iv/2+1) }
	t := time.NewTimer(jitter())
	defer t.Stop()
	followUp := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m.reconnectPaused.Load() {
			t.Reset(jitter())
			continue
		}
		ok := m.reconnect(m.reconnectCandidates(peers))
		next := jitter()
		if ok && !followUp {
			next = min(next, time.Second)
			followUp = true
		} else {
			followUp = false
		}
		t.Reset(next)
	}
}

// maxReconnects bounds the push/pulls of one reconnect round.
const maxReconnects = 8

// reconnectCandidates is the addresses to try: failed (not left) members
// and join peers that are not the address of a live member.
func (m *Mesh) reconnectCandidates(peers []string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	aliveAddr := map[string]bool{}
	var out []string
	for name, mi := range m.members {
		if name == m.opts.Name {
			continue
		}
		switch mi.state {
		case "alive":
			aliveAddr[mi.node.Address()] = true
		case "dead":
			out = append(out, mi.node.Address())
		}
	}
	for _, p := range peers {
		norm := p
		if ap, err := parseHostPort(p); err == nil {
			norm = ap.String()
		}
		if !aliveAddr[norm] && !slices.Contains(out, norm) {
			out = append(out, p)
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(len(out), maxReconnects)]
}

// reconnect tries each address in parallel and says whether one answered.
func (m *Mesh) reconnect(addrs []string) bool {
	ml := m.ml.Load()
	if ml == nil || len(addrs) == 0 {
		return false
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := false
	for _, a := range addrs {
		wg.Go(func() {
			n, err := ml.Join([]string{a})
			if n == 0 {
				m.log.Debug("reconnect failed", "addr", a, "err", err)
				if err != nil {
					m.joinKeyError([]string{a}, err)
				}
				return
			}
			m.stats.reconnects.Add(1)
			m.log.Info("reconnected", "addr", a)
			mu.Lock()
			ok = true
			mu.Unlock()
		})
	}
	wg.Wait()
	return ok
}

// Assignment is which monitors probe which targets, as this node sees the
// live monitors. It is immutable.
type Assignment struct {
	self string
	k    int
	all  []string            // live monitors, sorted
	by   map[string][]string // k > 0: key → its monitors, best first
}

// K is the number of monitors per target (0: all of them).
func (a *Assignment) K() int { return a.k }

// Monitors lists the monitors that probe key; the slice must not be
// modified.
func (a *Assignment) Monitors(key string) []string {
	if a.k == 0 {
		return a.all
	}
	return a.by[key]
}

// Filter returns the targets of ts that this node probes, in their order.
func (a *Assignment) Filter(ts []zones.Target) []zones.Target {
	var out []zones.Target
	for _, t := range ts {
		if a.Probes(t.Key) {
			out = append(out, t)
		}
	}
	return out
}

// Probes says whether this node probes key.
func (a *Assignment) Probes(key string) bool {
	if a.k == 0 {
		return slices.Contains(a.all, a.self)
	}
	return slices.Contains(a.by[key], a.self)
}

// events is the Mesh as memberlist's EventDelegate: it copies each event
// into the inbox. memberlist calls it with its node lock held.
type events Mesh

var (
	_ memberlist.EventDelegate    = (*events)(nil)
	_ memberlist.ConflictDelegate = (*events)(nil)
)

func (e *events) push(n *memberlist.Node, state string) {
	m := (*Mesh)(e)
	m.in.push(inItem{kind: itemMember, ev: memberEvent{
		node:  memberlist.Node{Name: n.Name, Addr: append(net.IP(nil), n.Addr...), Port: n.Port},
		meta:  append([]byte(nil), n.Meta...),
		state: state,
	}}, false)
}

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.push(n, "alive")
	if n.Name != e.opts.Name {
		e.log.Info("member joined", "member", n.Name, "addr", n.Address())
	}
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	e.push(n, "dead")
	e.log.Info("member gone", "member", n.Name, "addr", n.Address())
}

func (e *events) NotifyUpdate(n *memberlist.Node) { e.push(n, "alive") }

func (e *events) NotifyConflict(existing, other *memberlist.Node) {
	e.log.Warn("node name conflict", "name", existing.Name, "existing", existing.Address(), "other", other.Address())
}

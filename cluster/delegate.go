package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate is the Mesh as memberlist's Delegate. memberlist calls it from
// its packet and stream goroutines, sometimes while holding its node lock:
// NotifyMsg and MergeRemoteState copy their buffer into the inbox and
// return; LocalState holds m.mu only to copy what it sends. None calls back
// into memberlist.
type delegate Mesh

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta is this node's metadata (see nodeMeta), prepared in advance.
func (d *delegate) NodeMeta(limit int) []byte {
	b := *(*Mesh)(d).meta.Load()
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg queues a broadcast or a reliable message for the owner. buf is
// only valid during the call, so it is copied.
func (d *delegate) NotifyMsg(buf []byte) {
	m := (*Mesh)(d)
	m.stats.msgIn.Add(1)
	m.stats.bytesIn.Add(uint64(len(buf)))
	if len(buf) == 0 {
		m.stats.drop(dropDecode)
		return
	}
	if len(buf) > maxMessageLen {
		m.stats.drop(dropSize)
		return
	}
	if !m.in.push(inItem{kind: itemMsg, buf: append([]byte(nil), buf...)}, true) {
		m.stats.drop(dropQueue)
	}
}

var errUnknownType = errors.New("unknown message type")

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	m := (*Mesh)(d)
	msgs := m.broadcasts.GetBroadcasts(overhead, limit)
	used := 0
	for _, b := range msgs {
		used += overhead + len(b)
	}
	if limit-used > overhead {
		msgs = append(msgs, m.digests.GetBroadcasts(overhead, limit-used)...)
	}
	for _, b := range msgs {
		m.stats.msgOut.Add(1)
		m.stats.bytesOut.Add(uint64(len(b)))
	}
	return msgs
}

// LocalState is what this node sends in a push/pull: the entries of the
// monitors it counts as live and the drains. Dead monitors' entries vote
// nowhere, so they are not sent.
func (d *delegate) LocalState(join bool) []byte {
	m := (*Mesh)(d)
	m.mu.Lock()
	f := wireFull{Mons: make([]wireMonitor, 0, len(m.live))}
	for mon := range m.live {
		if ms := m.st.monitors[mon]; ms != nil && len(ms.entries) > 0 {
			f.Mons = append(f.Mons, m.wireMonitor(mon))
		}
	}
	for k, v := range m.st.drains {
		f.D = append(f.D, drainToWire(k, v))
	}
	m.mu.Unlock()
	buf := encode(msgFull, f)
	m.stats.msgOut.Add(1)
	m.stats.bytesOut.Add(uint64(len(buf)))
	m.stats.lastPushPull.Store(uint64(len(buf)))
	return buf
}

// MergeRemoteState queues a peer's push/pull state for the owner.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	m := (*Mesh)(d)
	m.stats.msgIn.Add(1)
	m.stats.bytesIn.Add(uint64(len(buf)))
	if len(buf) > maxMessageLen {
		m.stats.drop(dropSize)
		return
	}
	if !m.in.push(inItem{kind: itemFull, buf: append([]byte(nil), buf...), join: join}, true) {
		m.stats.drop(dropQueue)
	}
}

// wireMonitor is mon's entries as this node holds them. The caller holds m.mu.
func (m *Mesh) wireMonitor(mon string) wireMonitor {
	ms := m.st.monitor(mon)
	w := wireMonitor{M: mon, E: make([]wireEntry, 0, len(ms.entries))}
	for key, r := range ms.entries {
		w.E = append(w.E, toWire(key, r.entry))
	}
	w.N, w.H = ms.digest()
	return w
}

// checkClock rejects a sequence number, tick or drain clock from the
// future (see maxClockAhead), counting it. The caller holds m.mu.
func (m *Mesh) checkClock(what, name string, c uint64) bool {
	if c <= m.clockBound() {
		return true
	}
	m.stats.drop(dropClock)
	if now := time.Now(); now.Sub(m.clockWarned) > 10*time.Second {
		m.clockWarned = now
		m.log.Warn("rejected gossip with a clock ahead of this node's by more than the bound", "what", what, "name", name, "clock", c, "bound", maxClockAhead)
	}
	return false
}

// applyEntry merges one entry and relays it when it was new. Entries in this
// node's own name are not taken: a peer holds something this node's current
// incarnation never said (a former incarnation, or a forgery), so the node
// re-asserts its own entry with a higher sequence number. The caller holds
// m.mu.
func (m *Mesh) applyEntry(mon string, w *wireEntry, now time.Time) {
	if !m.checkClock("report", mon, w.S) {
		return
	}
	e := w.entry()
	if mon != m.opts.Name {
		// Only live monitors' reports are kept: those of a member dead or
		// gone vote nowhere (its own state is fetched when it comes back),
		// and a name that is not a live member would be state that no
		// member list bounds, which the relays of one node could hand back
		// to another after the retention reaped it. memberlist delivers a
		// member's join before anything merged from the same push/pull.
		if !m.live[mon] {
			return
		}
		if m.putEntry(mon, w.K, e, now) {
			m.queueReport(mon, w.K, e)
		}
		return
	}
	own := m.st.monitor(mon).entries[w.K]
	if own != nil && !e.beats(own.entry) {
		return
	}
	if own == nil && e.Gone {
		// A tombstone of a former incarnation says what we would say.
		m.putEntry(mon, w.K, e, now)
		return
	}
	m.seq = max(m.seq, e.Seq)
	mine := entry{Gone: true, Reason: "not probed by this incarnation"}
	if own != nil {
		mine = own.entry
	}
	m.setOwn(w.K, mine, now)
}

func (m *Mesh) prepareReport(buf []byte) (func(time.Time), error) {
	var r wireReport
	if err := decodeBody(buf, &r); err != nil {
		return nil, err
	}
	if err := checkName("monitor", r.M); err != nil {
		return nil, err
	}
	if err := r.E.check(); err != nil {
		return nil, err
	}
	return func(now time.Time) { m.applyEntry(r.M, &r.E, now) }, nil
}

func (m *Mesh) prepareDigest(buf []byte) (func(time.Time), error) {
	var dg wireDigest
	if err := decodeBody(buf, &dg); err != nil {
		return nil, err
	}
	if err := checkName("monitor", dg.M); err != nil {
		return nil, err
	}
	return func(now time.Time) { m.applyDigest(&dg, buf, now) }, nil
}

// applyDigest confirms a monitor's reports when our copy matches its
// digest and asks it for its state when not. A digest from a monitor this
// node holds nothing of allocates nothing: it is ignored unless the monitor
// is a live member with reports to fetch.
func (m *Mesh) applyDigest(dg *wireDigest, buf []byte, now time.Time) {
	if !m.checkClock("digest", dg.M, dg.T) || dg.M == m.opts.Name {
		return
	}
	mi := m.members[dg.M]
	ms := m.st.monitors[dg.M]
	if ms == nil {
		if dg.N > 0 && mi != nil && mi.state == "alive" {
			m.requestState(dg.M, mi, now)
		}
		return
	}
	if dg.T <= ms.lastTick {
		return // a relayed copy of a digest we already have
	}
	ms.lastTick = dg.T
	m.queueDigest("d\x00"+dg.M, buf)
	if n, h := ms.digest(); n == dg.N && h == dg.H {
		m.confirm(dg.M, ms, now)
		return
	}
	if mi != nil && mi.state == "alive" {
		m.requestState(dg.M, mi, now)
	}
}

// requestState asks mon for its full state, at most once a second.
func (m *Mesh) requestState(mon string, mi *memberInfo, now time.Time) {
	if now.Sub(mi.lastReq) < time.Second {
		return
	}
	mi.lastReq = now
	m.enqueue(job{to: mon, msg: encode(msgStateReq, wireStateReq{M: mon, F: m.opts.Name})})
}

func (m *Mesh) prepareDrain(buf []byte) (func(time.Time), error) {
	var w wireDrain
	if err := decodeBody(buf, &w); err != nil {
		return nil, err
	}
	k, v, err := w.check()
	if err != nil {
		return nil, err
	}
	return func(time.Time) {
		if m.staleDrain(v) {
			return
		}
		if m.applyDrain(k, v) {
			m.queue(drainName(k), buf)
		}
	}, nil
}

// staleDrain says whether a drain is too old to travel as news: its
// undrain may be reaped soon, and taking the drain from a late relay could
// bring it back after that. Drains that old travel in push/pull only,
// which carries the undrain too while it is kept.
func (m *Mesh) staleDrain(v drainVal) bool {
	return v.On && m.now().Sub(clockTime(v.Clock)) > m.opts.Retention/2
}

// applyDrain merges a peer's drain and says whether it won. A tombstone
// older than the retention removes what it beats and is not kept. The
// caller holds m.mu.
func (m *Mesh) applyDrain(k drainKey, v drainVal) bool {
	if !m.checkClock("drain", v.Node, v.Clock) {
		return false
	}
	if !v.On && m.now().Sub(clockTime(v.Clock)) > m.opts.Retention {
		// A tombstone every node has forgotten by now: it still removes
		// what it beats, but is neither kept nor relayed.
		if cur, ok := m.st.drains[k]; ok && v.beats(cur) {
			delete(m.st.drains, k)
			m.dirty = true
		}
		m.st.drainClock = max(m.st.drainClock, v.Clock)
		return false
	}
	if !m.st.mergeDrain(k, v) {
		return false
	}
	m.dirty = true
	return true
}

func (m *Mesh) prepareLeave(buf []byte) (func(time.Time), error) {
	var w wireLeave
	if err := decodeBody(buf, &w); err != nil {
		return nil, err
	}
	if err := checkName("leaving node", w.M); err != nil {
		return nil, err
	}
	return func(now time.Time) {
		if w.M != m.opts.Name && m.leaving[w.M].IsZero() && len(m.leaving) < maxMonitorStates {
			m.leaving[w.M] = now
			m.queue("l\x00"+w.M, buf)
		}
	}, nil
}

func (m *Mesh) prepareStateReq(buf []byte) (func(time.Time), error) {
	var req wireStateReq
	if err := decodeBody(buf, &req); err != nil {
		return nil, err
	}
	if err := checkName("requester", req.F); err != nil {
		return nil, err
	}
	return func(time.Time) {
		if req.M == m.opts.Name {
			m.enqueue(job{to: req.F, ownState: true})
		}
	}, nil
}

func (m *Mesh) prepareState(buf []byte) (func(time.Time), error) {
	var w wireMonitor
	if err := decodeBody(buf, &w); err != nil {
		return nil, err
	}
	if err := w.check(); err != nil {
		return nil, err
	}
	return func(now time.Time) { m.applyState(&w, now) }, nil
}

// applyState merges a monitor's own full state. It is the authority on its
// entries: ours that it no longer holds (reaped tombstones) go.
func (m *Mesh) applyState(w *wireMonitor, now time.Time) {
	for i := range w.E {
		m.applyEntry(w.M, &w.E[i], now)
	}
	if w.M == m.opts.Name {
		return
	}
	ms := m.st.monitors[w.M]
	if ms == nil {
		return
	}
	if len(ms.entries) > len(w.E) {
		keep := make(map[string]struct{}, len(w.E))
		for i := range w.E {
			keep[w.E[i].K] = struct{}{}
		}
		for key, r := range ms.entries {
			if _, ok := keep[key]; !ok {
				m.setCounted(ms, key, r, false)
				m.st.removeEntry(ms, key)
			}
		}
	}
	// The monitor's own full state confirms everything it holds.
	if n, h := ms.digest(); n == w.N && h == w.H {
		m.confirm(w.M, ms, now)
	}
}

func (m *Mesh) prepareFull(buf []byte) (func(time.Time), error) {
	if len(buf) == 0 || buf[0] != msgFull {
		return nil, errUnknownType
	}
	var f wireFull
	if err := decodeBody(buf, &f); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	type drain struct {
		k drainKey
		v drainVal
	}
	drains := make([]drain, 0, len(f.D))
	for i := range f.D {
		k, v, err := f.D[i].check()
		if err != nil {
			return nil, err
		}
		drains = append(drains, drain{k, v})
	}
	return func(now time.Time) {
		for _, wm := range f.Mons {
			for i := range wm.E {
				m.applyEntry(wm.M, &wm.E[i], now)
			}
		}
		for i, d := range drains {
			// A drain that wins here is news that may not have reached
			// other members either: when a partition heals, only the nodes
			// whose reconnect loop fired first exchange state, and the
			// others learn by gossip that the far side is alive again, not
			// what it did meanwhile. Relay it, as a broadcast one is.
			if m.applyDrain(d.k, d.v) && !m.staleDrain(d.v) {
				m.queue(drainName(d.k), encode(msgDrain, f.D[i]))
			}
		}
	}, nil
}

// bcast is a message in the broadcast queue. Its name says what it is
// about, so a newer message on the same thing replaces an older one that
// has not gone out yet.
type bcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*bcast)(nil)

func (b *bcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*bcast)
	return ok && ob.name == b.name
}
func (b *bcast) Name() string    { return b.name }
func (b *bcast) Message() []byte { return b.msg }
func (b *bcast) Finished()       {}

// queue broadcasts msg (copied: relayed buffers may be reused). The queue
// keeps at most maxQueued messages: past that the oldest go, as gossip
// could not send them before they are outdated, and anti-entropy repairs
// what they would have said.
func (m *Mesh) queue(name string, msg []byte) {
	m.broadcasts.QueueBroadcast(&bcast{name: name, msg: append([]byte(nil), msg...)})
	if m.broadcasts.NumQueued() > maxQueued {
		m.broadcasts.Prune(maxQueued)
	}
}

func (m *Mesh) queueDigest(name string, msg []byte) {
	m.digests.QueueBroadcast(&bcast{name: name, msg: append([]byte(nil), msg...)})
	if m.digests.NumQueued() > maxQueued {
		m.digests.Prune(maxQueued)
	}
}

const maxQueued = 4 << 10

// job is a reliable message for the worker to send: msg, or this node's own
// state when ownState is set (built when sent, so it is current).
type job struct {
	to       string
	msg      []byte
	ownState bool
}

// enqueue hands j to the worker without blocking; when the worker is behind
// the job is dropped (digests will ask again).
func (m *Mesh) enqueue(j job) {
	select {
	case m.jobs <- j:
	default:
		m.stats.drop(dropQueue)
	}
}

// worker sends reliable messages, which dial TCP and may take up to the
// stream timeout, away from memberlist's goroutines and the owner.
func (m *Mesh) worker(ctx context.Context) {
	defer m.wg.Done()
	for {
		var j job
		select {
		case <-ctx.Done():
			return
		case j = <-m.jobs:
		}
		m.mu.Lock()
		mi := m.members[j.to]
		var node memberlist.Node
		if mi != nil && mi.state == "alive" {
			node = mi.node
		}
		if j.ownState {
			j.msg = encode(msgState, m.wireMonitor(m.opts.Name))
		}
		m.mu.Unlock()
		ml := m.ml.Load()
		if node.Name == "" || ml == nil {
			continue
		}
		if err := ml.SendReliable(&node, j.msg); err != nil {
			m.log.Debug("reliable send failed", "to", j.to, "type", j.msg[0], "err", err)
			continue
		}
		m.stats.msgOut.Add(1)
		m.stats.bytesOut.Add(uint64(len(j.msg)))
	}
}

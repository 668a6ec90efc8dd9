package cluster

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate is the Mesh as memberlist's Delegate. memberlist calls it from
// its packet and stream goroutines, sometimes while holding its node lock:
// every method takes only m.mu, briefly, and never calls back into
// memberlist.
type delegate Mesh

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte { return nil }

// NotifyMsg handles a broadcast or a reliable message. buf is only valid
// during the call; everything kept is decoded into fresh values.
func (d *delegate) NotifyMsg(buf []byte) {
	m := (*Mesh)(d)
	m.stats.msgIn.Add(1)
	m.stats.bytesIn.Add(uint64(len(buf)))
	if len(buf) == 0 {
		m.stats.drop(dropDecode)
		return
	}
	var err error
	switch buf[0] {
	case msgReport:
		err = m.onReport(buf)
	case msgDigest:
		err = m.onDigest(buf)
	case msgDrain:
		err = m.onDrain(buf)
	case msgStateReq:
		err = m.onStateReq(buf)
	case msgState:
		err = m.onState(buf)
	case msgLeave:
		err = m.onLeave(buf)
	default:
		err = errUnknownType
	}
	if err != nil {
		m.stats.dropErr(err)
		m.log.Debug("dropped gossip message", "type", buf[0], "bytes", len(buf), "err", err)
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

func (d *delegate) LocalState(join bool) []byte {
	m := (*Mesh)(d)
	m.mu.Lock()
	f := wireFull{Mons: make([]wireMonitor, 0, len(m.st.monitors))}
	for mon := range m.st.monitors {
		f.Mons = append(f.Mons, m.wireMonitor(mon))
	}
	for k, v := range m.st.drains {
		f.D = append(f.D, drainToWire(k, v))
	}
	m.mu.Unlock()
	buf := encode(msgFull, f)
	m.stats.msgOut.Add(1)
	m.stats.bytesOut.Add(uint64(len(buf)))
	return buf
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	m := (*Mesh)(d)
	m.stats.msgIn.Add(1)
	m.stats.bytesIn.Add(uint64(len(buf)))
	if err := m.onFull(buf); err != nil {
		m.stats.dropErr(err)
		m.log.Debug("dropped remote state", "bytes", len(buf), "join", join, "err", err)
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

// applyEntry merges one entry and relays it when it was new. Entries in this
// node's own name are not taken: a peer holds something this node's current
// incarnation never said (a former incarnation, or a forgery), so the node
// re-asserts its own entry with a higher sequence number. It reports whether
// the verdict inputs changed. The caller holds m.mu.
func (m *Mesh) applyEntry(mon string, w *wireEntry, now time.Time) bool {
	e := w.entry()
	if mon != m.opts.Name {
		if !m.st.mergeEntry(mon, w.K, e, now) {
			return false
		}
		m.queueReport(mon, w.K, e)
		return true
	}
	own := m.st.monitor(mon).entries[w.K]
	if own != nil && !e.beats(own.entry) {
		return false
	}
	if own == nil && e.Gone {
		// A tombstone of a former incarnation says what we would say.
		m.st.mergeEntry(mon, w.K, e, now)
		return false
	}
	m.seq = max(m.seq, e.Seq)
	mine := entry{Gone: true, Reason: "not probed by this incarnation"}
	if own != nil {
		mine = own.entry
	}
	m.setOwn(w.K, mine)
	return false
}

func (m *Mesh) onReport(buf []byte) error {
	var r wireReport
	if err := decodeBody(buf, &r); err != nil {
		return err
	}
	if err := checkName("monitor", r.M); err != nil {
		return err
	}
	if err := r.E.check(); err != nil {
		return err
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.applyEntry(r.M, &r.E, now) {
		m.recompute(now)
	}
	return nil
}

func (m *Mesh) onDigest(buf []byte) error {
	var dg wireDigest
	if err := decodeBody(buf, &dg); err != nil {
		return err
	}
	if err := checkName("monitor", dg.M); err != nil {
		return err
	}
	if dg.M == m.opts.Name {
		return nil
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	ms := m.st.monitor(dg.M)
	if dg.T <= ms.lastTick {
		return nil // a relayed copy of a digest we already have
	}
	ms.lastTick = dg.T
	m.queueDigest("d\x00"+dg.M, buf)
	if n, h := ms.digest(); n == dg.N && h == dg.H {
		stale := now.Sub(ms.confirmed) > 5*time.Second
		ms.confirmed = now
		if stale {
			// Reports may have come back to life (after a partition).
			m.recompute(now)
		}
		return nil
	}
	if now.Sub(ms.lastReq) >= time.Second {
		ms.lastReq = now
		m.enqueue(job{to: dg.M, msg: encode(msgStateReq, wireStateReq{M: dg.M, F: m.opts.Name})})
	}
	return nil
}

func (m *Mesh) onDrain(buf []byte) error {
	var w wireDrain
	if err := decodeBody(buf, &w); err != nil {
		return err
	}
	k, v, err := w.check()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st.mergeDrain(k, v) {
		m.queue("x\x00"+k.Pool+"\x00"+k.Site+"\x00"+k.Addr.String(), buf)
		m.recompute(time.Now())
	}
	return nil
}

func (m *Mesh) onLeave(buf []byte) error {
	var w wireLeave
	if err := decodeBody(buf, &w); err != nil {
		return err
	}
	if err := checkName("leaving node", w.M); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.M != m.opts.Name && m.leaving[w.M].IsZero() {
		m.leaving[w.M] = time.Now()
		m.queue("l\x00"+w.M, buf)
	}
	return nil
}

func (m *Mesh) onStateReq(buf []byte) error {
	var req wireStateReq
	if err := decodeBody(buf, &req); err != nil {
		return err
	}
	if err := checkName("requester", req.F); err != nil {
		return err
	}
	if req.M != m.opts.Name {
		return nil
	}
	m.enqueue(job{to: req.F, ownState: true})
	return nil
}

func (m *Mesh) onState(buf []byte) error {
	var w wireMonitor
	if err := decodeBody(buf, &w); err != nil {
		return err
	}
	if err := w.check(); err != nil {
		return err
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	for i := range w.E {
		changed = m.applyEntry(w.M, &w.E[i], now) || changed
	}
	if w.M != m.opts.Name {
		// The monitor's own full state confirms everything it holds.
		ms := m.st.monitor(w.M)
		if n, h := ms.digest(); n == w.N && h == w.H {
			ms.confirmed = now
			changed = true
		}
	}
	if changed {
		m.recompute(now)
	}
	return nil
}

func (m *Mesh) onFull(buf []byte) error {
	if len(buf) == 0 || buf[0] != msgFull {
		return errUnknownType
	}
	var f wireFull
	if err := decodeBody(buf, &f); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	type drain struct {
		k drainKey
		v drainVal
	}
	drains := make([]drain, 0, len(f.D))
	for i := range f.D {
		k, v, err := f.D[i].check()
		if err != nil {
			return err
		}
		drains = append(drains, drain{k, v})
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, wm := range f.Mons {
		for i := range wm.E {
			m.applyEntry(wm.M, &wm.E[i], now)
		}
	}
	for _, d := range drains {
		m.st.mergeDrain(d.k, d.v)
	}
	m.recompute(now)
	return nil
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

// queue broadcasts msg (copied: relayed buffers belong to memberlist).
func (m *Mesh) queue(name string, msg []byte) {
	m.broadcasts.QueueBroadcast(&bcast{name: name, msg: append([]byte(nil), msg...)})
}

func (m *Mesh) queueDigest(name string, msg []byte) {
	m.digests.QueueBroadcast(&bcast{name: name, msg: append([]byte(nil), msg...)})
}

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
// stream timeout, away from memberlist's packet goroutines.
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

// events tracks membership. memberlist calls it with its node lock held,
// never concurrently.
type events Mesh

var (
	_ memberlist.EventDelegate    = (*events)(nil)
	_ memberlist.ConflictDelegate = (*events)(nil)
)

func (e *events) set(n *memberlist.Node, state string) {
	m := (*Mesh)(e)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch state {
	case "alive":
		delete(m.leaving, n.Name)
	case "dead":
		// memberlist's Node.State is not kept current, so a leave and a
		// failure look the same here; the leave notice tells them apart.
		if t := m.leaving[n.Name]; !t.IsZero() && time.Since(t) < time.Minute {
			state = "left"
		}
	}
	m.members[n.Name] = &memberInfo{
		node:  memberlist.Node{Name: n.Name, Addr: append(net.IP(nil), n.Addr...), Port: n.Port},
		state: state,
	}
	alive := 0
	for _, mi := range m.members {
		if mi.state == "alive" {
			alive++
		}
	}
	m.numAlive.Store(int64(alive))
	m.recompute(time.Now())
}

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.set(n, "alive")
	if n.Name != e.opts.Name {
		e.log.Info("member joined", "member", n.Name, "addr", n.Address())
	}
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	e.set(n, "dead")
	e.log.Info("member gone", "member", n.Name, "addr", n.Address())
}

func (e *events) NotifyUpdate(n *memberlist.Node) { e.set(n, "alive") }

func (e *events) NotifyConflict(existing, other *memberlist.Node) {
	e.log.Warn("node name conflict", "name", existing.Name, "existing", existing.Address(), "other", other.Address())
}

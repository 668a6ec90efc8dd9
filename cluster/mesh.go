// Package cluster joins the gslbd nodes into a hashicorp/memberlist mesh and
// turns every monitor's probe results into one verdict per target that all
// nodes agree on (SPEC §6), together with the mesh-wide drains.
//
// # Replicated state
//
// Each monitor (a node that probes) owns its reports: one entry per target
// key, versioned by the monitor's own sequence number, which starts from the
// monitor's clock and only grows, so a restarted monitor outranks its former
// incarnation. Nodes merge entries by keeping the higher (monitor, sequence)
// per key; a monitor that stops probing a key leaves a tombstone. Merges are
// idempotent and commutative, so it does not matter how often or in which
// order gossip delivers them. A monitor is the only authority on its own
// entries: when a peer hands it an entry in its name that it does not hold,
// it re-asserts its current one with a higher sequence number.
//
// Changes leave at once as memberlist broadcasts and every node relays what
// was new to it, so a change spreads epidemically in a few gossip rounds.
// Push/pull carries the full state (all monitors and all drains) for
// anti-entropy and for nodes that join late or restart. Every monitor
// announces a digest of its entries (count and XOR of entry hashes) about
// every 2 s (3 s on wan) — at least twice in the shortest freshness window
// of 5 s; a node whose copy matches the digest counts all of that
// monitor's reports as confirmed now, and one whose copy differs asks the
// monitor for its full state over a reliable stream.
//
// Drains are last-writer-wins registers ordered by a Lamport clock, ties
// broken by node name; undrain writes a tombstone with a higher clock. They
// travel in push/pull, so a restarted node gets them back from its peers.
//
// # Verdicts
//
// A target is down when more than half of the live monitors that have a fresh
// report on it say down; otherwise, and before any report exists, it is up.
// Live means alive in the memberlist view (suspect still votes; dead and left
// lose their vote at once). Fresh means this node heard the monitor confirm
// the report, on its own clock, within 3 × probe interval + 5 s.
//
// # Trust model
//
// The mesh key (memberlist SecretKey, AES-GCM on every packet and stream) and
// the label are the trust boundary. A peer that holds the key can claim to be
// any monitor and send any report or drain; one without it cannot get a byte
// accepted. Within the boundary, messages are still never trusted to be well
// formed: anything that does not decode, has an unknown version or exceeds
// the size bounds is dropped whole and counted.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"gslbd/zones"
)

// Options configure a Mesh.
type Options struct {
	// Name is this node's name, unique in the mesh.
	Name string
	// Bind is the memberlist address ("host:port", UDP and TCP); port 0
	// picks a free port. Ignored when Transport is set.
	Bind string
	// Advertise is the address peers should use, when it differs from Bind.
	Advertise string
	// Join lists peers ("host:port") to join; tried for up to 5 s in Start
	// and then in the background until one answers.
	Join []string
	// Profile is "lan", "wan" or "local" (default "wan").
	Profile string
	// SecretKey is the 16, 24 or 32 byte AES key of the mesh (see
	// ReadKeyFile). Required when Bind is not a loopback address.
	SecretKey []byte
	// Label isolates meshes that share a network.
	Label string
	// Monitor says this node probes and so votes.
	Monitor bool

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Transport replaces memberlist's network transport (fault-injection
	// tests).
	Transport memberlist.Transport
}

// Member is one node of the mesh as this node sees it.
type Member struct {
	Name  string
	Addr  string
	State string // "alive", "dead" or "left"
}

// Drain is a drain in force. A zero Addr drains the whole site.
type Drain struct {
	Pool, Site string
	Addr       netip.Addr
	Node       string // the node it was set through
	Clock      uint64
}

type memberInfo struct {
	node  memberlist.Node // Name, Addr and Port only, copied
	state string
}

// Mesh is one node's membership in the gossip mesh.
type Mesh struct {
	opts        Options
	log         *slog.Logger
	cfg         *memberlist.Config
	digestEvery time.Duration

	ml         atomic.Pointer[memberlist.Memberlist]
	broadcasts *memberlist.TransmitLimitedQueue // reports, drains, leave notices
	digests    *memberlist.TransmitLimitedQueue
	numAlive   atomic.Int64
	stats      stats
	// keyErrLogged: the join failure for a wrong key was logged (keyerr.go).
	keyErrLogged atomic.Bool

	health  atomic.Pointer[health]
	changes chan struct{}
	jobs    chan job

	mu        sync.Mutex
	st        *store
	seq       uint64 // own sequence clock
	tick      uint64 // own digest clock
	intervals map[string]time.Duration
	members   map[string]*memberInfo
	leaving   map[string]time.Time // leave notices, by node
	started   bool
	closed    bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates opts and prepares a mesh; Start brings it up.
func New(opts Options) (*Mesh, error) {
	if err := checkName("cluster node name", opts.Name); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if n := len(opts.SecretKey); n != 0 && n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("cluster: secret key of %d bytes: want 16, 24 or 32", n)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Mesh{
		opts:      opts,
		log:       opts.Logger.With("component", "cluster"),
		changes:   make(chan struct{}, 1),
		jobs:      make(chan job, 128),
		st:        newStore(),
		seq:       uint64(time.Now().UnixMicro()),
		intervals: map[string]time.Duration{},
		members:   map[string]*memberInfo{},
		leaving:   map[string]time.Time{},
	}
	m.health.Store(&health{})
	cfg, err := m.config()
	if err != nil {
		return nil, err
	}
	m.cfg = cfg
	// Our own member count, not ml.NumMembers: memberlist may ask while it
	// holds its node lock.
	numNodes := func() int { return max(1, int(m.numAlive.Load())) }
	// Every node relays each new message RetransmitMult × ⌈log10(N+1)⌉
	// times to random peers. With a multiplier of 2, 50 nodes send 200
	// copies and one node or another misses the message most of the time
	// (about N·e^(-copies/N)); 4 brings that near 1%. Reports and drains
	// decide answers and get 4; digests only refresh and get 2, in a
	// queue of their own that takes what room is left in a packet.
	m.broadcasts = &memberlist.TransmitLimitedQueue{NumNodes: numNodes, RetransmitMult: max(cfg.RetransmitMult, 4)}
	m.digests = &memberlist.TransmitLimitedQueue{NumNodes: numNodes, RetransmitMult: 2}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(&collector{m: m}); err != nil {
			return nil, fmt.Errorf("cluster: register metrics: %w", err)
		}
	}
	return m, nil
}

// config builds the memberlist configuration for opts.
func (m *Mesh) config() (*memberlist.Config, error) {
	var cfg *memberlist.Config
	switch m.opts.Profile {
	case "local":
		cfg = memberlist.DefaultLocalConfig()
		// Loopback: probe twice a second so a killed node is dead within a
		// few seconds, and reclaim its name quickly when it comes back on
		// another port.
		cfg.ProbeInterval = 500 * time.Millisecond
		cfg.ProbeTimeout = 200 * time.Millisecond
		cfg.GossipInterval = 100 * time.Millisecond
		cfg.PushPullInterval = 10 * time.Second
		cfg.DeadNodeReclaimTime = time.Second
		// LZW costs a 20 KB table per packet, for nothing on loopback.
		cfg.EnableCompression = false
		// memberlist's local preset relays each message only 2 × ⌈log10(N+1)⌉
		// times, too few to reach every node of a larger mesh (see New).
		cfg.RetransmitMult = 4
		m.digestEvery = 2 * time.Second
	case "lan":
		cfg = memberlist.DefaultLANConfig()
		// 200 ms gossip to 3 nodes with relaying reaches 50 nodes in well
		// under a second.
		cfg.DeadNodeReclaimTime = 10 * time.Second
		m.digestEvery = 2 * time.Second
	case "wan", "":
		cfg = memberlist.DefaultWANConfig()
		cfg.DeadNodeReclaimTime = time.Minute
		m.digestEvery = 3 * time.Second
	default:
		return nil, fmt.Errorf("cluster: profile %q: want lan, wan or local", m.opts.Profile)
	}
	cfg.Name = m.opts.Name
	cfg.Label = m.opts.Label
	cfg.Delegate = (*delegate)(m)
	cfg.Events = (*events)(m)
	cfg.Conflict = (*events)(m)
	cfg.Logger = log.New(&logWriter{log: m.log, stats: &m.stats}, "", 0)
	if len(m.opts.SecretKey) > 0 {
		cfg.SecretKey = slices.Clone(m.opts.SecretKey)
	}
	if m.opts.Transport != nil {
		cfg.Transport = m.opts.Transport
	} else {
		ap, err := parseHostPort(m.opts.Bind)
		if err != nil {
			return nil, fmt.Errorf("cluster: bind %q: %w", m.opts.Bind, err)
		}
		if !ap.Addr().IsLoopback() && len(m.opts.SecretKey) == 0 {
			return nil, fmt.Errorf("cluster: bind %q is not a loopback address and no secret key is set: gossip would be unauthenticated (set cluster.secret_file)", m.opts.Bind)
		}
		cfg.BindAddr = ap.Addr().String()
		cfg.BindPort = int(ap.Port())
		cfg.AdvertiseAddr = ""
		cfg.AdvertisePort = cfg.BindPort
	}
	if m.opts.Advertise != "" {
		ap, err := parseHostPort(m.opts.Advertise)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise %q: %w", m.opts.Advertise, err)
		}
		cfg.AdvertiseAddr = ap.Addr().String()
		cfg.AdvertisePort = int(ap.Port())
	}
	return cfg, nil
}

func parseHostPort(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	return netip.ParseAddrPort(net.JoinHostPort(host, port))
}

// Start creates the memberlist (binding its sockets), tries the join peers
// for up to 5 s so that their state is merged before it returns, and starts
// the background work: join retries, digests and verdict expiry. It returns
// nil when no peer answered: the node serves alone meanwhile.
func (m *Mesh) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started || m.closed {
		m.mu.Unlock()
		return errors.New("cluster: start: already started or shut down")
	}
	m.started = true
	m.mu.Unlock()

	ml, err := memberlist.Create(m.cfg)
	if err != nil {
		return fmt.Errorf("cluster: start memberlist on %q: %w", m.opts.Bind, err)
	}
	m.ml.Store(ml)
	self := ml.LocalNode()
	m.log.Info("mesh started", "node", m.opts.Name, "addr", self.Address(), "profile", m.opts.Profile, "monitor", m.opts.Monitor, "encrypted", len(m.opts.SecretKey) > 0)

	bg, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	peers := m.peers(self.Address())
	joined := len(peers) == 0
	if !joined {
		jctx, jcancel := context.WithTimeout(ctx, 5*time.Second)
		joined = m.join(jctx, peers, 250*time.Millisecond)
		jcancel()
	}
	m.wg.Add(2)
	go m.worker(bg)
	go m.loop(bg)
	if !joined {
		m.log.Warn("no join peer answered; serving alone and retrying in the background", "join", peers)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.join(bg, peers, 2*time.Second)
		}()
	}
	return nil
}

// peers is the join list without this node's own address: a node listed in
// its own join list would "join" itself and stop looking for peers.
func (m *Mesh) peers(self string) []string {
	var out []string
	for _, p := range m.opts.Join {
		if p != self && p != m.opts.Bind {
			out = append(out, p)
		}
	}
	return out
}

// join tries peers until one answers or ctx ends, waiting every between
// rounds (with jitter), and reports whether it joined.
func (m *Mesh) join(ctx context.Context, peers []string, every time.Duration) bool {
	for attempt := 1; ; attempt++ {
		ml := m.ml.Load()
		n, err := ml.Join(peers)
		if n > 0 {
			m.log.Info("joined mesh", "peers", peers, "answered", n, "attempt", attempt)
			return true
		}
		m.log.Debug("join failed", "peers", peers, "attempt", attempt, "err", err)
		if err != nil {
			m.joinKeyError(peers, err)
		}
		t := time.NewTimer(every/2 + rand.N(every))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// loop recomputes verdicts (reports expire) and announces this monitor's
// digest, starting at a random offset so nodes do not tick in step.
func (m *Mesh) loop(ctx context.Context) {
	defer m.wg.Done()
	const every = 250 * time.Millisecond
	t := time.NewTimer(rand.N(every))
	defer t.Stop()
	m.mu.Lock() // digestEvery is read under mu: tests change it on a running mesh
	nextDigest := time.Now().Add(rand.N(m.digestEvery))
	m.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(every)
		now := time.Now()
		m.mu.Lock()
		m.recompute(now)
		if m.opts.Monitor && !now.Before(nextDigest) {
			nextDigest = now.Add(m.digestEvery)
			m.tick = max(m.tick+1, uint64(now.UnixMicro()))
			n, h := m.st.monitor(m.opts.Name).digest()
			m.queueDigest("d\x00"+m.opts.Name, encode(msgDigest, wireDigest{M: m.opts.Name, T: m.tick, N: n, H: h}))
		}
		m.mu.Unlock()
	}
}

// Leave announces that this node leaves the mesh and waits up to timeout
// for the announcement to spread; its votes vanish on every peer at once.
func (m *Mesh) Leave(timeout time.Duration) error {
	ml := m.ml.Load()
	if ml == nil {
		return nil
	}
	// The notice rides in the same gossip packets as memberlist's own
	// leave message, which Leave waits for.
	m.queue("l\x00"+m.opts.Name, encode(msgLeave, wireLeave{M: m.opts.Name}))
	if err := ml.Leave(timeout); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}

// Shutdown stops the background work and closes the memberlist sockets
// without telling peers (call Leave first for a graceful exit).
func (m *Mesh) Shutdown() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	if m.cancel != nil {
		m.cancel()
	}
	var err error
	if ml := m.ml.Load(); ml != nil {
		if e := ml.Shutdown(); e != nil {
			err = fmt.Errorf("cluster: shutdown: %w", e)
		}
	}
	m.wg.Wait()
	return err
}

// Addr is the address this node advertises ("ip:port"), once started.
func (m *Mesh) Addr() string {
	if ml := m.ml.Load(); ml != nil {
		return ml.LocalNode().Address()
	}
	return ""
}

// nextSeq advances this monitor's sequence clock.
func (m *Mesh) nextSeq() uint64 {
	m.seq = max(m.seq+1, uint64(time.Now().UnixMicro()))
	return m.seq
}

// SetLocal records that this node's monitor changed its state on key. On a
// node that does not monitor it does nothing: such nodes never vote.
func (m *Mesh) SetLocal(key string, up bool, reason string) {
	if !m.opts.Monitor {
		return
	}
	if key == "" || len(key) > maxKeyLen {
		m.log.Warn("report key out of bounds, not gossiped", "key", key)
		return
	}
	reason = clip(reason, maxReasonLen)
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.st.monitor(m.opts.Name).entries[key]; cur != nil && !cur.Gone && cur.Up == up && cur.Reason == reason {
		return
	}
	m.setOwn(key, entry{Up: up, Reason: reason})
	m.recompute(time.Now())
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// setOwn stores e as this monitor's entry on key with a new sequence
// number and broadcasts it. The caller holds m.mu.
func (m *Mesh) setOwn(key string, e entry) {
	e.Seq = m.nextSeq()
	m.st.mergeEntry(m.opts.Name, key, e, time.Now())
	m.queueReport(m.opts.Name, key, e)
}

func (m *Mesh) queueReport(mon, key string, e entry) {
	m.queue("r\x00"+mon+"\x00"+key, encode(msgReport, wireReport{M: mon, E: toWire(key, e)}))
}

// SetTargets tells the mesh which keys exist and how often they are probed,
// which sets how long reports on them stay fresh. This node's own reports
// on keys that are gone become tombstones.
func (m *Mesh) SetTargets(targets map[string]time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.intervals = maps.Clone(targets)
	if m.opts.Monitor {
		for key, r := range m.st.monitor(m.opts.Name).entries {
			if _, ok := targets[key]; !ok && !r.Gone {
				m.setOwn(key, entry{Gone: true, Reason: "no longer probed"})
			}
		}
	}
	m.recompute(time.Now())
}

// Health returns the verdicts and drains in force, an immutable snapshot.
func (m *Mesh) Health() zones.Health { return m.health.Load() }

// Changes signals, coalesced, that Health changed.
func (m *Mesh) Changes() <-chan struct{} { return m.changes }

// Votes returns the votes counted on key: monitor name → up.
func (m *Mesh) Votes(key string) map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	votes := map[string]bool{}
	now := time.Now()
	live := m.liveMonitors()
	window := m.window(key)
	for mon, ms := range m.st.monitors {
		r := ms.entries[key]
		if r == nil || r.Gone || !live[mon] {
			continue
		}
		if mon != m.opts.Name && now.Sub(ms.heardAt(r)) > window {
			continue
		}
		votes[mon] = r.Up
	}
	return votes
}

// Members lists the nodes this node knows, by name.
func (m *Mesh) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mi := range m.members {
		out = append(out, Member{Name: mi.node.Name, Addr: mi.node.Address(), State: mi.state})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Drain sets (on) or clears a mesh-wide drain of a site, or of one address
// of it when addr is valid.
func (m *Mesh) Drain(pool, site string, addr netip.Addr, on bool) error {
	if pool == "" || len(pool) > maxNameLen || site == "" || len(site) > maxNameLen {
		return fmt.Errorf("cluster: drain %q/%q: pool and site must be 1 to %d bytes", pool, site, maxNameLen)
	}
	k := drainKey{Pool: pool, Site: site, Addr: addr.Unmap()}
	m.mu.Lock()
	defer m.mu.Unlock()
	v := drainVal{On: on, Clock: m.st.drainClock + 1, Node: m.opts.Name}
	m.st.mergeDrain(k, v)
	m.queueDrain(k, v)
	m.log.Info("drain set", "pool", pool, "site", site, "addr", addr, "on", on, "clock", v.Clock)
	m.recompute(time.Now())
	return nil
}

func (m *Mesh) queueDrain(k drainKey, v drainVal) {
	m.queue("x\x00"+k.Pool+"\x00"+k.Site+"\x00"+k.Addr.String(), encode(msgDrain, drainToWire(k, v)))
}

// Drains lists the drains in force.
func (m *Mesh) Drains() []Drain {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Drain
	for k, v := range m.st.drains {
		if v.On {
			out = append(out, Drain{Pool: k.Pool, Site: k.Site, Addr: k.Addr, Node: v.Node, Clock: v.Clock})
		}
	}
	slices.SortFunc(out, func(a, b Drain) int {
		return cmpChain(strings.Compare(a.Pool, b.Pool), strings.Compare(a.Site, b.Site), a.Addr.Compare(b.Addr))
	})
	return out
}

func cmpChain(cs ...int) int {
	for _, c := range cs {
		if c != 0 {
			return c
		}
	}
	return 0
}

// window is how long a report on key stays fresh: 3 × interval + 5 s. Keys
// this node does not probe get the default interval of 5 s.
func (m *Mesh) window(key string) time.Duration {
	iv, ok := m.intervals[key]
	if !ok || iv <= 0 {
		iv = 5 * time.Second
	}
	return 3*iv + 5*time.Second
}

// liveMonitors is the set of nodes whose reports count: alive members, and
// this node when it monitors. The caller holds m.mu.
func (m *Mesh) liveMonitors() map[string]bool {
	live := make(map[string]bool, len(m.members)+1)
	for name, mi := range m.members {
		if mi.state == "alive" && name != m.opts.Name {
			live[name] = true
		}
	}
	if m.opts.Monitor {
		live[m.opts.Name] = true
	}
	return live
}

// recompute derives the verdicts and drains from the store and publishes
// them when they changed. The caller holds m.mu.
func (m *Mesh) recompute(now time.Time) {
	live := m.liveMonitors()
	type tally struct{ n, down int }
	counts := map[string]tally{}
	for mon, ms := range m.st.monitors {
		if !live[mon] {
			continue
		}
		for key, r := range ms.entries {
			if r.Gone {
				continue
			}
			if mon != m.opts.Name && now.Sub(ms.heardAt(r)) > m.window(key) {
				continue
			}
			t := counts[key]
			t.n++
			if !r.Up {
				t.down++
			}
			counts[key] = t
		}
	}
	h := &health{down: map[string]struct{}{}, drained: map[drainKey]struct{}{}}
	for key, t := range counts {
		if 2*t.down > t.n {
			h.down[key] = struct{}{}
		}
	}
	for k, v := range m.st.drains {
		if v.On {
			h.drained[k] = struct{}{}
		}
	}
	old := m.health.Load()
	if maps.Equal(old.down, h.down) && maps.Equal(old.drained, h.drained) {
		return
	}
	m.health.Store(h)
	m.log.Debug("verdicts changed", "down", len(h.down), "drains", len(h.drained))
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// health is an immutable verdict and drain snapshot.
type health struct {
	down    map[string]struct{}
	drained map[drainKey]struct{}
}

var _ zones.Health = (*health)(nil)

func (h *health) Down(key string) bool {
	_, ok := h.down[key]
	return ok
}

func (h *health) Drained(pool, site string, addr netip.Addr) bool {
	if len(h.drained) == 0 {
		return false
	}
	if _, ok := h.drained[drainKey{Pool: pool, Site: site}]; ok {
		return true
	}
	_, ok := h.drained[drainKey{Pool: pool, Site: site, Addr: addr.Unmap()}]
	return ok && addr.IsValid()
}

// logWriter feeds memberlist's log lines ("[LEVEL] memberlist: text") into
// slog at the matching level.
type logWriter struct {
	log   *slog.Logger
	stats *stats     // counts what keyCause recognises as dropped
	keys  keyLimiter // rate-limits those errors (keyerr.go)
}

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			level, line = l, strings.TrimSpace(rest)
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	if level >= slog.LevelWarn {
		if cause := keyCause(line); cause != "" {
			w.logKeyError(cause, line)
			return len(p), nil
		}
	}
	w.log.Log(context.Background(), level, line, "source", "memberlist")
	return len(p), nil
}

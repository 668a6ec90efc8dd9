// Package cluster joins the gslbd nodes into a hashicorp/memberlist mesh and
// turns every monitor's probe results into one verdict per target that all
// nodes agree on (README, Health checks and the mesh), together with the mesh-wide drains.
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
// it re-asserts its current one with a higher sequence number, and its own
// full state replaces a peer's copy of its entries whole.
//
// Changes leave at once as memberlist broadcasts and every node relays what
// was new to it, so a change spreads epidemically in a few gossip rounds.
// Push/pull carries the live state (the entries of live monitors and the
// drains) for anti-entropy and for nodes that join late or restart. Every
// monitor announces a digest of its entries (count and XOR of entry hashes)
// about every 2 s (3 s on wan) — at least twice in the shortest freshness
// window of 5 s; a node whose copy matches the digest counts all of that
// monitor's reports as confirmed now, and one whose copy differs asks the
// monitor for its full state over a reliable stream. A digest from a name
// that is neither a known monitor nor a live member is ignored without
// allocating anything.
//
// Drains are last-writer-wins registers ordered by a hybrid logical clock
// (see drainVal), ties broken by node name; undrain writes a tombstone with
// a higher clock. They travel in push/pull, so a restarted node gets them
// back from its peers.
//
// # Who does the work
//
// memberlist calls NotifyMsg, MergeRemoteState and the membership events
// on its own goroutines; they only copy what they are given into an inbox
// and return. One owner goroutine decodes and merges the inbox in arrival
// order, keeps a tally (reports, down reports) per target that each merge
// adjusts by at most one vote, and publishes a new verdict snapshot at most
// every 50 ms when a verdict or a drain changed. The inbox is bounded: when
// messages arrive faster than the owner merges, the excess is dropped and
// counted (reason "queue"), and anti-entropy repairs what was lost.
//
// # Verdicts
//
// A target is down when more than half of the live monitors that have a
// fresh report on it say down; otherwise, and before any report exists, it
// is up. Live means alive in the memberlist view (suspect still votes; dead
// and left lose their vote at once). Fresh means this node heard the monitor
// confirm the report, on its own clock, within 3 × probe interval + 5 s.
//
// With MonitorsPerTarget = K > 0 each target is probed by K monitors
// chosen by rendezvous hashing of (monitor name, target key) over the live
// monitors, and only the reports of those K count. When a monitor dies or
// leaves, memberlist's failure detection removes it from the live set and
// its targets move to the next monitors in their ranking at once; a monitor
// that loses a target withdraws its report with a tombstone.
//
// # Bounds
//
// Sequence numbers, digest ticks and drain clocks are microseconds of their
// writer's clock. One that is ahead of this node's clock by more than
// maxClockAhead is rejected and counted (reason "clock"): otherwise a
// single forged message with clock 2^64-1 would win every later write for
// ever. Monitors and member records that have been dead or gone longer than
// Options.Retention are forgotten, as are tombstones (of reports and of
// drains) older than it, dated by their own clocks so that every node
// drops them at about the same time and no peer hands them back.
//
// # Partitions
//
// memberlist never contacts a member again once it has declared it dead.
// A reconnect loop therefore tries, every ReconnectInterval with jitter, a
// push/pull with every failed member (until Retention) and every join peer
// that is not a live member; the first exchange after a partition ends
// makes both sides refute their deaths, a second one a second later
// completes the merge.
//
// # Trust model
//
// The mesh key (memberlist SecretKey, AES-GCM on every packet and stream) and
// the label are the trust boundary. A peer that holds the key can claim to be
// any monitor and send any report or drain; one without it cannot get a byte
// accepted. Within the boundary, messages are still never trusted to be well
// formed: anything that does not decode, has an unknown version, exceeds the
// size bounds or carries a clock from the future is dropped and counted.
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
	// and then by the reconnect loop whenever they are not live members.
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
	// MonitorsPerTarget is how many monitors probe each target (K); 0 means
	// every monitor probes every target.
	MonitorsPerTarget int
	// ReconnectInterval is how often failed members and the join list are
	// tried again (with ±25% jitter); default 5 s.
	ReconnectInterval time.Duration
	// Retention is how long monitors, members and tombstones that are dead,
	// gone or withdrawn are kept; default 24 h.
	Retention time.Duration

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Transport replaces memberlist's network transport (fault-injection
	// tests).
	Transport memberlist.Transport
}

// Defaults of Options.
const (
	DefaultReconnectInterval = 5 * time.Second
	DefaultRetention         = 24 * time.Hour
)

// maxClockAhead is how far ahead of this node's clock a peer's sequence
// number, digest tick or drain clock may be. NTP keeps servers within
// milliseconds; ten minutes tolerates a badly set clock without letting a
// forged value outrank the writes of the next years.
const maxClockAhead = 10 * time.Minute

// Member is one node of the mesh as this node sees it.
type Member struct {
	Name  string
	Addr  string
	State string // "alive", "dead" or "left"
	// Monitor says the node probes (from its announced metadata; true for
	// nodes that announce none).
	Monitor bool
	// Config is the digest of the zones and pools the node serves, as it
	// announces it ("" when it announces none).
	Config string
}

// Drain is a drain in force. A zero Addr drains the whole site.
type Drain struct {
	Pool, Site string
	Addr       netip.Addr
	Node       string // the node it was set through
	Clock      uint64
}

// ErrDrainLost is returned by Drain when its write cannot win over the
// drains already known, so it would change nothing.
var ErrDrainLost = errors.New("write does not win")

type memberInfo struct {
	node  memberlist.Node // Name, Addr and Port only, copied
	state string
	since time.Time // when state was entered
	meta  nodeMeta
	// lastReq rate-limits full-state requests to this member.
	lastReq time.Time
}

// Mesh is one node's membership in the gossip mesh.
type Mesh struct {
	opts        Options
	log         *slog.Logger
	cfg         *memberlist.Config
	digestEvery time.Duration
	// now is the wall clock used for sequence numbers, drain clocks and
	// their bounds (tests replace it).
	now func() time.Time

	ml atomic.Pointer[memberlist.Memberlist]
	// addr is the advertised address, kept apart because memberlist
	// rewrites its local Node in place on UpdateNode (meta changes).
	addr       atomic.Pointer[string]
	broadcasts *memberlist.TransmitLimitedQueue // reports, drains, leave notices
	digests    *memberlist.TransmitLimitedQueue
	numAlive   atomic.Int64
	meta       atomic.Pointer[[]byte]
	stats      stats
	// reconnectPaused stops the reconnect loop (tests show that without
	// it a healed partition stays split).
	reconnectPaused atomic.Bool
	in              inbox
	// keyErrLogged: the join failure for a wrong key was logged (keyerr.go).
	keyErrLogged atomic.Bool

	health  atomic.Pointer[health]
	assign  atomic.Pointer[Assignment]
	changes chan struct{}
	jobs    chan job

	mu        sync.Mutex
	st        *store
	seq       uint64 // own sequence clock
	tick      uint64 // own digest clock
	intervals map[string]time.Duration
	members   map[string]*memberInfo
	leaving   map[string]time.Time // leave notices, by node
	configDig string               // this node's config digest
	started   bool
	closed    bool

	// Verdict bookkeeping, owned by whoever holds mu (see owner.go).
	live        map[string]bool     // monitors whose reports count
	tallies     map[string]*tally   // by target key
	down        map[string]struct{} // verdicts down
	disputed    map[string]struct{} // targets whose counted monitors disagree
	assigned    map[string][]string // K > 0: target key → its monitors
	dirty       bool                // down or drains changed since the last publish
	assignDirty bool                // live monitors or assignments changed since
	clockWarned time.Time           // last warning about a clock from the future
	lastPub     time.Time           // last publish
	pubTimer    *time.Timer         // pending delayed publish
	reapAt      time.Time           // next reap
	peak        [3]int              // largest members, monitors, drains since the last compaction

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
	if opts.MonitorsPerTarget < 0 {
		return nil, fmt.Errorf("cluster: monitors per target %d: want 0 (all) or more", opts.MonitorsPerTarget)
	}
	if opts.ReconnectInterval < 0 || opts.Retention < 0 {
		return nil, fmt.Errorf("cluster: reconnect interval %v, retention %v: want positive durations", opts.ReconnectInterval, opts.Retention)
	}
	if opts.ReconnectInterval == 0 {
		opts.ReconnectInterval = DefaultReconnectInterval
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Mesh{
		opts:      opts,
		log:       opts.Logger.With("component", "cluster"),
		now:       time.Now,
		changes:   make(chan struct{}, 1),
		jobs:      make(chan job, 128),
		st:        newStore(),
		seq:       uint64(time.Now().UnixMicro()),
		intervals: map[string]time.Duration{},
		members:   map[string]*memberInfo{},
		leaving:   map[string]time.Time{},
		live:      map[string]bool{},
		tallies:   map[string]*tally{},
		down:      map[string]struct{}{},
		disputed:  map[string]struct{}{},
		assigned:  map[string][]string{},
	}
	m.in.wake = make(chan struct{}, 1)
	if opts.Monitor {
		m.live[opts.Name] = true
	}
	m.health.Store(&health{})
	m.assign.Store(&Assignment{self: opts.Name, k: opts.MonitorsPerTarget, all: m.liveList()})
	m.setMeta()
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
// the background work: the owner goroutine, the reconnect loop and the
// reliable-send worker. It returns nil when no peer answered: the node
// serves alone meanwhile, and the reconnect loop keeps trying.
func (m *Mesh) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started || m.closed {
		m.mu.Unlock()
		return errors.New("cluster: start: already started or shut down")
	}
	m.started = true
	m.mu.Unlock()

	bg, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	// The owner runs before memberlist exists: Create already reports
	// this node's own join.
	m.wg.Add(1)
	go m.owner(bg)

	ml, err := memberlist.Create(m.cfg)
	if err != nil {
		cancel()
		m.wg.Wait()
		return fmt.Errorf("cluster: start memberlist on %q: %w", m.opts.Bind, err)
	}
	m.ml.Store(ml)
	self := ml.LocalNode()
	selfAddr := self.Address()
	m.addr.Store(&selfAddr)
	m.log.Info("mesh started", "node", m.opts.Name, "addr", self.Address(), "profile", m.opts.Profile, "monitor", m.opts.Monitor, "encrypted", len(m.opts.SecretKey) > 0, "monitors_per_target", m.opts.MonitorsPerTarget)

	peers := m.peers(self.Address())
	if len(peers) > 0 {
		jctx, jcancel := context.WithTimeout(ctx, 5*time.Second)
		if !m.join(jctx, peers, 250*time.Millisecond) {
			m.log.Warn("no join peer answered; serving alone and retrying in the background", "join", peers)
		}
		jcancel()
		// Join delivered the peers' state to the inbox; merge it before
		// the caller opens DNS.
		m.sync(ctx)
	}
	m.wg.Add(2)
	go m.worker(bg)
	go m.reconnectLoop(bg, peers)
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
	if m.pubTimer != nil {
		m.pubTimer.Stop()
	}
	m.mu.Unlock()
	var err error
	if ml := m.ml.Load(); ml != nil {
		if e := ml.Shutdown(); e != nil {
			err = fmt.Errorf("cluster: shutdown: %w", e)
		}
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	return err
}

// Addr is the address this node advertises ("ip:port"), once started.
func (m *Mesh) Addr() string {
	if a := m.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// nowMicro is this node's clock in microseconds, the unit of sequence
// numbers and drain clocks.
func (m *Mesh) nowMicro() uint64 { return uint64(m.now().UnixMicro()) }

// clockBound is the highest clock a peer may send now.
func (m *Mesh) clockBound() uint64 {
	return uint64(m.now().Add(maxClockAhead).UnixMicro())
}

// nextSeq advances this monitor's sequence clock.
func (m *Mesh) nextSeq() uint64 {
	m.seq = max(m.seq+1, m.nowMicro())
	return m.seq
}

// SetLocal records that this node's monitor changed its state on key. It
// is the one way a local observation enters the mesh: a probe result, or
// anything else that speaks for this monitor. On a node that does not
// monitor, and (with MonitorsPerTarget > 0) for a key not assigned to this
// node, it does nothing: such reports would not count.
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
	if m.opts.MonitorsPerTarget > 0 && !slices.Contains(m.assigned[key], m.opts.Name) {
		m.log.Debug("report on a target not assigned to this monitor, not gossiped", "key", key)
		return
	}
	if cur := m.st.monitor(m.opts.Name).entries[key]; cur != nil && !cur.Gone && cur.Up == up && cur.Reason == reason {
		return
	}
	m.setOwn(key, entry{Up: up, Reason: reason}, time.Now())
	m.kick()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// setOwn stores e as this monitor's entry on key with a new sequence
// number and broadcasts it. The caller holds m.mu.
func (m *Mesh) setOwn(key string, e entry, now time.Time) {
	e.Seq = m.nextSeq()
	m.putEntry(m.opts.Name, key, e, now)
	m.queueReport(m.opts.Name, key, e)
}

func (m *Mesh) queueReport(mon, key string, e entry) {
	m.queue("r\x00"+mon+"\x00"+key, encode(msgReport, wireReport{M: mon, E: toWire(key, e)}))
}

// SetTargets tells the mesh which keys exist and how often they are probed,
// which sets how long reports on them stay fresh (and, with
// MonitorsPerTarget > 0, which keys are assigned). This node's own reports
// on keys that are gone become tombstones.
func (m *Mesh) SetTargets(targets map[string]time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.intervals = maps.Clone(targets)
	now := time.Now()
	if m.opts.Monitor {
		for key, r := range m.st.monitor(m.opts.Name).entries {
			if _, ok := targets[key]; !ok && !r.Gone {
				m.setOwn(key, entry{Gone: true, Reason: "no longer probed"}, now)
			}
		}
	}
	m.reassign(now)
	m.kick()
}

// SetConfigDigest announces the digest of the zones and pools this node
// serves, so that every node can show which peers serve something else.
func (m *Mesh) SetConfigDigest(d string) {
	m.mu.Lock()
	if m.configDig == d {
		m.mu.Unlock()
		return
	}
	m.configDig = d
	m.setMeta()
	started := m.started && !m.closed
	if started {
		m.wg.Add(1)
	}
	m.mu.Unlock()
	if !started {
		return
	}
	go func() {
		defer m.wg.Done()
		if ml := m.ml.Load(); ml != nil {
			if err := ml.UpdateNode(5 * time.Second); err != nil {
				m.log.Debug("announce config digest", "err", err)
			}
		}
	}()
}

// ConfigDigest is the digest this node announces.
func (m *Mesh) ConfigDigest() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.configDig
}

// Health returns the verdicts and drains in force, an immutable snapshot.
func (m *Mesh) Health() zones.Health { return m.health.Load() }

// Assignment returns which monitors probe which targets, an immutable
// snapshot that changes with the live monitors and the targets.
func (m *Mesh) Assignment() *Assignment { return m.assign.Load() }

// Changes signals, coalesced, that Health or Assignment changed.
func (m *Mesh) Changes() <-chan struct{} { return m.changes }

// Votes returns the votes counted on key: monitor name → up.
func (m *Mesh) Votes(key string) map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	votes := map[string]bool{}
	now := time.Now()
	for mon, ms := range m.st.monitors {
		if r := ms.entries[key]; r != nil && m.counts(mon, ms, key, r, now) {
			votes[mon] = r.Up
		}
	}
	return votes
}

// Members lists the nodes this node knows, by name.
func (m *Mesh) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mi := range m.members {
		out = append(out, Member{Name: mi.node.Name, Addr: mi.node.Address(), State: mi.state, Monitor: mi.meta.monitor(), Config: mi.meta.Cfg})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Drain sets (on) or clears a mesh-wide drain of a site, or of one address
// of it when addr is valid. It returns an error wrapping ErrDrainLost when
// the write cannot win: when the highest clock known is ahead of this
// node's clock by more than peers accept, so the write would be rejected
// or lose everywhere.
func (m *Mesh) Drain(pool, site string, addr netip.Addr, on bool) error {
	if pool == "" || len(pool) > maxNameLen || site == "" || len(site) > maxNameLen {
		return fmt.Errorf("cluster: drain %q/%q: pool and site must be 1 to %d bytes", pool, site, maxNameLen)
	}
	k := drainKey{Pool: pool, Site: site, Addr: addr.Unmap()}
	m.mu.Lock()
	defer m.mu.Unlock()
	v := drainVal{On: on, Clock: max(m.st.drainClock+1, m.nowMicro()), Node: m.opts.Name}
	if v.Clock > m.clockBound() {
		return fmt.Errorf("cluster: drain %s/%s: clock %d is ahead of this node's clock by more than %v (is this node's clock wrong?): %w", pool, site, v.Clock, maxClockAhead, ErrDrainLost)
	}
	if !m.st.mergeDrain(k, v) {
		return fmt.Errorf("cluster: drain %s/%s: %w", pool, site, ErrDrainLost)
	}
	m.queueDrain(k, v)
	m.log.Info("drain set", "pool", pool, "site", site, "addr", addr, "on", on, "clock", v.Clock)
	m.dirty = true
	// An operator's drain is rare and expected to show at once: publish
	// now rather than at the owner's next turn.
	m.lastPub = time.Time{}
	m.publish(time.Now())
	return nil
}

func (m *Mesh) queueDrain(k drainKey, v drainVal) {
	m.queue(drainName(k), encode(msgDrain, drainToWire(k, v)))
}

// drainName names a drain's broadcast, so that a newer change of one drain
// replaces an older one still queued.
func drainName(k drainKey) string {
	return "x\x00" + k.Pool + "\x00" + k.Site + "\x00" + k.Addr.String()
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
	return 3*iv + minWindow
}

// minWindow is the shortest freshness window (interval 0).
const minWindow = 5 * time.Second

// health is an immutable verdict and drain snapshot.
type health struct {
	down     map[string]struct{}
	disputed map[string]struct{}
	drained  map[drainKey]struct{}
}

var (
	_ zones.Health   = (*health)(nil)
	_ zones.Disputer = (*health)(nil)
)

// Disputed says whether the monitors counted on key disagree.
func (h *health) Disputed(key string) bool {
	_, ok := h.disputed[key]
	return ok
}

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

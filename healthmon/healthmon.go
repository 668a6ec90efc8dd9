// Package healthmon probes every distinct (address, check) pair of the
// loaded pools — and keeps a rise/fall state for each.
//
// A Monitor has one schedule per target key, kept in a min-heap that a
// single scheduler goroutine walks, and a bounded pool of probe workers
// that grows only as far as the probes in flight need. Thousands of
// targets therefore cost a heap entry each, not a goroutine each, and a
// probe never outlives its deadline.
//
// State semantics: a new target is assumed up (before any report
// exists an address is up), so a restart or a reload never empties an
// answer while the first probes are out. The first decision is made by the
// first success (confirming "up") or by `fall` consecutive failures
// (turning it "down"); after that a target needs `rise` consecutive
// successes to come back and `fall` consecutive failures to leave again.
// Every decision — the first one and every change after it — goes to
// Options.Report, so the mesh hears this node's vote only once the node has
// evidence for it. Targets of type "none" are decided up once and never
// probed.
package healthmon

import (
	"cmp"
	"container/heap"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"gslbd/zones"
)

// DefaultWorkers bounds the probes in flight at once. A probe spends its
// time waiting on the network, so far more than the number of cores can run
// together; the bound keeps a backlog of hung backends from turning into an
// unbounded number of sockets and goroutines.
const DefaultWorkers = 256

// Options configures a Monitor. Zero values are usable except Node and
// Version, which only show up in the User-Agent.
type Options struct {
	Node    string // this node's name, for the User-Agent
	Version string // gslbd's version, for the User-Agent

	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are kept but not registered

	// Report receives every decision: the first one for a target and every
	// rise/fall change after it. It is called from a probe worker (never
	// with a Monitor lock held), one call at a time per key and in order
	// for that key; it should return quickly, because the key's next probe
	// waits for it.
	Report func(Report)

	// Workers bounds concurrent probes; 0 means DefaultWorkers.
	Workers int

	// RootCAs verifies https backends; nil means the system roots.
	RootCAs *x509.CertPool

	// Prober runs the probes; nil means the network prober (NewProber).
	// Tests of the state machine plug in a fake one.
	Prober Prober
}

// Prober runs one probe of a target. It must return by ctx's deadline and
// leave nothing running behind it. A nil error is a success.
type Prober interface {
	Probe(ctx context.Context, t zones.Target) error
}

// Report is one decision about a target.
type Report struct {
	Key    string
	Addr   netip.Addr
	Up     bool
	Reason string // why it is down (the last failure); "" when up
	At     time.Time
	// Latency is how long the deciding probe took.
	Latency time.Duration
}

// State is one target as the status page shows it.
type State struct {
	Key   string
	Addr  netip.Addr
	Check zones.CheckType
	// Up is the current state; before the first decision it is the assumed
	// "up" and Decided is false.
	Up      bool
	Decided bool
	// Reason is the last failure's reason, kept after recovery so an
	// operator can see why the target went down last time.
	Reason    string
	LastProbe time.Time // zero before the first probe
	Latency   time.Duration
	// Successes and Failures are the current consecutive counts; at most
	// one of them is non-zero.
	Successes int
	Failures  int
}

// Monitor probes targets and reports their rise/fall decisions.
type Monitor struct {
	node    string
	log     *slog.Logger
	report  func(Report)
	prober  Prober
	workers int
	met     *metrics

	// observe, when set (by tests in this package), sees the lateness of
	// every probe as it starts.
	observe func(late time.Duration)

	// reportMu orders every call of report: a probe's decision and an
	// override set or cleared for the same key take it, then read the
	// key's effective state under mu, so the last report sent is always
	// the state in force.
	reportMu sync.Mutex

	mu        sync.Mutex
	targets   map[string]*entry
	overrides map[string]Override // by target key, as last set; see SetOverrides
	applied   map[string]Override // the overrides reported, for keys that are targets
	due       dueHeap
	running   bool

	wake chan struct{} // capacity 1: "the heap's head may have changed"
	jobs chan job
}

// entry is one target's schedule and state, owned by mu.
type entry struct {
	target zones.Target
	state  machine
	next   time.Time // when the next probe is due
	index  int       // position in the heap, -1 while a probe is in flight or never
	// removed is set when Update drops the key while a probe is in flight,
	// so the worker discards the result instead of re-scheduling it.
	removed bool
}

type job struct {
	e   *entry
	t   zones.Target
	due time.Time
}

// New returns a Monitor with no targets; call Update and Run.
func New(opts Options) *Monitor {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	report := opts.Report
	if report == nil {
		report = func(Report) {}
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	prober := opts.Prober
	if prober == nil {
		prober = NewProber(opts.Node, opts.Version, opts.RootCAs)
	}
	return &Monitor{
		node:    opts.Node,
		log:     log.With("component", "healthmon"),
		report:  report,
		prober:  prober,
		workers: workers,
		met:     newMetrics(opts.Registerer),
		targets: make(map[string]*entry),
		wake:    make(chan struct{}, 1),
		jobs:    make(chan job),
	}
}

// Update makes targets the set being probed. Keys that stay keep their
// state and schedule, so a reload neither flaps nor re-learns anything; new
// keys start at a random offset within their interval, spreading a
// thousand new targets over the interval instead of probing them at once;
// removed keys stop (a probe in flight is finished and discarded). It may
// be called before or while Run runs.
func (m *Monitor) Update(targets []zones.Target) {
	now := time.Now()
	var added, kept, removed int
	m.mu.Lock()
	seen := make(map[string]bool, len(targets))
	for _, t := range targets {
		if seen[t.Key] {
			continue // one schedule per key, however many pools share it
		}
		seen[t.Key] = true
		if e, ok := m.targets[t.Key]; ok {
			// The key carries the canonical check, so the check is the
			// same; take the new value anyway in case a field the key
			// leaves out (none today) changed.
			e.target = t
			kept++
			continue
		}
		e := &entry{target: t, state: newMachine(), index: -1}
		if t.Check.Type == zones.CheckNone {
			// Never probed: one pass through a worker makes the "up"
			// decision and delivers it outside every lock.
			e.next = now
		} else {
			e.next = now.Add(rand.N(interval(t.Check)))
		}
		heap.Push(&m.due, e)
		m.targets[t.Key] = e
		added++
	}
	for key, e := range m.targets {
		if seen[key] {
			continue
		}
		e.removed = true
		if e.index >= 0 {
			heap.Remove(&m.due, e.index)
		}
		delete(m.targets, key)
		removed++
	}
	m.met.setTargets(m.targets)
	pending := len(m.overrides) > 0 || len(m.applied) > 0
	m.mu.Unlock()
	m.poke()
	if pending {
		m.applyOverrides()
	}
	m.log.Info("health targets updated", "targets", added+kept, "added", added, "kept", kept, "removed", removed)
}

// Run probes until ctx ends, then waits for every probe and worker to
// stop. It returns nil after a clean stop; calling it twice at once is an
// error.
func (m *Monitor) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return errors.New("healthmon run: already running")
	}
	m.running = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
	}()

	var wg sync.WaitGroup
	started := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		j, wait, ok := m.nextDue(time.Now())
		if ok {
			// Hand the probe to a waiting worker; start one more only when
			// none is waiting and the bound allows. The pool so grows with
			// the probes in flight (and the moments workers spend between
			// probes) and never shrinks: idle workers cost a few KiB each.
			select {
			case m.jobs <- j:
				continue
			default:
			}
			if started < m.workers {
				started++
				m.met.workers.Set(float64(started))
				wg.Go(func() { m.worker(ctx) })
			}
			select {
			case m.jobs <- j:
				continue
			case <-ctx.Done():
				m.requeue(j.e, j.due)
			}
		} else {
			timer.Reset(wait)
			select {
			case <-timer.C:
				continue
			case <-m.wake:
				continue
			case <-ctx.Done():
			}
		}
		break
	}
	wg.Wait()
	return nil
}

// nextDue pops the head of the schedule when it is due; otherwise it says
// how long to wait for it (an hour when there is nothing to wait for —
// Update pokes the scheduler awake).
func (m *Monitor) nextDue(now time.Time) (job, time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.due) == 0 {
		return job{}, time.Hour, false
	}
	e := m.due[0]
	if wait := e.next.Sub(now); wait > 0 {
		return job{}, wait, false
	}
	heap.Pop(&m.due)
	return job{e: e, t: e.target, due: e.next}, 0, true
}

func (m *Monitor) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Monitor) worker(ctx context.Context) {
	for {
		select {
		case j := <-m.jobs:
			m.probe(ctx, j)
		case <-ctx.Done():
			return
		}
	}
}

// probe runs one job and feeds its result to the target's state machine.
func (m *Monitor) probe(ctx context.Context, j job) {
	start := time.Now()
	late := max(start.Sub(j.due), 0)
	c := j.t.Check
	var res result
	if c.Type == zones.CheckNone {
		res = result{ok: true}
	} else {
		m.met.lateness.Observe(late.Seconds())
		if m.observe != nil {
			m.observe(late)
		}
		res = m.run(ctx, j.t)
		if ctx.Err() != nil {
			// Shutting down: the failure is ours, not the backend's. Keep
			// the schedule so a later Run carries on where this one left.
			m.requeue(j.e, j.due)
			return
		}
		m.met.observe(c.Type, res)
	}

	m.mu.Lock()
	if j.e.removed {
		m.mu.Unlock()
		return
	}
	prev := j.e.state
	decided := j.e.state.record(res, start, c.Rise, c.Fall)
	st := j.e.state
	if decided {
		m.met.decided(prev, st) // under the lock, so Update's recount cannot interleave
	}
	m.mu.Unlock()

	if decided {
		m.logDecision(j.t, prev, st, res)
		// While an override is in force it is this monitor's report; the
		// probe's decision waits for the override to end.
		m.reportMu.Lock()
		m.mu.Lock()
		_, overridden := m.applied[j.t.Key]
		removed := j.e.removed
		st = j.e.state
		m.mu.Unlock()
		if !overridden && !removed {
			m.report(Report{Key: j.t.Key, Addr: j.t.Addr, Up: st.up, Reason: st.downReason(), At: start, Latency: res.latency})
		}
		m.reportMu.Unlock()
	}
	if c.Type == zones.CheckNone {
		return
	}

	// Re-schedule only now, after Report returned, so reports for one key
	// are never delivered out of order or concurrently.
	now := time.Now()
	next := j.due.Add(jitter(interval(c)))
	if next.Before(now) {
		// Overdue already (a slow probe, an overloaded machine): probe as
		// soon as possible rather than firing a burst of missed slots.
		next = now
	}
	m.requeue(j.e, next)
}

// requeue puts e back on the schedule at next unless Update removed it
// meanwhile, and wakes the scheduler when e became the head.
func (m *Monitor) requeue(e *entry, next time.Time) {
	m.mu.Lock()
	head := false
	if !e.removed && e.index < 0 {
		e.next = next
		heap.Push(&m.due, e)
		head = e.index == 0
	}
	m.mu.Unlock()
	if head {
		m.poke()
	}
}

// run executes the probe with its deadline and turns its error into a
// short reason.
func (m *Monitor) run(ctx context.Context, t zones.Target) result {
	timeout := t.Check.Timeout
	if timeout <= 0 {
		timeout = zones.DefaultCheckTimeout
	}
	// The clock starts before the deadline is set, so a probe that timed
	// out never reports less than its timeout.
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	err := m.prober.Probe(pctx, t)
	lat := time.Since(start)
	expired := pctx.Err() == context.DeadlineExceeded
	cancel()
	if err == nil {
		return result{ok: true, latency: lat}
	}
	class, reason := classify(err, expired, timeout)
	return result{latency: lat, class: class, reason: reason}
}

func (m *Monitor) logDecision(t zones.Target, prev, st machine, res result) {
	args := []any{"key", t.Key, "addr", t.Addr, "check", t.Check.Type.String(), "latency", res.latency}
	switch {
	case !st.up:
		m.log.Info("health target down", append(args, "reason", st.reason, "failures", st.fails)...)
	case prev.decided:
		m.log.Info("health target up", append(args, "successes", st.succ, "last_reason", st.reason)...)
	default:
		// The first "up" only confirms what was assumed; at Info it would
		// be thousands of lines on every start.
		m.log.Debug("health target up", args...)
	}
}

// Override is a state set from outside the probes — an external feed, a
// watched file or an admin call — for one target key. While it
// is in force it is this monitor's report on the key, gossiped and
// counted in the quorum like a probe's decision; the probes keep running,
// and when the override ends the probe's current state is reported again.
type Override struct {
	Up     bool
	Reason string // shown as the report's reason while down
}

// SetOverrides makes overrides (by target key) the ones in force,
// replacing all earlier ones, and reports every key whose effective state
// the change touched: a new or changed override, or the probe's state
// again for a key whose override ended (up when the probes have not
// decided yet, as before any report). Keys that are not targets are kept
// and apply if the key becomes one.
func (m *Monitor) SetOverrides(overrides map[string]Override) {
	m.mu.Lock()
	m.overrides = maps.Clone(overrides)
	m.mu.Unlock()
	m.applyOverrides()
}

// applyOverrides reports what changed between the overrides in force and
// those reported: after SetOverrides, and after Update (a key that
// became a target may have an override waiting).
func (m *Monitor) applyOverrides() {
	now := time.Now()
	m.reportMu.Lock()
	defer m.reportMu.Unlock()
	m.mu.Lock()
	if m.applied == nil {
		m.applied = map[string]Override{}
	}
	var reps []Report
	for key, o := range m.overrides {
		e, ok := m.targets[key]
		if !ok {
			continue
		}
		if old, had := m.applied[key]; had && old == o {
			continue
		}
		m.applied[key] = o
		r := Report{Key: key, Addr: e.target.Addr, Up: o.Up, At: now}
		if !o.Up {
			r.Reason = o.Reason
		}
		reps = append(reps, r)
	}
	for key := range m.applied {
		e, ok := m.targets[key]
		if _, still := m.overrides[key]; still && ok {
			continue
		}
		delete(m.applied, key)
		if ok {
			reps = append(reps, Report{Key: key, Addr: e.target.Addr, Up: e.state.up, Reason: e.state.downReason(), At: now, Latency: e.state.latency})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(reps, func(a, b Report) int { return cmp.Compare(a.Key, b.Key) })
	for _, r := range reps {
		m.log.Info("health override", "key", r.Key, "up", r.Up, "reason", r.Reason)
		m.report(r)
	}
}

// Overridden reports whether key's report is an override now.
func (m *Monitor) Overridden(key string) (Override, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.applied[key]
	return o, ok
}

// States returns every target's state, sorted by key.
func (m *Monitor) States() []State {
	m.mu.Lock()
	out := make([]State, 0, len(m.targets))
	for _, e := range m.targets {
		s := e.state
		out = append(out, State{
			Key: e.target.Key, Addr: e.target.Addr, Check: e.target.Check.Type,
			Up: s.up, Decided: s.decided, Reason: s.reason,
			LastProbe: s.last, Latency: s.latency,
			Successes: s.succ, Failures: s.fails,
		})
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b State) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

func interval(c zones.Check) time.Duration {
	if c.Interval <= 0 {
		return zones.DefaultCheckInterval
	}
	return c.Interval
}

// jitter spreads d by ±10% so targets that started together drift apart
// instead of probing in lockstep forever.
func jitter(d time.Duration) time.Duration {
	spread := d / 10
	if spread <= 0 {
		return d
	}
	return d - spread + rand.N(2*spread+1)
}

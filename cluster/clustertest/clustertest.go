// Package clustertest is an in-memory stand-in for the mesh in tests of
// what reads it (the admin API, the CLI against an in-process admin
// server): members, each monitor's votes, the drains, and the verdict by
// majority the real mesh computes. It implements zones.Health, and the
// mesh interface of its consumer when instantiated with that consumer's
// member and drain types (admin.Member, admin.Drain): the type parameters
// keep this package from importing the consumer, so the consumer's own
// tests can use it without an import cycle. Tests of the real mesh run
// real memberlist meshes instead (package cluster).
package clustertest

import (
	"net/netip"
	"sync"
)

// Mesh holds members of type M and drains of type D. It is safe for
// concurrent use.
type Mesh[M any, D comparable] struct {
	drainKey func(pool, site string, addr netip.Addr) D

	mu      sync.Mutex
	members []M
	votes   map[string]map[string]bool // target key → monitor → up
	drains  map[D]bool
	failErr error
}

// New returns a mesh of the given members; drainKey makes the consumer's
// drain value for a pool, a site and an address (the zero address for the
// whole site).
func New[M any, D comparable](drainKey func(pool, site string, addr netip.Addr) D, members ...M) *Mesh[M, D] {
	return &Mesh[M, D]{drainKey: drainKey, members: members, votes: map[string]map[string]bool{}, drains: map[D]bool{}}
}

// Vote records monitor's report on the target key.
func (m *Mesh[M, D]) Vote(key, monitor string, up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.votes[key] == nil {
		m.votes[key] = map[string]bool{}
	}
	m.votes[key][monitor] = up
}

// FailDrains makes every later Drain call fail with err (nil: succeed).
func (m *Mesh[M, D]) FailDrains(err error) {
	m.mu.Lock()
	m.failErr = err
	m.mu.Unlock()
}

// Members lists the members.
func (m *Mesh[M, D]) Members() []M {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]M(nil), m.members...)
}

// Votes is every monitor's report on key.
func (m *Mesh[M, D]) Votes(key string) map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]bool{}
	for k, v := range m.votes[key] {
		out[k] = v
	}
	return out
}

// Drain sets or clears a drain.
func (m *Mesh[M, D]) Drain(pool, site string, addr netip.Addr, on bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failErr != nil {
		return m.failErr
	}
	d := m.drainKey(pool, site, addr)
	if on {
		m.drains[d] = true
	} else {
		delete(m.drains, d)
	}
	return nil
}

// Drains lists the drains in force, in no particular order.
func (m *Mesh[M, D]) Drains() []D {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []D
	for d := range m.drains {
		out = append(out, d)
	}
	return out
}

// Down is the verdict: down when more than half of the votes on key say
// down (no votes: up).
func (m *Mesh[M, D]) Down(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	down := 0
	for _, up := range m.votes[key] {
		if !up {
			down++
		}
	}
	return down*2 > len(m.votes[key])
}

// Drained reports whether the site as a whole or the address is drained.
func (m *Mesh[M, D]) Drained(pool, site string, addr netip.Addr) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drains[m.drainKey(pool, site, netip.Addr{})] || m.drains[m.drainKey(pool, site, addr)]
}

package main

import (
	"errors"
	"fmt"
	"net/netip"

	"gslbd/admin"
	"gslbd/cluster"
	"gslbd/healthmon"
	"gslbd/zones/config"
)

// The admin package defines what it needs from the mesh and the monitor;
// these adapters translate, so neither side imports the other.

type meshAdapter struct{ m *cluster.Mesh }

var _ admin.Mesh = meshAdapter{}

func (a meshAdapter) Members() []admin.Member {
	ms := a.m.Members()
	out := make([]admin.Member, len(ms))
	for i, m := range ms {
		out[i] = admin.Member{Name: m.Name, Address: m.Addr, State: m.State, Config: m.Config}
	}
	return out
}

func (a meshAdapter) Votes(key string) map[string]bool { return a.m.Votes(key) }

var _ admin.Assigner = meshAdapter{}

func (a meshAdapter) Monitors(key string) []string { return a.m.Assignment().Monitors(key) }

func (a meshAdapter) MonitorsPerTarget() int { return a.m.Assignment().K() }

func (a meshAdapter) Drain(pool, site string, addr netip.Addr, on bool) error {
	if err := a.m.Drain(pool, site, addr, on); err != nil {
		if errors.Is(err, cluster.ErrDrainLost) {
			return fmt.Errorf("%w: %w", admin.ErrConflict, err)
		}
		return err
	}
	return nil
}

func (a meshAdapter) Drains() []admin.Drain {
	ds := a.m.Drains()
	out := make([]admin.Drain, len(ds))
	for i, d := range ds {
		out[i] = admin.Drain{Pool: d.Pool, Site: d.Site, Addr: d.Addr}
	}
	return out
}

type monitorAdapter struct{ m *healthmon.Monitor }

var _ admin.Monitor = monitorAdapter{}

func (a monitorAdapter) Probes() map[string]admin.ProbeState {
	states := a.m.States()
	out := make(map[string]admin.ProbeState, len(states))
	for _, s := range states {
		reason := s.Reason
		if s.Up && s.Decided {
			reason = "ok"
		}
		up := s.Up
		// While the external feed overrides a target, this node's vote
		// is the override's: show it and its reason, not the probe's.
		if o, ok := a.m.Overridden(s.Key); ok {
			up, reason = o.Up, o.Reason
			if o.Up {
				reason = "external: up"
			}
		}
		out[s.Key] = admin.ProbeState{Up: up, Reason: reason, Latency: s.Latency, At: s.LastProbe}
	}
	return out
}

// querySample is the share of queries the DNS server logs.
func querySample(l config.LogSection) float64 {
	if !l.Queries {
		return 0
	}
	return l.SampleRate
}

type externalAdapter struct{ f *healthmon.Feed }

var _ admin.External = externalAdapter{}

func (a externalAdapter) Set(e admin.ExternalEntry) error {
	err := a.f.Set(toEntry(e))
	if errors.Is(err, healthmon.ErrUnknownTarget) {
		return fmt.Errorf("%w: no pool has it", admin.ErrUnknownTarget)
	}
	return err
}

func (a externalAdapter) Clear(e admin.ExternalEntry) bool { return a.f.Clear(toEntry(e)) }

func (a externalAdapter) Entries() []admin.ExternalEntry {
	es := a.f.Entries()
	out := make([]admin.ExternalEntry, len(es))
	for i, e := range es {
		out[i] = admin.ExternalEntry{Address: e.Addr, Pool: e.Pool, Site: e.Site, Up: e.Up, Reason: e.Reason, Expires: e.Expires, Source: e.Source}
	}
	return out
}

func toEntry(e admin.ExternalEntry) healthmon.Entry {
	return healthmon.Entry{Addr: e.Address, Pool: e.Pool, Site: e.Site, Up: e.Up, Reason: e.Reason, Expires: e.Expires, Source: e.Source}
}

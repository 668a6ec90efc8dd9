package clustertest

import (
	"errors"
	"net/netip"
	"testing"
)

type drain struct {
	pool, site string
	addr       netip.Addr
}

func key(pool, site string, addr netip.Addr) drain { return drain{pool, site, addr} }

func TestMesh(t *testing.T) {
	m := New(key, "ns1", "ns2", "ns3")
	if m.Down("k") {
		t.Error("no votes: down")
	}
	m.Vote("k", "ns1", false)
	m.Vote("k", "ns2", true)
	if m.Down("k") {
		t.Error("one of two down: down")
	}
	m.Vote("k", "ns3", false)
	if !m.Down("k") || len(m.Votes("k")) != 3 {
		t.Errorf("two of three down: down %v, votes %v", m.Down("k"), m.Votes("k"))
	}
	a := netip.MustParseAddr("192.0.2.1")
	if err := m.Drain("web", "fra", netip.Addr{}, true); err != nil {
		t.Fatal(err)
	}
	if !m.Drained("web", "fra", a) || m.Drained("web", "iad", a) || len(m.Drains()) != 1 {
		t.Errorf("site drain: %v", m.Drains())
	}
	m.FailDrains(errors.New("full"))
	if err := m.Drain("web", "fra", netip.Addr{}, false); err == nil || !m.Drained("web", "fra", a) {
		t.Error("FailDrains: the drain went through")
	}
	if got := m.Members(); len(got) != 3 || got[0] != "ns1" {
		t.Errorf("members %v", got)
	}
}

package main

import (
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestShutdownOrder: on SIGTERM a node stops probing, leaves the mesh (its
// peer sees it leave, not fail) while DNS and admin still serve, then
// stops DNS, then admin.
func TestShutdownOrder(t *testing.T) {
	files := nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": e2ePools}
	a := startInproc(t, "a", files, "", nil, nil)
	type seen struct {
		step       string
		dns, admin bool
		peerSees   string
	}
	var mu sync.Mutex
	var steps []seen
	var b *inproc
	b = startInproc(t, "b", files, "", []string{a.n.mesh.Addr()}, func(n *node) {
		n.shutdownStep = func(step string) {
			s := seen{step: step, dns: answers(b.DNS), admin: b.healthz()}
			want := "alive"
			if step != "probes stopped" {
				want = "left"
			}
			// The peer learns of the leave through gossip: give it time.
			deadline := time.Now().Add(5 * time.Second)
			for {
				s.peerSees = memberState(a, "b")
				if s.peerSees == want || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			mu.Lock()
			steps = append(steps, s)
			mu.Unlock()
		}
	})
	eventually(t, 10*time.Second, "a sees b", func() bool { return memberState(a, "b") == "alive" })
	if !answers(b.DNS) || !b.healthz() {
		t.Fatal("b does not serve before the shutdown")
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("b stopped with %v", err)
	}
	want := []seen{
		{step: "probes stopped", dns: true, admin: true, peerSees: "alive"},
		{step: "mesh left", dns: true, admin: true, peerSees: "left"},
		{step: "dns stopped", dns: false, admin: true, peerSees: "left"},
		{step: "admin stopped", dns: false, admin: false, peerSees: "left"},
	}
	mu.Lock()
	defer mu.Unlock()
	if len(steps) != len(want) {
		t.Fatalf("shutdown steps %+v, want %+v", steps, want)
	}
	for i := range want {
		if steps[i] != want[i] {
			t.Errorf("step %d: %+v, want %+v", i, steps[i], want[i])
		}
	}
}

// answers reports whether server answers a query for the static name.
func answers(server string) bool {
	m := new(dns.Msg)
	m.SetQuestion("static.gslb.test.", dns.TypeA)
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	r, _, err := c.Exchange(m, server)
	return err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1
}

// memberState is how p's mesh sees member name ("" when unknown).
func memberState(p *inproc, name string) string {
	for _, m := range p.n.mesh.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

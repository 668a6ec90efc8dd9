package cluster

import (
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// partitioned starts three monitors on profile lan over fault transports,
// with memberlist's gossip to dead members cut to half a second, so that
// after a partition only the reconnect loop can bring the sides together.
func partitioned(t *testing.T) ([]*Mesh, []*faultTransport) {
	var fts []*faultTransport
	ms := startMeshesCfg(t, 3, func(i int, o *Options) {
		ft := newFaultTransport(t, uint64(i+1), 0, 0)
		fts = append(fts, ft)
		o.Transport = ft
		o.Profile = "lan"
		if i > 0 {
			o.Join = []string{fts[0].addr}
		}
	}, func(c *memberlist.Config) { c.GossipToTheDeadTime = 500 * time.Millisecond })
	for _, m := range ms {
		m.SetTargets(map[string]time.Duration{key: time.Second})
	}
	ms[0].SetLocal(key, false, "timeout")
	ms[1].SetLocal(key, false, "timeout")
	ms[2].SetLocal(key, true, "200")
	waitFor(t, 10*time.Second, "down everywhere", func() bool { return allDown(ms, key, true) })
	return ms, fts
}

// cut isolates n3, runs during, and waits until each side has declared
// the other dead.
func cut(t *testing.T, ms []*Mesh, fts []*faultTransport, during func()) {
	t.Helper()
	partition(fts, 2, true)
	during()
	waitFor(t, 30*time.Second, "both sides see the other dead", func() bool {
		return aliveCount(ms[0]) == 2 && aliveCount(ms[1]) == 2 && aliveCount(ms[2]) == 1
	})
}

// TestPartitionHeals: n3 is cut off (a transport that drops all its
// packets and streams, both ways). Each side decides alone: n1 and n2 keep
// the target down by their two votes, n3 alone says up. A drain is set on
// each side. When the partition ends, the reconnect loop brings every node
// to see every member alive again (within 10 s on profile lan: reconnect
// interval 5 s ± 25%, then a follow-up exchange), verdicts agree again and
// both drains are everywhere, even though only n2's loop runs and n1 and
// n3 never exchange state directly. While the loops are paused, the healed
// network stays split: memberlist alone never retries a dead member.
func TestPartitionHeals(t *testing.T) {
	checkLeaks(t)
	ms, fts := partitioned(t)
	a := netip.MustParseAddr("192.0.2.10")
	// n3 drains while it still gossips to the others (they are not dead
	// yet): its broadcasts are spent into the cut, so only push/pull can
	// carry this drain across.
	cut(t, ms, fts, func() {
		if err := ms[2].Drain("web", "fra", netip.Addr{}, true); err != nil {
			t.Fatal(err)
		}
	})
	waitFor(t, 10*time.Second, "n3 decides alone", func() bool {
		return !ms[2].Health().Down(key) && allDown(ms[:2], key, true)
	})
	if err := ms[0].Drain("web", "iad", a, true); err != nil {
		t.Fatal(err)
	}
	// Hold the partition for a while: nothing crosses it.
	time.Sleep(time.Second) // letting gossip try, not synchronising
	if ms[0].Health().Drained("web", "fra", a) || ms[2].Health().Drained("web", "iad", a) {
		t.Fatal("a drain crossed the partition")
	}

	// Control: with the reconnect loops paused, memberlist alone does not
	// bring the sides together again.
	for _, m := range ms {
		m.reconnectPaused.Store(true)
	}
	partition(fts, 2, false)
	for hold := time.Now().Add(3 * time.Second); time.Now().Before(hold); time.Sleep(50 * time.Millisecond) {
		if aliveCount(ms[2]) != 1 || aliveCount(ms[0]) != 2 {
			t.Fatalf("the mesh healed without the reconnect loop: n1 sees %d alive, n3 %d", aliveCount(ms[0]), aliveCount(ms[2]))
		}
	}
	// Only n2's loop resumes, as when one node's timer fires first: n1
	// then learns by gossip that n3 is back, and must still get the drain
	// n3 set, as n3 must get n1's: what a push/pull brings is relayed.
	ms[1].reconnectPaused.Store(false)
	healed := waitFor(t, 20*time.Second, "every node sees every member alive", func() bool {
		return aliveCount(ms[0]) == 3 && aliveCount(ms[1]) == 3 && aliveCount(ms[2]) == 3
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range ms {
				t.Logf("%s: votes %v down %v drains %+v members %+v", m.opts.Name, m.Votes(key), m.Health().Down(key), m.Drains(), m.Members())
			}
		}
	})
	agreed := waitFor(t, 20*time.Second, "verdicts and drains agree", func() bool {
		for _, m := range ms {
			h := m.Health()
			if !h.Down(key) || !h.Drained("web", "fra", a) || !h.Drained("web", "iad", a) {
				return false
			}
		}
		return true
	})
	t.Logf("lan profile, reconnect interval %v: every member alive everywhere %v after n2's reconnect loop resumed, verdicts and drains agreed %v later", DefaultReconnectInterval, healed.Round(time.Millisecond), agreed.Round(time.Millisecond))
	if healed > 10*time.Second {
		t.Errorf("heal took %v, want at most 10 s on profile lan", healed)
	}
	var reconnects uint64
	for _, m := range ms {
		reconnects += m.stats.reconnects.Load()
	}
	if reconnects == 0 {
		t.Error("healed without a reconnect: the test does not test the loop")
	}
}

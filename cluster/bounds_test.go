package cluster

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestClocksCannotBePoisoned: a drain with clock 2^64-1 and a report and a
// digest with sequence/tick 2^64-1 in a live monitor's name, broadcast or
// inside a push/pull, are rejected and counted; drains and undrains still
// work, and the monitor's next report still wins everywhere.
func TestClocksCannotBePoisoned(t *testing.T) {
	checkLeaks(t)
	ms := startMeshes(t, 3, nil)
	for _, m := range ms {
		m.SetTargets(map[string]time.Duration{key: time.Second})
	}
	ms[1].SetLocal(key, false, "timeout")
	ms[2].SetLocal(key, false, "timeout")
	waitFor(t, 5*time.Second, "down everywhere", func() bool { return allDown(ms, key, true) })

	const huge = math.MaxUint64
	forged := [][]byte{
		encode(msgDrain, wireDrain{P: "web", S: "fra", O: true, C: huge, N: "mallory"}),
		encode(msgReport, wireReport{M: "n2", E: wireEntry{K: key, S: huge, U: true, R: "forged"}}),
		encode(msgDigest, wireDigest{M: "n2", T: huge, N: 1, H: 1}),
	}
	full := encode(msgFull, wireFull{
		Mons: []wireMonitor{{M: "n3", E: []wireEntry{{K: key, S: huge, U: true, R: "forged"}}}},
		D:    []wireDrain{{P: "web", S: "iad", O: true, C: huge, N: "mallory"}},
	})
	// Into a bystander (n1) and into the monitor whose name is forged (n2):
	// the forged report would make n2 jump its own clock to 2^64-1.
	for _, m := range ms[:2] {
		before := m.stats.dropped[dropClock].Load()
		for _, b := range forged {
			(*delegate)(m).NotifyMsg(b)
		}
		(*delegate)(m).MergeRemoteState(full, false)
		waitFor(t, 5*time.Second, "forgeries counted on "+m.opts.Name, func() bool { return m.stats.dropped[dropClock].Load()-before == 5 })
	}
	ms[1].mu.Lock()
	seq := ms[1].seq
	ms[1].mu.Unlock()
	if seq > uint64(time.Now().Add(time.Minute).UnixMicro()) {
		t.Fatalf("n2's sequence clock jumped to %d", seq)
	}
	for _, m := range ms {
		if len(m.Drains()) != 0 || !m.Health().Down(key) {
			t.Fatalf("%s: a forgery took effect: drains %v, down %v", m.opts.Name, m.Drains(), m.Health().Down(key))
		}
	}

	// Drain and undrain still work, and the monitor's next report wins.
	a := netip.MustParseAddr("192.0.2.10")
	if err := ms[0].Drain("web", "fra", netip.Addr{}, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "drain everywhere", func() bool {
		for _, m := range ms {
			if !m.Health().Drained("web", "fra", a) {
				return false
			}
		}
		return true
	})
	if err := ms[2].Drain("web", "fra", netip.Addr{}, false); err != nil {
		t.Fatal(err)
	}
	ms[1].SetLocal(key, true, "200")
	waitFor(t, 5*time.Second, "undrain and n2's up report everywhere", func() bool {
		for _, m := range ms {
			if m.Health().Drained("web", "fra", a) || m.Votes(key)["n2"] != true {
				return false
			}
		}
		return true
	})
}

// TestDrainThatCannotWinFails: when the highest drain clock known is
// ahead of this node's clock by more than peers accept (a peer's clock
// ran ahead, then this node's was set back), a drain or undrain through
// this node returns an error instead of a write that loses.
func TestDrainThatCannotWinFails(t *testing.T) {
	m, err := New(Options{Name: "n1", Bind: "127.0.0.1:0", Monitor: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ahead := uint64(time.Now().Add(maxClockAhead - time.Minute).UnixMicro())
	(*delegate)(m).NotifyMsg(encode(msgDrain, wireDrain{P: "web", S: "fra", O: true, C: ahead, N: "fast"}))
	m.process()
	if len(m.Drains()) != 1 {
		t.Fatalf("a drain within the clock bound was not taken: %v", m.Drains())
	}
	m.mu.Lock()
	m.now = func() time.Time { return time.Now().Add(-time.Hour) }
	m.mu.Unlock()
	err = m.Drain("web", "fra", netip.Addr{}, false)
	if !errors.Is(err, ErrDrainLost) {
		t.Fatalf("undrain with a clock that cannot win: %v, want ErrDrainLost", err)
	}
	if len(m.Drains()) != 1 {
		t.Fatal("the failed undrain changed the state")
	}
	m.mu.Lock()
	m.now = time.Now
	m.mu.Unlock()
	if err := m.Drain("web", "fra", netip.Addr{}, false); err != nil {
		t.Fatalf("undrain once the clock is back: %v", err)
	}
	if len(m.Drains()) != 0 {
		t.Fatal("undrain did not win")
	}
}

// TestChurnStaysBounded churns 5,000 node names through a three-node mesh
// with a retention of 5 s. Each name joins (as memberlist reports it),
// reports on two targets, announces digests, sets and clears a drain, and
// dies or leaves. Afterwards the member list, the monitors and reports
// held, the push/pull state and the heap are back near where they started,
// and anti-entropy and drains still work.
func TestChurnStaysBounded(t *testing.T) {
	checkLeaks(t)
	// As in production (24 h against 30 s), the retention is many
	// push/pull rounds: a tombstone must reach every node before it goes.
	const retention = 5 * time.Second
	ms := startMeshesCfg(t, 3, func(i int, o *Options) { o.Retention = retention },
		func(c *memberlist.Config) { c.PushPullInterval = 300 * time.Millisecond })
	targets := map[string]time.Duration{}
	for k := range 10 {
		targets[fmt.Sprintf("192.0.2.%d|tcp:443", k)] = time.Second
	}
	for _, m := range ms {
		m.SetTargets(targets)
		for k := range targets {
			m.SetLocal(k, true, "200")
		}
	}
	held := func(m *Mesh) (members, monitors, reports int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, ms := range m.st.monitors {
			reports += len(ms.entries)
		}
		return len(m.members), len(m.st.monitors), reports
	}
	waitFor(t, 10*time.Second, "every report everywhere", func() bool {
		for _, m := range ms {
			if _, _, r := held(m); r != 30 {
				return false
			}
		}
		return true
	})
	heap := func() uint64 {
		runtime.GC()
		var st runtime.MemStats
		runtime.ReadMemStats(&st)
		return st.HeapAlloc
	}
	heap0 := heap()
	churnTargets := []string{"192.0.2.0|tcp:443", "192.0.2.1|tcp:443"}
	push0 := len((*delegate)(ms[0]).LocalState(false))

	d := (*delegate)(ms[0])
	ev := (*events)(ms[0])
	meta, _ := jsonMeta(true)
	peak := 0
	for i := range 5000 {
		name := fmt.Sprintf("churn-%04d", i)
		node := &memberlist.Node{Name: name, Addr: []byte{127, 0, 0, 9}, Port: uint16(10000 + i%5000), Meta: meta}
		ev.NotifyJoin(node)
		now := uint64(time.Now().UnixMicro())
		for k := range churnTargets {
			d.NotifyMsg(encode(msgReport, wireReport{M: name, E: wireEntry{K: churnTargets[k], S: now, U: i%2 == 0}}))
		}
		d.NotifyMsg(encode(msgDigest, wireDigest{M: name, T: now, N: len(churnTargets), H: 42}))
		d.NotifyMsg(encode(msgDrain, wireDrain{P: "web", S: name, O: true, C: now, N: name}))
		d.NotifyMsg(encode(msgDrain, wireDrain{P: "web", S: name, C: now + 1, N: name}))
		if i%3 == 0 {
			d.NotifyMsg(encode(msgLeave, wireLeave{M: name}))
		}
		ev.NotifyLeave(node)
		if i%50 == 49 { // paced: the inbox holds 16k messages
			ms[0].sync(t.Context())
			_, mons, _ := held(ms[0])
			peak = max(peak, mons)
		}
	}
	ms[0].sync(t.Context())
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, m := range ms {
			members, monitors, reports := held(m)
			m.mu.Lock()
			t.Logf("%s: %d members, %d monitors, %d reports, drains %v, stats %+v", m.opts.Name, members, monitors, reports, m.st.drains, m.Stats())
			m.mu.Unlock()
		}
	})
	waitFor(t, 30*time.Second, "churned names forgotten on every node", func() bool {
		for _, m := range ms {
			members, monitors, reports := held(m)
			m.mu.Lock()
			drains := len(m.st.drains)
			m.mu.Unlock()
			if members != 3 || monitors != 3 || reports != 30 || drains != 0 {
				return false
			}
		}
		return true
	})
	push1 := len((*delegate)(ms[0]).LocalState(false))
	heap1 := heap()
	t.Logf("5000 names churned: peak %d monitors held on n1; after the retention: 3 members, 3 monitors, 30 reports, 0 drains on every node; push/pull %d → %d bytes; heap %d → %d KiB (%d churn messages still in n1's relay queue); reaped on n1: %d members, %d monitors, %d drain tombstones",
		peak, push0, push1, heap0>>10, heap1>>10, ms[0].broadcasts.NumQueued(), ms[0].stats.reaped[reapMember].Load(), ms[0].stats.reaped[reapMonitor].Load(), ms[0].stats.reaped[reapDrain].Load())
	if push1 > push0+64 {
		t.Errorf("push/pull grew from %d to %d bytes", push0, push1)
	}
	// What may stay: the relay queue, full at 4096 messages of the churn
	// (about 1 KiB each with the queue's index), and map buckets.
	if heap1 > heap0+8<<20 {
		t.Errorf("heap grew from %d to %d KiB", heap0>>10, heap1>>10)
	}

	// Anti-entropy and drains still work.
	k0 := "192.0.2.0|tcp:443"
	ms[1].SetLocal(k0, false, "timeout")
	ms[2].SetLocal(k0, false, "timeout")
	if err := ms[2].Drain("web", "fra", netip.Addr{}, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "report and drain everywhere after the churn", func() bool {
		for _, m := range ms {
			if !m.Health().Down(k0) || !m.Health().Drained("web", "fra", netip.Addr{}) {
				return false
			}
		}
		return true
	})
	n4 := startMesh(t, Options{Name: "n4", Monitor: true, Retention: retention, Join: []string{ms[1].Addr()}})
	if !n4.Health().Drained("web", "fra", netip.Addr{}) || len(n4.Votes(k0)) != 3 {
		t.Fatalf("a node joining after the churn got drains %v votes %v", n4.Drains(), n4.Votes(k0))
	}
}

func jsonMeta(monitor bool) ([]byte, error) {
	m := &Mesh{opts: Options{Monitor: monitor}}
	m.setMeta()
	return *m.meta.Load(), nil
}

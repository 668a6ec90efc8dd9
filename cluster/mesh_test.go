package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

const key = "192.0.2.10|http:80/healthz"

func TestLoneNodeDecidesAlone(t *testing.T) {
	checkLeaks(t)
	m := startMesh(t, Options{Name: "solo", Monitor: true})
	m.SetTargets(map[string]time.Duration{key: time.Second})
	if m.Health().Down(key) {
		t.Fatal("down before any report; want up")
	}
	m.SetLocal(key, false, "connection refused")
	// Changes also signals assignment changes: wait for the verdict.
	for !m.Health().Down(key) {
		select {
		case <-m.Changes():
		case <-time.After(5 * time.Second):
			t.Fatal("lone monitor says down, verdict still up after 5 s")
		}
	}
	if v := m.Votes(key); len(v) != 1 || v["solo"] {
		t.Fatalf("votes = %v, want solo:down", v)
	}
	m.SetLocal(key, true, "200")
	waitFor(t, 5*time.Second, "verdict up after the up report", func() bool { return !m.Health().Down(key) })
	// A key no longer probed loses this node's vote.
	m.SetLocal(key, false, "timeout")
	waitFor(t, 5*time.Second, "verdict down", func() bool { return m.Health().Down(key) })
	m.SetTargets(map[string]time.Duration{})
	if len(m.Votes(key)) != 0 {
		t.Fatalf("after SetTargets without the key: votes=%v", m.Votes(key))
	}
	waitFor(t, 5*time.Second, "verdict up after SetTargets without the key", func() bool { return !m.Health().Down(key) })
}

func TestDNSOnlyNodeNeverVotes(t *testing.T) {
	checkLeaks(t)
	ms := startMeshes(t, 2, func(i int, o *Options) { o.Monitor = i == 0 })
	ms[1].SetLocal(key, false, "ignored: not a monitor")
	ms[0].SetLocal(key, true, "200")
	waitFor(t, 5*time.Second, "n1's vote everywhere", func() bool { return allVotes(ms, key, map[string]bool{"n1": true}) })
	if allDown(ms, key, true) || ms[0].Health().Down(key) {
		t.Fatal("a DNS-only node's report counted")
	}
}

// TestQuorum: with three monitors one dissenter changes nothing; two take
// the target down everywhere.
func TestQuorum(t *testing.T) {
	checkLeaks(t)
	ms := startMeshes(t, 3, nil)
	for _, m := range ms {
		m.SetTargets(map[string]time.Duration{key: time.Second})
		m.SetLocal(key, true, "200")
	}
	waitFor(t, 5*time.Second, "three up votes everywhere", func() bool {
		return allVotes(ms, key, map[string]bool{"n1": true, "n2": true, "n3": true})
	})
	ms[0].SetLocal(key, false, "timeout")
	waitFor(t, 5*time.Second, "n1's down vote everywhere", func() bool {
		return allVotes(ms, key, map[string]bool{"n1": false, "n2": true, "n3": true})
	})
	if !allDown(ms, key, false) {
		t.Fatal("one of three monitors took the target down")
	}
	ms[1].SetLocal(key, false, "timeout")
	d := waitFor(t, 5*time.Second, "down everywhere", func() bool { return allDown(ms, key, true) })
	t.Logf("verdict down on all 3 nodes %v after the deciding report", d)
	ms[1].SetLocal(key, true, "200")
	d = waitFor(t, 5*time.Second, "up everywhere", func() bool { return allDown(ms, key, false) })
	t.Logf("verdict up on all 3 nodes %v after the deciding report", d)
}

func TestVotesVanishOnLeave(t *testing.T)   { testVotesVanish(t, true) }
func TestVotesVanishOnFailure(t *testing.T) { testVotesVanish(t, false) }

// testVotesVanish: two of three monitors say down; when one of them leaves
// (or dies), 1 down of 2 is not a majority and the target comes back up.
func testVotesVanish(t *testing.T, leave bool) {
	checkLeaks(t)
	ms := startMeshes(t, 3, nil)
	ms[0].SetLocal(key, false, "timeout")
	ms[1].SetLocal(key, false, "timeout")
	ms[2].SetLocal(key, true, "200")
	waitFor(t, 5*time.Second, "down everywhere", func() bool { return allDown(ms, key, true) })
	start := time.Now()
	if leave {
		if err := ms[1].Leave(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	ms[1].Shutdown()
	rest := []*Mesh{ms[0], ms[2]}
	waitFor(t, 20*time.Second, "up on the remaining nodes", func() bool { return allDown(rest, key, false) })
	t.Logf("leave=%v: verdict recomputed on the remaining nodes after %v", leave, time.Since(start))
	if !allVotes(rest, key, map[string]bool{"n1": false, "n3": true}) {
		t.Fatalf("votes after n2 went: %v", ms[0].Votes(key))
	}
	want := "dead"
	if leave {
		want = "left"
	}
	for _, mb := range ms[0].Members() {
		if mb.Name == "n2" && mb.State != want {
			t.Fatalf("n2 state %q, want %q", mb.State, want)
		}
	}
}

// TestStaleReportsExpire: a monitor that stays in the mesh but stops
// confirming its reports loses its vote after 3 × interval + 5 s, while a
// monitor that keeps announcing digests keeps it.
func TestStaleReportsExpire(t *testing.T) {
	checkLeaks(t)
	ms := startMeshes(t, 3, nil)
	const key2 = "192.0.2.11|tcp:443"
	targets := map[string]time.Duration{key: 10 * time.Millisecond, key2: 10 * time.Millisecond}
	for _, m := range ms {
		m.SetTargets(targets)
	}
	// n1 goes silent: no more digests.
	ms[0].mu.Lock()
	ms[0].digestEvery = time.Hour
	ms[0].mu.Unlock()
	ms[0].SetLocal(key, false, "timeout")
	ms[1].SetLocal(key2, false, "timeout")
	waitFor(t, 5*time.Second, "both down everywhere", func() bool { return allDown(ms, key, true) && allDown(ms, key2, true) })
	start := time.Now()
	others := ms[1:]
	waitFor(t, 15*time.Second, "n1's silent report expire", func() bool { return allDown(others, key, false) })
	took := time.Since(start)
	t.Logf("silent report expired after %v (window 5.03s)", took)
	if took < 4*time.Second {
		t.Fatalf("report expired after %v, before its window", took)
	}
	if !ms[0].Health().Down(key) {
		t.Fatal("n1's own report expired on n1")
	}
	// n2 kept announcing: its report outlived the same window.
	if !allDown(ms, key2, true) {
		t.Fatal("a confirmed report expired")
	}
}

// TestDrainsConvergeAndSurviveRestart: a drain set on one node reaches all,
// an undrain on another wins by its higher clock, and a node restarted
// with the same name gets the drains back from its peers before Start
// returns.
func TestDrainsConvergeAndSurviveRestart(t *testing.T) {
	checkLeaks(t)
	ms := startMeshes(t, 3, nil)
	a := netip.MustParseAddr("192.0.2.10")
	b := netip.MustParseAddr("192.0.2.11")
	if err := ms[0].Drain("web", "fra", netip.Addr{}, true); err != nil {
		t.Fatal(err)
	}
	if err := ms[0].Drain("web", "iad", a, true); err != nil {
		t.Fatal(err)
	}
	drained := func(m *Mesh) bool {
		h := m.Health()
		return h.Drained("web", "fra", b) && h.Drained("web", "iad", a) && !h.Drained("web", "iad", b)
	}
	d := waitFor(t, 5*time.Second, "drains everywhere", func() bool { return drained(ms[1]) && drained(ms[2]) })
	t.Logf("drains reached every node in %v", d)
	if err := ms[1].Drain("web", "iad", a, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "undrain everywhere", func() bool {
		for _, m := range ms {
			if m.Health().Drained("web", "iad", a) || !m.Health().Drained("web", "fra", a) {
				return false
			}
		}
		return true
	})

	// Restart every node in turn, the one that set the drain included.
	for i := range ms {
		name := ms[i].opts.Name
		// A leave whose broadcast is not confirmed in time still leaves (the
		// peers then see the node fail); under a loaded machine that happens.
		if err := ms[i].Leave(5 * time.Second); err != nil {
			t.Logf("leave %s: %v", name, err)
		}
		ms[i].Shutdown()
		peer := ms[(i+1)%len(ms)]
		waitGone(t, ms, name)
		ms[i] = startMesh(t, Options{Name: name, Monitor: true, Join: []string{peer.Addr()}})
		// Start merged the peers' state before returning.
		got := ms[i].Drains()
		if len(got) != 1 || got[0].Pool != "web" || got[0].Site != "fra" || got[0].Addr.IsValid() {
			t.Fatalf("restarted %s has drains %+v, want web/fra", name, got)
		}
		if !ms[i].Health().Drained("web", "fra", a) {
			t.Fatalf("restarted %s: health does not show the drain", name)
		}
	}
	// The clock carried over: a drain set on a restarted node wins.
	if err := ms[2].Drain("web", "fra", netip.Addr{}, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "undrain of web/fra everywhere", func() bool {
		for _, m := range ms {
			if m.Health().Drained("web", "fra", a) || len(m.Drains()) != 0 {
				return false
			}
		}
		return true
	})
}

// TestRestartedMonitor: a monitor that comes back under the same name does
// not inherit the reports of its former incarnation: it re-asserts what it
// says now, and its new reports win.
func TestRestartedMonitor(t *testing.T) {
	checkLeaks(t)
	ms := startMeshes(t, 2, nil)
	ms[1].SetLocal(key, false, "timeout")
	waitFor(t, 5*time.Second, "down on n1", func() bool { return ms[0].Health().Down(key) })
	ms[1].Leave(time.Second)
	ms[1].Shutdown()
	waitGone(t, ms, "n2")
	waitFor(t, 10*time.Second, "up on n1 after n2 left", func() bool { return !ms[0].Health().Down(key) })
	ms[1] = startMesh(t, Options{Name: "n2", Monitor: true, Join: []string{ms[0].Addr()}})
	waitFor(t, 10*time.Second, "n2 alive on n1", func() bool { return aliveCount(ms[0]) == 2 })
	// The former incarnation's down report must not come back.
	waitFor(t, 5*time.Second, "old report withdrawn", func() bool {
		ms[0].mu.Lock()
		defer ms[0].mu.Unlock()
		r := ms[0].st.monitor("n2").entries[key]
		return r != nil && r.Gone
	})
	if len(ms[0].Votes(key)) != 0 {
		t.Fatalf("old incarnation still votes: %v", ms[0].Votes(key))
	}
	waitFor(t, 5*time.Second, "verdict up once the old report is withdrawn", func() bool { return !ms[0].Health().Down(key) })
	ms[1].SetLocal(key, false, "timeout")
	waitFor(t, 5*time.Second, "new report on n1", func() bool { return ms[0].Health().Down(key) })
}

// TestWrongKeyChangesNothing: a node with another key is not joined and
// nothing it says reaches the mesh.
func TestWrongKeyChangesNothing(t *testing.T) {
	checkLeaks(t)
	k1 := []byte("0123456789abcdef0123456789abcdef")
	k2 := []byte("fedcba9876543210fedcba9876543210")
	ms := startMeshes(t, 2, func(i int, o *Options) { o.SecretKey = k1 })
	ms[0].SetLocal(key, true, "200")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	bad, err := New(Options{Name: "intruder", Bind: "127.0.0.1:0", Profile: "local", Monitor: true, SecretKey: k2, Join: []string{ms[0].Addr()}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bad.Shutdown() })
	bad.SetLocal(key, false, "forged")
	bad.Drain("web", "fra", netip.Addr{}, true)
	// Give gossip several rounds to do damage if it could.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range ms {
			if m.Health().Down(key) || len(m.Drains()) != 0 || aliveCount(m) != 2 {
				t.Fatalf("intruder changed %s: down=%v drains=%v members=%v", m.opts.Name, m.Health().Down(key), m.Drains(), m.Members())
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := aliveCount(bad); n != 1 {
		t.Fatalf("intruder sees %d members", n)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Bind: "127.0.0.1:0"}, "node name"},
		{Options{Name: "a", Bind: "0.0.0.0:7946"}, "not a loopback address"},
		{Options{Name: "a", Bind: "192.0.2.1:7946", Profile: "lan"}, "not a loopback address"},
		{Options{Name: "a", Bind: "127.0.0.1:0", Profile: "moon"}, "profile"},
		{Options{Name: "a", Bind: "127.0.0.1:0", SecretKey: []byte("short")}, "secret key"},
		{Options{Name: "a", Bind: "nohost"}, "bind"},
	} {
		_, err := New(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error with %q", tc.opts, err, tc.want)
		}
	}
	if _, err := New(Options{Name: "a", Bind: "0.0.0.0:0", SecretKey: make([]byte, 32)}); err != nil {
		t.Errorf("non-loopback bind with a key: %v", err)
	}
}

// TestBadMessagesDropped: junk is dropped, counted, and changes nothing.
func TestBadMessagesDropped(t *testing.T) {
	m, err := New(Options{Name: "n1", Bind: "127.0.0.1:0", Monitor: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	d := (*delegate)(m)
	big := encode(msgReport, wireReport{M: "x", E: wireEntry{K: strings.Repeat("k", maxKeyLen+1), S: 1}})
	bigReason := encode(msgReport, wireReport{M: "x", E: wireEntry{K: "k", S: 1, R: strings.Repeat("r", maxReasonLen+1)}})
	for _, buf := range [][]byte{
		nil,
		{msgReport},
		{msgReport, wireVersion, '{'},
		{msgReport, 99, '{', '}'},
		{42, wireVersion, '{', '}'},
		append([]byte{msgReport, wireVersion}, `{"m":"","e":{"k":"a","s":1}}`...),
		append([]byte{msgDrain, wireVersion}, `{"p":"web","s":"fra","a":"not-an-ip","c":9,"n":"x"}`...),
		big,
		bigReason,
	} {
		d.NotifyMsg(buf)
	}
	d.MergeRemoteState([]byte("garbage"), false)
	d.MergeRemoteState(append([]byte{msgFull, wireVersion}, `{"mons":[{"m":"x","e":[{"k":"","s":1}]}]}`...), true)
	m.process() // what the owner goroutine does
	if got := m.Stats().Dropped; got != 11 {
		t.Fatalf("dropped %d messages, want 11", got)
	}
	if len(m.st.monitors) != 0 || len(m.st.drains) != 0 {
		t.Fatalf("junk changed the state: %v %v", m.st.monitors, m.st.drains)
	}
}

// TestMergeCommutative merges random reports and drains in many shuffled
// orders, with repetitions, and requires the same state every time.
func TestMergeCommutative(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		type msg struct {
			mon, key string
			e        entry
			dk       drainKey
			dv       drainVal
			drain    bool
		}
		var msgs []msg
		for range 40 {
			if rng.IntN(4) == 0 {
				msgs = append(msgs, msg{drain: true,
					dk: drainKey{Pool: "web", Site: fmt.Sprint("s", rng.IntN(2)), Addr: []netip.Addr{{}, netip.MustParseAddr("192.0.2.1")}[rng.IntN(2)]},
					dv: drainVal{On: rng.IntN(2) == 0, Clock: uint64(rng.IntN(5)), Node: fmt.Sprint("n", rng.IntN(3))}})
				continue
			}
			msgs = append(msgs, msg{mon: fmt.Sprint("m", rng.IntN(3)), key: fmt.Sprint("k", rng.IntN(4)),
				e: entry{Seq: uint64(rng.IntN(6)), Up: rng.IntN(2) == 0, Gone: rng.IntN(5) == 0, Reason: fmt.Sprint("r", rng.IntN(2))}})
		}
		var want string
		for perm := range 20 {
			order := slices.Clone(msgs)
			order = append(order, msgs[:rng.IntN(len(msgs))]...) // duplicates
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			s := newStore()
			now := time.Now()
			for _, m := range order {
				if m.drain {
					s.mergeDrain(m.dk, m.dv)
				} else {
					s.mergeEntry(m.mon, m.key, m.e, now)
				}
			}
			got := dumpStore(s)
			if perm == 0 {
				want = got
			} else if got != want {
				t.Fatalf("round %d: order %d gave\n%s\nwant\n%s", round, perm, got, want)
			}
		}
	}
}

func dumpStore(s *store) string {
	var lines []string
	for mon, ms := range s.monitors {
		var h uint64
		for key, r := range ms.entries {
			lines = append(lines, fmt.Sprintf("%s %s %+v", mon, key, r.entry))
			h ^= r.hash(key)
		}
		if h != ms.hash {
			lines = append(lines, fmt.Sprintf("%s: incremental hash %x != %x", mon, ms.hash, h))
		}
	}
	for k, v := range s.drains {
		lines = append(lines, fmt.Sprintf("drain %v %+v", k, v))
	}
	lines = append(lines, fmt.Sprint("clock ", s.drainClock))
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// waitGone waits until every other node has seen name leave, as a real
// restart would take longer than the leave takes to spread.
func waitGone(t *testing.T, ms []*Mesh, name string) {
	t.Helper()
	waitFor(t, 10*time.Second, name+" gone everywhere", func() bool {
		for _, m := range ms {
			if m.opts.Name == name {
				continue
			}
			for _, mb := range m.Members() {
				if mb.Name == name && mb.State == "alive" {
					return false
				}
			}
		}
		return true
	})
}

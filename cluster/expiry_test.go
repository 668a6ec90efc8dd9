package cluster

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// offlineMesh is a mesh that is never started: the test drives its owner
// methods under its mutex with a clock of its own.
func offlineMesh(t *testing.T, k int) *Mesh {
	t.Helper()
	m, err := New(Options{Name: "self", Bind: "127.0.0.1:0", Monitor: true, MonitorsPerTarget: k, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// member makes name a live (alive) or dead member at now.
func member(m *Mesh, name string, alive bool, now time.Time) {
	meta, _ := jsonMeta(true)
	state := "dead"
	if alive {
		state = "alive"
	}
	m.onMember(memberEvent{node: memberlist.Node{Name: name, Addr: []byte{127, 0, 0, 1}, Port: 7946}, meta: meta, state: state}, now)
}

// monitorA is an offline mesh with targets probed at the given intervals
// and one live monitor "a", returned locked with the time it starts at.
func monitorA(t *testing.T, intervals map[string]time.Duration) (*Mesh, time.Time) {
	m := offlineMesh(t, 0)
	now := time.Now()
	m.mu.Lock()
	m.intervals = intervals
	m.reassign(now)
	member(m, "a", true, now)
	return m, now
}

// TestExpiryExact checks when a report stops counting: not while
// max(heard, confirmed) + window has not passed, and at the first sweep
// after it; a confirmation makes it count again until its own window
// ends.
func TestExpiryExact(t *testing.T) {
	const slow, fast = "10.0.0.1|tcp:80", "10.0.0.2|tcp:80"
	m, t0 := monitorA(t, map[string]time.Duration{slow: 10 * time.Second, fast: time.Second})
	defer m.mu.Unlock()
	wSlow, wFast := m.window(slow), m.window(fast) // 35 s, 8 s
	counted := func(key string) bool { return m.st.monitors["a"].entries[key].counted }
	check := func(at time.Duration, wantSlow, wantFast bool) {
		t.Helper()
		m.sweep(t0.Add(at))
		if counted(slow) != wantSlow || counted(fast) != wantFast {
			t.Fatalf("at %v: counted slow %v, fast %v; want %v, %v", at, counted(slow), counted(fast), wantSlow, wantFast)
		}
	}
	m.putEntry("a", slow, entry{Seq: 1, Up: false}, t0)
	m.putEntry("a", fast, entry{Seq: 1, Up: false}, t0.Add(time.Second))
	check(0, true, true)
	check(wFast+time.Second, true, true)                  // fast heard at 1 s: fresh up to and including 1 s + 8 s
	check(wFast+time.Second+time.Nanosecond, true, false) // and not a nanosecond longer
	check(wSlow, true, false)
	if _, down := m.down[slow]; !down {
		t.Fatalf("a fresh down report does not decide: down %v", m.down)
	}
	check(wSlow+time.Nanosecond, false, false)
	if len(m.down) != 0 {
		t.Fatalf("stale down reports still decide: down %v", m.down)
	}

	// A confirmation at 40 s makes both count again, until 40 s + window.
	c := t0.Add(40 * time.Second)
	m.confirm("a", m.st.monitors["a"], c)
	check(40*time.Second, true, true)
	// A report heard after the confirmation expires on its own clock.
	m.putEntry("a", fast, entry{Seq: 2, Up: true}, c.Add(3*time.Second))
	check(40*time.Second+wFast, true, true)
	check(43*time.Second+wFast, true, true)
	check(43*time.Second+wFast+time.Nanosecond, true, false)
	check(40*time.Second+wSlow, true, false)
	check(40*time.Second+wSlow+time.Nanosecond, false, false)

	// Confirmations within minWindow keep everything fresh, one after
	// the other, for as long as they come.
	for i := range 20 {
		at := 100*time.Second + time.Duration(i)*2*time.Second
		m.confirm("a", m.st.monitors["a"], t0.Add(at))
		check(at+time.Second, true, true)
	}
	check(138*time.Second+wFast, true, true)
	check(138*time.Second+wFast+time.Nanosecond, true, false)
}

// TestExpiryMatchesRescan drives random merges, confirmations, window
// changes, membership changes and removals on a clock of its own and
// checks after every sweep that exactly the records a full rescan would
// count are counted, and that the queues stay bounded.
func TestExpiryMatchesRescan(t *testing.T) {
	for _, k := range []int{0, 2} {
		t.Run(fmt.Sprintf("k=%d", k), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(k), 7))
			m := offlineMesh(t, k)
			m.mu.Lock()
			defer m.mu.Unlock()
			now := time.Now()
			mons := []string{"a", "b", "c", "d"}
			keys := make([]string, 12)
			for i := range keys {
				keys[i] = fmt.Sprintf("10.0.0.%d|tcp:80", i)
			}
			setIntervals := func() {
				iv := map[string]time.Duration{}
				for _, key := range keys {
					iv[key] = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second}[rng.IntN(3)]
				}
				m.intervals = iv
				m.reassign(now)
			}
			setIntervals()
			for _, mon := range mons {
				member(m, mon, true, now)
			}
			seq := uint64(0)
			sweeps := 0
			for step := range 6000 {
				now = now.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
				mon := mons[rng.IntN(len(mons))]
				switch op := rng.IntN(100); {
				case op < 55:
					seq++
					m.putEntry(mon, keys[rng.IntN(len(keys))], entry{Seq: seq, Up: rng.IntN(2) == 0, Gone: rng.IntN(20) == 0}, now)
				case op < 70:
					if ms := m.st.monitors[mon]; ms != nil {
						m.confirm(mon, ms, now)
					}
				case op < 72:
					setIntervals()
				case op < 75:
					member(m, mon, rng.IntN(3) > 0, now)
				case op < 77:
					if ms := m.st.monitors[mon]; ms != nil {
						key := keys[rng.IntN(len(keys))]
						if r := ms.entries[key]; r != nil {
							m.setCounted(ms, key, r, false)
							m.st.removeEntry(ms, key)
						}
					}
				default:
					m.sweep(now)
					sweeps++
					for name, ms := range m.st.monitors {
						n, gone := 0, 0
						for key, r := range ms.entries {
							gone += b2i(r.Gone)
							if want := m.counts(name, ms, key, r, now); r.counted != want {
								t.Fatalf("step %d: %s's report on %s (heard %v, confirmed %v ago, window %v): counted %v, a rescan says %v",
									step, name, key, now.Sub(r.heard), now.Sub(ms.confirmed), m.window(key), r.counted, want)
							}
							if r.counted {
								n++
							}
						}
						if gone != ms.gone {
							t.Fatalf("step %d: %s holds %d tombstones, counts %d", step, name, gone, ms.gone)
						}
						if n != ms.counted {
							t.Fatalf("step %d: %s counts %d, holds %d counted", step, name, ms.counted, n)
						}
						if ms.queued > 2*len(ms.entries)+64 {
							t.Fatalf("step %d: %s queues %d records for %d entries", step, name, ms.queued, len(ms.entries))
						}
					}
				}
			}
			if sweeps < 1000 {
				t.Fatalf("only %d sweeps", sweeps)
			}
		})
	}
}

// TestExpiryQueuesBounded: a monitor that keeps confirming while one of
// its reports flaps never lets a record expire, so the replaced
// records behind its steady report must be dropped by compaction.
func TestExpiryQueuesBounded(t *testing.T) {
	const steady, key = "10.0.0.2|tcp:80", "10.0.0.1|tcp:80"
	m, now := monitorA(t, map[string]time.Duration{key: time.Second, steady: time.Second})
	defer m.mu.Unlock()
	m.putEntry("a", steady, entry{Seq: 1, Up: true}, now)
	for i := range 10_000 {
		now = now.Add(100 * time.Millisecond)
		m.putEntry("a", key, entry{Seq: uint64(i + 2), Up: i%2 == 0}, now)
		m.confirm("a", m.st.monitors["a"], now)
		m.sweep(now)
	}
	ms := m.st.monitors["a"]
	if ms.queued > 2*len(ms.entries)+64 || ms.expiry[0].len() != ms.queued {
		t.Fatalf("%d records queued (first queue %d) for %d entries", ms.queued, ms.expiry[0].len(), len(ms.entries))
	}
	if !ms.entries[key].counted || !ms.entries[steady].counted {
		t.Fatal("confirmed reports do not count")
	}
}

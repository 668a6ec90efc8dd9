package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// BenchmarkMesh50 simulates a 50-node mesh on profile local, every node a
// monitor with reports on 10 targets (so digests carry real state). One
// target is reported by n1, n2 and n3 only; n1 says down throughout and n2
// flips, so each of n2's reports decides the verdict. It reports the time
// until all 50 nodes agree (p50, p99 over the changes) and the gossip
// traffic per node (all memberlist packets, and our own messages alone).
// One iteration takes about 25 s: run it with -benchtime=1x.
func BenchmarkMesh50(b *testing.B) {
	for b.Loop() {
		simulate(b, simNodes, 12)
	}
}

func simulate(b *testing.B, n, changes int) {
	checkLeaks(b)
	quiet := slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	var fts []*faultTransport
	start := time.Now()
	ms := startMeshes(b, n, func(i int, o *Options) {
		ft := newFaultTransport(b, uint64(i+1), 0, 0)
		fts = append(fts, ft)
		o.Transport = ft
		o.Logger = quiet
		// Join a few earlier nodes, not only the first, as a real
		// deployment lists several peers.
		for range min(i, 3) {
			o.Join = append(o.Join, fts[rand.IntN(i)].addr)
		}
	})
	b.Logf("%d nodes joined and alive everywhere in %v", n, time.Since(start))
	targets := map[string]time.Duration{key: time.Second}
	for k := range 10 {
		targets[fmt.Sprintf("198.51.100.%d|tcp:443", k)] = 5 * time.Second
	}
	for _, m := range ms {
		m.SetTargets(targets)
		for k := range targets {
			if k != key {
				m.SetLocal(k, true, "200")
			}
		}
	}
	ms[0].SetLocal(key, false, "timeout")
	ms[1].SetLocal(key, true, "200")
	ms[2].SetLocal(key, true, "200")
	waitFor(b, 20*time.Second, "initial votes everywhere", func() bool {
		return allVotes(ms, key, map[string]bool{"n1": false, "n2": true, "n3": true})
	})

	waitFor(b, 30*time.Second, "every report everywhere", func() bool {
		for _, m := range ms {
			m.mu.Lock()
			total := 0
			for _, mon := range m.st.monitors {
				total += len(mon.entries)
			}
			m.mu.Unlock()
			if total != n*(len(targets)-1)+3 {
				return false
			}
		}
		return true
	})

	// Steady state traffic: digests and memberlist probes only.
	wirePerNode, oursPerNode := gossipRate(fts, ms, 3*time.Second)

	var took []time.Duration
	for c := range changes {
		down := c%2 == 0
		ms[1].SetLocal(key, !down, "flip")
		took = append(took, waitFor(b, 10*time.Second, fmt.Sprintf("change %d everywhere", c), func() bool { return allDown(ms, key, down) }))
		b.Logf("change %d took %v", c, took[len(took)-1])
	}
	slices.Sort(took)
	p50 := took[len(took)/2]
	p99 := took[(len(took)*99-1)/100]
	b.Logf("verdict change reached all %d nodes: p50 %v, p99 %v, all %v", n, p50, p99, took)
	b.Logf("steady gossip per node: %.0f B/s on the wire (all memberlist packets), %.0f B/s of gslbd messages", wirePerNode, oursPerNode)
	b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p99.Milliseconds()), "p99-ms")
	b.ReportMetric(wirePerNode, "wire-B/s/node")
	b.ReportMetric(oursPerNode, "gslbd-B/s/node")
	for _, m := range ms {
		m.Shutdown()
	}
}

// gossipRate measures, over window, the bytes per second and node sent
// as memberlist packets (wire) and as gslbd messages (ours).
func gossipRate(fts []*faultTransport, ms []*Mesh, window time.Duration) (wire, ours float64) {
	sum := func() (wire, ours uint64) {
		for i, ft := range fts {
			wire += ft.bytesOut.Load()
			ours += ms[i].Stats().BytesOut
		}
		return
	}
	w0, o0 := sum()
	t0 := time.Now()
	time.Sleep(window) // measuring a rate over a fixed window, not synchronising
	w1, o1 := sum()
	per := time.Since(t0).Seconds() * float64(len(ms))
	return float64(w1-w0) / per, float64(o1-o0) / per
}

var simNodes = envInt("GSLBD_SIM_NODES", 50)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 1 {
		return v
	}
	return def
}

// mergeMesh is a mesh (not started: no sockets) holding the state of
// mons monitors with a report on each of targets targets, all confirmed,
// as a node of such a mesh holds it.
func mergeMesh(b *testing.B, mons, targets int) (*Mesh, []string, []string) {
	m, err := New(Options{Name: "bench", Bind: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, targets)
	iv := make(map[string]time.Duration, targets)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.%d.%d.%d|http:80/healthz", i>>16, i>>8&255, i&255)
		iv[keys[i]] = time.Minute
	}
	m.SetTargets(iv)
	names := make([]string, mons)
	meta, _ := jsonMeta(true)
	for i := range names {
		names[i] = fmt.Sprintf("mon-%03d", i)
		(*events)(m).NotifyJoin(&memberlist.Node{Name: names[i], Addr: []byte{127, 0, 0, 1}, Port: uint16(20000 + i), Meta: meta})
	}
	m.process()
	now := time.Now()
	seq := uint64(now.UnixMicro())
	m.mu.Lock()
	for _, mon := range names {
		for _, k := range keys {
			m.putEntry(mon, k, entry{Seq: seq, Up: true, Reason: "200"}, now)
		}
		m.confirm(mon, m.st.monitors[mon], now)
	}
	m.mu.Unlock()
	return m, names, keys
}

// BenchmarkMerge200x10k is the owner's cost of merging one report that
// is new (a monitor's change on one target) on a node that holds 200
// monitors × 10,000 targets: decoding, the merge, the tally and the relay.
// After the loop it measures, with the owner goroutine running, the time
// from a deciding report's arrival (NotifyMsg) to the published verdict,
// with every monitor confirming its state as its digests would.
// Run: go test -run '^$' -bench Merge200x10k -benchtime 200000x ./cluster
func BenchmarkMerge200x10k(b *testing.B) { benchMerge(b, true) }

// BenchmarkMerge200x10kUnconfirmed is BenchmarkMerge200x10k with monitors
// that last confirmed their state more than the shortest freshness window
// ago (their digests stopped, or did not match), while their reports are
// still fresh: the freshness sweep must find what expires without
// rescanning their 2 M entries at every tick.
func BenchmarkMerge200x10kUnconfirmed(b *testing.B) { benchMerge(b, false) }

func benchMerge(b *testing.B, confirmed bool) {
	const mons, targets = 200, 10_000
	m, names, keys := mergeMesh(b, mons, targets)
	d := (*delegate)(m)
	seq := uint64(time.Now().UnixMicro()) + 1
	const chunk = 4096
	var msgs [][]byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%chunk == 0 {
			b.StopTimer()
			msgs = msgs[:0]
			for j := range chunk {
				n := i + j
				msgs = append(msgs, encode(msgReport, wireReport{M: names[n%mons], E: wireEntry{K: keys[(n/mons)%targets], S: seq + uint64(n), U: n%3 != 0, R: "flip"}}))
			}
			// The relay queue would grow without gossip to empty it
			// (Prune of a queue never used dereferences its nil tree).
			if m.broadcasts.NumQueued() > 0 {
				m.broadcasts.Prune(0)
			}
			b.StartTimer()
		}
		d.NotifyMsg(msgs[i%chunk])
		m.process()
	}
	b.StopTimer()

	// Report to published view: on key 0, 100 of the 200 monitors say
	// down (not more than half: up); names[100] decides every flip.
	m.mu.Lock()
	k := keys[0]
	s := uint64(time.Now().UnixMicro()) + uint64(b.N) + 10
	for i, mon := range names {
		m.putEntry(mon, k, entry{Seq: s, Up: i >= 100}, time.Now())
	}
	if !confirmed {
		// Confirmed just past the shortest window: every report is
		// still fresh (targets are probed every minute), but no monitor
		// has confirmed within minWindow.
		for _, ms := range m.st.monitors {
			ms.confirmed = time.Now().Add(-minWindow - time.Second)
		}
	}
	m.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	m.wg.Add(1)
	go m.owner(ctx)
	var took []time.Duration
	for i := range 40 {
		down := i%2 == 0
		s++
		msg := encode(msgReport, wireReport{M: names[100], E: wireEntry{K: k, S: s, U: !down}})
		time.Sleep(2 * publishEvery) // apart from the previous publish, not a synchronisation
		if confirmed {
			// Live monitors confirm their state with digests.
			m.mu.Lock()
			for _, ms := range m.st.monitors {
				ms.confirmed = time.Now()
			}
			m.mu.Unlock()
		}
		start := time.Now()
		d.NotifyMsg(msg)
		for m.Health().Down(k) != down {
			if time.Since(start) > 30*time.Second {
				b.Fatalf("flip %d: verdict not published", i)
			}
			runtime.Gosched()
		}
		took = append(took, time.Since(start))
	}
	cancel()
	m.wg.Wait()
	m.mu.Lock()
	stale := 0
	for _, ms := range m.st.monitors {
		stale += len(ms.entries) - ms.counted
	}
	m.mu.Unlock()
	if stale > 0 {
		b.Fatalf("%d reports went stale during the run: it measured expiry, not the sweep", stale)
	}
	slices.Sort(took)
	p50, p99 := took[len(took)/2], took[len(took)*99/100]
	b.Logf("confirmed %v: report to published view p50 %v, p99 %v", confirmed, p50, p99)
	b.ReportMetric(float64(p50.Microseconds()), "report-to-view-p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "report-to-view-p99-µs")
}

// BenchmarkMeshScale runs an in-process mesh on profile lan with 10,000
// targets, every node a monitor: 200 nodes (GSLBD_SCALE_NODES, or as many
// as the machine bears) with monitors_per_target = 3, as a large mesh is
// run, and 50 nodes × 1,000 targets with every monitor probing every
// target. It logs the time until a verdict change reaches every node
// (p50, p99), the steady gossip per node and the heap per node.
// Run: go test -run '^$' -bench MeshScale -benchtime 1x -timeout 60m ./cluster
func BenchmarkMeshScale(b *testing.B) {
	n := envInt("GSLBD_SCALE_NODES", 50)
	b.Run(fmt.Sprintf("nodes=%d/targets=10000/k=3", n), func(b *testing.B) {
		for b.Loop() {
			simulateScale(b, n, 10_000, 3)
		}
	})
	b.Run("nodes=50/targets=1000/k=all", func(b *testing.B) {
		for b.Loop() {
			simulateScale(b, 50, 1000, 0)
		}
	})
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	return s.HeapInuse
}

func simulateScale(b *testing.B, n, targets, k int) {
	checkLeaks(b)
	began := time.Now()
	quiet := slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	base := heapInuse()
	var fts []*faultTransport
	ms := startMeshes(b, n, func(i int, o *Options) {
		ft := newFaultTransport(b, uint64(i+1), 0, 0)
		fts = append(fts, ft)
		o.Transport = ft
		o.Logger = quiet
		o.Profile = "lan"
		o.MonitorsPerTarget = k
		o.Join = nil
		for range min(i, 3) {
			o.Join = append(o.Join, fts[rand.IntN(i)].addr)
		}
	})
	b.Logf("%d nodes joined and alive everywhere in %v", n, time.Since(began))
	iv := make(map[string]time.Duration, targets)
	keys := make([]string, targets)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.%d.%d.%d|http:80/healthz", i>>16, i>>8&255, i&255)
		iv[keys[i]] = 5 * time.Second
	}
	for _, m := range ms {
		m.SetTargets(iv)
	}
	// Every monitor reports up on what it probes.
	perTarget := n
	if k > 0 {
		perTarget = k
	}
	waitFor(b, 2*time.Minute, "the same assignment everywhere", func() bool {
		for _, m := range ms {
			if a := m.Assignment(); len(a.Monitors(keys[0])) != perTarget || !slices.Equal(a.Monitors(keys[0]), ms[0].Assignment().Monitors(keys[0])) {
				return false
			}
		}
		return true
	})
	t0 := time.Now()
	for _, m := range ms {
		a := m.Assignment()
		for _, key := range keys {
			if a.Probes(key) {
				m.SetLocal(key, true, "200")
			}
		}
	}
	want := targets * perTarget
	entries := func(m *Mesh) int {
		m.mu.Lock()
		defer m.mu.Unlock()
		total := 0
		for _, mon := range m.st.monitors {
			total += mon.counted
		}
		return total
	}
	// Polled once a second (checking 200 nodes takes their locks), with
	// the slowest node's count logged every 30 s to show the progress.
	for lastLog := t0; ; time.Sleep(time.Second) {
		least := want
		for _, m := range ms {
			least = min(least, entries(m))
		}
		if least == want {
			break
		}
		if time.Since(t0) > 15*time.Minute {
			b.Fatalf("after %v the slowest node counts %d of %d reports", time.Since(t0), least, want)
		}
		if time.Since(lastLog) > 30*time.Second {
			lastLog = time.Now()
			b.Logf("%v: the slowest node counts %d of %d reports", time.Since(t0).Round(time.Second), least, want)
		}
	}
	b.Logf("%d reports (%d targets × %d monitors) counted on every node %v after they were made", want, targets, perTarget, time.Since(t0))
	// Steady state: the relay queues of the initial reports drained (or
	// a bound passed), then digests and memberlist probes only.
	queued := func() int {
		q := 0
		for _, m := range ms {
			q += m.broadcasts.NumQueued()
		}
		return q
	}
	drain := time.Now()
	for queued() > 0 && time.Since(drain) < 3*time.Minute {
		time.Sleep(time.Second)
	}
	b.Logf("relay queues: %d messages left %v after the reports counted", queued(), time.Since(drain))
	wirePerNode, oursPerNode := gossipRate(fts, ms, 10*time.Second)
	heap := heapInuse()
	heapPerNode := float64(heap-min(heap, base)) / float64(n)
	full := (*delegate)(ms[0]).LocalState(false)

	// The deciding key: the first half (rounded down) of its monitors
	// say down throughout, the next one flips and decides every change.
	key := keys[0]
	mons := ms[0].Assignment().Monitors(key)
	byName := map[string]*Mesh{}
	for _, m := range ms {
		byName[m.opts.Name] = m
	}
	for _, mon := range mons[:len(mons)/2] {
		byName[mon].SetLocal(key, false, "timeout")
	}
	flipper := byName[mons[len(mons)/2]]
	waitFor(b, time.Minute, "the deciding key up everywhere", func() bool { return allDown(ms, key, false) })
	var took []time.Duration
	const changes = 20
	for c := range changes {
		down := c%2 == 0
		flipper.SetLocal(key, !down, "flip")
		took = append(took, waitFor(b, time.Minute, fmt.Sprintf("change %d everywhere", c), func() bool { return allDown(ms, key, down) }))
		time.Sleep(500 * time.Millisecond) // apart from the previous change, not a synchronisation
	}
	slices.Sort(took)
	p50, p99 := took[len(took)/2], took[(len(took)*99-1)/100]
	b.Logf("verdict change reached all %d nodes: p50 %v, p99 %v (%d changes)", n, p50, p99, changes)
	b.Logf("steady gossip per node: %.0f B/s on the wire (all memberlist packets), %.0f B/s of gslbd messages", wirePerNode, oursPerNode)
	b.Logf("heap per node: %.1f MB (HeapInuse after GC, %d nodes, minus the heap before they started); each holds %d reports, full state %d bytes", heapPerNode/1e6, n, want, len(full))
	b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
	b.ReportMetric(float64(p99.Milliseconds()), "p99-ms")
	b.ReportMetric(wirePerNode, "wire-B/s/node")
	b.ReportMetric(oursPerNode, "gslbd-B/s/node")
	b.ReportMetric(heapPerNode/1e6, "heap-MB/node")
	for _, m := range ms {
		m.Shutdown()
	}
	b.Logf("run took %v", time.Since(began))
}

package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gslbd/healthmon"
	"gslbd/zones"
)

// probeCounter is an HTTP backend that records which monitors probe it,
// by the User-Agent every gslbd probe sends, and can fail.
type probeCounter struct {
	mu      sync.Mutex
	by      map[string]int // monitor → probes since the last reset
	failing bool
	target  zones.Target
}

func startProbeCounter(t *testing.T, interval time.Duration) *probeCounter {
	pc := &probeCounter{by: map[string]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua := r.UserAgent()
		node, _ := strings.CutSuffix(ua[strings.LastIndex(ua, "(node ")+len("(node "):], ")")
		pc.mu.Lock()
		pc.by[node]++
		failing := pc.failing
		pc.mu.Unlock()
		if failing {
			http.Error(w, "failing", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	ap := netip.MustParseAddrPort(l.Addr().String())
	pc.target = zones.Target{
		Key:  fmt.Sprintf("%s|http:%d/healthz", ap.Addr(), ap.Port()),
		Addr: ap.Addr(),
		Check: zones.Check{Type: zones.CheckHTTP, Port: ap.Port(), Path: "/healthz", Expect: []int{200},
			Interval: interval, Timeout: time.Second, Rise: 1, Fall: 1},
	}
	return pc
}

// window resets the counts, waits d and returns who probed meanwhile.
func (pc *probeCounter) window(d time.Duration) map[string]int {
	pc.mu.Lock()
	pc.by = map[string]int{}
	pc.mu.Unlock()
	time.Sleep(d) // counting over a fixed window, not synchronising
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return maps.Clone(pc.by)
}

// TestShardedProbing: monitors with monitors_per_target = 3 (12 in
// `make test`, which shares two cores; GSLBD_SHARD_NODES=50 for the full
// figure: GSLBD_SHARD_NODES=50 go test -run TestShardedProbing -v ./cluster). Each
// node's health monitor probes only the targets the mesh assigns to it
// (Assignment.Filter, as gslbd serve wires it), so each backend sees 3
// monitors instead of 50, the same 3 that every node's Assignment names.
// The verdict follows those 3; when one of them dies, its targets move to
// the next monitor within memberlist's failure detection.
func TestShardedProbing(t *testing.T) {
	checkLeaks(t)
	n := envInt("GSLBD_SHARD_NODES", 12)
	const k = 3
	const interval = 250 * time.Millisecond
	backends := []*probeCounter{startProbeCounter(t, interval), startProbeCounter(t, interval)}
	targets := []zones.Target{backends[0].target, backends[1].target}
	intervals := map[string]time.Duration{}
	for _, tg := range targets {
		intervals[tg.Key] = interval
	}
	quiet := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ms := startMeshes(t, n, func(i int, o *Options) {
		o.MonitorsPerTarget = k
		o.Logger = quiet
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	stops := make([]context.CancelFunc, n)
	for i, m := range ms {
		m.SetTargets(intervals)
		mon := healthmon.New(healthmon.Options{Node: m.opts.Name, Version: "test", Logger: quiet,
			Report: func(r healthmon.Report) { m.SetLocal(r.Key, r.Up, r.Reason) }})
		mctx, stop := context.WithCancel(ctx)
		stops[i] = stop
		wg.Go(func() { mon.Run(mctx) })
		wg.Go(func() {
			mon.Update(m.Assignment().Filter(targets))
			for {
				select {
				case <-mctx.Done():
					return
				case <-m.Changes():
					mon.Update(m.Assignment().Filter(targets))
				}
			}
		})
	}
	agreed := func(key string, live []*Mesh) []string {
		want := live[0].Assignment().Monitors(key)
		for _, m := range live {
			if !slices.Equal(m.Assignment().Monitors(key), want) {
				return nil
			}
		}
		return want
	}
	for _, tg := range targets {
		waitFor(t, 20*time.Second, "every node assigns "+tg.Key+" to the same 3", func() bool { return len(agreed(tg.Key, ms)) == k })
	}
	assigned := agreed(targets[0].Key, ms)
	waitFor(t, 10*time.Second, "the 3 assigned monitors' votes everywhere", func() bool {
		for _, m := range ms {
			if len(m.Votes(targets[0].Key)) != k {
				return false
			}
		}
		return true
	})

	// Over 2 s (8 intervals) each backend is probed by exactly its 3.
	for i, b := range backends {
		got := b.window(2 * time.Second)
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range got {
				if !yield(n) {
					return
				}
			}
		})
		want := slices.Sorted(slices.Values(agreed(targets[i].Key, ms)))
		total := 0
		for _, c := range got {
			total += c
		}
		t.Logf("backend %d: %d probes in 2 s from %v (with every monitor probing: %d monitors, about %d probes)", i, total, names, n, n*8)
		if !slices.Equal(names, want) {
			t.Errorf("backend %d probed by %v, want its assigned monitors %v", i, names, want)
		}
	}

	// The verdict is the assigned monitors' majority.
	backends[0].mu.Lock()
	backends[0].failing = true
	backends[0].mu.Unlock()
	waitFor(t, 10*time.Second, "backend 0 down on every node", func() bool { return allDown(ms, targets[0].Key, true) })

	// One assigned monitor dies: its place goes to the next in the
	// ranking, which starts probing.
	victim := slices.IndexFunc(ms, func(m *Mesh) bool { return m.opts.Name == assigned[0] })
	start := time.Now()
	stops[victim]()
	ms[victim].Shutdown()
	live := slices.Delete(slices.Clone(ms), victim, victim+1)
	var next []string
	waitFor(t, 20*time.Second, "a new monitor takes the dead one's place", func() bool {
		next = agreed(targets[0].Key, live)
		return len(next) == k && !slices.Contains(next, assigned[0])
	})
	moved := time.Since(start)
	newcomer := ""
	for _, name := range next {
		if !slices.Contains(assigned, name) {
			newcomer = name
		}
	}
	waitFor(t, 10*time.Second, "the newcomer probes backend 0 and votes", func() bool {
		backends[0].mu.Lock()
		probed := backends[0].by[newcomer] > 0
		backends[0].mu.Unlock()
		up, voted := live[0].Votes(targets[0].Key)[newcomer]
		return probed && voted && !up
	})
	t.Logf("monitor %s died: %s took its place on every node %v later (memberlist failure detection on profile local)", assigned[0], newcomer, moved.Round(time.Millisecond))
	if !allDown(live, targets[0].Key, true) {
		t.Error("verdict changed while the assignment moved")
	}
}

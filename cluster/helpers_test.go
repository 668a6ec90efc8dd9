package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"gslbd/internal/leakcheck"
	"gslbd/internal/testlog"
)

// checkLeaks fails the test when goroutines of memberlist or of this
// package outlive it. Register it first so it runs after every other
// cleanup.
func checkLeaks(t testing.TB) {
	leakcheck.Check(t, "hashicorp/memberlist", "gslbd/cluster.(*Mesh)", "gslbd/cluster/faultnet.")
}

func testLogger(t testing.TB) *slog.Logger { return testlog.New(t, slog.LevelInfo) }

// startMesh starts a node on 127.0.0.1:0 with profile local; it is shut
// down (without leaving) when the test ends unless the test did it.
func startMesh(t testing.TB, opts Options) *Mesh {
	t.Helper()
	return startMeshCfg(t, opts, nil)
}

// startMeshCfg is startMesh with a hook that adjusts the memberlist
// configuration before the mesh starts.
func startMeshCfg(t testing.TB, opts Options, tweak func(*memberlist.Config)) *Mesh {
	t.Helper()
	if opts.Bind == "" && opts.Transport == nil {
		opts.Bind = "127.0.0.1:0"
	}
	if opts.Profile == "" {
		opts.Profile = "local"
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatalf("new mesh %s: %v", opts.Name, err)
	}
	if tweak != nil {
		tweak(m.cfg)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start mesh %s: %v", opts.Name, err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

// startMeshes starts n monitor nodes n1..nn, each joining the first.
func startMeshes(t testing.TB, n int, tweak func(i int, o *Options)) []*Mesh {
	t.Helper()
	return startMeshesCfg(t, n, tweak, nil)
}

func startMeshesCfg(t testing.TB, n int, tweak func(i int, o *Options), cfg func(*memberlist.Config)) []*Mesh {
	t.Helper()
	var ms []*Mesh
	for i := range n {
		o := Options{Name: fmt.Sprintf("n%d", i+1), Monitor: true}
		if i > 0 {
			o.Join = []string{ms[0].Addr()}
		}
		if tweak != nil {
			tweak(i, &o)
		}
		ms = append(ms, startMeshCfg(t, o, cfg))
	}
	start := time.Now()
	for {
		var counts []int
		all := true
		for _, m := range ms {
			c := aliveCount(m)
			counts = append(counts, c)
			all = all && c == n
		}
		if all {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("after %v not every node sees all %d members alive: %v", time.Since(start), n, counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ms
}

func aliveCount(m *Mesh) int {
	n := 0
	for _, mb := range m.Members() {
		if mb.State == "alive" {
			n++
		}
	}
	return n
}

// waitFor polls cond every 10 ms until it holds or timeout passes, and
// returns how long it took.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func allDown(ms []*Mesh, key string, down bool) bool {
	for _, m := range ms {
		if m.Health().Down(key) != down {
			return false
		}
	}
	return true
}

func allVotes(ms []*Mesh, key string, want map[string]bool) bool {
	for _, m := range ms {
		got := m.Votes(key)
		if len(got) != len(want) {
			return false
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				return false
			}
		}
	}
	return true
}

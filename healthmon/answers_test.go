package healthmon

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
	"gslbd/zones/config"
)

// localHealth is a single node's verdicts straight from its own probes, as
// the mesh gives them when the node is alone (README, Health checks and the mesh). Each report
// publishes a new immutable view, as cmd/gslbd does.
type localHealth struct {
	mu   sync.Mutex
	down map[string]bool
	snap *zones.Snapshot
	view atomic.Pointer[zones.View]
}

type downSet map[string]bool

func (d downSet) Down(key string) bool                         { return d[key] }
func (d downSet) Drained(pool, site string, a netip.Addr) bool { return false }

func (h *localHealth) report(r Report) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down[r.Key] = !r.Up
	cp := make(downSet, len(h.down))
	for k, v := range h.down {
		cp[k] = v
	}
	h.view.Store(zones.NewView(h.snap, cp))
}

// answer is what the pool answers an A query with right now.
func (h *localHealth) answer(t *testing.T, pool string) (addrs []string, from string) {
	v := h.view.Load()
	p := v.Snap.Pools[pool]
	if p == nil {
		t.Fatalf("no pool %q", pool)
	}
	r := v.Select(p, dns.TypeA, zones.Client{Addr: netip.MustParseAddr("127.0.0.1")}, nil)
	for _, a := range r.Addrs {
		addrs = append(addrs, a.String())
	}
	slices.Sort(addrs)
	if r.NoData {
		return nil, "nodata"
	}
	return addrs, r.Pool.Name
}

// waitAnswer polls until pool answers want (from pool `from`), returning
// how long that took.
func (h *localHealth) waitAnswer(t *testing.T, pool, from string, want []string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, gotFrom := h.answer(t, pool)
		if slices.Equal(got, want) && gotFrom == from {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("pool %s answers %v from %s after %v, want %v from %s", pool, got, gotFrom, within, want, from)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// pairListeners listens on the same port at two addresses, as a pool
// check with one port needs.
func pairListeners(t *testing.T, ip1, ip2 string) (net.Listener, net.Listener, uint16) {
	for range 20 {
		l1 := listen(t, ip1)
		port := netip.MustParseAddrPort(l1.Addr().String()).Port()
		l2, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip2, port))
		if err == nil {
			return l1, l2, port
		}
		l1.Close()
	}
	t.Fatalf("no common free port on %s and %s", ip1, ip2)
	return nil, nil, 0
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAnswersFollowProbes runs the loader's targets through a monitor
// against real TCP backends and watches the answers of three pools that
// share them: an address leaves the answers within interval × fall of its
// backend stopping and returns after rise, and each when_all_down mode
// does what docs/configuration.md says once every backend is down.
func TestAnswersFollowProbes(t *testing.T) {
	checkLeaks(t)
	la, lb, port := pairListeners(t, "127.0.0.31", "127.0.0.32")
	doneA, doneB := serve(la), serve(lb)
	t.Cleanup(func() { la.Close(); lb.Close(); <-doneA; <-doneB })

	const interval, rise, fall = 100 * time.Millisecond, 2, 3
	check := fmt.Sprintf(`check = { type = "tcp", port = %d, interval = "%v", timeout = "50ms", rise = %d, fall = %d }`, port, interval, rise, fall)
	sites := "[[%[1]s.sites]]\nname = \"a\"\naddresses = [\"127.0.0.31\"]\n[[%[1]s.sites]]\nname = \"b\"\naddresses = [\"127.0.0.32\"]\n"
	pool := func(name, allDown string) string {
		return fmt.Sprintf("[%s]\npolicy = \"failover\"\nanswers = 2\n%s\n%s\n", name, allDown, check) + fmt.Sprintf(sites, name)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"gslbd.toml": "[node]\nname = \"n1\"\n",
		"zones/gslb.toml": `origin = "gslb.test."
nameservers = ["ns1.example.net."]
[soa]
rname = "hostmaster.gslb.test."
[records.web]
pool = "web"
[records.strict]
pool = "strict"
[records.spare]
pool = "spare"
`,
		"pools/pools.toml": pool("web", `when_all_down = "answer-all"`) +
			pool("strict", `when_all_down = "nodata"`) +
			pool("spare", "when_all_down = \"fallback\"\nfallback = \"backup\"") +
			"[backup]\n[[backup.sites]]\nname = \"lab\"\naddresses = [\"127.0.0.39\"]\n",
	})
	cfg, err := config.LoadNodeConfig(filepath.Join(dir, "gslbd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Three pools share the two (address, check) pairs: two probed
	// targets plus the backup's "none".
	if len(snap.Targets) != 3 {
		t.Fatalf("targets = %+v, want 3", snap.Targets)
	}

	h := &localHealth{down: map[string]bool{}, snap: snap}
	h.view.Store(zones.NewView(snap, nil))
	_, reps := startMonitor(t, Options{Report: h.report}, snap.Targets)
	for _, tg := range snap.Targets {
		if got := waitReports(t, reps, tg.Key, 1, 5*time.Second); len(got) != 1 || !got[0].Up {
			t.Fatalf("initial reports for %s = %+v", tg.Key, got)
		}
	}
	both := []string{"127.0.0.31", "127.0.0.32"}
	h.waitAnswer(t, "web", "web", both, time.Second)

	limitDown := time.Duration(fall)*interval*11/10 + 150*time.Millisecond
	la.Close()
	<-doneA
	took := h.waitAnswer(t, "web", "web", []string{"127.0.0.32"}, 5*time.Second)
	t.Logf("backend 127.0.0.31 stopped → left the answers after %v (interval %v × fall %d; limit %v)", took, interval, fall, limitDown)
	if took > limitDown {
		t.Errorf("left the answers after %v, want ≤ %v", took, limitDown)
	}

	lb.Close()
	<-doneB
	took = h.waitAnswer(t, "web", "web", both, 5*time.Second) // answer-all: fail open
	t.Logf("backend 127.0.0.32 stopped → all down, answer-all after %v", took)
	if took > limitDown {
		t.Errorf("all down after %v, want ≤ %v", took, limitDown)
	}
	h.waitAnswer(t, "strict", "nodata", nil, time.Second)
	h.waitAnswer(t, "spare", "backup", []string{"127.0.0.39"}, time.Second)

	la2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.31:%d", port))
	if err != nil {
		t.Fatalf("restart backend: %v", err)
	}
	doneA2 := serve(la2)
	t.Cleanup(func() { la2.Close(); <-doneA2 })
	took = h.waitAnswer(t, "web", "web", []string{"127.0.0.31"}, 5*time.Second)
	limitUp := time.Duration(rise)*interval*11/10 + 150*time.Millisecond
	t.Logf("backend 127.0.0.31 started → back in the answers after %v (rise %d; limit %v)", took, rise, limitUp)
	if took > limitUp {
		t.Errorf("back after %v, want ≤ %v", took, limitUp)
	}
	h.waitAnswer(t, "strict", "strict", []string{"127.0.0.31"}, time.Second)
	h.waitAnswer(t, "spare", "spare", []string{"127.0.0.31"}, time.Second)
}

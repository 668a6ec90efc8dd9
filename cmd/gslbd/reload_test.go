package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// bigCityDB writes a GeoIP2-City database of n networks to path with
// testdata/bigcity, run as a process of its own: without the race
// detector it takes a few seconds instead of ten or more.
func bigCityDB(t testing.TB, path string, n int) {
	t.Helper()
	out, err := exec.Command("go", "run", "./testdata/bigcity", "-n", strconv.Itoa(n), "-out", path).CombinedOutput()
	if err != nil {
		t.Fatalf("generate the database: %v\n%s", err, out)
	}
}

// bigNetworks is the size of the generated database.
const bigNetworks = 200_000

const reloadPools = `[web]
policy = "failover"
answers = 1
ttl = 5

[web.check]
type = "tcp"
port = %d
interval = "100ms"
timeout = "80ms"
rise = 1
fall = 1

[[web.sites]]
name = "primary"
addresses = ["127.0.0.1"]

[[web.sites]]
name = "backup"
addresses = ["127.0.0.2"]
[web.sites.check]
type = "none"
`

// TestVerdictDuringReload measures how long a verdict change takes to
// reach the answers, idle and while a reload of a large geo database is
// in progress: reloads run off the loop that publishes verdicts, so the
// figures are alike. The first reload is held between its load and its
// swap (reloadHook) while the verdict changes, so it is in progress for
// sure; were the reload in the way, no change would reach the answers
// until it is released. A second reload runs unheld, to time a reload.
func TestVerdictDuringReload(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "big.mmdb")
	t0 := time.Now()
	bigCityDB(t, db, bigNetworks)
	t.Logf("generated a City database of %d networks in %v", bigNetworks, time.Since(t0).Round(time.Millisecond))

	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := backend.Addr().(*net.TCPAddr).Port
	go acceptAll(backend)
	t.Cleanup(func() { backend.Close() })

	var hold atomic.Bool
	entered := make(chan time.Time, 1)
	release := make(chan struct{})
	files := nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": fmt.Sprintf(reloadPools, port)}
	p := startInproc(t, "r1", files, fmt.Sprintf("[geo]\ncity_db = %q\n", db), nil, func(n *node) {
		n.reloadHook = func() {
			if hold.Load() {
				entered <- time.Now()
				<-release
			}
		}
	})
	// A failing test lets the held reload go before the node stops.
	releaseHold := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseHold)
	answer := func() string {
		m := new(dns.Msg)
		m.SetQuestion("www.gslb.test.", dns.TypeA)
		c := &dns.Client{Timeout: time.Second}
		r, _, err := c.Exchange(m, p.DNS)
		if err != nil || len(r.Answer) != 1 {
			return ""
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	// The idle figure is one probe interval (100 ms) plus a publish; a
	// reload in the way would add all of its time. Generous for a busy
	// machine.
	const limit = 3 * time.Second
	// flip takes the primary down (or brings it back) and returns how
	// long the answer took to follow.
	down := false
	flip := func(what string) time.Duration {
		t.Helper()
		down = !down
		want := "127.0.0.1"
		if down {
			want = "127.0.0.2"
			backend.Close()
		} else {
			if backend, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
				t.Fatalf("listen again on %d: %v", port, err)
			}
			go acceptAll(backend)
		}
		start := time.Now()
		for time.Since(start) < 2*limit {
			if answer() == want {
				return time.Since(start)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%s: the answer did not become %s within %v", what, want, 2*limit)
		return 0
	}
	eventually(t, 10*time.Second, "primary answers", func() bool { return answer() == "127.0.0.1" })

	var idle, during []time.Duration
	for range 4 {
		idle = append(idle, flip("idle"))
	}

	// Touch the database so the reload reads and walks it again instead
	// of reusing it.
	touch := func() {
		t.Helper()
		later := time.Now().Add(time.Minute)
		if err := os.Chtimes(db, later, later); err != nil {
			t.Fatal(err)
		}
	}
	lastReload := func() time.Time { return p.n.admin.Status().LastReload.At }
	before := lastReload()
	touch()
	hold.Store(true)
	hup := time.Now()
	p.Reload()
	var loaded time.Duration
	select {
	case at := <-entered:
		loaded = at.Sub(hup)
	case <-time.After(60 * time.Second):
		t.Fatal("the reload did not get past its load within 60s")
	}
	for range 4 {
		during = append(during, flip("during a reload"))
	}
	hold.Store(false)
	releaseHold()
	eventually(t, 30*time.Second, "the held reload completes", func() bool { return lastReload().After(before) })

	// An unheld reload of the touched database, timed from the request to
	// its completion as the status reports it.
	first := lastReload()
	touch()
	hup = time.Now()
	p.Reload()
	eventually(t, 60*time.Second, "the second reload completes", func() bool { return lastReload().After(first) })
	took := time.Since(hup)
	if r := p.n.admin.Status().LastReload; !r.OK {
		t.Fatalf("the second reload failed: %v", r.Errors)
	}

	t.Logf("verdict change to answer, %d flips each: idle %v (median %v), during a reload %v (median %v); "+
		"the reload of the %d-network database took %v (its load %v before the swap)",
		len(idle), roundAll(idle), median(idle), roundAll(during), median(during), bigNetworks,
		took.Round(time.Millisecond), loaded.Round(time.Millisecond))
	if m := slices.Max(during); m > limit {
		t.Errorf("a verdict change took %v during a reload, want under %v (idle: %v)", m, limit, roundAll(idle))
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}

func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

package healthmon

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"

	"gslbd/zones"
)

// TestOverrides: an override is this monitor's report while it lasts —
// reported at once, the probe's decisions held back meanwhile — and when
// it ends the probe's current state is reported again.
func TestOverrides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, none := fakeTarget(1, zones.CheckHTTP, time.Second), fakeTarget(2, zones.CheckNone, time.Second)
		m, fp, reps := startFake(t, []zones.Target{a, none})
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(reps.get()); n != 2 {
			t.Fatalf("initial reports: %+v", reps.get())
		}

		m.SetOverrides(map[string]Override{a.Key: {Up: false, Reason: "external (api): deploy"}, none.Key: {Up: false, Reason: "external (file)"}})
		for _, k := range []string{a.Key, none.Key} {
			got := reps.forKey(k)
			if last := got[len(got)-1]; last.Up || !strings.HasPrefix(last.Reason, "external") {
				t.Fatalf("%s after the override: %+v", k, last)
			}
		}
		// The probe fails and decides down, then recovers: nothing is
		// reported while the override holds.
		before := len(reps.get())
		fp.set(a.Key, errors.New("boom"))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := len(reps.get()); n != before {
			t.Fatalf("reports while overridden: %+v", reps.get()[before:])
		}
		if o, ok := m.Overridden(a.Key); !ok || o.Up {
			t.Errorf("Overridden(a) = %+v, %v", o, ok)
		}

		// Same overrides again: nothing new to say.
		m.SetOverrides(map[string]Override{a.Key: {Up: false, Reason: "external (api): deploy"}, none.Key: {Up: false, Reason: "external (file)"}})
		if n := len(reps.get()); n != before {
			t.Fatalf("re-setting the same overrides reported %+v", reps.get()[before:])
		}

		// The override ends: the probe's state (down, boom) and the none
		// target's (up) are reported.
		m.SetOverrides(nil)
		ra, rn := reps.forKey(a.Key), reps.forKey(none.Key)
		if last := ra[len(ra)-1]; last.Up || last.Reason != "boom" {
			t.Errorf("a after the override ended: %+v, want the probe's down", last)
		}
		if last := rn[len(rn)-1]; !last.Up {
			t.Errorf("none target after the override ended: %+v, want up", last)
		}
		// And the probe's decisions flow again.
		fp.set(a.Key, nil)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if ra := reps.forKey(a.Key); !ra[len(ra)-1].Up {
			t.Errorf("a after recovery: %+v", ra[len(ra)-1])
		}
	})
}

// TestOverrideForNewTarget: an override for a key that is not a target
// yet applies when an Update makes it one.
func TestOverrideForNewTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := fakeTarget(1, zones.CheckNone, time.Second), fakeTarget(2, zones.CheckNone, time.Second)
		m, _, reps := startFake(t, []zones.Target{a})
		m.SetOverrides(map[string]Override{b.Key: {Up: false, Reason: "external (file)"}})
		synctest.Wait()
		if got := reps.forKey(b.Key); len(got) != 0 {
			t.Fatalf("reports for a key that is no target: %+v", got)
		}
		m.Update([]zones.Target{a, b})
		time.Sleep(time.Second)
		synctest.Wait()
		got := reps.forKey(b.Key)
		if len(got) == 0 || got[len(got)-1].Up {
			t.Fatalf("b after it became a target: %+v, want the override's down last", got)
		}
	})
}

// feedSnapshot is a configuration with pool web: site fra (192.0.2.1
// with two checks, 192.0.2.2) and site iad (192.0.2.3).
func feedSnapshot() (*zones.Snapshot, []zones.Target) {
	a1, a2, a3 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	targets := []zones.Target{
		{Key: "192.0.2.1|none", Addr: a1},
		{Key: "192.0.2.1|tcp:80", Addr: a1},
		{Key: "192.0.2.2|none", Addr: a2},
		{Key: "192.0.2.3|none", Addr: a3},
	}
	web := &zones.Pool{Name: "web"}
	web.Sites = []*zones.Site{
		{Name: "fra", Pool: web, Addrs: []zones.Address{{Addr: a1, Target: 0}, {Addr: a2, Target: 2}}},
		{Name: "iad", Pool: web, Addrs: []zones.Address{{Addr: a3, Target: 3}}},
	}
	other := &zones.Pool{Name: "api"}
	other.Sites = []*zones.Site{{Name: "fra", Pool: other, Addrs: []zones.Address{{Addr: a1, Target: 1}}}}
	return &zones.Snapshot{Pools: map[string]*zones.Pool{"web": web, "api": other}, Targets: targets}, targets
}

// overrides reads what the feed told the monitor.
func overrides(m *Monitor) map[string]Override {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Override{}
	for k, v := range m.overrides {
		out[k] = v
	}
	return out
}

func TestFeedAPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		snap, targets := feedSnapshot()
		m, _, reps := startFake(t, targets)
		f := NewFeed(FeedOptions{Monitor: m, Logger: testLogger(t)})
		f.SetSnapshot(snap)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })

		site, _ := ParseTarget("web/fra")
		site.Up, site.Reason, site.Expires = false, "fiber cut", time.Now().Add(time.Minute)
		if err := f.Set(site); err != nil {
			t.Fatal(err)
		}
		addr, _ := ParseTarget("192.0.2.1")
		addr.Up, addr.Expires = true, time.Now().Add(2*time.Minute)
		if err := f.Set(addr); err != nil {
			t.Fatal(err)
		}
		got := overrides(m)
		// The site's addresses are down, whatever the address entry says
		// (down wins); the address entry also covers its other check.
		want := map[string]Override{
			"192.0.2.1|none":   {Up: false, Reason: "external (api): fiber cut"},
			"192.0.2.2|none":   {Up: false, Reason: "external (api): fiber cut"},
			"192.0.2.1|tcp:80": {Up: true, Reason: "external (api)"},
		}
		if len(got) != len(want) {
			t.Fatalf("overrides %+v, want %+v", got, want)
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("override %s = %+v, want %+v", k, got[k], w)
			}
		}
		if r := reps.forKey("192.0.2.2|none"); len(r) == 0 || r[len(r)-1].Up || r[len(r)-1].Reason != "external (api): fiber cut" {
			t.Errorf("192.0.2.2 reports: %+v", r)
		}
		if es := f.Entries(); len(es) != 2 || es[0].Target() != "192.0.2.1" || es[1].Target() != "web/fra" {
			t.Errorf("entries %+v", es)
		}

		// Unknown targets are refused.
		for _, s := range []string{"192.0.2.99", "web/sin", "nope/fra"} {
			e, _ := ParseTarget(s)
			if err := f.Set(e); !errors.Is(err, ErrUnknownTarget) {
				t.Errorf("Set(%s) = %v, want ErrUnknownTarget", s, err)
			}
		}

		// The site entry expires after a minute: its addresses go back to
		// the probes' (up) state.
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if got := overrides(m); len(got) != 2 || !got["192.0.2.1|none"].Up {
			t.Errorf("after the site entry expired: %+v", got)
		}
		if r := reps.forKey("192.0.2.2|none"); !r[len(r)-1].Up {
			t.Errorf("192.0.2.2 after expiry: %+v", r[len(r)-1])
		}
		if !f.Clear(addr) || f.Clear(addr) {
			t.Error("Clear: want true, then false")
		}
		if got := overrides(m); len(got) != 0 {
			t.Errorf("after Clear: %+v", got)
		}
	})
}

// TestFeedFile: the watched file is read when it changes; TTLs count from
// its modification time; a file that does not parse keeps the last good
// entries; a removed file means no entries.
func TestFeedFile(t *testing.T) {
	snap, targets := feedSnapshot()
	m, _, reps := startFake(t, targets)
	path := filepath.Join(t.TempDir(), "external.txt")
	f := NewFeed(FeedOptions{File: path, Poll: 10 * time.Millisecond, Monitor: m, Logger: testLogger(t)})
	f.SetSnapshot(snap)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	write := func(body string, mod time.Time) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(tmp, mod, mod); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, cond func(map[string]Override) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(overrides(m)) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: overrides %+v", what, overrides(m))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	write("# maintenance\n192.0.2.3 down 1h deploy of build 4711\nweb/fra   down   # no TTL\n", time.Now())
	waitFor("file entries applied", func(o map[string]Override) bool {
		return len(o) == 3 && o["192.0.2.3|none"].Reason == "external (file): deploy of build 4711" && !o["192.0.2.2|none"].Up
	})
	if r := reps.forKey("192.0.2.3|none"); r[len(r)-1].Up {
		t.Errorf("192.0.2.3 not reported down: %+v", r)
	}

	// A TTL that ran out since the file was written: that entry is over.
	write("192.0.2.3 down 1m\nweb/fra down\n", time.Now().Add(-2*time.Minute))
	waitFor("expired entry dropped", func(o map[string]Override) bool {
		_, has := o["192.0.2.3|none"]
		return len(o) == 2 && !has
	})

	// A broken file changes nothing.
	write("192.0.2.3 sideways\nweb/fra down 5x\n", time.Now())
	deadline := time.Now().Add(10 * time.Second)
	for feedFileOK(f) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("broken file not flagged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if o := overrides(m); len(o) != 2 {
		t.Errorf("after a broken file: %+v, want the last good entries", o)
	}

	// The file removed: no entries, the probes' state again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor("file removed", func(o map[string]Override) bool { return len(o) == 0 })
	if r := reps.forKey("192.0.2.2|none"); !r[len(r)-1].Up {
		t.Errorf("192.0.2.2 after the file went: %+v", r[len(r)-1])
	}
}

func feedFileOK(f *Feed) float64 {
	var m dto.Metric
	_ = f.met.loadOK.Write(&m)
	return m.GetGauge().GetValue()
}

func TestParseFeedFile(t *testing.T) {
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	es, err := ParseFeedFile("ext", "\n# c\n 2001:DB8::1  UP \n::ffff:192.0.2.7 down 90s a b  c # trailing\nweb/fra down 2h\n", mod)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 || es[0].Target() != "2001:db8::1" || !es[0].Up || !es[0].Expires.IsZero() ||
		es[1].Target() != "192.0.2.7" || es[1].Up || es[1].Reason != "a b c" || !es[1].Expires.Equal(mod.Add(90*time.Second)) ||
		es[2].Pool != "web" || es[2].Site != "fra" || !es[2].Expires.Equal(mod.Add(2*time.Hour)) {
		t.Errorf("parsed %+v", es)
	}
	_, err = ParseFeedFile("ext", "192.0.2.1\n192.0.2.1 maybe\nfe80::1%eth0 down\nweb down\n192.0.2.2 down -5m\n192.0.2.2 up\n192.0.2.2 down\n", mod)
	want := []string{
		"ext:1: want TARGET STATE [TTL] [REASON]",
		"ext:2: state \"maybe\": want up or down",
		"ext:3: target \"fe80::1%eth0\": IPv6 zones are not supported",
		"ext:4: target \"web\": want an address",
		"ext:5: ttl \"-5m\": want a positive duration",
		"ext:7: 192.0.2.2 is already on line 6",
	}
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("errors:\n%v", err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

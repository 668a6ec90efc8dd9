package healthmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"gslbd/internal/testlog"
	"gslbd/zones"
)

// fakeProber answers from a per-key script; the state machine and the
// scheduler are what these tests examine, under synctest's fake clock.
type fakeProber struct {
	mu    sync.Mutex
	fail  map[string]error // key → error to return; missing means success
	hang  map[string]bool  // key → block until the deadline
	count map[string]int
	first map[string]time.Time
}

func newFakeProber() *fakeProber {
	return &fakeProber{fail: map[string]error{}, hang: map[string]bool{}, count: map[string]int{}, first: map[string]time.Time{}}
}

func (f *fakeProber) Probe(ctx context.Context, t zones.Target) error {
	f.mu.Lock()
	f.count[t.Key]++
	if _, ok := f.first[t.Key]; !ok {
		f.first[t.Key] = time.Now()
	}
	err, hang := f.fail[t.Key], f.hang[t.Key]
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeProber) set(key string, err error) {
	f.mu.Lock()
	f.fail[key] = err
	f.mu.Unlock()
}

func (f *fakeProber) probes(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[key]
}

// reports collects what the monitor reported, in order.
type reports struct {
	mu   sync.Mutex
	list []Report
}

func (r *reports) add(rep Report) {
	r.mu.Lock()
	r.list = append(r.list, rep)
	r.mu.Unlock()
}

func (r *reports) get() []Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Report(nil), r.list...)
}

func (r *reports) forKey(key string) []Report {
	var out []Report
	for _, rep := range r.get() {
		if rep.Key == key {
			out = append(out, rep)
		}
	}
	return out
}

func testLogger(t testing.TB) *slog.Logger {
	return testlog.New(t, slog.LevelDebug)
}

func fakeTarget(i int, typ zones.CheckType, interval time.Duration) zones.Target {
	addr := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
	return zones.Target{
		Key:  fmt.Sprintf("%s|fake", addr),
		Addr: addr,
		Check: zones.Check{
			Type: typ, Port: 80, Interval: interval, Timeout: interval / 2,
			Rise: 2, Fall: 3, Expect: []int{200},
		},
	}
}

// startFake runs a monitor with a fake prober until the test ends.
func startFake(t *testing.T, targets []zones.Target) (*Monitor, *fakeProber, *reports) {
	fp := newFakeProber()
	reps := &reports{}
	m := New(Options{Node: "n1", Version: "test", Logger: testLogger(t), Report: reps.add, Prober: fp})
	m.Update(targets)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return m, fp, reps
}

func TestRiseFall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tg := fakeTarget(1, zones.CheckHTTP, time.Second)
		m, fp, reps := startFake(t, []zones.Target{tg})

		// First decision: the first success confirms "up", within one
		// interval of the start.
		time.Sleep(time.Second)
		synctest.Wait()
		got := reps.get()
		if len(got) != 1 || !got[0].Up || got[0].Key != tg.Key {
			t.Fatalf("after first interval reports = %+v, want one initial up", got)
		}

		// Failing: down after exactly fall (3) failed probes, i.e. within
		// 3 intervals plus jitter.
		fp.set(tg.Key, errors.New("boom"))
		start, before := time.Now(), fp.probes(tg.Key)
		for len(reps.get()) < 2 && time.Since(start) < time.Minute {
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start)
		got = reps.get()
		if len(got) != 2 || got[1].Up || got[1].Reason != "boom" {
			t.Fatalf("reports = %+v, want a down report with reason boom", got)
		}
		if n := fp.probes(tg.Key) - before; n != 3 {
			t.Errorf("down after %d failed probes, want fall = 3", n)
		}
		if limit := 3*1100*time.Millisecond + 10*time.Millisecond; took > limit {
			t.Errorf("down after %v, want ≤ %v", took, limit)
		}
		st := m.States()[0]
		if st.Up || !st.Decided || st.Failures != 3 || st.Reason != "boom" {
			t.Errorf("state = %+v", st)
		}

		// More failures change nothing.
		time.Sleep(5 * time.Second)
		if n := len(reps.get()); n != 2 {
			t.Errorf("%d reports after staying down, want 2", n)
		}

		// Recovering: up after rise (2) successes, not before.
		fp.set(tg.Key, nil)
		before = fp.probes(tg.Key)
		for len(reps.get()) < 3 && time.Since(start) < time.Minute {
			time.Sleep(10 * time.Millisecond)
		}
		got = reps.get()
		if len(got) != 3 || !got[2].Up || got[2].Reason != "" {
			t.Fatalf("reports = %+v, want up third", got)
		}
		if n := fp.probes(tg.Key) - before; n != 2 {
			t.Errorf("up after %d successful probes, want rise = 2", n)
		}
		if st := m.States()[0]; !st.Up || st.Successes != 2 || st.Reason != "boom" {
			t.Errorf("state after recovery = %+v (the last failure's reason stays for status)", st)
		}
	})
}

func TestFirstDecisionDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A target failing from the start is never reported up: its first
		// decision is "down" after fall failures, and until then it has no
		// report (up without a report).
		tg := fakeTarget(1, zones.CheckTCP, time.Second)
		fp := newFakeProber()
		fp.set(tg.Key, errors.New("refused"))
		reps := &reports{}
		m := New(Options{Logger: testLogger(t), Report: reps.add, Prober: fp})
		m.Update([]zones.Target{tg})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()

		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := reps.get(); len(got) != 0 {
			t.Errorf("reports after 2 failures = %+v, want none", got)
		}
		if st := m.States()[0]; !st.Up || st.Decided || st.Failures == 0 {
			t.Errorf("undecided state = %+v, want assumed up with failures counted", st)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := reps.get(); len(got) != 1 || got[0].Up || got[0].Reason != "refused" {
			t.Errorf("reports = %+v, want one down", got)
		}
		cancel()
		<-done
	})
}

func TestTimeoutReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tg := fakeTarget(1, zones.CheckHTTP, time.Second)
		tg.Check.Fall = 1
		fp := newFakeProber()
		fp.hang[tg.Key] = true
		reps := &reports{}
		m := New(Options{Logger: testLogger(t), Report: reps.add, Prober: fp})
		m.Update([]zones.Target{tg})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		got := reps.get()
		if len(got) != 1 || got[0].Up || got[0].Reason != "timeout after 500ms" {
			t.Errorf("reports = %+v, want down with reason %q", got, "timeout after 500ms")
		} else if got[0].Latency != 500*time.Millisecond {
			t.Errorf("latency of a timed-out probe = %v, want the timeout", got[0].Latency)
		}
		cancel()
		<-done
	})
}

func TestNoneIsUpAndNeverProbed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tg := fakeTarget(1, zones.CheckNone, time.Second)
		m, fp, reps := startFake(t, []zones.Target{tg})
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := reps.get(); len(got) != 1 || !got[0].Up {
			t.Errorf("reports = %+v, want exactly one up", got)
		}
		if n := fp.probes(tg.Key); n != 0 {
			t.Errorf("none check probed %d times", n)
		}
		if st := m.States(); len(st) != 1 || !st[0].Up || !st[0].Decided || st[0].Check != zones.CheckNone {
			t.Errorf("states = %+v", st)
		}
	})
}

func TestScheduleSpreadAndRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 200
		var targets []zones.Target
		for i := range n {
			tg := fakeTarget(i, zones.CheckTCP, time.Second)
			tg.Key = fmt.Sprintf("t%03d", i)
			targets = append(targets, tg)
		}
		start := time.Now()
		_, fp, _ := startFake(t, targets)
		time.Sleep(20*time.Second + time.Millisecond)
		synctest.Wait()

		// Spread: first probes fall anywhere in the first interval, not
		// all at the start.
		var early, late int
		fp.mu.Lock()
		for _, at := range fp.first {
			switch d := at.Sub(start); {
			case d >= time.Second:
				t.Errorf("first probe after %v, want within the interval", d)
			case d < 500*time.Millisecond:
				early++
			default:
				late++
			}
		}
		fp.mu.Unlock()
		if early < n/4 || late < n/4 {
			t.Errorf("first probes: %d in the first half-interval, %d in the second; want a spread", early, late)
		}
		// Rate: 20 s at 1 s ±10% is 18..22 probes for every target.
		for _, tg := range targets {
			if c := fp.probes(tg.Key); c < 18 || c > 22 {
				t.Errorf("%s probed %d times in 20 s at 1 s interval", tg.Key, c)
			}
		}
	})
}

func TestUpdateKeepsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := fakeTarget(1, zones.CheckHTTP, time.Second)
		b := fakeTarget(2, zones.CheckHTTP, time.Second)
		c := fakeTarget(3, zones.CheckTCP, time.Second)
		m, fp, reps := startFake(t, []zones.Target{a, b})
		fp.set(a.Key, errors.New("status 503"))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := reps.forKey(a.Key); len(got) != 1 || got[0].Up {
			t.Fatalf("a reports = %+v, want down", got)
		}

		// Reload: a stays (listed twice, as when two pools share it), b
		// goes, c comes.
		bProbes := fp.probes(b.Key)
		m.Update([]zones.Target{a, c, a})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := reps.forKey(a.Key); len(got) != 1 {
			t.Errorf("a reports after reload = %+v, want no new one (no flap, no re-learning)", got)
		}
		if n := fp.probes(b.Key); n != bProbes {
			t.Errorf("b probed %d more times after removal", n-bProbes)
		}
		if got := reps.forKey(c.Key); len(got) != 1 || !got[0].Up {
			t.Errorf("c reports = %+v, want up", got)
		}
		st := m.States()
		if len(st) != 2 || st[0].Key != a.Key || st[0].Up || st[1].Key != c.Key || !st[1].Up {
			t.Errorf("states = %+v, want a down and c up", st)
		}

		// Everything removed: the scheduler idles and Run still stops.
		m.Update(nil)
		aProbes := fp.probes(a.Key)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := fp.probes(a.Key); n != aProbes {
			t.Errorf("a probed after removal")
		}
		if st := m.States(); len(st) != 0 {
			t.Errorf("states after removing all = %+v", st)
		}
	})
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _, _ := startFake(t, nil)
		synctest.Wait()
		if err := m.Run(context.Background()); err == nil {
			t.Error("second concurrent Run: no error")
		}
	})
}

func TestMachine(t *testing.T) {
	ok, bad := result{ok: true}, result{reason: "x"}
	cases := []struct {
		name       string
		seq        []result
		rise, fall int
		decisions  []bool // the state after each decision
	}{
		{"first success decides up", []result{ok, ok, ok}, 2, 3, []bool{true}},
		{"fall failures decide down", []result{bad, bad, bad, bad}, 2, 3, []bool{false}},
		{"failures then success decide up", []result{bad, bad, ok}, 2, 3, []bool{true}},
		{"rise needed to come back", []result{bad, ok, bad, ok, ok, ok}, 2, 1, []bool{false, true}},
		{"interrupted runs do not count", []result{ok, bad, bad, ok, bad, bad, bad}, 1, 3, []bool{true, false}},
		{"zero rise and fall mean one", []result{ok, bad, ok}, 0, 0, []bool{true, false, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMachine()
			var got []bool
			for _, r := range tc.seq {
				if s.record(r, time.Time{}, tc.rise, tc.fall) {
					got = append(got, s.up)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.decisions) {
				t.Errorf("decisions = %v, want %v", got, tc.decisions)
			}
		})
	}
}

func TestRunAgainKeepsSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Stopping Run in the middle of probes (they hang here) and
		// starting it again loses neither targets nor state.
		a := fakeTarget(1, zones.CheckHTTP, time.Second)
		b := fakeTarget(2, zones.CheckHTTP, time.Second)
		fp := newFakeProber()
		reps := &reports{}
		m := New(Options{Logger: testLogger(t), Report: reps.add, Prober: fp})
		m.Update([]zones.Target{a, b})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		time.Sleep(3 * time.Second)
		fp.mu.Lock()
		fp.hang[a.Key] = true
		fp.mu.Unlock()
		time.Sleep(1200 * time.Millisecond) // a's probe now hangs in flight
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := len(reps.get()); n != 2 {
			t.Fatalf("reports = %+v, want the two initial ups", reps.get())
		}

		fp.mu.Lock()
		fp.hang[a.Key] = false
		fp.mu.Unlock()
		before := fp.probes(a.Key) + fp.probes(b.Key)
		ctx, cancel = context.WithCancel(context.Background())
		go func() { done <- m.Run(ctx) }()
		time.Sleep(5 * time.Second)
		cancel()
		<-done
		if n := fp.probes(a.Key) + fp.probes(b.Key) - before; n < 8 {
			t.Errorf("%d probes in 5 s after restarting Run, want about 10", n)
		}
		if n := len(reps.get()); n != 2 {
			t.Errorf("reports after restart = %+v, want no new decisions", reps.get())
		}
	})
}

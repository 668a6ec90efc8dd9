package cluster

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"gslbd/cluster/faultnet"
)

// faultTransport is a faultnet.Transport on 127.0.0.1:0 under the names
// this package's tests use: it drops a share of outgoing packets, delays
// the rest by up to maxDelay from a seeded generator, counts packet bytes,
// and partitions on command. Streams (push/pull, reliable messages, TCP
// pings) pass untouched unless cut, as TCP would retransmit.
type faultTransport struct {
	*faultnet.Transport
	addr                                   string // "ip:port" bound
	bytesOut, bytesIn, packetsOut, dropped *atomic.Uint64
}

// partition isolates fts[i] from all the others (both directions, packets
// and streams), or heals it.
func partition(fts []*faultTransport, i int, on bool) {
	for j, ft := range fts {
		switch {
		case j == i:
			ft.Isolate(on)
		case on:
			ft.Cut(fts[i].addr)
		default:
			ft.Cut()
		}
	}
}

var _ memberlist.NodeAwareTransport = (*faultTransport)(nil)

func newFaultTransport(t testing.TB, seed uint64, drop float64, maxDelay time.Duration) *faultTransport {
	t.Helper()
	ft, err := faultnet.New(faultnet.Config{BindAddr: "127.0.0.1", Drop: drop, MaxDelay: maxDelay, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	s := ft.Stats()
	return &faultTransport{Transport: ft, addr: ft.Addr(),
		bytesOut: &s.BytesOut, bytesIn: &s.BytesIn, packetsOut: &s.PacketsOut, dropped: &s.Dropped}
}

// verdictLog records every change of one key's verdict on one node, from
// the node's Changes channel.
type verdictLog struct {
	mu    sync.Mutex
	flips []bool
}

func watchVerdict(t *testing.T, m *Mesh, key string, stop <-chan struct{}, wg *sync.WaitGroup) *verdictLog {
	vl := &verdictLog{}
	last := m.Health().Down(key)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-m.Changes():
			}
			if d := m.Health().Down(key); d != last {
				last = d
				vl.mu.Lock()
				vl.flips = append(vl.flips, d)
				vl.mu.Unlock()
			}
		}
	}()
	return vl
}

// TestFaultInjection: with 20% of packets lost and the rest delayed up to
// 50 ms, verdicts still converge on every node, and each node's verdict
// changes exactly once per decided change: no flapping.
func TestFaultInjection(t *testing.T) {
	checkLeaks(t)
	const n = 5
	var fts []*faultTransport
	ms := startMeshes(t, n, func(i int, o *Options) {
		ft := newFaultTransport(t, uint64(i+1), 0.2, 50*time.Millisecond)
		fts = append(fts, ft)
		o.Transport = ft
		o.Monitor = i < 3 // n4 and n5 serve DNS only
	})
	for _, m := range ms {
		m.SetTargets(map[string]time.Duration{key: time.Second})
	}
	for _, m := range ms[:3] {
		m.SetLocal(key, true, "200")
	}
	waitFor(t, 10*time.Second, "three votes everywhere", func() bool {
		return allVotes(ms, key, map[string]bool{"n1": true, "n2": true, "n3": true})
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	logs := make([]*verdictLog, n)
	for i, m := range ms {
		logs[i] = watchVerdict(t, m, key, stop, &wg)
	}
	const changes = 6
	var took []time.Duration
	for c := range changes {
		down := c%2 == 0
		// n1 always agrees with the change; n2 decides it.
		ms[0].SetLocal(key, !down, "flip")
		ms[1].SetLocal(key, !down, "flip")
		took = append(took, waitFor(t, 10*time.Second, fmt.Sprintf("change %d (down=%v) everywhere", c, down), func() bool { return allDown(ms, key, down) }))
		// Hold the verdict for several gossip and digest rounds: nothing
		// may flip back.
		hold := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(hold) {
			if !allDown(ms, key, down) {
				t.Fatalf("change %d: a node flipped back", c)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	for i, vl := range logs {
		want := []bool{true, false, true, false, true, false}
		if fmt.Sprint(vl.flips) != fmt.Sprint(want) {
			t.Errorf("%s: verdict changes %v, want %v", ms[i].opts.Name, vl.flips, want)
		}
	}
	var dropped, sent uint64
	for _, ft := range fts {
		dropped += ft.dropped.Load()
		sent += ft.packetsOut.Load()
	}
	t.Logf("convergence with 20%% loss: %v; %d of %d packets dropped", took, dropped, sent)
}

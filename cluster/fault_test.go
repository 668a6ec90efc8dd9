package cluster

import (
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// faultTransport wraps a real NetTransport on 127.0.0.1:0: it drops a share
// of outgoing packets and delays the rest by up to maxDelay, from a seeded
// generator, and counts packet bytes. Streams (push/pull, reliable
// messages, TCP pings) pass untouched, as TCP would retransmit.
type faultTransport struct {
	nt       *memberlist.NetTransport
	drop     float64
	maxDelay time.Duration

	mu     sync.Mutex
	rng    *rand.Rand
	closed bool

	in   chan *memberlist.Packet
	done chan struct{}
	wg   sync.WaitGroup

	bytesOut, bytesIn, packetsOut, dropped atomic.Uint64
	addr                                   string // "ip:port" bound

	// isolated drops every packet and refuses every stream this node
	// sends; cut drops those to the listed addresses. Together they make
	// a partition (see partition).
	isolated bool
	cut      map[string]bool
}

// blocks says whether a packet or stream to addr is lost. The caller
// holds ft.mu.
func (ft *faultTransport) blocks(addr string) bool { return ft.isolated || ft.cut[addr] }

// partition isolates fts[i] from all the others (both directions, packets
// and streams), or heals it.
func partition(fts []*faultTransport, i int, on bool) {
	for j, ft := range fts {
		ft.mu.Lock()
		if j == i {
			ft.isolated = on
		} else if on {
			if ft.cut == nil {
				ft.cut = map[string]bool{}
			}
			ft.cut[fts[i].addr] = true
		} else {
			delete(ft.cut, fts[i].addr)
		}
		ft.mu.Unlock()
	}
}

var _ memberlist.NodeAwareTransport = (*faultTransport)(nil)

func newFaultTransport(t testing.TB, seed uint64, drop float64, maxDelay time.Duration) *faultTransport {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatalf("net transport: %v", err)
	}
	ft := &faultTransport{
		nt: nt, drop: drop, maxDelay: maxDelay,
		rng:  rand.New(rand.NewPCG(seed, seed*7+1)),
		in:   make(chan *memberlist.Packet),
		done: make(chan struct{}),
	}
	ip, port, err := nt.FinalAdvertiseAddr("", 0)
	if err != nil {
		t.Fatalf("net transport address: %v", err)
	}
	ft.addr = net.JoinHostPort(ip.String(), fmt.Sprint(port))
	ft.wg.Add(1)
	go ft.forward()
	return ft
}

func (ft *faultTransport) forward() {
	defer ft.wg.Done()
	for {
		select {
		case <-ft.done:
			return
		case p := <-ft.nt.PacketCh():
			ft.bytesIn.Add(uint64(len(p.Buf)))
			select {
			case ft.in <- p:
			case <-ft.done:
				return
			}
		}
	}
}

func (ft *faultTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return ft.nt.FinalAdvertiseAddr(ip, port)
}

func (ft *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return ft.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (ft *faultTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ft.packetsOut.Add(1)
	ft.bytesOut.Add(uint64(len(b)))
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.closed {
		return time.Time{}, fmt.Errorf("fault transport closed")
	}
	if ft.blocks(a.Addr) || (ft.drop > 0 && ft.rng.Float64() < ft.drop) {
		ft.dropped.Add(1)
		return time.Now(), nil // lost on the way
	}
	if ft.maxDelay <= 0 {
		return ft.nt.WriteToAddress(b, a)
	}
	buf := append([]byte(nil), b...)
	ft.wg.Add(1)
	time.AfterFunc(time.Duration(ft.rng.Int64N(int64(ft.maxDelay))), func() {
		defer ft.wg.Done()
		ft.nt.WriteToAddress(buf, a)
	})
	return time.Now(), nil
}

func (ft *faultTransport) PacketCh() <-chan *memberlist.Packet { return ft.in }

func (ft *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return ft.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (ft *faultTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	ft.mu.Lock()
	blocked := ft.blocks(a.Addr)
	ft.mu.Unlock()
	if blocked {
		return nil, fmt.Errorf("dial %s: partitioned (fault transport)", a.Addr)
	}
	return ft.nt.DialAddressTimeout(a, timeout)
}

func (ft *faultTransport) StreamCh() <-chan net.Conn { return ft.nt.StreamCh() }

func (ft *faultTransport) Shutdown() error {
	ft.mu.Lock()
	ft.closed = true
	ft.mu.Unlock()
	close(ft.done)
	// forward is gone: drain what the UDP listener still hands over, or
	// it blocks and NetTransport.Shutdown waits for it for ever.
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-ft.nt.PacketCh():
			case <-stop:
				return
			}
		}
	}()
	err := ft.nt.Shutdown()
	close(stop)
	ft.wg.Wait()
	return err
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

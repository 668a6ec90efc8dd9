// Package faultnet is memberlist's network transport with faults on
// command, for tests of a real mesh under loss and partitions: it loses a
// share of outgoing packets and delays the rest, and it cuts the node off
// from chosen peers (packets to and from them are lost, streams to them
// refused), all while real UDP and TCP sockets carry what gets through.
// Tests use it in-process (package cluster) and in gslbd binaries built
// with the gslbdfault build tag, which read the peers to cut from a file;
// the gslbd that ships never links this package.
package faultnet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures a Transport.
type Config struct {
	// BindAddr is the IP address to listen on (UDP and TCP); BindPort 0
	// picks a free port.
	BindAddr string
	BindPort int
	// Drop is the share of outgoing packets lost (0 to 1); streams are
	// never dropped at random, as TCP would retransmit.
	Drop float64
	// MaxDelay delays each outgoing packet that is not dropped by a
	// uniform random time up to it.
	MaxDelay time.Duration
	// Seed makes the losses and delays reproducible.
	Seed uint64
	// Logger receives the underlying transport's errors and the changes of
	// a watched file; nil discards them.
	Logger *slog.Logger
}

// Stats counts the traffic of a Transport.
type Stats struct {
	PacketsOut, BytesOut, BytesIn atomic.Uint64
	// Dropped counts packets lost, outgoing and incoming.
	Dropped atomic.Uint64
}

// cuts is what is cut off, replaced whole on every change so that the
// packet paths read it without a lock.
type cuts struct {
	all   bool            // isolated: every packet and stream
	peers map[string]bool // "ip:port" of memberlist peers
}

func (c *cuts) blocks(addr string) bool { return c.all || c.peers[addr] }

// Transport is a memberlist.NodeAwareTransport over a real NetTransport.
// It is safe for concurrent use, as memberlist requires.
type Transport struct {
	nt       *memberlist.NetTransport
	addr     string
	drop     float64
	maxDelay time.Duration
	log      *slog.Logger

	cut   atomic.Pointer[cuts]
	cutMu sync.Mutex // serialises writers of cut

	mu     sync.Mutex // guards rng and closed
	rng    *rand.Rand
	closed bool

	in    chan *memberlist.Packet
	done  chan struct{}
	wg    sync.WaitGroup
	stats Stats
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// New listens on cfg.BindAddr:cfg.BindPort.
func New(cfg Config) (*Transport, error) {
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{cfg.BindAddr},
		BindPort:  cfg.BindPort,
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	ip, port, err := nt.FinalAdvertiseAddr("", 0)
	if err != nil {
		nt.Shutdown()
		return nil, fmt.Errorf("faultnet: address of %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	t := &Transport{
		nt: nt, drop: cfg.Drop, maxDelay: cfg.MaxDelay, log: lg,
		addr: net.JoinHostPort(ip.String(), fmt.Sprint(port)),
		rng:  rand.New(rand.NewPCG(cfg.Seed, cfg.Seed*7+1)),
		in:   make(chan *memberlist.Packet),
		done: make(chan struct{}),
	}
	t.cut.Store(&cuts{})
	t.wg.Add(1)
	go t.forward()
	return t, nil
}

// Addr is the "ip:port" the transport listens on, as peers name it.
func (t *Transport) Addr() string { return t.addr }

// Stats are the transport's counters.
func (t *Transport) Stats() *Stats { return &t.stats }

// Isolate cuts the node off from every peer (on) or ends that.
func (t *Transport) Isolate(on bool) {
	t.cutMu.Lock()
	defer t.cutMu.Unlock()
	t.cut.Store(&cuts{all: on, peers: t.cut.Load().peers})
}

// Cut cuts the node off from exactly the given peers ("ip:port"), and
// heals the cut to any other: packets to and from them are lost, streams
// to them refused. Both sides of a partition cut each other, since a
// stream's source port does not say which peer opened it.
func (t *Transport) Cut(peers ...string) {
	set := make(map[string]bool, len(peers))
	for _, p := range peers {
		set[p] = true
	}
	t.cutMu.Lock()
	defer t.cutMu.Unlock()
	t.cut.Store(&cuts{all: t.cut.Load().all, peers: set})
}

// Watch re-reads path every interval until Shutdown and cuts the peers it
// lists, one "ip:port" a line ('#' starts a comment); a missing or empty
// file cuts none. A test partitions a gslbd process by writing its file.
func (t *Transport) Watch(path string, every time.Duration) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		var last []byte
		first := true
		for {
			b, err := os.ReadFile(path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.log.Warn("faultnet: read cut file", "file", path, "err", err)
			} else if first || !bytes.Equal(b, last) {
				first, last = false, b
				peers := parseCuts(b)
				t.Cut(peers...)
				t.log.Warn("faultnet: mesh traffic cut", "file", path, "peers", peers)
			}
			select {
			case <-t.done:
				return
			case <-tick.C:
			}
		}
	}()
}

func parseCuts(b []byte) []string {
	var peers []string
	for line := range strings.Lines(string(b)) {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line != "" {
			peers = append(peers, line)
		}
	}
	return peers
}

// forward hands incoming packets to memberlist, losing those from cut
// peers.
func (t *Transport) forward() {
	defer t.wg.Done()
	for {
		select {
		case <-t.done:
			return
		case p := <-t.nt.PacketCh():
			t.stats.BytesIn.Add(uint64(len(p.Buf)))
			if t.cut.Load().blocks(p.From.String()) {
				t.stats.Dropped.Add(1)
				continue
			}
			select {
			case t.in <- p:
			case <-t.done:
				return
			}
		}
	}
}

func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.nt.FinalAdvertiseAddr(ip, port)
}

func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.stats.PacketsOut.Add(1)
	t.stats.BytesOut.Add(uint64(len(b)))
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return time.Time{}, errors.New("faultnet: transport shut down")
	}
	if t.cut.Load().blocks(a.Addr) || (t.drop > 0 && t.rng.Float64() < t.drop) {
		t.stats.Dropped.Add(1)
		return time.Now(), nil // lost on the way
	}
	if t.maxDelay <= 0 {
		return t.nt.WriteToAddress(b, a)
	}
	buf := append([]byte(nil), b...)
	t.wg.Add(1)
	time.AfterFunc(time.Duration(t.rng.Int64N(int64(t.maxDelay))), func() {
		defer t.wg.Done()
		t.nt.WriteToAddress(buf, a)
	})
	return time.Now(), nil
}

func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.in }

func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.cut.Load().blocks(a.Addr) {
		return nil, fmt.Errorf("faultnet: dial %s: cut off", a.Addr)
	}
	return t.nt.DialAddressTimeout(a, timeout)
}

func (t *Transport) StreamCh() <-chan net.Conn { return t.nt.StreamCh() }

func (t *Transport) Shutdown() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	close(t.done)
	// forward is gone: drain what the UDP listener still hands over, or
	// it blocks and NetTransport.Shutdown waits for it for ever.
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.nt.PacketCh():
			case <-stop:
				return
			}
		}
	}()
	err := t.nt.Shutdown()
	close(stop)
	t.wg.Wait()
	return err
}

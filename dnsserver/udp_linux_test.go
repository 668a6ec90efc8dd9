package dnsserver

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestUDPBatchOversize sends a datagram larger than a batch slot: it is
// cut by the kernel, so it must be dropped (and counted) rather than
// answered from half a packet, and the queries around it still answered.
func TestUDPBatchOversize(t *testing.T) {
	s, addr := startServer(t, Config{UDPSockets: 1})
	m := mkQuery("static.gslb.example.com.", dns.TypeA, &dns.TXT{
		Hdr: dns.RR_Header{Name: "pad.", Rrtype: dns.TypeTXT, Class: dns.ClassINET},
		Txt: make([]string, 20),
	})
	for i := range m.Extra[0].(*dns.TXT).Txt {
		m.Extra[0].(*dns.TXT).Txt[i] = string(make([]byte, 250))
	}
	big := pack(t, m)
	if len(big) <= batchInLen {
		t.Fatalf("test datagram has %d bytes, want more than %d", len(big), batchInLen)
	}
	before := s.ctr.dropped()
	if r := udpRaw(t, addr, big); r != nil {
		t.Fatalf("a %d-byte datagram was answered (%d bytes); want it dropped", len(big), len(r))
	}
	if got := s.ctr.dropped() - before; got != 1 {
		t.Errorf("dropped counter rose by %d, want 1", got)
	}
	// Just within a slot: answered.
	small := pack(t, mkQuery("static.gslb.example.com.", dns.TypeA))
	if r := udpRaw(t, addr, small); r == nil {
		t.Error("a small query after the oversize one was not answered")
	}
}

// TestUDPBatchShutdownWakes checks that Shutdown wakes a reader blocked
// in recvmmsg at once (shutdown(2) on its socket) instead of waiting for
// the receive timeout that backs it up.
func TestUDPBatchShutdownWakes(t *testing.T) {
	s := New(Config{Listen: []string{"127.0.0.1:0"}, UDPSockets: 2}, testLogger(t), nil)
	s.Publish(loadView(t, defaultFiles()))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Wait until both readers have detached their sockets and block.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.raw)
		s.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 UDP sockets detached for batching", n)
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// The readers began to block just now, so a reader left to its
	// receive timeout would need nearly all of it.
	if took := time.Since(start); took >= rawRecvTimeout/2 {
		t.Errorf("shutdown took %v: the readers were not woken, they timed out (%v)", took, rawRecvTimeout)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.raw) != 0 {
		t.Errorf("%d detached sockets left open after shutdown", len(s.raw))
	}
}

// TestUDPCountersPerReader sends queries from many client sockets to two
// SO_REUSEPORT readers: each reader counts in its own shard (the kernel
// spreads the clients over both), and the shards add up to every query.
func TestUDPCountersPerReader(t *testing.T) {
	s, addr := startServer(t, Config{UDPSockets: 2})
	const clients = 32
	q := pack(t, mkQuery("static.gslb.example.com.", dns.TypeA))
	for range clients {
		if r := udpRaw(t, addr, q); r == nil {
			t.Fatal("query not answered")
		}
	}
	z := s.state.Load().t.zones[string(wireName("gslb.example.com."))]
	if z == nil {
		t.Fatal("zone gslb.example.com. not compiled")
	}
	// udpRaw sends a probe query after each packet: two per client. It
	// returns with the first answer, so the last probe may still be in
	// the server: poll for its count.
	var got uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got = z.ctr.load(qtypeIndex(dns.TypeA), rcNoError); got >= 2*clients {
			break
		}
	}
	if got != 2*clients {
		t.Errorf("A NOERROR counted %d, want %d", got, 2*clients)
	}
	if len(z.ctr.s) != 3 {
		t.Fatalf("%d counter shards, want 3 (TCP and two readers)", len(z.ctr.s))
	}
	for i := 1; i < 3; i++ {
		if n := z.ctr.s[i][qtypeIndex(dns.TypeA)][rcNoError].Load(); n == 0 {
			t.Errorf("reader shard %d counted nothing: the kernel gave every one of %d clients to the other reader?", i, clients)
		}
	}
	if n := z.ctr.s[0][qtypeIndex(dns.TypeA)][rcNoError].Load(); n != 0 {
		t.Errorf("shard 0 (TCP) counted %d UDP queries", n)
	}
}

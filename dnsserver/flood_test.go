package dnsserver

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestRRLFlood floods a real server over UDP from 64 source addresses in
// four /24 networks of 127/8 (as a reflection attack spoofing them would),
// while a resolver in another network asks its questions and dig, from
// inside a flooded network, asks too. The flood gets at most its rate per
// network answered; the resolver gets every answer; dig is slipped a
// truncated answer and gets its data over TCP.
func TestRRLFlood(t *testing.T) {
	const rate, window = 10, 2
	s, addr := startServer(t, Config{RRL: RRLConfig{ResponsesPerSecond: rate, Window: window, Slip: 2}})
	server := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))
	query := pack(t, mkQuery("static.gslb.example.com.", dns.TypeA))

	const networks, perNet = 4, 16
	const floodFor = 1500 * time.Millisecond
	var sent, answered, truncated atomic.Int64
	var senders, readers sync.WaitGroup
	stop := make(chan struct{})
	for n := range networks {
		for h := range perNet {
			src := netip.AddrFrom4([4]byte{127, 0, byte(90 + n), byte(1 + h)})
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
			if err != nil {
				t.Fatalf("bind flood source %s: %v", src, err)
			}
			defer c.Close()
			readers.Add(1)
			senders.Add(1)
			go func() { // reader: counts what the flood gets back
				defer readers.Done()
				buf := make([]byte, 1500)
				for {
					c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
					n, err := c.Read(buf)
					if err != nil {
						select {
						case <-stop:
							return
						default:
							continue
						}
					}
					if n >= 4 && buf[2]&0x02 != 0 {
						truncated.Add(1)
					} else {
						answered.Add(1)
					}
				}
			}()
			go func() { // sender: 200 queries a second, bounded in time
				defer senders.Done()
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				end := time.Now().Add(floodFor)
				for time.Now().Before(end) {
					c.WriteToUDP(query, server)
					sent.Add(1)
					<-tick.C
				}
			}()
		}
	}

	// The resolver: 8 questions over the flood, each retried like a real
	// resolver would (a loaded machine may drop a datagram), each
	// answered in full, never truncated.
	resolver, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 1, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer resolver.Close()
	time.Sleep(200 * time.Millisecond) // into the flood
	for i := range 8 {
		m := mkQuery("static.gslb.example.com.", dns.TypeA)
		m.Id = uint16(100 + i)
		r := exchangeUDP(t, resolver, server, pack(t, m), 3)
		if r == nil {
			t.Fatalf("resolver question %d: no answer during the flood", i)
		}
		if r.Truncated || len(r.Answer) != 2 {
			t.Fatalf("resolver question %d: truncated %v, %d answers", i, r.Truncated, len(r.Answer))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// dig from inside a flooded network: its UDP answer is limited like
	// the flood's, and it gets the data over TCP once slipped a TC.
	out := dig(t, addr, "-b", "127.0.90.200", "+tries=3", "static.gslb.example.com", "A")
	if !strings.Contains(out, "192.0.2.80") {
		t.Errorf("dig from a flooded network got no answer:\n%s", out)
	}

	senders.Wait() // they stop after floodFor
	close(stop)
	readers.Wait() // within 500ms, with what was still on its way
	flood := sent.Load()
	// Per network: the rate for every second of the flood, the first
	// full bucket, and slack for the clock's whole seconds.
	limit := int64(networks * rate * (int(floodFor/time.Second) + 3))
	t.Logf("flood: %d queries from %d sources in %d networks; %d answered, %d truncated (slipped); limited %d, slipped %d",
		flood, networks*perNet, networks, answered.Load(), truncated.Load(), s.ctr.rrlLimited[rrlResponses].Load(), s.ctr.rrlSlipped[rrlResponses].Load())
	if answered.Load() > limit {
		t.Errorf("the flood got %d full answers, want at most %d", answered.Load(), limit)
	}
	if flood < 5000 {
		t.Errorf("only %d flood queries sent: not a flood", flood)
	}
	if s.ctr.rrlLimited[rrlResponses].Load() < uint64(flood/2) {
		t.Errorf("limited %d of %d flood queries", s.ctr.rrlLimited[rrlResponses].Load(), flood)
	}
}

// exchangeUDP sends pkt from c up to tries times, a second apart, and
// returns the answer with the same ID.
func exchangeUDP(t *testing.T, c *net.UDPConn, to *net.UDPAddr, pkt []byte, tries int) *dns.Msg {
	t.Helper()
	buf := make([]byte, 65535)
	for range tries {
		if _, err := c.WriteToUDP(pkt, to); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			var m dns.Msg
			if m.Unpack(buf[:n]) == nil && m.Id == uint16(pkt[0])<<8|uint16(pkt[1]) {
				return &m
			}
		}
	}
	return nil
}

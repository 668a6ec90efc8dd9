package dnsserver

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"
)

// TestLimiterBuckets drives the limiter's clock by hand: the rate, the
// debt a window allows, slip, and which clients and answers share a
// bucket.
func TestLimiterBuckets(t *testing.T) {
	l := newLimiter(RRLConfig{ResponsesPerSecond: 5, NXDomainsPerSecond: 2, ErrorsPerSecond: 1, Window: 3, Slip: 3})
	a := netip.MustParseAddr("198.51.100.7")
	name := []byte("\x03www\x07example\x00")
	count := func(class int, client netip.Addr, name []byte, n int, now uint32) (pass, drop, slip int) {
		for range n {
			switch l.charge(class, false, client, name, dns.TypeA, now) {
			case rrlPass:
				pass++
			case rrlDrop:
				drop++
			case rrlSlip:
				slip++
			}
		}
		return
	}
	if p, d, s := count(rrlResponses, a, name, 30, 1); p != 5 || d+s != 25 || s != 8 {
		t.Errorf("30 responses in one second at rate 5, slip 3: %d passed, %d dropped, %d slipped; want 5, 17, 8", p, d, s)
	}
	// The same /24 shares the bucket; another /24 has its own.
	if p, _, _ := count(rrlResponses, netip.MustParseAddr("198.51.100.200"), name, 1, 1); p != 0 {
		t.Error("a neighbour in the same /24 was answered from a spent bucket")
	}
	if p, _, _ := count(rrlResponses, netip.MustParseAddr("198.51.101.7"), name, 5, 1); p != 5 {
		t.Errorf("another /24 passed %d of 5", p)
	}
	// Another name is another bucket; NXDOMAIN and errors have their own
	// rates.
	if p, _, _ := count(rrlResponses, a, []byte("\x04mail\x07example\x00"), 6, 1); p != 5 {
		t.Errorf("another name passed %d of 6, want 5", p)
	}
	if p, _, _ := count(rrlNXDomains, a, []byte("\x07example\x00"), 4, 1); p != 2 {
		t.Errorf("nxdomains passed %d of 4, want 2", p)
	}
	if p, _, _ := count(rrlErrors, a, nil, 4, 1); p != 1 {
		t.Errorf("errors passed %d of 4, want 1", p)
	}
	// The debt is capped at window × rate = 15; 26 over the limit left it
	// at -15, so two quiet seconds (+10) still leave nothing to spend...
	if p, _, _ := count(rrlResponses, a, name, 1, 3); p != 0 {
		t.Error("answered two seconds after a flood, while still in debt")
	}
	// ...and a long pause credits at most a full window, capped at the rate.
	if p, _, _ := count(rrlResponses, a, name, 8, 100); p != 5 {
		t.Errorf("after a long pause %d of 8 passed, want the rate, 5", p)
	}

	// IPv6 clients are grouped by /56.
	v6 := netip.MustParseAddr("2001:db8:1:100::1")
	count(rrlResponses, v6, name, 5, 200)
	if p, _, _ := count(rrlResponses, netip.MustParseAddr("2001:db8:1:1ff::9"), name, 1, 200); p != 0 {
		t.Error("an address in the same /56 was answered from a spent bucket")
	}
	if p, _, _ := count(rrlResponses, netip.MustParseAddr("2001:db8:1:200::1"), name, 1, 200); p != 1 {
		t.Error("an address in another /56 was limited")
	}
}

// TestLimiterMemoryBounded floods the limiter with a million distinct
// clients: its table never grows, and a bucket in use survives while the
// set it lives in churns (it is the most recently charged).
func TestLimiterMemoryBounded(t *testing.T) {
	l := newLimiter(RRLConfig{ResponsesPerSecond: 1, Entries: 4096})
	slots := 0
	for i := range l.shard {
		slots += len(l.shard[i].slots)
	}
	if slots != 4096 {
		t.Fatalf("table has %d slots, want 4096", slots)
	}
	size := slots * int(unsafe.Sizeof(rrlEntry{}))
	for i := range 1 << 20 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.charge(rrlErrors, false, a, nil, 0, uint32(1+i/100000))
	}
	after := 0
	for i := range l.shard {
		after += len(l.shard[i].slots)
	}
	if after != slots {
		t.Errorf("table grew from %d to %d slots", slots, after)
	}
	t.Logf("limiter table: %d slots, %d KiB", slots, size>>10)
}

// rrlFixture is a handler with rate limiting at 2 responses a second and
// every limited response slipped.
func rrlFixture(t testing.TB, slip int) *Server {
	s := New(Config{RRL: RRLConfig{ResponsesPerSecond: 2, NXDomainsPerSecond: 2, ErrorsPerSecond: 2, Slip: slip}}, testLogger(t), nil)
	s.Publish(loadView(t, defaultFiles()))
	// Hold the query path's clock still: a second that ticks over between
	// two queries would refill the buckets under test (it did, under -race
	// on a loaded CI machine).
	s.clock.Store(time.Now().Unix())
	return s
}

func handleMsg(t *testing.T, s *Server, m *dns.Msg, src string, tcp bool) *dns.Msg {
	t.Helper()
	resp := s.Handle(make([]byte, 0, 65535), pack(t, m), netip.MustParseAddrPort(src), tcp)
	if resp == nil {
		return nil
	}
	var r dns.Msg
	if err := r.Unpack(resp); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	return &r
}

func TestHandleRateLimited(t *testing.T) {
	s := rrlFixture(t, 1)
	q := mkQuery("static.gslb.example.com.", dns.TypeA)
	var answered, slipped int
	for range 6 {
		r := handleMsg(t, s, q, "192.0.2.1:5300", false)
		switch {
		case r == nil:
			t.Fatal("dropped with slip 1")
		case r.Truncated && len(r.Answer) == 0 && len(r.Question) == 1:
			slipped++
		case !r.Truncated && len(r.Answer) == 2:
			answered++
		default:
			t.Fatalf("unexpected response %v", r)
		}
	}
	if answered != 2 || slipped != 4 {
		t.Errorf("6 queries at rate 2: %d answered, %d slipped; want 2 and 4", answered, slipped)
	}
	// TCP is never limited.
	if r := handleMsg(t, s, q, "192.0.2.1:5300", true); r == nil || len(r.Answer) != 2 {
		t.Errorf("TCP answer while UDP is limited: %v", r)
	}
	// Made-up names under a wildcard share one bucket.
	for i := range 3 {
		r := handleMsg(t, s, mkQuery(fmt.Sprintf("x%d.wild.gslb.example.com.", i), dns.TypeA), "192.0.2.9:5300", false)
		if limited := r.Truncated; limited != (i == 2) {
			t.Errorf("wildcard query %d: truncated %v", i, limited)
		}
	}
	// NXDOMAIN for made-up names: one bucket per zone.
	for i := range 3 {
		r := handleMsg(t, s, mkQuery(fmt.Sprintf("nope%d.gslb.example.com.", i), dns.TypeA), "192.0.2.9:5300", false)
		if r.Rcode != dns.RcodeNameError || r.Truncated != (i == 2) {
			t.Errorf("nxdomain %d: rcode %s truncated %v", i, dns.RcodeToString[r.Rcode], r.Truncated)
		}
	}
	if got := s.ctr.rrlLimited[rrlResponses].Load(); got != 5 {
		t.Errorf("limited responses counted %d, want 5", got)
	}
	if got := s.ctr.rrlSlipped[rrlNXDomains].Load(); got != 1 {
		t.Errorf("slipped nxdomains counted %d, want 1", got)
	}

	// With slip 0 every limited response is dropped; SetRRL swaps the
	// limiter in place.
	s.SetRRL(RRLConfig{ResponsesPerSecond: 2, ErrorsPerSecond: 2, Slip: NoSlip})
	refused := mkQuery("example.org.", dns.TypeA)
	for i := range 4 {
		r := handleMsg(t, s, refused, "192.0.2.1:5300", false)
		if (r == nil) != (i >= 2) {
			t.Errorf("refused query %d: response %v", i, r)
		}
	}
	s.SetRRL(RRLConfig{})
	if r := handleMsg(t, s, refused, "192.0.2.1:5300", false); r == nil {
		t.Error("rate limiting switched off, yet dropped")
	}
}

func TestAXFRRefused(t *testing.T) {
	s := handlerFixture(t)
	for _, qt := range []uint16{dns.TypeAXFR, dns.TypeIXFR} {
		for _, tcp := range []bool{false, true} {
			r := handleMsg(t, s, mkQuery("gslb.example.com.", qt), "127.0.0.1:5300", tcp)
			if r == nil || r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
				t.Errorf("%s over tcp=%v: %v", dns.TypeToString[qt], tcp, r)
			}
		}
	}
}

// BenchmarkLimiterCharge is the limiter alone: hash, shard lock, bucket
// update, for one client and name.
func BenchmarkLimiterCharge(b *testing.B) {
	l := newLimiter(rrlOn)
	a := netip.MustParseAddr("198.51.100.7")
	name := []byte("\x03www\x04gslb\x07example\x03com\x00")
	b.ReportAllocs()
	for b.Loop() {
		l.charge(rrlResponses, false, a, name, dns.TypeA, 1)
	}
}

package dnsserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// udpModes are the two UDP loops: batched (recvmmsg/sendmmsg on Linux,
// the portable loop elsewhere) and the portable loop forced.
var udpModes = []struct {
	name  string
	batch int
}{
	{"batch", 0},
	{"each", 1},
}

// haveIPv6Loopback reports whether ::1 can be bound here.
func haveIPv6Loopback() bool {
	c, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestUDPBurst sends a burst of queries from many client sockets, over
// IPv4 and IPv6, before reading any answer, so the batched reader gets
// several datagrams per recvmmsg: every client must get exactly its own
// answer (right ID, right question) back at its own address, and the
// server must have seen each client's real source address and port.
func TestUDPBurst(t *testing.T) {
	listen := []string{"127.0.0.1:0"}
	if haveIPv6Loopback() {
		listen = append(listen, "[::1]:0")
	} else {
		t.Log("no IPv6 loopback: IPv4 only")
	}
	for _, mode := range udpModes {
		t.Run(mode.name, func(t *testing.T) {
			var out strings.Builder
			log := slog.New(slog.NewTextHandler(&lockedWriter{w: &out}, nil))
			s := New(Config{Listen: listen, UDPSockets: 1, UDPBatch: mode.batch, QueryLogSample: 1}, log, nil)
			s.Publish(loadView(t, defaultFiles()))
			if err := s.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			const perAddr = 24
			type client struct {
				c    *net.UDPConn
				id   uint16
				name string
			}
			var clients []client
			for ai, addr := range s.Addrs() {
				for i := range perAddr {
					c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					// Names differ per client so a crossed answer shows.
					name := "static.gslb.example.com."
					if i%3 == 1 {
						name = "geo.gslb.example.com."
					} else if i%3 == 2 {
						name = fmt.Sprintf("nx%d.gslb.example.com.", i)
					}
					clients = append(clients, client{c: c, id: uint16(1000*ai + i), name: name})
				}
			}
			for _, cl := range clients {
				m := mkQuery(cl.name, dns.TypeA)
				m.Id = cl.id
				if _, err := cl.c.Write(pack(t, m)); err != nil {
					t.Fatal(err)
				}
			}
			buf := make([]byte, 65535)
			for _, cl := range clients {
				cl.c.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, err := cl.c.Read(buf)
				if err != nil {
					t.Fatalf("client %s: read: %v", cl.c.LocalAddr(), err)
				}
				var r dns.Msg
				if err := r.Unpack(buf[:n]); err != nil {
					t.Fatalf("client %s: unpack: %v", cl.c.LocalAddr(), err)
				}
				if r.Id != cl.id || len(r.Question) != 1 || r.Question[0].Name != cl.name {
					t.Errorf("client %s got answer id %d for %v, want id %d for %s", cl.c.LocalAddr(), r.Id, r.Question, cl.id, cl.name)
				}
				// Loopback is in Frankfurt (testNode): the IPv4 client's
				// geo answer proves its source address was parsed right.
				if cl.name == "geo.gslb.example.com." && cl.c.LocalAddr().(*net.UDPAddr).IP.To4() != nil {
					if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.40" {
						t.Errorf("client %s: geo answer %v, want fra's 192.0.2.40", cl.c.LocalAddr(), r.Answer)
					}
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			// The query log names the source the server parsed: each
			// client's address and port must be there.
			logged := out.String()
			for _, cl := range clients {
				src := netip.MustParseAddrPort(cl.c.LocalAddr().String())
				if !strings.Contains(logged, "client="+src.String()+" ") {
					t.Errorf("no query logged from client %s", src)
				}
			}
		})
	}
}

// TestUDPSocketAllocs is the allocation budget of the whole UDP path over
// a real socket, reader loop included: zero per query in both loops. The
// client's connected Write and Read allocate nothing either, so any
// allocation counted is the server's.
func TestUDPSocketAllocs(t *testing.T) {
	for _, mode := range udpModes {
		t.Run(mode.name, func(t *testing.T) {
			_, addr := startServer(t, Config{UDPSockets: 1, UDPBatch: mode.batch})
			exchange, failed := udpExchanger(t, addr)
			exchange() // warm up
			allocs := testing.AllocsPerRun(300, exchange)
			if *failed != nil {
				t.Fatal(*failed)
			}
			if allocs != 0 {
				t.Errorf("%.2f allocations per query over the socket, want 0", allocs)
			}
		})
	}
}

// udpExchanger dials addr over UDP and returns a function that sends one
// geo query with ECS and reads its answer, and where the first error it
// met is kept. The connected Write and Read allocate nothing, so
// allocation tests count only the server.
func udpExchanger(t *testing.T, addr string) (exchange func(), failed *error) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pkt := pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, ecsOpt(1232, "10.2.3.0/24")))
	buf := make([]byte, 1500)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	failed = new(error)
	return func() {
		if _, err := c.Write(pkt); err != nil {
			*failed = err
			return
		}
		if _, err := c.Read(buf); err != nil {
			*failed = err
		}
	}, failed
}

// BenchmarkUDPSocket measures the server's UDP loop over real loopback
// sockets: 32 queries in flight from one client, answered in batches (or
// one by one), with dnstap off and on (to a file, queries and responses).
// ns/op is per query, client included.
func BenchmarkUDPSocket(b *testing.B) {
	for _, mode := range udpModes {
		for _, tap := range []bool{false, true} {
			name := mode.name
			if tap {
				name += "-dnstap"
			}
			b.Run(name, func(b *testing.B) { benchUDPSocket(b, mode.batch, tap) })
		}
	}
}

func benchUDPSocket(b *testing.B, batch int, tap bool) {
	cfg := Config{UDPSockets: 1, UDPBatch: batch}
	if tap {
		cfg.Tap, _ = startTap(b)
	}
	_, addr := startServer(b, cfg)
	c, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pkt := pack(b, mkQuery("geo.gslb.example.com.", dns.TypeA, ecsOpt(1232, "10.2.3.0/24")))
	buf := make([]byte, 1500)
	const inflight = 32
	b.ReportAllocs()
	c.SetDeadline(time.Now().Add(time.Minute))
	for b.Loop() {
		for range inflight {
			if _, err := c.Write(pkt); err != nil {
				b.Fatal(err)
			}
		}
		for range inflight {
			if _, err := c.Read(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*inflight), "ns/query")
}

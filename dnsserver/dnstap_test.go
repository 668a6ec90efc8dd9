package dnsserver

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"

	"gslbd/dnsserver/dnstap"
)

// startTap runs a dnstap sink writing to a file in a temporary directory;
// the returned function stops it (finishing the file) and returns the
// file's path.
func startTap(t testing.TB) (*dnstap.Sink, func() string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dnstap.fstrm")
	sink, err := dnstap.New(dnstap.Config{File: path, Identity: "ns-test", Version: "gslbd test", Queries: true, Responses: true,
		FlushInterval: 20 * time.Millisecond}, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sink.Run(ctx) }()
	stopped := false
	stop := func() string {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("dnstap run: %v", err)
			}
		}
		return path
	}
	t.Cleanup(func() { stop() })
	return sink, stop
}

// readTap decodes a dnstap file with the golang-dnstap library.
func readTap(t testing.TB, path string) []*pb.Dnstap {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pb.NewReader(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []*pb.Dnstap
	buf := make([]byte, 1<<16)
	for {
		n, err := r.ReadFrame(buf)
		if errors.Is(err, io.EOF) || errors.Is(err, framestream.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		var d pb.Dnstap
		if err := proto.Unmarshal(buf[:n], &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, &d)
	}
}

// TestDnstapOverSockets serves real queries over UDP (both loops) and
// TCP with dnstap on, then reads the file back with the Go library and
// with dnstap-read: every query and its answer, verbatim, with the
// client's address and port, the transport and the ECS option and scope.
func TestDnstapOverSockets(t *testing.T) {
	for _, mode := range udpModes {
		t.Run(mode.name, func(t *testing.T) {
			sink, stopTap := startTap(t)
			srv, addr := startServer(t, Config{UDPSockets: 1, UDPBatch: mode.batch, Tap: sink})
			server := srv.Addrs()[0]

			type sent struct {
				client netip.AddrPort
				tcp    bool
				query  []byte
				resp   []byte
			}
			var exchanges []sent
			for _, network := range []string{"udp", "tcp"} {
				c, err := net.Dial(network, addr)
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				dc := &dns.Conn{Conn: c}
				m := mkQuery("geo.gslb.example.com.", dns.TypeA, ecsOpt(1232, "10.1.2.0/24"))
				if err := dc.WriteMsg(m); err != nil {
					t.Fatal(err)
				}
				r, err := dc.ReadMsg()
				if err != nil {
					t.Fatal(err)
				}
				q, _ := m.Pack()
				rb, _ := r.Pack()
				exchanges = append(exchanges, sent{netip.MustParseAddrPort(c.LocalAddr().String()), network == "tcp", q, rb})
				c.Close()
			}
			// Shut the server down first, so every exchange was handed over,
			// then finish the file.
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				t.Fatal(err)
			}
			path := stopTap()

			ds := readTap(t, path)
			if len(ds) != 2*len(exchanges) {
				t.Fatalf("read %d dnstap messages, want %d", len(ds), 2*len(exchanges))
			}
			for i, ex := range exchanges {
				for j, typ := range []pb.Message_Type{pb.Message_AUTH_QUERY, pb.Message_AUTH_RESPONSE} {
					d := ds[2*i+j]
					msg := d.GetMessage()
					ca, _ := netip.AddrFromSlice(msg.GetQueryAddress())
					sa, _ := netip.AddrFromSlice(msg.GetResponseAddress())
					proto := pb.SocketProtocol_UDP
					if ex.tcp {
						proto = pb.SocketProtocol_TCP
					}
					if msg.GetType() != typ || string(d.GetIdentity()) != "ns-test" || msg.GetSocketProtocol() != proto ||
						netip.AddrPortFrom(ca, uint16(msg.GetQueryPort())) != ex.client ||
						netip.AddrPortFrom(sa, uint16(msg.GetResponsePort())) != server {
						t.Errorf("message %d: %v %v from %v:%d to %v:%d, want %v %v from %v to %v", 2*i+j, msg.GetType(), msg.GetSocketProtocol(),
							ca, msg.GetQueryPort(), sa, msg.GetResponsePort(), typ, proto, ex.client, server)
					}
					wire, want := msg.GetQueryMessage(), ex.query
					if typ == pb.Message_AUTH_RESPONSE {
						wire, want = msg.GetResponseMessage(), ex.resp
					}
					// The response is compared after a round trip through
					// miekg/dns, which the client used to read it.
					var m dns.Msg
					if err := m.Unpack(wire); err != nil {
						t.Fatalf("message %d: %v", 2*i+j, err)
					}
					got, _ := m.Pack()
					if string(got) != string(want) {
						t.Errorf("message %d: wire message differs from what was exchanged", 2*i+j)
					}
					ecs, ok := m.IsEdns0().Option[0].(*dns.EDNS0_SUBNET)
					if !ok || ecs.SourceNetmask != 24 || ecs.Address.String() != "10.1.2.0" {
						t.Errorf("message %d: ECS %v", 2*i+j, m.IsEdns0())
					}
					if typ == pb.Message_AUTH_RESPONSE && ecs.SourceScope == 0 {
						t.Errorf("message %d: the response's ECS has no scope", 2*i+j)
					}
				}
			}

			out, err := exec.Command("dnstap-read", "-y", path).CombinedOutput()
			if err != nil {
				t.Fatalf("dnstap-read: %v\n%s", err, out)
			}
			for _, want := range []string{"type: AUTH_QUERY", "type: AUTH_RESPONSE", "socket_protocol: UDP", "socket_protocol: TCP",
				"CLIENT-SUBNET: 10.1.2.0/24/0", "geo.gslb.example.com. IN A"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("dnstap-read -y lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestDnstapSocketAllocs: the UDP path over a real socket with dnstap on
// still allocates nothing per query — the sink's writer, which encodes
// and writes meanwhile, included (AllocsPerRun counts every goroutine).
func TestDnstapSocketAllocs(t *testing.T) {
	for _, mode := range udpModes {
		t.Run(mode.name, func(t *testing.T) {
			sink, _ := startTap(t)
			_, addr := startServer(t, Config{UDPSockets: 1, UDPBatch: mode.batch, Tap: sink})
			exchange, failed := udpExchanger(t, addr)
			// Warm every cell of the sink's ring (8192) so their buffers exist.
			for range 9000 {
				exchange()
			}
			allocs := testing.AllocsPerRun(300, exchange)
			if *failed != nil {
				t.Fatal(*failed)
			}
			if allocs != 0 {
				t.Errorf("%.2f allocations per query over the socket with dnstap on, want 0", allocs)
			}
		})
	}
}

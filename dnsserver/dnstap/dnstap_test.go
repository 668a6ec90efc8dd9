package dnstap

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var (
	client4 = netip.MustParseAddrPort("127.0.0.7:40001")
	server4 = netip.MustParseAddrPort("127.0.0.1:53")
	client6 = netip.MustParseAddrPort("[::1]:40002")
	server6 = netip.MustParseAddrPort("[::1]:53")
)

// exchange is a query with ECS and its answer with the scope set, packed.
func exchange(t testing.TB, name string, id uint16) (q, r []byte) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Id = id
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(1232)
	o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("198.51.100.0").To4()})
	m.Extra = append(m.Extra, o)
	q, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	resp := new(dns.Msg)
	resp.SetReply(m)
	resp.Authoritative = true
	resp.Answer = append(resp.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.ParseIP("192.0.2.10")})
	ro := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	ro.SetUDPSize(1232)
	ro.Option = append(ro.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, SourceScope: 16, Address: net.ParseIP("198.51.100.0").To4()})
	resp.Extra = append(resp.Extra, ro)
	r, err = resp.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return q, r
}

// runSink starts s.Run and returns a function that stops it and waits.
func runSink(t testing.TB, s *Sink) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("sink did not stop within 20s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// readFrames decodes every dnstap frame of a Frame Streams reader with the
// golang-dnstap library.
func readFrames(t testing.TB, r io.Reader, bidi bool) []*pb.Dnstap {
	t.Helper()
	fr, err := pb.NewReader(r, &pb.ReaderOptions{Bidirectional: bidi, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("frame streams reader: %v", err)
	}
	var out []*pb.Dnstap
	buf := make([]byte, 1<<16)
	for {
		n, err := fr.ReadFrame(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, framestream.EOF) {
				return out
			}
			t.Fatalf("read frame %d: %v", len(out), err)
		}
		var d pb.Dnstap
		if err := proto.Unmarshal(buf[:n], &d); err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		out = append(out, &d)
	}
}

func readFile(t testing.TB, path string) []*pb.Dnstap {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readFrames(t, f, false)
}

// checkMessage holds one decoded message to what Log was given.
func checkMessage(t testing.TB, d *pb.Dnstap, typ pb.Message_Type, client, server netip.AddrPort, tcp bool, wire []byte) {
	t.Helper()
	if d.GetType() != pb.Dnstap_MESSAGE || string(d.GetIdentity()) != "ns1" || string(d.GetVersion()) != "gslbd test" {
		t.Fatalf("envelope: type %v identity %q version %q", d.GetType(), d.GetIdentity(), d.GetVersion())
	}
	m := d.GetMessage()
	if m.GetType() != typ {
		t.Fatalf("message type %v, want %v", m.GetType(), typ)
	}
	fam, n := pb.SocketFamily_INET, 4
	if client.Addr().Is6() {
		fam, n = pb.SocketFamily_INET6, 16
	}
	proto := pb.SocketProtocol_UDP
	if tcp {
		proto = pb.SocketProtocol_TCP
	}
	if m.GetSocketFamily() != fam || m.GetSocketProtocol() != proto {
		t.Errorf("socket %v/%v, want %v/%v", m.GetSocketFamily(), m.GetSocketProtocol(), fam, proto)
	}
	ca, _ := netip.AddrFromSlice(m.GetQueryAddress())
	sa, _ := netip.AddrFromSlice(m.GetResponseAddress())
	if len(m.GetQueryAddress()) != n || ca != client.Addr() || m.GetQueryPort() != uint32(client.Port()) {
		t.Errorf("query address %v port %d, want %v", m.GetQueryAddress(), m.GetQueryPort(), client)
	}
	if sa != server.Addr() || m.GetResponsePort() != uint32(server.Port()) {
		t.Errorf("response address %v port %d, want %v", sa, m.GetResponsePort(), server)
	}
	if m.GetQueryTimeSec() == 0 {
		t.Error("no query time")
	}
	got := m.GetQueryMessage()
	if typ == pb.Message_AUTH_RESPONSE {
		got = m.GetResponseMessage()
		if m.GetResponseTimeSec() == 0 {
			t.Error("no response time")
		}
	}
	if string(got) != string(wire) {
		t.Errorf("%v message is not the wire message verbatim", typ)
	}
}

func fileConfig(path string) Config {
	return Config{File: path, Identity: "ns1", Version: "gslbd test", Queries: true, Responses: true, FlushInterval: 20 * time.Millisecond}
}

func TestFileReadBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dnstap.fstrm")
	reg := prometheus.NewRegistry()
	s, err := New(fileConfig(path), testLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runSink(t, s)
	q4, r4 := exchange(t, "www.gslb.test.", 1)
	q6, r6 := exchange(t, "api.gslb.test.", 2)
	now := time.Now()
	s.Log(q4, r4, client4, server4, false, now)
	s.Log(q6, r6, client6, server6, true, now)
	s.Log(q4, nil, client4, server4, false, now) // dropped without a reply: the query only
	stop()

	ds := readFile(t, path)
	if len(ds) != 5 {
		t.Fatalf("read %d messages, want 5", len(ds))
	}
	checkMessage(t, ds[0], pb.Message_AUTH_QUERY, client4, server4, false, q4)
	checkMessage(t, ds[1], pb.Message_AUTH_RESPONSE, client4, server4, false, r4)
	checkMessage(t, ds[2], pb.Message_AUTH_QUERY, client6, server6, true, q6)
	checkMessage(t, ds[3], pb.Message_AUTH_RESPONSE, client6, server6, true, r6)
	checkMessage(t, ds[4], pb.Message_AUTH_QUERY, client4, server4, false, q4)

	// The ECS option travels in the logged wire messages.
	var m dns.Msg
	if err := m.Unpack(ds[1].GetMessage().GetResponseMessage()); err != nil {
		t.Fatal(err)
	}
	ecs, ok := m.IsEdns0().Option[0].(*dns.EDNS0_SUBNET)
	if !ok || ecs.SourceScope != 16 || ecs.Address.String() != "198.51.100.0" {
		t.Errorf("response ECS: %v", m.IsEdns0())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "gslbd_dnstap_messages_total" && mf.GetMetric()[0].GetCounter().GetValue() != 5 {
			t.Errorf("gslbd_dnstap_messages_total = %v, want 5", mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	if len(mfs) != 4 {
		t.Errorf("gathered %d dnstap metric families, want 4", len(mfs))
	}
	if n := s.met.messages.Load(); n != 5 {
		t.Errorf("gslbd_dnstap_messages_total %d, want 5", n)
	}

	// BIND's dnstap-read reads the same file: AQ/AR lines with the
	// addresses, protocol and name, and the ECS option in the full dump.
	out, err := exec.Command("dnstap-read", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dnstap-read: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 5 {
		t.Fatalf("dnstap-read printed %d lines, want 5:\n%s", len(lines), out)
	}
	for i, want := range []string{
		"AQ 127.0.0.7:40001 -> 127.0.0.1:53 UDP", "AR 127.0.0.7:40001 <- 127.0.0.1:53 UDP",
		"AQ ::1:40002 -> ::1:53 TCP", "AR ::1:40002 <- ::1:53 TCP",
	} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "gslb.test/IN/A") {
			t.Errorf("dnstap-read line %d: %q, want %q and the question", i+1, lines[i], want)
		}
	}
	out, err = exec.Command("dnstap-read", "-y", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dnstap-read -y: %v\n%s", err, out)
	}
	for _, want := range []string{"identity: ns1", "version: gslbd test", "type: AUTH_QUERY", "type: AUTH_RESPONSE",
		`query_address: "127.0.0.7"`, "response_port: 53", "CLIENT-SUBNET: 198.51.100.0/24/0", "CLIENT-SUBNET: 198.51.100.0/24/16"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dnstap-read -y lacks %q:\n%s", want, out)
		}
	}
}

// TestSwitches: queries = false logs only responses, and the other way.
func TestSwitches(t *testing.T) {
	q, r := exchange(t, "www.gslb.test.", 1)
	for _, tc := range []struct {
		queries, responses bool
		want               []pb.Message_Type
	}{
		{true, false, []pb.Message_Type{pb.Message_AUTH_QUERY}},
		{false, true, []pb.Message_Type{pb.Message_AUTH_RESPONSE}},
	} {
		path := filepath.Join(t.TempDir(), "dnstap.fstrm")
		cfg := fileConfig(path)
		cfg.Queries, cfg.Responses = tc.queries, tc.responses
		s, err := New(cfg, testLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		stop := runSink(t, s)
		s.Log(q, r, client4, server4, false, time.Now())
		stop()
		ds := readFile(t, path)
		if len(ds) != len(tc.want) || ds[0].GetMessage().GetType() != tc.want[0] {
			t.Errorf("queries=%v responses=%v: %d messages, first %v", tc.queries, tc.responses, len(ds), ds[0].GetMessage().GetType())
		}
	}
}

// TestQueueFullDrops: with the writer not running, Log fills the queue
// and then drops and counts, without ever blocking.
func TestQueueFullDrops(t *testing.T) {
	cfg := fileConfig(filepath.Join(t.TempDir(), "dnstap.fstrm"))
	cfg.QueueSize = 4
	s, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	q, r := exchange(t, "www.gslb.test.", 1)
	done := make(chan struct{})
	go func() {
		for range 10 {
			s.Log(q, r, client4, server4, false, time.Now())
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a full queue")
	}
	if got := s.met.droppedFull.Load(); got != 6 {
		t.Errorf("dropped %d exchanges, want 6", got)
	}
	// The writer then writes the four that were queued.
	stop := runSink(t, s)
	stop()
	if ds := readFile(t, cfg.File); len(ds) != 8 {
		t.Errorf("read %d messages, want the 8 of the 4 queued exchanges", len(ds))
	}
}

// TestReopenAfterRotation: logrotate renames the file, SIGHUP asks for a
// reopen: the old file is finished (readable to its end) and a new one
// gets what follows; a reopen without a rotation changes nothing.
func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dnstap.fstrm")
	s, err := New(fileConfig(path), testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runSink(t, s)
	q, r := exchange(t, "www.gslb.test.", 1)
	s.Log(q, r, client4, server4, false, time.Now())
	waitFor(t, "first exchange written", func() bool { return s.met.messages.Load() == 2 })
	s.Reopen() // not rotated: keeps writing the same file
	s.Log(q, r, client4, server4, false, time.Now())
	waitFor(t, "second exchange written", func() bool { return s.met.messages.Load() == 4 })

	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	s.Reopen()
	waitFor(t, "new file created", func() bool { _, err := os.Stat(path); return err == nil })
	s.Log(q, r, client4, server4, false, time.Now())
	stop()
	if n := len(readFile(t, rotated)); n != 4 {
		t.Errorf("rotated file has %d messages, want 4", n)
	}
	if n := len(readFile(t, path)); n != 2 {
		t.Errorf("new file has %d messages, want 2", n)
	}
	if n := s.met.opens.Load(); n != 2 {
		t.Errorf("opened %d times, want 2", n)
	}

	// A restart never overwrites a file it finds: it is moved aside.
	s2, err := New(fileConfig(path), testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop2 := runSink(t, s2)
	waitFor(t, "restarted sink opens", func() bool { return s2.met.opens.Load() == 1 })
	stop2()
	matches, _ := filepath.Glob(path + ".2*")
	if len(matches) != 1 || len(readFile(t, matches[0])) != 2 {
		t.Errorf("the previous file was not moved aside intact: %v", matches)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// collector is a bidirectional Frame Streams receiver, as fstrm_capture
// or dnscollector are: it accepts connections on ln and decodes frames
// with the golang-dnstap library until told to stop.
type testCollector struct {
	t     testing.TB
	ln    net.Listener
	mu    sync.Mutex
	msgs  []*pb.Dnstap
	conns []net.Conn
	wg    sync.WaitGroup
}

func newCollector(t testing.TB, network, addr string) *testCollector {
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCollector{t: t, ln: ln}
	c.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			c.wg.Go(func() {
				defer conn.Close()
				in, err := pb.NewReader(conn, &pb.ReaderOptions{Bidirectional: true, Timeout: 5 * time.Second})
				if err != nil {
					return
				}
				buf := make([]byte, 1<<16)
				for {
					n, err := in.ReadFrame(buf)
					if err != nil {
						return
					}
					var d pb.Dnstap
					if proto.Unmarshal(buf[:n], &d) == nil {
						c.mu.Lock()
						c.msgs = append(c.msgs, &d)
						c.mu.Unlock()
					}
				}
			})
		}
	})
	return c
}

func (c *testCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// stop closes the listener and every connection, as a collector that
// exits does, and waits for its goroutines.
func (c *testCollector) stop() {
	c.ln.Close()
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// TestSocketReconnects: a collector on a Unix socket and one on TCP get
// the messages; when the collector goes away, exchanges are dropped and
// counted, and the sink reconnects when it is back.
func TestSocketReconnects(t *testing.T) {
	for _, tc := range []struct{ network, socket string }{
		{"unix", "unix:" + filepath.Join(t.TempDir(), "tap.sock")},
		{"tcp", ""},
	} {
		t.Run(tc.network, func(t *testing.T) {
			addr := strings.TrimPrefix(tc.socket, "unix:")
			if tc.network == "tcp" {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr = ln.Addr().String()
				ln.Close()
			}
			col := newCollector(t, tc.network, addr)
			cfg := Config{Socket: tc.network + ":" + addr, Identity: "ns1", Version: "gslbd test", Queries: true, Responses: true,
				FlushInterval: 10 * time.Millisecond, Timeout: 2 * time.Second, MaxBackoff: 200 * time.Millisecond}
			s, err := New(cfg, testLogger(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			stopSink := runSink(t, s)
			q, r := exchange(t, "www.gslb.test.", 1)
			waitFor(t, "connected", func() bool { return s.met.opens.Load() == 1 })
			s.Log(q, r, client4, server4, false, time.Now())
			waitFor(t, "collector got the exchange", func() bool { return col.count() == 2 })
			col.mu.Lock()
			checkMessage(t, col.msgs[0], pb.Message_AUTH_QUERY, client4, server4, false, q)
			checkMessage(t, col.msgs[1], pb.Message_AUTH_RESPONSE, client4, server4, false, r)
			col.mu.Unlock()

			// The collector goes away: its listener and connection close.
			col.stop()
			if tc.network == "unix" {
				os.Remove(addr)
			}
			deadline := time.Now().Add(10 * time.Second)
			for s.met.droppedDown.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no exchange counted as dropped while the collector was gone")
				}
				s.Log(q, r, client4, server4, false, time.Now())
				time.Sleep(5 * time.Millisecond)
			}

			// It comes back on the same address: the sink reconnects.
			col2 := newCollector(t, tc.network, addr)
			waitFor(t, "reconnected", func() bool { return s.met.opens.Load() == 2 })
			s.Log(q, r, client4, server4, false, time.Now())
			waitFor(t, "new collector got the exchange", func() bool { return col2.count() >= 2 })
			// Stopping the sink finishes the stream: STOP, and the
			// collector's FINISH ends its reader.
			stopSink()
			col2.stop()
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{File: "x", Socket: "unix:/x"},
		{Socket: "udp:127.0.0.1:6000"},
		{Socket: "unix:"},
	} {
		if _, err := New(cfg, nil, nil); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// pack builds a query and applies edit to the wire bytes.
func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	return b
}

func mkQuery(name string, qtype uint16, extra ...dns.RR) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	m.Extra = extra
	return m
}

func optWith(version uint8, opts ...dns.EDNS0) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(1232)
	o.SetVersion(version)
	o.Option = opts
	return o
}

func ecsRaw(data ...byte) *dns.EDNS0_LOCAL { return &dns.EDNS0_LOCAL{Code: 8, Data: data} }

// udpRaw sends pkt and returns the reply, or nil when none came before a
// well-formed probe query's reply did: replies come back in order on one
// socket, so the probe answering first proves pkt was dropped.
func udpRaw(t *testing.T, addr string, pkt []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	probe := mkQuery("static.gslb.example.com.", dns.TypeA)
	probe.Id = 0xBEEF
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(pack(t, probe)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if n >= 2 && binary.BigEndian.Uint16(buf) == 0xBEEF && !(len(pkt) >= 2 && binary.BigEndian.Uint16(pkt) == 0xBEEF) {
		return nil
	}
	return buf[:n]
}

func TestRawPackets(t *testing.T) {
	s, addr := startServer(t, Config{})

	twoQuestions := mkQuery("static.gslb.example.com.", dns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])
	noQuestion := mkQuery("static.gslb.example.com.", dns.TypeA)
	noQuestion.Question = nil
	notify := mkQuery("gslb.example.com.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	update := mkQuery("gslb.example.com.", dns.TypeSOA)
	update.Opcode = dns.OpcodeUpdate
	good := pack(t, mkQuery("static.gslb.example.com.", dns.TypeA))
	chaos := mkQuery("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	badOwnerOpt := optWith(0)
	badOwnerOpt.Hdr.Name = "x."

	// A question name that is a compression pointer to itself.
	loop := append([]byte{}, good[:12]...)
	loop = append(loop, 0xC0, 12, 0, 1, 0, 1)
	// A name longer than 255 octets.
	long := append([]byte{}, good[:12]...)
	for range 5 {
		long = append(long, 63)
		long = append(long, []byte(strings.Repeat("a", 63))...)
	}
	long = append(long, 0, 0, 1, 0, 1)
	// An additional record whose owner is a pointer loop: skipped, not
	// followed, then the OPT after it is read.
	ptrLoopExtra := pack(t, mkQuery("static.gslb.example.com.", dns.TypeA))
	binary.BigEndian.PutUint16(ptrLoopExtra[10:], 1)
	at := len(ptrLoopExtra)
	ptrLoopExtra = append(ptrLoopExtra, 0xC0, byte(at), 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4)

	tests := []struct {
		name   string
		pkt    []byte
		drop   bool
		rcode  int
		qd     int
		opt    bool
		answer int
	}{
		{name: "short header dropped", pkt: []byte{1, 2, 3, 4, 5}, drop: true},
		{name: "empty dropped", pkt: []byte{}, drop: true},
		{name: "response dropped", pkt: func() []byte { b := append([]byte{}, good...); b[2] |= 0x80; return b }(), drop: true},
		{name: "no question", pkt: pack(t, noQuestion), rcode: dns.RcodeFormatError},
		{name: "two questions", pkt: pack(t, twoQuestions), rcode: dns.RcodeFormatError},
		{name: "NOTIFY not implemented", pkt: pack(t, notify), rcode: dns.RcodeNotImplemented},
		{name: "UPDATE not implemented", pkt: pack(t, update), rcode: dns.RcodeNotImplemented},
		{name: "truncated question", pkt: good[:len(good)-3], rcode: dns.RcodeFormatError},
		{name: "truncated name", pkt: good[:16], rcode: dns.RcodeFormatError},
		{name: "pointer in question", pkt: loop, rcode: dns.RcodeFormatError},
		{name: "name over 255 octets", pkt: long, rcode: dns.RcodeFormatError},
		{name: "pointer loop in additional owner is skipped", pkt: ptrLoopExtra, rcode: dns.RcodeSuccess, qd: 1, answer: 2},
		{name: "records past the end", pkt: func() []byte { b := append([]byte{}, good...); b[11] = 3; return b }(), rcode: dns.RcodeFormatError, qd: 1},
		{name: "CHAOS class refused", pkt: pack(t, chaos), rcode: dns.RcodeRefused, qd: 1},
		{name: "two OPT records", pkt: pack(t, mkQuery("static.gslb.example.com.", dns.TypeA, optWith(0), optWith(0))), rcode: dns.RcodeFormatError, qd: 1},
		{name: "OPT not owned by the root", pkt: pack(t, mkQuery("static.gslb.example.com.", dns.TypeA, badOwnerOpt)), rcode: dns.RcodeFormatError, qd: 1},
		{name: "BADVERS", pkt: pack(t, mkQuery("static.gslb.example.com.", dns.TypeA, optWith(1))), rcode: dns.RcodeBadVers, qd: 1, opt: true},
		{name: "unknown option ignored", pkt: pack(t, mkQuery("static.gslb.example.com.", dns.TypeA, optWith(0, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1, 2, 3}}))), qd: 1, opt: true, answer: 2},
		{name: "ECS IPv4 prefix 33", pkt: pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 1, 33, 0, 10, 1, 2, 3, 4)))), rcode: dns.RcodeFormatError, qd: 1, opt: true},
		{name: "ECS IPv6 prefix 129", pkt: pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(append([]byte{0, 2, 129, 0}, make([]byte, 17)...)...)))), rcode: dns.RcodeFormatError, qd: 1, opt: true},
		{name: "ECS unknown family", pkt: pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 3, 8, 0, 10)))), rcode: dns.RcodeFormatError, qd: 1, opt: true},
		{name: "ECS address bits beyond the prefix", pkt: pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 1, 23, 0, 10, 1, 3)))), rcode: dns.RcodeFormatError, qd: 1, opt: true},
		{name: "ECS address too long", pkt: pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 1, 24, 0, 10, 1, 2, 0)))), rcode: dns.RcodeFormatError, qd: 1, opt: true},
		{name: "ECS address too short", pkt: pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 1, 24, 0, 10, 1)))), rcode: dns.RcodeFormatError, qd: 1, opt: true},
		{name: "ECS option cut short", pkt: pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 1)))), rcode: dns.RcodeFormatError, qd: 1, opt: true},
		{name: "two ECS options", pkt: pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 1, 8, 0, 10), ecsRaw(0, 1, 8, 0, 10)))), rcode: dns.RcodeFormatError, qd: 1, opt: true},
		{name: "ECS valid /23", pkt: pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, optWith(0, ecsRaw(0, 1, 23, 0, 10, 1, 2)))), qd: 1, opt: true, answer: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.ctr.dropped()
			resp := udpRaw(t, addr, tc.pkt)
			if tc.drop {
				if resp != nil {
					t.Fatalf("got a reply to junk: % x", resp)
				}
				if s.ctr.dropped() == before {
					t.Error("drop not counted")
				}
				return
			}
			if resp == nil {
				t.Fatal("no reply")
			}
			var m dns.Msg
			if err := m.Unpack(resp); err != nil {
				t.Fatalf("unpack reply: %v", err)
			}
			if m.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
			if m.Id != 0x1234 {
				t.Errorf("id %#x, want 0x1234", m.Id)
			}
			if tc.qd == 0 && tc.rcode == dns.RcodeSuccess {
				tc.qd = 1
			}
			if len(m.Question) != tc.qd {
				t.Errorf("%d questions, want %d", len(m.Question), tc.qd)
			}
			if (m.IsEdns0() != nil) != tc.opt {
				t.Errorf("OPT present %v, want %v", m.IsEdns0() != nil, tc.opt)
			}
			if len(m.Answer) != tc.answer {
				t.Errorf("%d answers, want %d: %v", len(m.Answer), tc.answer, m.Answer)
			}
			if o := m.IsEdns0(); o != nil && tc.rcode == dns.RcodeFormatError {
				for _, op := range o.Option {
					t.Errorf("FORMERR echoes option %v", op)
				}
			}
		})
	}
}

func TestTruncationThenTCP(t *testing.T) {
	s, addr := startServer(t, Config{})
	q := mkQuery("big.gslb.example.com.", dns.TypeTXT)
	udp := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := udp.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) != 0 || len(r.Question) != 1 {
		t.Fatalf("UDP without EDNS: TC %v, %d answers, %d questions; want TC, whole RRset dropped, question kept", r.Truncated, len(r.Answer), len(r.Question))
	}
	// EDNS with a small buffer: still truncated, and the OPT stays.
	q512 := mkQuery("big.gslb.example.com.", dns.TypeTXT, ecsOpt(512, "10.1.2.0/24"))
	r, _, err = udp.Exchange(q512, addr)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || r.IsEdns0() == nil || len(r.Answer) != 0 {
		t.Fatalf("UDP with EDNS 512: TC %v, OPT %v, %d answers", r.Truncated, r.IsEdns0() != nil, len(r.Answer))
	}
	if s.ctr.truncated() < 2 {
		t.Errorf("truncations counted %d, want 2", s.ctr.truncated())
	}
	tcp := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	r, _, err = tcp.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 8 {
		t.Fatalf("TCP: TC %v, %d answers, want the 8 TXT records", r.Truncated, len(r.Answer))
	}
}

// writeTCP sends each message with its length prefix in a single write, so
// the server sees them pipelined.
func tcpFrames(t *testing.T, msgs ...*dns.Msg) []byte {
	var out []byte
	for _, m := range msgs {
		b := pack(t, m)
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	return out
}

func readTCP(c net.Conn) (*dns.Msg, error) {
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	return m, m.Unpack(b)
}

func TestTCPPipelining(t *testing.T) {
	_, addr := startServer(t, Config{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"static.gslb.example.com.", "www.gslb.example.com.", "nope.gslb.example.com.", "big.gslb.example.com."}
	var msgs []*dns.Msg
	for i, n := range names {
		m := mkQuery(n, dns.TypeA)
		if i == 3 {
			m.Question[0].Qtype = dns.TypeTXT
		}
		m.Id = uint16(100 + i)
		msgs = append(msgs, m)
	}
	if _, err := c.Write(tcpFrames(t, msgs...)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	wantAnswers := []int{2, 2, 0, 8}
	for i := range msgs {
		r, err := readTCP(c)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if r.Id != uint16(100+i) || len(r.Answer) != wantAnswers[i] {
			t.Errorf("response %d: id %d with %d answers, want id %d with %d", i, r.Id, len(r.Answer), 100+i, wantAnswers[i])
		}
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	_, addr := startServer(t, Config{TCPIdleTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// One query keeps the connection, then silence closes it.
	if _, err := c.Write(tcpFrames(t, mkQuery("static.gslb.example.com.", dns.TypeA))); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := readTCP(c); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = readTCP(c)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF from the server closing it", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v, want about 200ms", d)
	}
}

func TestTCPConnectionCap(t *testing.T) {
	s, addr := startServer(t, Config{MaxTCPConns: 2, MaxTCPConnsPerSource: 2})
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	ask := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write(tcpFrames(t, mkQuery("static.gslb.example.com.", dns.TypeA))); err != nil {
			return err
		}
		_, err := readTCP(c)
		return err
	}
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		if err := ask(c); err != nil {
			t.Fatalf("connection within the cap: %v", err)
		}
	}
	// The server closes the connection over the cap at once; the client sees
	// that on its first exchange or, when the reset wins the race with the
	// handshake, already from connect.
	if extra, err := net.Dial("tcp", addr); err == nil {
		defer extra.Close()
		if err := ask(extra); err == nil {
			t.Fatal("third connection answered, want it closed at once")
		}
	}
	if s.ctr.tcpRefused.Load() != 1 {
		t.Errorf("rejected connections counted %d, want 1", s.ctr.tcpRefused.Load())
	}
	for _, c := range open {
		if err := ask(c); err != nil {
			t.Errorf("connection within the cap broke: %v", err)
		}
	}
	// Closing one frees a slot; the server notices when its read ends.
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			err = ask(c)
			c.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a connection closed: %v", err)
		}
	}
}

func TestShutdownStopsServing(t *testing.T) {
	s := New(Config{Listen: []string{"127.0.0.1:0"}, UDPSockets: 2}, testLogger(t), nil)
	s.Publish(loadView(t, defaultFiles()))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0].String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(tcpFrames(t, mkQuery("static.gslb.example.com.", dns.TypeA))); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := readTCP(c); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := readTCP(c); err == nil {
		t.Error("open TCP connection still served after shutdown")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("TCP listener still accepting after shutdown")
	}
}

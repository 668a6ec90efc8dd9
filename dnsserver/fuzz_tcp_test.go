package dnsserver

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// tcpStreamSeeds are byte streams as a TCP client could send them:
// pipelined queries, a length that promises more than follows, an empty
// frame, a response (junk) in the middle, a lone length byte.
func tcpStreamSeeds(t testing.TB) map[string][]byte {
	frame := func(b []byte) []byte {
		return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
	}
	q1 := pack(t, mkQuery("www.gslb.example.com.", dns.TypeA))
	q2 := pack(t, mkQuery("big.gslb.example.com.", dns.TypeTXT, ecsOpt(4096, "10.1.2.0/24")))
	q3 := pack(t, cookieQuery("static.gslb.example.com.", "0102030405060708", ""))
	resp := append([]byte{}, q1...)
	resp[2] |= 0x80
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	return map[string][]byte{
		"pipelined":     cat(frame(q1), frame(q2), frame(q3)),
		"short-promise": cat(frame(q1), []byte{0x01, 0x00}, q2[:20]),
		"empty-frame":   cat(frame(nil), frame(q1)),
		"junk-between":  cat(frame(q1), frame(resp), frame(q2)),
		"lone-byte":     {0x00},
		"tiny-frames":   cat(frame([]byte{1}), frame(q1[:11]), frame(q1)),
	}
}

// FuzzTCPFraming sends a stream to a real server over loopback TCP,
// half-closes, and reads every answer until the server closes. Each
// complete frame with a sane header gets exactly one answer, in order,
// with its ID, and the answers parse; junk ends the connection; nothing
// makes the server hang or stop serving.
func FuzzTCPFraming(f *testing.F) {
	for _, b := range tcpStreamSeeds(f) {
		f.Add(b)
	}
	_, addr := startServer(f, Config{TCPIdleTimeout: 2 * time.Second})
	f.Fuzz(func(t *testing.T, stream []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// Expected answers: the IDs of the complete frames before the
		// first junk one.
		var want []uint16
		for rest := stream; len(rest) >= 2; {
			n := int(binary.BigEndian.Uint16(rest))
			if len(rest) < 2+n {
				break
			}
			pkt := rest[2 : 2+n]
			rest = rest[2+n:]
			if len(pkt) < headerLen || pkt[2]&0x80 != 0 {
				break
			}
			want = append(want, binary.BigEndian.Uint16(pkt))
		}
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(stream)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			werr <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read answers: %v (the server must close the stream at its end)", err)
		}
		<-werr // a write may fail once the server closed on junk; that is fine
		i := 0
		for len(got) > 0 {
			if len(got) < 2 {
				t.Fatalf("answer stream ends in a cut length")
			}
			n := int(binary.BigEndian.Uint16(got))
			if len(got) < 2+n {
				t.Fatalf("answer %d cut: length %d, %d bytes", i, n, len(got)-2)
			}
			var m dns.Msg
			if err := m.Unpack(got[2 : 2+n]); err != nil {
				t.Fatalf("answer %d does not parse: %v", i, err)
			}
			if i >= len(want) {
				t.Fatalf("answer %d to a stream of %d answerable frames", i, len(want))
			}
			if m.Id != want[i] || !m.Response {
				t.Fatalf("answer %d: id %#x response %v, want id %#x", i, m.Id, m.Response, want[i])
			}
			got = got[2+n:]
			i++
		}
		if i != len(want) {
			t.Fatalf("%d answers to %d answerable frames", i, len(want))
		}
	})
}

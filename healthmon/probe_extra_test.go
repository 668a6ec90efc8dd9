package healthmon

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// TestHTTPHeadersAndBodyMatch: configured headers reach the backend
// beside the User-Agent, and body_match passes only when the string is in
// the body's first BodyMatchBytes bytes.
func TestHTTPHeadersAndBodyMatch(t *testing.T) {
	checkLeaks(t)
	var mu sync.Mutex
	var got http.Header
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, `{"status":"serving","db":"ok"}`)
		case "/late":
			// The string comes after the first BodyMatchBytes bytes.
			fmt.Fprint(w, strings.Repeat(" ", zones.BodyMatchBytes)+`"serving"`)
		case "/draining":
			fmt.Fprint(w, `{"status":"draining"}`)
		}
	}))
	s.Listener.Close()
	s.Listener = listen(t, "127.0.0.21")
	s.Start()
	t.Cleanup(s.Close)
	ap := netip.MustParseAddrPort(s.Listener.Addr().String())

	m := New(Options{Node: "n1", Version: "1.2.3", Logger: testLogger(t)})
	check := func(path, match string) zones.Check {
		return zones.Check{Type: zones.CheckHTTP, Port: ap.Port(), Path: path, Expect: []int{200}, Timeout: time.Second,
			Headers:   []zones.Header{{Name: "Authorization", Value: "Bearer probe-token"}, {Name: "X-Health-Check", Value: "gslbd"}},
			BodyMatch: match}
	}
	for _, tc := range []struct {
		name, path, match string
		class, reason     string
	}{
		{"match", "/ok", `"serving"`, "", ""},
		{"no match", "/draining", `"serving"`, "body", `body lacks "\"serving\""`},
		{"match too late", "/late", `"serving"`, "body", `body lacks "\"serving\""`},
		{"no body_match", "/draining", "", "", ""},
	} {
		r := m.run(t.Context(), target(ap, check(tc.path, tc.match)))
		if r.ok != (tc.class == "") || r.class != tc.class || r.reason != tc.reason {
			t.Errorf("%s: ok %v, class %q, reason %q; want class %q, reason %q", tc.name, r.ok, r.class, r.reason, tc.class, tc.reason)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Get("Authorization") != "Bearer probe-token" || got.Get("X-Health-Check") != "gslbd" {
		t.Errorf("backend saw headers %v, want the configured ones", got)
	}
	if got.Get("User-Agent") != "gslbd-health/1.2.3 (node n1)" {
		t.Errorf("User-Agent %q", got.Get("User-Agent"))
	}
}

// dnsBackend is a real DNS server (miekg/dns) on UDP and TCP of one
// 127.0.0.x address: www.example.test A 192.0.2.1, big.example.test a TXT
// set too large for UDP, everything else NXDOMAIN.
func dnsBackend(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		switch {
		case q.Name == "www.example.test." && q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR("www.example.test. 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		case q.Name == "big.example.test." && q.Qtype == dns.TypeTXT:
			for i := range 40 {
				rr, _ := dns.NewRR(fmt.Sprintf("big.example.test. 60 IN TXT %q", strings.Repeat("x", 60)+fmt.Sprint(i)))
				m.Answer = append(m.Answer, rr)
			}
			rr, _ := dns.NewRR(`big.example.test. 60 IN TXT "needle"`)
			m.Answer = append(m.Answer, rr)
		case q.Name == "www.example.test.":
		default:
			m.Rcode = dns.RcodeNameError
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp && m.Len() > 512 {
			m.Truncate(512)
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: mux}, {Listener: ln, Handler: mux}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
}

// TestDNSCheck: the dns check against a real DNS server — the rcode it
// expects, the answer it wants, a truncated answer retried over TCP, and
// nothing listening.
func TestDNSCheck(t *testing.T) {
	checkLeaks(t)
	ap := dnsBackend(t, "127.0.0.22")
	closed, err := net.ListenPacket("udp", "127.0.0.23:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAP := netip.MustParseAddrPort(closed.LocalAddr().String())
	closed.Close()
	silent, err := net.ListenPacket("udp", "127.0.0.24:0") // receives and never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	silentAP := netip.MustParseAddrPort(silent.LocalAddr().String())

	m := New(Options{Logger: testLogger(t)})
	check := func(ap netip.AddrPort, name string, qtype uint16, rcode int, answer string) zones.Target {
		return target(ap, zones.Check{Type: zones.CheckDNS, Port: ap.Port(), QName: name, QType: qtype, RCode: rcode, Answer: answer, Timeout: 500 * time.Millisecond})
	}
	for _, tc := range []struct {
		name          string
		t             zones.Target
		class, reason string
	}{
		{"rcode", check(ap, "www.example.test.", dns.TypeA, dns.RcodeSuccess, ""), "", ""},
		{"answer", check(ap, "www.example.test.", dns.TypeA, dns.RcodeSuccess, "192.0.2.1"), "", ""},
		{"wrong answer", check(ap, "www.example.test.", dns.TypeA, dns.RcodeSuccess, "192.0.2.9"), "status", "no A 192.0.2.9 in the answer (1 records)"},
		{"nodata", check(ap, "www.example.test.", dns.TypeAAAA, dns.RcodeSuccess, "2001:db8::1"), "status", "no AAAA 2001:db8::1 in the answer (0 records)"},
		{"expected nxdomain", check(ap, "nope.example.test.", dns.TypeA, dns.RcodeNameError, ""), "", ""},
		{"unexpected nxdomain", check(ap, "nope.example.test.", dns.TypeA, dns.RcodeSuccess, ""), "status", "rcode NXDOMAIN, want NOERROR"},
		{"truncated, then tcp", check(ap, "big.example.test.", dns.TypeTXT, dns.RcodeSuccess, `"needle"`), "", ""},
		{"nothing listening", check(deadAP, "www.example.test.", dns.TypeA, dns.RcodeSuccess, ""), "refused", "connection refused (response)"},
		{"no answer", check(silentAP, "www.example.test.", dns.TypeA, dns.RcodeSuccess, ""), "timeout", "timeout after 500ms (response)"},
	} {
		r := m.run(t.Context(), tc.t)
		if r.ok != (tc.class == "") || r.class != tc.class || r.reason != tc.reason {
			t.Errorf("%s: ok %v, class %q, reason %q; want class %q, reason %q", tc.name, r.ok, r.class, r.reason, tc.class, tc.reason)
		}
	}
}

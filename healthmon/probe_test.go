package healthmon

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gslbd/internal/leakcheck"
	"gslbd/zones"
)

// checkLeaks fails the test when goroutines started during it are still
// running once its other cleanups (servers, monitors) ran. Register it
// first: cleanups run last-registered first.
func checkLeaks(t *testing.T) { leakcheck.Check(t) }

// listen opens a TCP listener on ip, port 0; distinct 127.0.0.x
// addresses keep the tests' backends apart.
func listen(t *testing.T, ip string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	return l
}

// serve accepts and closes connections until l is closed: a TCP backend.
func serve(l net.Listener) (done chan struct{}) {
	done = make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return done
}

// hangServer accepts connections and never answers them, until the test
// ends: a backend whose application is stuck.
func hangServer(t *testing.T, ip string) netip.AddrPort {
	l := listen(t, ip)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return netip.MustParseAddrPort(l.Addr().String())
}

// backend is an HTTP server on its own 127.0.0.x address whose status
// the test sets, and which remembers what the probes sent.
type backend struct {
	*httptest.Server
	ap     netip.AddrPort
	status atomic.Int32
	hits   atomic.Int64
	mu     sync.Mutex
	agent  string
	host   string
}

func newBackend(t *testing.T, ip string, cert *tls.Certificate) *backend {
	b := &backend{}
	b.status.Store(http.StatusOK)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.mu.Lock()
		b.agent, b.host = r.UserAgent(), r.Host
		b.mu.Unlock()
		w.WriteHeader(int(b.status.Load()))
		fmt.Fprintln(w, "health page")
	}))
	s.Listener.Close()
	s.Listener = listen(t, ip)
	// Handshake failures are what some tests provoke; keep them quiet.
	s.Config.ErrorLog = log.New(t.Output(), "backend: ", 0)
	if cert != nil {
		s.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	b.Server = s
	b.ap = netip.MustParseAddrPort(s.Listener.Addr().String())
	return b
}

func (b *backend) seen() (agent, host string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.agent, b.host
}

// testCert makes a self-signed certificate for names and ips, and a pool
// that trusts it.
func testCert(t *testing.T, names []string, ips ...string) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gslbd test backend"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              names,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(parsed)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func target(ap netip.AddrPort, c zones.Check) zones.Target {
	if c.Interval == 0 {
		c.Interval = 100 * time.Millisecond
	}
	if c.Timeout == 0 {
		c.Timeout = 300 * time.Millisecond
	}
	if c.Rise == 0 {
		c.Rise, c.Fall = 2, 3
	}
	return zones.Target{
		Key:   fmt.Sprintf("%s|%d:%d%s@%s%v", ap, c.Type, c.Port, c.Path, c.Host, c.Insecure),
		Addr:  ap.Addr(),
		Check: c,
	}
}

func TestProbeReasons(t *testing.T) {
	checkLeaks(t)
	cert, roots := testCert(t, []string{"good.test"}, "127.0.0.13")
	plain := newBackend(t, "127.0.0.11", nil)
	secure := newBackend(t, "127.0.0.13", cert)
	unavailable := newBackend(t, "127.0.0.12", nil)
	unavailable.status.Store(http.StatusServiceUnavailable)
	hung := hangServer(t, "127.0.0.14")
	closed := listen(t, "127.0.0.15")
	refusedAP := netip.MustParseAddrPort(closed.Addr().String())
	closed.Close()
	rude := listen(t, "127.0.0.16") // reads the request and hangs up without a response
	rudeDone := make(chan struct{})
	go func() {
		defer close(rudeDone)
		for {
			c, err := rude.Accept()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			var head []byte
			buf := make([]byte, 512)
			for !bytes.Contains(head, []byte("\r\n\r\n")) {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				head = append(head, buf[:n]...)
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { rude.Close(); <-rudeDone })
	rudeAP := netip.MustParseAddrPort(rude.Addr().String())

	m := New(Options{Node: "n1", Version: "1.2.3", Logger: testLogger(t), RootCAs: roots})
	plainHTTP, https, tcp := zones.CheckHTTP, zones.CheckHTTPS, zones.CheckTCP
	// Probes that should succeed or fail fast get a generous timeout (a
	// TLS handshake under -race on a loaded machine took over 300ms); the
	// hanging backends get a short one, which their reasons name.
	check := func(typ zones.CheckType, ap netip.AddrPort) zones.Check {
		c := zones.Check{Type: typ, Port: ap.Port(), Path: "/healthz", Expect: []int{200}, Timeout: 5 * time.Second}
		if ap == hung {
			c.Timeout = 300 * time.Millisecond
		}
		return c
	}
	withHost := func(c zones.Check, host string, insecure bool) zones.Check {
		c.Host, c.Insecure = host, insecure
		return c
	}
	withExpect := func(c zones.Check, codes ...int) zones.Check {
		c.Expect = codes
		return c
	}
	cases := []struct {
		name   string
		ap     netip.AddrPort
		check  zones.Check
		class  string // "" for success
		reason string
	}{
		{"tcp up", plain.ap, check(tcp, plain.ap), "", ""},
		{"tcp refused", refusedAP, check(tcp, refusedAP), "refused", "connection refused"},
		{"http 200", plain.ap, check(plainHTTP, plain.ap), "", ""},
		{"http refused", refusedAP, check(plainHTTP, refusedAP), "refused", "connection refused"},
		{"http 503", unavailable.ap, check(plainHTTP, unavailable.ap), "status", "status 503"},
		{"http 503 expected", unavailable.ap, withExpect(check(plainHTTP, unavailable.ap), 200, 503), "", ""},
		{"http 200 not expected", plain.ap, withExpect(check(plainHTTP, plain.ap), 204), "status", "status 200"},
		{"http hang", hung, check(plainHTTP, hung), "timeout", "timeout after 300ms (response)"},
		{"http hung up", rudeAP, check(plainHTTP, rudeAP), "other", "connection closed (response)"},
		{"https right name", secure.ap, withHost(check(https, secure.ap), "good.test", false), "", ""},
		{"https address SAN", secure.ap, check(https, secure.ap), "", ""},
		{"https wrong name", secure.ap, withHost(check(https, secure.ap), "bad.test", false),
			"tls", "tls: certificate is valid for good.test, not bad.test"},
		{"https wrong name insecure", secure.ap, withHost(check(https, secure.ap), "bad.test", true), "", ""},
		{"https to plain http", plain.ap, check(https, plain.ap), "tls", "tls: first record does not look like a TLS handshake"},
		{"https hang", hung, check(https, hung), "timeout", "timeout after 300ms (tls handshake)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := m.run(t.Context(), target(tc.ap, tc.check))
			if r.ok != (tc.class == "") || r.class != tc.class || r.reason != tc.reason {
				t.Errorf("probe = ok %v, class %q, reason %q; want class %q, reason %q", r.ok, r.class, r.reason, tc.class, tc.reason)
			}
			if tc.class == "timeout" && (r.latency < 300*time.Millisecond || r.latency > 2*time.Second) {
				t.Errorf("timed-out probe took %v, want about the 300ms timeout", r.latency)
			}
		})
	}

	// Unknown authority: a monitor without the test roots.
	sys := New(Options{Logger: testLogger(t)})
	// Loading the system roots the first time is slow under -race: a
	// generous timeout keeps this about verification, not speed.
	slow := withHost(check(https, secure.ap), "good.test", false)
	slow.Timeout = 10 * time.Second
	r := sys.run(t.Context(), target(secure.ap, slow))
	if r.ok || r.class != "tls" || !strings.Contains(r.reason, "unknown authority") {
		t.Errorf("self-signed without roots: %+v, want a tls failure naming the unknown authority", r)
	}

	agent, host := plain.seen()
	if want := "gslbd-health/1.2.3 (node n1)"; agent != want {
		t.Errorf("User-Agent = %q, want %q", agent, want)
	}
	if host != plain.ap.String() {
		t.Errorf("Host without check.host = %q, want %q", host, plain.ap)
	}
	if _, host := secure.seen(); host != "bad.test" && host != "good.test" {
		t.Errorf("Host with check.host = %q, want the configured name", host)
	}
}

// startMonitor runs a network monitor over targets until the test ends.
func startMonitor(t *testing.T, opts Options, targets []zones.Target) (*Monitor, *reports) {
	reps := &reports{}
	if also := opts.Report; also != nil {
		opts.Report = func(r Report) { reps.add(r); also(r) }
	} else {
		opts.Report = reps.add
	}
	opts.Logger = testLogger(t)
	if opts.Node == "" {
		opts.Node, opts.Version = "n1", "test"
	}
	m := New(opts)
	m.Update(targets)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return m, reps
}

// waitReports polls until key has n reports or the deadline passes.
func waitReports(t *testing.T, reps *reports, key string, n int, within time.Duration) []Report {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := reps.forKey(key)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestTCPBackendStopsAndReturns(t *testing.T) {
	checkLeaks(t)
	l := listen(t, "127.0.0.21")
	ap := netip.MustParseAddrPort(l.Addr().String())
	done := serve(l)
	const interval, rise, fall = 100 * time.Millisecond, 2, 3
	tg := target(ap, zones.Check{Type: zones.CheckTCP, Port: ap.Port(), Interval: interval, Timeout: 300 * time.Millisecond, Rise: rise, Fall: fall})
	m, reps := startMonitor(t, Options{}, []zones.Target{tg})

	if got := waitReports(t, reps, tg.Key, 1, 5*time.Second); len(got) != 1 || !got[0].Up {
		t.Fatalf("initial reports = %+v, want up", got)
	}

	l.Close()
	<-done
	stopped := time.Now()
	got := waitReports(t, reps, tg.Key, 2, 10*time.Second)
	took := time.Since(stopped)
	if len(got) != 2 || got[1].Up || got[1].Reason != "connection refused" {
		t.Fatalf("reports = %+v, want down with connection refused", got)
	}
	// Worst case: the backend stops just after a probe; fall more probes
	// at up to interval+10% each.
	limit := time.Duration(fall)*interval*11/10 + 150*time.Millisecond
	t.Logf("tcp backend stopped → down after %v (interval %v × fall %d; limit %v)", took, interval, fall, limit)
	if took > limit {
		t.Errorf("down after %v, want ≤ %v", took, limit)
	}

	l2, err := net.Listen("tcp", ap.String())
	if err != nil {
		t.Fatalf("restart backend on %s: %v", ap, err)
	}
	done2 := serve(l2)
	t.Cleanup(func() { l2.Close(); <-done2 })
	started := time.Now()
	got = waitReports(t, reps, tg.Key, 3, 10*time.Second)
	took = time.Since(started)
	if len(got) != 3 || !got[2].Up {
		t.Fatalf("reports = %+v, want up again", got)
	}
	limit = time.Duration(rise)*interval*11/10 + 150*time.Millisecond
	t.Logf("tcp backend started → up after %v (rise %d; limit %v)", took, rise, limit)
	if took > limit {
		t.Errorf("up after %v, want ≤ %v", took, limit)
	}
	if st := m.States(); len(st) != 1 || !st[0].Up || st[0].Reason != "connection refused" || st[0].LastProbe.IsZero() {
		t.Errorf("states = %+v", st)
	}
}

func TestHTTPBackend503(t *testing.T) {
	checkLeaks(t)
	b := newBackend(t, "127.0.0.22", nil)
	const interval, fall = 100 * time.Millisecond, 3
	tg := target(b.ap, zones.Check{Type: zones.CheckHTTP, Port: b.ap.Port(), Path: "/healthz", Host: "www.example.test",
		Expect: []int{200}, Interval: interval, Timeout: 300 * time.Millisecond, Rise: 2, Fall: fall})
	_, reps := startMonitor(t, Options{Node: "fra-1", Version: "0.9"}, []zones.Target{tg})
	if got := waitReports(t, reps, tg.Key, 1, 5*time.Second); len(got) != 1 || !got[0].Up {
		t.Fatalf("initial reports = %+v, want up", got)
	}
	if agent, host := b.seen(); agent != "gslbd-health/0.9 (node fra-1)" || host != "www.example.test" {
		t.Errorf("backend saw User-Agent %q, Host %q", agent, host)
	}

	b.status.Store(http.StatusServiceUnavailable)
	changed := time.Now()
	got := waitReports(t, reps, tg.Key, 2, 10*time.Second)
	took := time.Since(changed)
	if len(got) != 2 || got[1].Up || got[1].Reason != "status 503" {
		t.Fatalf("reports = %+v, want down with status 503", got)
	}
	limit := time.Duration(fall)*interval*11/10 + 150*time.Millisecond
	t.Logf("http backend 503 → down after %v (limit %v)", took, limit)
	if took > limit {
		t.Errorf("down after %v, want ≤ %v", took, limit)
	}

	b.status.Store(http.StatusOK)
	if got := waitReports(t, reps, tg.Key, 3, 10*time.Second); len(got) != 3 || !got[2].Up {
		t.Fatalf("reports = %+v, want up again", got)
	}
}

func TestUpdateStopsRemovedBackends(t *testing.T) {
	checkLeaks(t)
	a := newBackend(t, "127.0.0.23", nil)
	b := newBackend(t, "127.0.0.24", nil)
	check := func(ap netip.AddrPort) zones.Target {
		return target(ap, zones.Check{Type: zones.CheckHTTP, Port: ap.Port(), Path: "/", Interval: 50 * time.Millisecond, Timeout: 300 * time.Millisecond, Rise: 1, Fall: 1})
	}
	ta, tb := check(a.ap), check(b.ap)
	m, reps := startMonitor(t, Options{}, []zones.Target{ta, tb})
	waitReports(t, reps, ta.Key, 1, 5*time.Second)
	waitReports(t, reps, tb.Key, 1, 5*time.Second)

	m.Update([]zones.Target{ta})
	// A probe in flight at the Update may still arrive; after that, none.
	deadline := time.Now().Add(5 * time.Second)
	var settled int64
	for {
		settled = b.hits.Load()
		aBefore := a.hits.Load()
		// Wait until a has been probed three more times: b would have been
		// too, were it still scheduled.
		for a.hits.Load() < aBefore+3 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if b.hits.Load() == settled || time.Now().After(deadline) {
			break
		}
	}
	if n := b.hits.Load() - settled; n != 0 {
		t.Errorf("removed backend still probed: %d hits", n)
	}
	if got := reps.get(); len(got) != 2 {
		t.Errorf("reports = %+v, want only the two initial ones", got)
	}
	if st := m.States(); len(st) != 1 || st[0].Key != ta.Key {
		t.Errorf("states = %+v, want only %s", st, ta.Key)
	}
}

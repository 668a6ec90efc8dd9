package dnsserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"gslbd/zones"
)

// metricValue gathers reg and returns the value of the series name{labels}
// ("k=v,k=v"), or -1 when it is absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name, labels string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			if strings.Join(ls, ",") != labels {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(Config{Listen: []string{"127.0.0.1:0"}, UDPSockets: 1}, testLogger(t), reg)
	s.Publish(loadView(t, defaultFiles()))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	addr := s.Addrs()[0].String()
	udp := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	ask := func(c *dns.Client, m *dns.Msg) {
		t.Helper()
		if _, _, err := c.Exchange(m, addr); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		ask(udp, mkQuery("www.gslb.example.com.", dns.TypeA))
	}
	ask(udp, mkQuery("geo.gslb.example.com.", dns.TypeA, ecsOpt(1232, "10.2.0.0/16")))
	ask(udp, mkQuery("nope.gslb.example.com.", dns.TypeAAAA))
	ask(udp, mkQuery("example.org.", dns.TypeMX))
	ask(udp, mkQuery("big.gslb.example.com.", dns.TypeTXT))
	ask(&dns.Client{Net: "tcp", Timeout: 2 * time.Second}, mkQuery("big.gslb.example.com.", dns.TypeTXT))
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{1, 2, 3})
	c.Close()

	want := []struct {
		name, labels string
		min          float64
	}{
		{"gslbd_dns_queries_total", "qtype=A,rcode=NOERROR,zone=gslb.example.com.", 4},
		{"gslbd_dns_queries_total", "qtype=AAAA,rcode=NXDOMAIN,zone=gslb.example.com.", 1},
		{"gslbd_dns_queries_total", "qtype=MX,rcode=REFUSED,zone=", 1},
		{"gslbd_dns_queries_total", "qtype=TXT,rcode=NOERROR,zone=gslb.example.com.", 2},
		{"gslbd_dns_pool_answers_total", "pool=web,site=fra", 3},
		{"gslbd_dns_pool_answers_total", "pool=geo,site=iad", 1},
		{"gslbd_dns_ecs_queries_total", "", 1},
		{"gslbd_dns_truncated_total", "", 1},
		{"gslbd_dns_tcp_connections_total", "", 1},
	}
	for _, w := range want {
		if v := metricValue(t, reg, w.name, w.labels); v != w.min {
			t.Errorf("%s{%s} = %v, want %v", w.name, w.labels, v, w.min)
		}
	}
	// The junk packet is counted once it was read; poll, it is UDP.
	deadline := time.Now().Add(3 * time.Second)
	for metricValue(t, reg, "gslbd_dns_dropped_total", "") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("dropped junk packet not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drainHealth drains one site of one pool, as the mesh would.
type drainHealth struct{ pool, site string }

func (drainHealth) Down(string) bool { return false }
func (d drainHealth) Drained(pool, site string, _ netip.Addr) bool {
	return pool == d.pool && site == d.site
}

// TestPublish checks that a new view of the same snapshot reuses the
// compiled table, that answers follow the published view at once, and
// that a new snapshot gets a new table.
func TestPublish(t *testing.T) {
	s := handlerFixture(t)
	first := s.state.Load()
	snap := first.view.Snap
	ask := func() []string {
		buf := make([]byte, 0, 65535)
		resp := s.Handle(buf, pack(t, mkQuery("www.gslb.example.com.", dns.TypeA)), benchSrc, false)
		var m dns.Msg
		if err := m.Unpack(resp); err != nil {
			t.Fatal(err)
		}
		return rrTexts(m.Answer)
	}
	if got := ask(); len(got) != 2 || !strings.Contains(got[0], "192.0.2.1") {
		t.Fatalf("all up: %q, want the fra addresses", got)
	}
	s.Publish(zones.NewView(snap, drainHealth{"web", "fra"}))
	if s.state.Load().t != first.t {
		t.Error("a view of the same snapshot compiled a new table")
	}
	if got := ask(); len(got) != 1 || !strings.Contains(got[0], "198.51.100.10") {
		t.Errorf("fra drained: %q, want iad's address", got)
	}
	s.Publish(loadView(t, defaultFiles()))
	if s.state.Load().t == first.t {
		t.Error("a new snapshot reused the old table")
	}
	s.Publish(nil)
	buf := make([]byte, 0, 65535)
	var m dns.Msg
	if err := m.Unpack(s.Handle(buf, pack(t, mkQuery("www.gslb.example.com.", dns.TypeA)), benchSrc, false)); err != nil || m.Rcode != dns.RcodeServerFailure {
		t.Errorf("nothing published: rcode %s (%v), want SERVFAIL", dns.RcodeToString[m.Rcode], err)
	}
}

// TestPublishConcurrent publishes views while queries run (run with -race).
func TestPublishConcurrent(t *testing.T) {
	s := handlerFixture(t)
	snap := s.state.Load().view.Snap
	pkt := pack(t, mkQuery("geo.gslb.example.com.", dns.TypeA, ecsOpt(1232, "10.1.2.0/24")))
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 0, 65535)
		for range 2000 {
			if s.Handle(buf, pkt, benchSrc, false) == nil {
				t.Error("no answer")
				return
			}
		}
	}()
	for i := range 200 {
		var h zones.Health
		if i%2 == 1 {
			h = drainHealth{"geo", "fra"}
		}
		s.Publish(zones.NewView(snap, h))
	}
	<-done
}

// TestQueryLogSample logs every query at sample rate 1 and none at 0.
func TestQueryLogSample(t *testing.T) {
	for _, rate := range []float64{1, 0} {
		var out strings.Builder
		log := slog.New(slog.NewTextHandler(&lockedWriter{w: &out}, nil))
		s := New(Config{Listen: []string{"127.0.0.1:0"}, UDPSockets: 1, QueryLogSample: rate}, log, nil)
		s.Publish(loadView(t, defaultFiles()))
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		if _, _, err := c.Exchange(mkQuery("static.gslb.example.com.", dns.TypeA), s.Addrs()[0].String()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Shutdown(ctx) // the reader logs before it reads again, so its line is written by now
		cancel()
		logged := strings.Contains(out.String(), "name=static.gslb.example.com.")
		if logged != (rate == 1) {
			t.Errorf("sample rate %v: query logged %v\n%s", rate, logged, out.String())
		}
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

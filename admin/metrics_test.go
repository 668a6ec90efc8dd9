package admin

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type recorded struct {
	code int
	body string
	ct   string
}

// serve runs one request through the handler without a socket.
func serve(s *Server, method, path, token, body string) recorded {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Host = "127.0.0.1:8053" // httptest's example.com is not a name of ours
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return recorded{rec.Code, rec.Body.String(), rec.Header().Get("Content-Type")}
}

func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single-series metric %s", name)
	return 0
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, testToken)
	base := f.start(t)
	code, h, body := call(t, "GET", base+"/metrics", "", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %q", code, h.Get("Content-Type"))
	}
	for _, want := range []string{
		`gslbd_address_up{address="192.0.2.10",pool="web",site="fra"} 1`,
		`gslbd_address_up{address="198.51.100.10",pool="web",site="iad"} 0`,
		`gslbd_address_drained{address="203.0.113.10",pool="web",site="sgp"} 1`,
		`gslbd_address_eligible{address="203.0.113.10",pool="web",site="sgp"} 0`,
		`gslbd_address_eligible{address="2001:db8:10::1",pool="web",site="fra"} 1`,
		`gslbd_votes{address="198.51.100.10",monitor="ns1",pool="web",site="iad"} 0`,
		`gslbd_votes{address="198.51.100.10",monitor="ns3",pool="web",site="iad"} 1`,
		`gslbd_config_last_reload_successful 1`,
		`gslbd_geo_database_build_timestamp_seconds{type="`,
		`gslbd_geo_database_networks `,
		`gslbd_config_last_reload_timestamp_seconds `,
		`gslbd_build_info{goversion="go`,
		`version="v1.2.3-test"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, line := range strings.Split(body, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "gslbd_") {
			t.Errorf("metric without the gslbd_ prefix: %s", line)
		}
	}

	// Computed at scrape time: a drain shows at the next scrape.
	if code, _, body := call(t, "POST", base+"/api/v1/drain", testToken, `{"pool":"web","site":"fra"}`); code != 200 {
		t.Fatalf("drain = %d %s", code, body)
	}
	_, _, body = call(t, "GET", base+"/metrics", "", "")
	if !strings.Contains(body, `gslbd_address_drained{address="192.0.2.10",pool="web",site="fra"} 1`) {
		t.Errorf("drain not visible in metrics")
	}
}

// TestMetricsGathererOnly: a server given a Gatherer but no Registerer
// serves that gatherer and registers nothing of its own.
func TestMetricsGathererOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "gslbd_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s := New(Options{Gatherer: reg, Logger: testLogger(t)})
	rec := serve(s, "GET", "/metrics", "", "")
	if rec.code != 200 || !strings.Contains(rec.body, "gslbd_test_total 3") || strings.Contains(rec.body, "gslbd_build_info") {
		t.Errorf("/metrics = %d\n%s", rec.code, rec.body)
	}
}

// TestStateCollectorLint runs the client library's consistency checks on
// the collector (help texts, label sets, no duplicate series).
func TestStateCollectorLint(t *testing.T) {
	f := newFixture(t, "")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewStateCollector(f.src, f.mesh))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	series := 0
	for _, mf := range mfs {
		series += len(mf.GetMetric())
	}
	// 8 addresses × (up, drained, eligible) + 5 votes + 2 of the geo
	// database.
	if series != 8*3+5+2 {
		t.Errorf("series = %d, want %d", series, 8*3+5+2)
	}
}

package healthmon

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"gslbd/zones"
)

// BenchmarkScale2000 probes 2,000 HTTP backends, each on its own
// 127.1.x.y address, at a 1 s interval for 10 s, and reports whether the
// schedule holds: probes per second, the lateness of probe starts (p50,
// p99, max), the probe workers the pool grew to, and the process's
// goroutines (which include the test server's 2,000 accept loops).
// It is a benchmark so `make test` stays quick: go test -run '^$' -bench Scale2000 ./healthmon/
func BenchmarkScale2000(b *testing.B) {
	const (
		n        = 2000
		interval = time.Second
		window   = 10 * time.Second
	)
	var hits atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			io.WriteString(w, "ok\n")
		}),
		ErrorLog: log.New(b.Output(), "backend: ", 0),
	}
	var served sync.WaitGroup
	targets := make([]zones.Target, 0, n)
	for i := range n {
		ip := fmt.Sprintf("127.1.%d.%d", i/250, i%250+1)
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			b.Fatalf("listen on %s (backend %d): %v", ip, i, err)
		}
		served.Go(func() { srv.Serve(l) })
		ap := netip.MustParseAddrPort(l.Addr().String())
		targets = append(targets, zones.Target{
			Key:  fmt.Sprintf("%s|http:%d/healthz", ap.Addr(), ap.Port()),
			Addr: ap.Addr(),
			Check: zones.Check{Type: zones.CheckHTTP, Port: ap.Port(), Path: "/healthz", Expect: []int{200},
				Interval: interval, Timeout: 2 * time.Second, Rise: 2, Fall: 3},
		})
	}
	b.Cleanup(func() { srv.Close(); served.Wait() })

	for b.Loop() {
		var mu sync.Mutex
		var lateness []time.Duration
		var downs atomic.Int64
		reg := prometheus.NewRegistry()
		m := New(Options{Node: "bench", Version: "test", Registerer: reg, Report: func(r Report) {
			if !r.Up {
				downs.Add(1)
			}
		}})
		m.observe = func(late time.Duration) {
			mu.Lock()
			lateness = append(lateness, late)
			mu.Unlock()
		}
		m.Update(targets)
		base := runtime.NumGoroutine()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- m.Run(ctx) }()

		// Skip the first interval, in which the first probes are spread.
		peak := 0
		var hitsAfterFirst int64
		tick := time.NewTicker(100 * time.Millisecond)
		for now := range tick.C {
			peak = max(peak, runtime.NumGoroutine())
			if hitsAfterFirst == 0 && now.Sub(start) >= interval {
				hitsAfterFirst = hits.Load()
			}
			if now.Sub(start) >= window {
				break
			}
		}
		tick.Stop()
		steady := hits.Load() - hitsAfterFirst
		elapsed := time.Since(start) - interval
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}

		mu.Lock()
		slices.Sort(lateness)
		q := func(p float64) time.Duration { return lateness[int(p*float64(len(lateness)-1))] }
		p50, p99, worst := q(0.50), q(0.99), lateness[len(lateness)-1]
		probes := len(lateness)
		mu.Unlock()
		workers := gaugeValue(b, reg, "gslbd_health_workers")
		meanProbe := histogramMean(b, reg, "gslbd_health_probe_duration_seconds")
		rate := float64(steady) / elapsed.Seconds()

		b.Logf("%d targets at %v for %v: %d probes, %.0f probes/s steady; lateness p50 %v p99 %v max %v; mean probe %v; %v workers; goroutines %d before Run, peak %d; %d down reports",
			n, interval, window, probes, rate, p50, p99, worst, meanProbe, workers, base, peak, downs.Load())
		b.ReportMetric(rate, "probes/s")
		b.ReportMetric(float64(p50.Microseconds())/1000, "late-p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "late-p99-ms")
		b.ReportMetric(workers, "workers")
		b.ReportMetric(float64(peak-base), "goroutines-added")
		if downs.Load() != 0 {
			b.Errorf("%d targets reported down against healthy backends", downs.Load())
		}
		if rate < 0.95*n/interval.Seconds() {
			b.Errorf("%.0f probes/s, want about %d", rate, n)
		}
	}
}

func gaugeValue(tb testing.TB, g prometheus.Gatherer, name string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return metricValue(mf.GetMetric()[0])
		}
	}
	tb.Fatalf("metric %s not found", name)
	return 0
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}

func histogramMean(tb testing.TB, g prometheus.Gatherer, name string) time.Duration {
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	var count uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetHistogram().GetSampleSum()
			count += m.GetHistogram().GetSampleCount()
		}
	}
	if count == 0 {
		return 0
	}
	return time.Duration(sum / float64(count) * float64(time.Second))
}

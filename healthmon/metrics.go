package healthmon

import (
	"github.com/prometheus/client_golang/prometheus"

	"gslbd/zones"
)

// metrics are the monitor's Prometheus series. Failure reasons are
// reduced to a handful of classes so a flapping backend with changing
// error texts cannot blow up the label space.
type metrics struct {
	duration *prometheus.HistogramVec // by check type
	failures *prometheus.CounterVec   // by check type and class
	lateness prometheus.Histogram
	targets  *prometheus.GaugeVec   // by check type
	changes  *prometheus.CounterVec // by new state
	down     prometheus.Gauge
	workers  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gslbd_health_probe_duration_seconds",
			Help:    "Duration of health probes, successful or not.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"check"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gslbd_health_probe_failures_total",
			Help: "Failed health probes by class: refused, timeout, status (HTTP status or DNS rcode/answer), body (body_match), tls, other.",
		}, []string{"check", "class"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gslbd_health_schedule_lateness_seconds",
			Help:    "How long after its due time a probe started; grows when workers cannot keep up.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}),
		targets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gslbd_health_targets",
			Help: "Distinct (address, check) pairs being monitored, by check type.",
		}, []string{"check"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gslbd_health_state_changes_total",
			Help: "Rise/fall state changes of targets, by the state entered.",
		}, []string{"state"}),
		down: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gslbd_health_targets_down",
			Help: "Targets this node's probes currently judge down.",
		}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gslbd_health_workers",
			Help: "Probe workers started: the peak of probes in flight, up to the configured bound.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.failures, m.lateness, m.targets, m.changes, m.down, m.workers)
	}
	return m
}

func (m *metrics) observe(t zones.CheckType, r result) {
	name := t.String()
	m.duration.WithLabelValues(name).Observe(r.latency.Seconds())
	if !r.ok {
		m.failures.WithLabelValues(name, r.class).Inc()
	}
}

// setTargets recounts the targets by type and those down; called with the
// monitor's lock held, after Update changed the set.
func (m *metrics) setTargets(targets map[string]*entry) {
	var n [zones.NumCheckTypes]int
	down := 0
	for _, e := range targets {
		if t := int(e.target.Check.Type); t < len(n) {
			n[t]++
		}
		if !e.state.up {
			down++
		}
	}
	for t, c := range n {
		m.targets.WithLabelValues(zones.CheckType(t).String()).Set(float64(c))
	}
	m.down.Set(float64(down))
}

// decided counts a decision that changed the state (not the first "up");
// called with the monitor's lock held.
func (m *metrics) decided(prev, now machine) {
	if prev.up == now.up {
		return
	}
	if now.up {
		m.changes.WithLabelValues("up").Inc()
		m.down.Dec()
	} else {
		m.changes.WithLabelValues("down").Inc()
		m.down.Inc()
	}
}

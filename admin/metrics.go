package admin

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the admin server's own: reload outcome and build info.
type metrics struct {
	reloadOK  prometheus.Gauge
	reloadTS  prometheus.Gauge
	buildInfo prometheus.Collector
}

func newMetrics(version string) *metrics {
	bi := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gslbd_build_info",
		Help: "Always 1; the labels tell the gslbd and Go versions of this node.",
	}, []string{"version", "goversion"})
	bi.WithLabelValues(version, runtime.Version()).Set(1)
	return &metrics{
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gslbd_config_last_reload_successful",
			Help: "1 when the last configuration load (start, SIGHUP or API) succeeded, else 0.",
		}),
		reloadTS: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gslbd_config_last_reload_timestamp_seconds",
			Help: "Unix time of the last configuration load attempt.",
		}),
		buildInfo: bi,
	}
}

func (m *metrics) setReload(ok bool, at time.Time) {
	v := 0.0
	if ok {
		v = 1
	}
	m.reloadOK.Set(v)
	m.reloadTS.Set(float64(at.UnixNano()) / 1e9)
}

var (
	descAddressUp = prometheus.NewDesc("gslbd_address_up",
		"Mesh verdict on an address: 1 up, 0 down (README, Health checks and the mesh).",
		[]string{"pool", "site", "address"}, nil)
	descAddressDrained = prometheus.NewDesc("gslbd_address_drained",
		"1 when the address is drained, by config or through the admin API.",
		[]string{"pool", "site", "address"}, nil)
	descAddressEligible = prometheus.NewDesc("gslbd_address_eligible",
		"1 when the address can be answered now: up and not drained.",
		[]string{"pool", "site", "address"}, nil)
	descGeoBuild = prometheus.NewDesc("gslbd_geo_database_build_timestamp_seconds",
		"Build time of the GeoIP database in service (Unix seconds); absent without a database.",
		[]string{"type"}, nil)
	descGeoNetworks = prometheus.NewDesc("gslbd_geo_database_networks",
		"Networks with data in the GeoIP database in service.",
		nil, nil)
	descVotes = prometheus.NewDesc("gslbd_votes",
		"A monitor's fresh report on an address: 1 up, 0 down.",
		[]string{"pool", "site", "address", "monitor"}, nil)
)

// stateCollector turns the current view and the mesh votes into gauges at
// scrape time, so the numbers are never older than the scrape and nothing
// has to be kept in step with verdict changes.
type stateCollector struct {
	src  Source
	mesh Mesh
}

// NewStateCollector exposes the verdict, drain and eligibility of every
// address in src's view, and every monitor's vote from mesh (nil: no votes),
// as gauges computed at scrape time. New registers one when given a
// Registerer.
func NewStateCollector(src Source, mesh Mesh) prometheus.Collector {
	return &stateCollector{src: src, mesh: mesh}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAddressUp
	ch <- descAddressDrained
	ch <- descAddressEligible
	ch <- descVotes
	ch <- descGeoBuild
	ch <- descGeoNetworks
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src == nil {
		return
	}
	v := c.src.View()
	if v == nil {
		return
	}
	gi := v.Snap.Geo.Info()
	if !gi.BuildTime.IsZero() {
		ch <- prometheus.MustNewConstMetric(descGeoBuild, prometheus.GaugeValue, float64(gi.BuildTime.Unix()), gi.Type)
	}
	ch <- prometheus.MustNewConstMetric(descGeoNetworks, prometheus.GaugeValue, float64(gi.Networks))
	// The same address may appear in two sites of one pool by mistake;
	// a duplicate series would fail the whole scrape.
	seen := map[[3]string]bool{}
	for _, p := range v.Snap.PoolList {
		for _, site := range p.Sites {
			for i := range site.Addrs {
				a := &site.Addrs[i]
				k := [3]string{p.Name, site.Name, a.Addr.String()}
				if seen[k] {
					continue
				}
				seen[k] = true
				up, drained := v.Up(a), v.IsDrained(a)
				ch <- prometheus.MustNewConstMetric(descAddressUp, prometheus.GaugeValue, b2f(up), k[0], k[1], k[2])
				ch <- prometheus.MustNewConstMetric(descAddressDrained, prometheus.GaugeValue, b2f(drained), k[0], k[1], k[2])
				ch <- prometheus.MustNewConstMetric(descAddressEligible, prometheus.GaugeValue, b2f(up && !drained), k[0], k[1], k[2])
				if c.mesh == nil {
					continue
				}
				for mon, vote := range c.mesh.Votes(v.Snap.Targets[a.Target].Key) {
					ch <- prometheus.MustNewConstMetric(descVotes, prometheus.GaugeValue, b2f(vote), k[0], k[1], k[2], mon)
				}
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

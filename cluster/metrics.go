package cluster

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Why a message was dropped, as the "reason" label.
const (
	dropDecode  = iota // does not decode or fails validation
	dropSize           // over the size bounds
	dropVersion        // unknown version or type
	dropQueue          // the reliable-send worker was behind
	dropKey            // a packet or stream that another mesh key or label made unreadable
	numDrops
)

var dropReasons = [numDrops]string{"decode", "size", "version", "queue", "key"}

type stats struct {
	msgIn, msgOut, bytesIn, bytesOut atomic.Uint64
	dropped                          [numDrops]atomic.Uint64
}

func (s *stats) drop(reason int) { s.dropped[reason].Add(1) }

func (s *stats) dropErr(err error) {
	switch {
	case errors.Is(err, errTooLarge):
		s.drop(dropSize)
	case errors.Is(err, errVersion), errors.Is(err, errUnknownType):
		s.drop(dropVersion)
	default:
		s.drop(dropDecode)
	}
}

// Stats are the mesh's counters, for tests and status.
type Stats struct {
	MessagesIn, MessagesOut, BytesIn, BytesOut uint64
	Dropped                                    uint64
}

// Stats returns the gossip counters (delegate level: our messages, not
// memberlist's own probes).
func (m *Mesh) Stats() Stats {
	s := Stats{
		MessagesIn: m.stats.msgIn.Load(), MessagesOut: m.stats.msgOut.Load(),
		BytesIn: m.stats.bytesIn.Load(), BytesOut: m.stats.bytesOut.Load(),
	}
	for i := range m.stats.dropped {
		s.Dropped += m.stats.dropped[i].Load()
	}
	return s
}

var (
	descMessages = prometheus.NewDesc("gslbd_gossip_messages_total", "Gossip messages of the gslbd state (reports, digests, drains, full state) by direction.", []string{"direction"}, nil)
	descBytes    = prometheus.NewDesc("gslbd_gossip_bytes_total", "Bytes of gslbd gossip messages by direction.", []string{"direction"}, nil)
	descDropped  = prometheus.NewDesc("gslbd_gossip_dropped_total", "Gossip messages dropped, by reason.", []string{"reason"}, nil)
	descMembers  = prometheus.NewDesc("gslbd_mesh_members", "Mesh members known to this node, by state.", []string{"state"}, nil)
	descDown     = prometheus.NewDesc("gslbd_mesh_targets_down", "Targets whose mesh verdict is down.", nil, nil)
	descDrains   = prometheus.NewDesc("gslbd_mesh_drains", "Mesh-wide drains in force.", nil, nil)
	descQueue    = prometheus.NewDesc("gslbd_gossip_queue_length", "Messages waiting in the broadcast queue.", nil, nil)
)

type collector struct{ m *Mesh }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMessages, descBytes, descDropped, descMembers, descDown, descDrains, descQueue} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(m.stats.msgIn.Load()), "in")
	ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(m.stats.msgOut.Load()), "out")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(m.stats.bytesIn.Load()), "in")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(m.stats.bytesOut.Load()), "out")
	for i, r := range dropReasons {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(m.stats.dropped[i].Load()), r)
	}
	states := map[string]int{"alive": 0, "dead": 0, "left": 0}
	for _, mb := range m.Members() {
		states[mb.State]++
	}
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), s)
	}
	h := m.health.Load()
	ch <- prometheus.MustNewConstMetric(descDown, prometheus.GaugeValue, float64(len(h.down)))
	ch <- prometheus.MustNewConstMetric(descDrains, prometheus.GaugeValue, float64(len(h.drained)))
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(m.broadcasts.NumQueued()+m.digests.NumQueued()))
}

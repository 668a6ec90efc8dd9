// Package dnstap logs the DNS messages a gslbd node answers in the dnstap
// format (https://dnstap.info): one AUTH_QUERY and one AUTH_RESPONSE per
// exchange, each with the client's address and port, the server's, the
// time and the whole wire message (so the query's EDNS Client Subnet
// option and the response's scope are in it), written as Frame Streams to
// a file or to a collector's socket — what BIND, Knot, Unbound, PowerDNS
// and CoreDNS emit, so the same collectors read it.
//
// The query path calls Log, which must never wait and never allocate: it
// claims a cell of a lock-free ring (ring.go) with one compare-and-swap,
// copies the two messages into the cell's own buffers and publishes it.
// When every slot is taken (the writer is behind, the collector slow) the
// exchange is dropped and counted, and the query is answered as always.
//
// One writer goroutine (Run) owns the output: it encodes each message with
// the protobuf types of github.com/dnstap/golang-dnstap, frames it, and
// writes through a buffer flushed every FlushInterval. A collector socket
// ("unix:PATH" or "tcp:HOST:PORT") speaks bidirectional Frame Streams
// (github.com/farsightsec/golang-framestream does the handshake); when it
// goes away the writer reconnects with exponential backoff, and what
// arrives meanwhile is dropped and counted. A file is opened when Run
// starts — a non-empty file already there is first renamed aside with a
// timestamp suffix, never overwritten — and Reopen (SIGHUP) finishes it
// and starts a new one when the path no longer names it, so logrotate can
// rename it and signal.
package dnstap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config says where messages go and which. Exactly one of File and Socket
// is set.
type Config struct {
	// File is the path of a Frame Streams file.
	File string
	// Socket is a collector's address: "unix:PATH" or "tcp:HOST:PORT".
	Socket string
	// Identity and Version fill the dnstap fields of the same names
	// (typically the node name and "gslbd VERSION"); empty leaves them out.
	Identity string
	Version  string
	// Queries and Responses select AUTH_QUERY and AUTH_RESPONSE messages.
	Queries   bool
	Responses bool

	// QueueSize is the number of exchanges that may wait for the writer
	// (default DefaultQueueSize); beyond it exchanges are dropped.
	QueueSize int
	// FlushInterval bounds how long a message waits in the write buffer
	// (default 250ms).
	FlushInterval time.Duration
	// Timeout bounds a collector's connection, handshake and each write
	// (default 5s).
	Timeout time.Duration
	// MaxBackoff caps the wait between reconnection attempts, which starts
	// at 100ms and doubles (default 30s).
	MaxBackoff time.Duration
}

// DefaultQueueSize holds about a tenth of a second of a busy node's
// traffic: enough to ride out a flush or a collector's hiccup, little
// enough (a few MiB) to keep. Each slot's buffers grow to the largest
// message it carried, up to keepBuf.
const DefaultQueueSize = 8192

const (
	initBuf = 512     // a slot buffer's first size: most queries and answers fit
	keepBuf = 4 << 10 // larger buffers are dropped after use, so rare big TCP answers cost memory only while queued
	minBack = 100 * time.Millisecond
	// pollInterval is how often the writer takes what is queued: the
	// default queue holds 8192 exchanges, so up to ~800k a second.
	pollInterval = 10 * time.Millisecond
)

// slot is one exchange on its way to the writer. Its buffers belong to
// the slot and are reused.
type slot struct {
	q, r   []byte // the messages; nil when not logged
	client netip.AddrPort
	server netip.AddrPort
	tcp    bool
	qt, rt int64 // unix nanoseconds of the query's arrival and the response
	qbuf   []byte
	rbuf   []byte
}

// Sink is a dnstap output. Log is safe for concurrent use; Run must run
// for anything to be written.
type Sink struct {
	cfg Config
	log *slog.Logger

	q *ring

	reopen chan struct{}

	met *metrics
}

// New checks cfg and returns a Sink; nothing is opened until Run.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Sink, error) {
	if (cfg.File == "") == (cfg.Socket == "") {
		return nil, errors.New("dnstap: set exactly one of file and socket")
	}
	if cfg.Socket != "" {
		if _, _, err := parseSocket(cfg.Socket); err != nil {
			return nil, err
		}
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 250 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{
		cfg:    cfg,
		log:    log.With("component", "dnstap"),
		q:      newRing(cfg.QueueSize),
		reopen: make(chan struct{}, 1),
		met:    newMetrics(reg, cfg),
	}
	return s, nil
}

// parseSocket splits "unix:PATH" or "tcp:HOST:PORT" into a network and an
// address for net.Dial.
func parseSocket(v string) (network, addr string, err error) {
	network, addr, ok := strings.Cut(v, ":")
	if !ok || addr == "" || (network != "unix" && network != "tcp") {
		return "", "", fmt.Errorf("dnstap: socket %q: want \"unix:PATH\" or \"tcp:HOST:PORT\"", v)
	}
	return network, addr, nil
}

// Enabled reports whether Log records anything: at least one of queries
// and responses is selected.
func (s *Sink) Enabled() bool { return s != nil && (s.cfg.Queries || s.cfg.Responses) }

// Log records one exchange: query as received from client on server, and
// resp as sent (nil when the query was dropped without a reply). qt is
// when the query arrived. It copies what it keeps and returns at once:
// when the queue is full the exchange is dropped and counted.
func (s *Sink) Log(query, resp []byte, client, server netip.AddrPort, tcp bool, qt time.Time) {
	if !s.cfg.Queries {
		query = nil
	}
	if !s.cfg.Responses {
		resp = nil
	}
	if query == nil && resp == nil {
		return
	}
	c := s.q.claim()
	if c == nil {
		s.met.droppedFull.Add(1)
		return
	}
	sl := &c.slot
	sl.client, sl.server, sl.tcp = client, server, tcp
	sl.qt = qt.UnixNano()
	sl.q, sl.r = nil, nil
	if query != nil {
		sl.qbuf = grow(sl.qbuf, len(query))
		sl.q = append(sl.qbuf[:0], query...)
	}
	if resp != nil {
		sl.rbuf = grow(sl.rbuf, len(resp))
		sl.r = append(sl.rbuf[:0], resp...)
		sl.rt = time.Now().UnixNano()
	}
	s.q.publish(c)
}

// grow returns b, or a bigger buffer when n does not fit: the first use
// and messages larger than any before in this slot are the only times Log
// allocates.
func grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b
	}
	return make([]byte, 0, max(n, initBuf))
}

// release returns a consumed cell to the producers.
func (s *Sink) release(c *cell) {
	sl := &c.slot
	if cap(sl.qbuf) > keepBuf {
		sl.qbuf = nil
	}
	if cap(sl.rbuf) > keepBuf {
		sl.rbuf = nil
	}
	sl.q, sl.r = nil, nil
	s.q.done(c)
}

// Reopen asks the writer to start a new file when the configured path no
// longer names the one it writes (logrotate moved it). It does nothing
// for a socket and never blocks.
func (s *Sink) Reopen() {
	select {
	case s.reopen <- struct{}{}:
	default:
	}
}

// Run writes queued exchanges until ctx ends, then writes what is still
// queued, finishes the stream (a STOP frame) and closes the output.
func (s *Sink) Run(ctx context.Context) error {
	w := &writer{sink: s}
	w.enc.init(s.cfg)
	flush := time.NewTicker(s.cfg.FlushInterval)
	defer flush.Stop()
	// The writer polls the ring rather than being woken: a wake-up per
	// Log would cost the query path more than the copy itself.
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := minBack

	var out output // nil while closed or disconnected
	fail := func(err error, what string) {
		s.log.Warn("dnstap output failed; retrying", "op", what, "err", err, "retry_in", backoff)
		if out != nil {
			out.abort()
			out = nil
		}
		s.met.up.Set(0)
		retry.Reset(backoff + rand.N(backoff/2+1))
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
	opened := func(o output) {
		out, backoff = o, minBack
		s.met.up.Set(1)
		s.met.opens.Add(1)
		s.log.Info("dnstap output open", "to", s.target())
	}
	if o, err := s.open(); err != nil {
		fail(err, "open")
	} else {
		opened(o)
	}
	for {
		select {
		case <-poll.C:
			// Take what is queued now, not what keeps arriving, so a
			// flood cannot keep the writer from its other duties.
			for n := s.q.len(); n > 0; n-- {
				c := s.q.next()
				if c == nil {
					break // the oldest is still being filled
				}
				if out == nil {
					s.met.droppedDown.Add(1)
					s.release(c)
					continue
				}
				err := w.write(out, &c.slot)
				s.release(c)
				if err != nil {
					s.met.droppedDown.Add(1)
					fail(err, "write")
				}
			}
		case <-flush.C:
			if out != nil {
				if err := out.flush(); err != nil {
					fail(err, "flush")
				}
			}
		case <-retry.C:
			o, err := s.open()
			if err != nil {
				fail(err, "open")
				continue
			}
			opened(o)
		case <-s.reopen:
			if out == nil || !out.moved() {
				continue
			}
			if err := out.close(); err != nil {
				s.log.Warn("dnstap: finish rotated file", "err", err)
			}
			out = nil
			o, err := s.open()
			if err != nil {
				fail(err, "reopen")
				continue
			}
			out = o
			s.met.opens.Add(1)
			s.log.Info("dnstap file reopened", "path", s.cfg.File)
		case <-ctx.Done():
			s.drain(w, out)
			if out != nil {
				if err := out.close(); err != nil {
					s.log.Warn("dnstap: close output", "err", err)
				}
			}
			s.met.up.Set(0)
			return nil
		}
	}
}

// drain writes what is queued at shutdown, without waiting for more.
func (s *Sink) drain(w *writer, out output) {
	for c := s.q.next(); c != nil; c = s.q.next() {
		if out == nil || w.write(out, &c.slot) != nil {
			s.met.droppedDown.Add(1)
			out = nil
		}
		s.release(c)
	}
}

func (s *Sink) target() string {
	if s.cfg.File != "" {
		return s.cfg.File
	}
	return s.cfg.Socket
}

// writer encodes slots into frames.
type writer struct {
	sink *Sink
	enc  encoder
}

// write encodes the exchange's messages and writes them as frames.
func (w *writer) write(out output, sl *slot) error {
	if sl.q != nil {
		if err := out.frame(w.enc.encode(sl, true)); err != nil {
			return err
		}
		w.sink.met.messages.Add(1)
	}
	if sl.r != nil {
		if err := out.frame(w.enc.encode(sl, false)); err != nil {
			return err
		}
		w.sink.met.messages.Add(1)
	}
	return nil
}

// metrics are the sink's series; the hot path only adds to atomics.
type metrics struct {
	messages    atomic.Uint64
	droppedFull atomic.Uint64
	droppedDown atomic.Uint64
	opens       atomic.Uint64
	up          prometheus.Gauge
}

var (
	descMessages = prometheus.NewDesc("gslbd_dnstap_messages_total", "dnstap messages written (AUTH_QUERY and AUTH_RESPONSE).", nil, nil)
	descDropped  = prometheus.NewDesc("gslbd_dnstap_dropped_total", "Exchanges not logged to dnstap: queue_full when the writer was behind, output when the file or collector was unavailable.", []string{"reason"}, nil)
	descOpens    = prometheus.NewDesc("gslbd_dnstap_opens_total", "Times the dnstap output was opened or connected (reconnections and reopened files included).", nil, nil)
)

type collector struct{ m *metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMessages
	ch <- descDropped
	ch <- descOpens
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(c.m.messages.Load()))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(c.m.droppedFull.Load()), "queue_full")
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(c.m.droppedDown.Load()), "output")
	ch <- prometheus.MustNewConstMetric(descOpens, prometheus.CounterValue, float64(c.m.opens.Load()))
}

func newMetrics(reg prometheus.Registerer, cfg Config) *metrics {
	m := &metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gslbd_dnstap_output_up",
			Help: "1 while the dnstap file is open or the collector connected.",
		}),
	}
	if reg != nil {
		reg.MustRegister(collector{m}, m.up)
	}
	return m
}

// Package dnsserver is gslbd's authoritative DNS server: UDP and TCP
// listeners in front of a hand-written query path that answers from the
// published zones.View.
//
// The hot path parses only the header, the question and the OPT record
// (with ECS) itself and writes responses from RRsets packed to wire bytes
// when the snapshot was published; names in answers are compression
// pointers into the question. It loads the view from an atomic.Pointer
// once per query, takes no lock and, warmed up, allocates nothing.
// miekg/dns packs the zone data at Publish time and serves the tests.
//
// Zones with keys are signed online (sign.go): RRSIGs from a cache keyed
// by RRset content, compact denial of existence, nothing extra without
// the DO bit.
//
// # UDP
//
// Each listen address has Config.UDPSockets SO_REUSEPORT sockets, each
// with one reader. On Linux a reader works in batches (udp_linux.go): one
// recvmmsg takes every datagram that has queued up, up to
// Config.UDPBatch, Handle answers each into its own preallocated slot,
// and one sendmmsg sends all the answers to the source addresses exactly
// as the kernel reported them. The socket is taken out of Go's netpoller
// and read with blocking calls on the reader's thread, as gdnsd does: a
// netpoller socket pays an epoll callback for write readiness on every
// datagram sent and a goroutine park and wake-up on every empty read
// (docs/performance.md has the measured gain). Datagrams over 4096 bytes are dropped there (no query is that big).
// Elsewhere, or with UDPBatch = 1, a reader does one ReadFrom and one
// WriteTo per query.
//
// Answers are never fragmented (dontFragment: the Don't Fragment bit on
// IPv4, no sender fragmentation on IPv6, path-MTU reports ignored). An
// answer the kernel refuses as larger than the interface's MTU goes out
// again truncated (TC), as one too big for the client's buffer does.
//
// Neither loop sets IP_PKTINFO: on a wildcard address (0.0.0.0, ::) the
// kernel picks the source address of each answer by its routing table,
// which on a multi-homed host may differ from the address the query was
// sent to; resolvers drop such answers. Listen on specific addresses.
//
// A reader blocked in recvmmsg holds its thread in a system call, and the
// Go scheduler's monitor takes the P away from such a thread (and then
// polls every 20 µs for a while) unless a spare P is idle. So a reader
// blocks only when its queue is empty, reads and sends with raw
// non-blocking system calls otherwise, and yields every few milliseconds;
// `gslbd serve` sets GOMAXPROCS one above UDPSockets (docs/performance.md
// has the profile behind this).
package dnsserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"gslbd/dnssec"
	"gslbd/dnsserver/dnstap"
	"gslbd/zones"
)

// Config configures a Server. Zero values take the defaults of docs/configuration.md.
type Config struct {
	// Listen are host:port addresses; each serves UDP and TCP. Port 0
	// picks a free port (the same one for UDP and TCP); Addrs tells it.
	Listen []string
	// UDPSize is the EDNS buffer size advertised and the most a UDP
	// response may use (default 1232, the DNS flag day 2020 value).
	UDPSize uint16
	// TCPIdleTimeout closes a TCP connection that sends nothing this long
	// (default 10s; RFC 7766 §6.2.3).
	TCPIdleTimeout time.Duration
	// MaxTCPConns caps open TCP connections; more are closed at once
	// (default 1000). Once three quarters of them are open the server is
	// under pressure (RFC 7766 §6.2.3): idle connections get
	// PressureIdleTimeout instead of TCPIdleTimeout, so clients that hold
	// connections open without asking make room for those that ask.
	MaxTCPConns int
	// MaxTCPConnsPerSource caps the connections of one source: an IPv4
	// address or an IPv6 /64 (default MaxTCPConns/10, at least 1), so a
	// single host cannot take every slot.
	MaxTCPConnsPerSource int
	// PressureIdleTimeout is the idle timeout under pressure (default a
	// tenth of TCPIdleTimeout, at least 500ms, at most TCPIdleTimeout).
	PressureIdleTimeout time.Duration
	// UDPSockets is the number of SO_REUSEPORT UDP sockets, each with its
	// own reader goroutine, per listen address (default GOMAXPROCS): the
	// kernel spreads packets over them, so readers never share a lock.
	// More readers than CPUs cost more than they bring
	// (docs/performance.md).
	UDPSockets int
	// UDPBatch is how many datagrams one system call reads or writes on
	// Linux (recvmmsg/sendmmsg; default 64). 1 selects the portable loop
	// of one read and one write per query, which other systems always use.
	UDPBatch int
	// QueryLogSample logs this share (0..1) of queries at Info; 0 logs none.
	QueryLogSample float64
	// RRL is response rate limiting of UDP answers; off unless
	// RRL.ResponsesPerSecond > 0. SetRRL changes it later.
	RRL RRLConfig
	// SignatureCache is how many RRSIG sets of signed zones are kept
	// (default dnssec.DefaultCacheEntries); it bounds the cache's memory.
	SignatureCache int
	// Tap, when not nil, gets every query and its response (dnstap). Its
	// Log never blocks; its Run is the caller's to start.
	Tap *dnstap.Sink
}

func (c *Config) defaults() {
	if c.UDPSize == 0 {
		c.UDPSize = zones.DefaultUDPSize
	}
	c.UDPSize = max(c.UDPSize, maxUDPNoEDNS)
	if c.TCPIdleTimeout <= 0 {
		c.TCPIdleTimeout = zones.DefaultTCPIdleTimeout
	}
	if c.MaxTCPConns <= 0 {
		c.MaxTCPConns = zones.DefaultMaxTCPConns
	}
	if c.MaxTCPConnsPerSource <= 0 {
		c.MaxTCPConnsPerSource = max(c.MaxTCPConns/10, 1)
	}
	if c.PressureIdleTimeout <= 0 {
		c.PressureIdleTimeout = max(c.TCPIdleTimeout/10, 500*time.Millisecond)
	}
	c.PressureIdleTimeout = min(c.PressureIdleTimeout, c.TCPIdleTimeout)
	if c.UDPSockets <= 0 {
		c.UDPSockets = runtime.GOMAXPROCS(0)
	}
	if !haveReusePort {
		c.UDPSockets = 1
	}
	if c.UDPBatch <= 0 {
		c.UDPBatch = defaultUDPBatch
	}
}

// published is what one query reads: the view and the table compiled from
// its snapshot.
type published struct {
	view *zones.View
	t    *table
}

// Server is an authoritative DNS server. Create it with New, Publish a
// view, Start, and Shutdown.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ctr   *counterSet
	state atomic.Pointer[published]
	pubMu sync.Mutex // serialises Publish, SetRRL and SetCookieSecret
	next  *table     // compiled ahead by Compile for the next Publish; under pubMu

	rrl     atomic.Pointer[limiter]       // nil: no rate limiting
	clock   atomic.Int64                  // Unix seconds, kept by tick while started; 0 before
	cookies atomic.Pointer[cookieSecrets] // set by New; replaced by SetCookieSecret

	scratch sync.Pool     // *scratch
	sigs    *dnssec.Cache // signatures of signed zones, kept across reloads
	bufs    sync.Pool     // *[]byte of 2+65535: a TCP message with its length

	sampleEvery uint64
	sampleN     atomic.Uint64

	mu      sync.Mutex
	udp     []*net.UDPConn
	raw     map[int]struct{} // detached UDP sockets being read (Linux batching)
	tcp     []*net.TCPListener
	conns   map[net.Conn]struct{}
	sources map[netip.Addr]int // open TCP connections per source (tcpSource)
	// pressure is set while three quarters of MaxTCPConns are open.
	pressure atomic.Bool
	addrs    []netip.AddrPort
	started  bool
	closing  atomic.Bool
	wg       sync.WaitGroup
	done     chan struct{}
}

// New returns a Server that answers SERVFAIL until the first Publish. Its
// metrics are registered on reg when reg is not nil.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Server {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		log:     log.With("component", "dns"),
		ctr:     newCounterSet(1 + len(cfg.Listen)*cfg.UDPSockets),
		conns:   map[net.Conn]struct{}{},
		sources: map[netip.Addr]int{},
		raw:     map[int]struct{}{},
		done:    make(chan struct{}),
		sigs:    dnssec.NewCache(cfg.SignatureCache),
	}
	s.ctr.sigs = s.sigs
	s.scratch.New = func() any { return &scratch{} }
	s.cookies.Store(&cookieSecrets{cur: RandomCookieSecret()})
	if cfg.RRL.Enabled() {
		s.rrl.Store(newLimiter(cfg.RRL))
	}
	s.bufs.New = func() any { b := make([]byte, 2+maxTCP); return &b }
	if cfg.QueryLogSample > 0 {
		s.sampleEvery = uint64(max(1, 1/min(cfg.QueryLogSample, 1)))
	}
	if reg != nil {
		if err := reg.Register(s.ctr); err != nil {
			s.log.Error("register dns metrics", "err", err)
		}
	}
	return s
}

// Publish makes v the view answers come from, atomically: a query sees
// either the old view or the new one. The lookup table is compiled when
// v's snapshot differs from the current one and reused otherwise, so
// health changes (a new view of the same snapshot) cost nothing here.
func (s *Server) Publish(v *zones.View) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if v == nil || v.Snap == nil {
		s.state.Store(nil)
		return
	}
	cur := s.state.Load()
	var t *table
	switch {
	case cur != nil && cur.t.snap == v.Snap:
		t = cur.t
	case s.next != nil && s.next.snap == v.Snap:
		t, s.next = s.next, nil
	default:
		// Not compiled ahead (Compile): do it now and serve what packed.
		var err error
		if t, err = s.compile(v.Snap); err != nil {
			s.log.Error("compile zones: records left out", "err", err)
		}
	}
	s.state.Store(&published{view: v, t: t})
}

// Compile builds the wire table of snap to the side, before anything is
// swapped in: a reload calls it first and fails on its error, which names
// the file and line of every record that cannot be packed, while the table
// in service keeps answering. The next Publish of a view of snap uses the
// table built here.
func (s *Server) Compile(snap *zones.Snapshot) error {
	t, err := s.compile(snap)
	if err != nil {
		return err
	}
	s.pubMu.Lock()
	s.next = t
	s.pubMu.Unlock()
	return nil
}

func (s *Server) compile(snap *zones.Snapshot) (*table, error) {
	start := time.Now()
	t, err := compile(snap, s.ctr)
	s.log.Debug("compiled zones", "zones", len(t.zones), "took", time.Since(start))
	return t, err
}

// Check compiles snap into a wire table and discards it, so that `gslbd
// check` and nodes without DNS listeners reject the records a server
// would fail to pack.
func Check(snap *zones.Snapshot) error {
	_, err := compile(snap, newCounterSet(1))
	return err
}

// Start binds UDP and TCP on every listen address and serves until
// Shutdown or until ctx is done. It returns once every socket is bound,
// or the first bind error (with everything bound so far closed).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("start dns server: already started")
	}
	s.started = true
	for _, addr := range s.cfg.Listen {
		if err := s.bind(ctx, addr); err != nil {
			s.closeListenersLocked()
			return err
		}
	}
	for i, c := range s.udp {
		s.wg.Add(1)
		go s.serveUDP(c, 1+i) // counter shard 0 is TCP's and Handle's
	}
	for _, l := range s.tcp {
		s.wg.Add(1)
		go s.serveTCP(l)
	}
	s.wg.Add(1)
	go s.tick()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			s.stop()
		case <-s.done:
		}
	}()
	s.log.Info("dns listening", "addrs", s.addrs, "udp_sockets_per_addr", s.cfg.UDPSockets)
	return nil
}

// bind opens the TCP listener and the UDP sockets of one address. With
// port 0 the TCP port is chosen first and UDP binds the same number,
// retrying a few times in the unlikely case that UDP port is taken.
func (s *Server) bind(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen dns %q: %w", addr, err)
	}
	warned := false
	lc := listenConfig(func(err error) {
		if !warned {
			s.log.Warn("udp answers may be fragmented", "addr", addr, "err", err)
			warned = true
		}
	})
	for attempt := 0; ; attempt++ {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("listen dns tcp %q: %w", addr, err)
		}
		tl := l.(*net.TCPListener)
		bound := netip.MustParseAddrPort(tl.Addr().String())
		udpAddr := net.JoinHostPort(host, fmt.Sprint(bound.Port()))
		var conns []*net.UDPConn
		for range s.cfg.UDPSockets {
			pc, err := lc.ListenPacket(ctx, "udp", udpAddr)
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				tl.Close()
				if port == "0" && attempt < 10 {
					break
				}
				return fmt.Errorf("listen dns udp %q: %w", udpAddr, err)
			}
			conns = append(conns, pc.(*net.UDPConn))
		}
		if len(conns) < s.cfg.UDPSockets {
			continue
		}
		s.tcp = append(s.tcp, tl)
		s.udp = append(s.udp, conns...)
		s.addrs = append(s.addrs, bound)
		return nil
	}
}

// Addrs returns the bound addresses, one per listen address, in order
// (UDP and TCP share the port).
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.addrs...)
}

// Shutdown stops reading new queries, lets in-flight TCP queries be
// answered, closes everything and waits for its goroutines, or until ctx
// is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	ch := make(chan struct{})
	go func() { s.wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		// Give up waiting: close the stragglers' connections outright.
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		return fmt.Errorf("shutdown dns server: %w", ctx.Err())
	}
}

// stop unblocks every reader with a past deadline rather than closing
// sockets under them, so a TCP connection busy with a query finishes
// writing its answer first.
func (s *Server) stop() {
	if s.closing.Swap(true) {
		return
	}
	close(s.done)
	s.mu.Lock()
	defer s.mu.Unlock()
	past := time.Unix(1, 0)
	for _, c := range s.udp {
		c.SetReadDeadline(past)
	}
	s.wakeRawLocked()
	for _, l := range s.tcp {
		l.SetDeadline(past)
	}
	for c := range s.conns {
		c.SetReadDeadline(past)
	}
}

func (s *Server) closeListenersLocked() {
	for _, c := range s.udp {
		c.Close()
	}
	for _, l := range s.tcp {
		l.Close()
	}
	s.udp, s.tcp = nil, nil
}

// defaultUDPBatch is the recvmmsg/sendmmsg batch size: room for bursts
// well above the batches measured under load (docs/performance.md), at a
// few hundred KiB of buffers per reader.
const defaultUDPBatch = 64

// serveUDP is one socket's reader: batched where the system allows it,
// else the portable loop.
// shard is the reader's own set of counter cells.
func (s *Server) serveUDP(c *net.UDPConn, shard int) {
	defer s.wg.Done()
	defer c.Close()
	if haveBatch && s.cfg.UDPBatch > 1 && s.serveUDPBatch(c, s.cfg.UDPBatch, shard) {
		return
	}
	s.serveUDPEach(c, shard)
}

// serveUDPEach reads and answers one datagram per pair of system calls.
// Its two buffers are its own for life, so the loop allocates nothing.
func (s *Server) serveUDPEach(c *net.UDPConn, shard int) {
	in := make([]byte, maxTCP)
	out := make([]byte, 0, max(maxTCP, int(s.cfg.UDPSize)))
	tap, local := s.tapFor(c.LocalAddr())
	for {
		n, src, err := c.ReadFromUDPAddrPort(in)
		if err != nil {
			if s.closing.Load() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("read udp", "err", err)
			continue
		}
		var qt time.Time
		if tap != nil {
			qt = time.Now()
		}
		resp := s.handle(out[:0], in[:n], src, false, shard, nil)
		if tap != nil {
			tap.Log(in[:n], resp, src, local, false, qt)
		}
		if resp == nil {
			continue
		}
		s.sample(src, resp, false) // before a cut below rewrites resp
		_, err = c.WriteToUDPAddrPort(resp, src)
		if errors.Is(err, syscall.EMSGSIZE) {
			// Larger than the interface's MTU, and never fragmented
			// (dontFragment): the client gets it truncated and asks
			// again over TCP.
			if t := truncated(resp); t != nil && len(t) < len(resp) {
				s.ctr.hot[shard].truncated.Add(1)
				_, err = c.WriteToUDPAddrPort(t, src)
			}
		}
		if err != nil {
			s.log.Debug("write udp", "to", src, "err", err)
		}
	}
}

func (s *Server) serveTCP(l *net.TCPListener) {
	defer s.wg.Done()
	defer l.Close()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: back off instead of spinning.
			s.log.Warn("accept tcp", "err", err)
			select {
			case <-time.After(backoff):
			case <-s.done:
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		src := tcpSource(c.RemoteAddr())
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			return
		}
		if len(s.conns) >= s.cfg.MaxTCPConns || s.sources[src] >= s.cfg.MaxTCPConnsPerSource {
			if len(s.conns) < s.cfg.MaxTCPConns {
				s.ctr.tcpSourceRefused.Add(1)
			}
			s.mu.Unlock()
			s.ctr.tcpRefused.Add(1)
			c.SetLinger(0)
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.sources[src]++
		s.ctr.tcpOpen.Add(1)
		s.ctr.tcpOpened.Add(1)
		s.wg.Add(1)
		if 4*len(s.conns) >= 3*s.cfg.MaxTCPConns && !s.pressure.Swap(true) {
			s.enterPressureLocked()
		}
		s.mu.Unlock()
		go s.serveConn(c, src)
	}
}

// tcpSource is the unit of the per-source connection cap: the IPv4
// address, or the /64 of an IPv6 one (what one host usually has).
func tcpSource(a net.Addr) netip.Addr {
	ap, _ := netip.ParseAddrPort(a.String())
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// enterPressureLocked cuts the idle time of every open connection to
// PressureIdleTimeout (RFC 7766 §6.2.3): those idle longer than that are
// closed now, the others when they next idle that long. Called under
// s.mu when three quarters of the slots fill up.
func (s *Server) enterPressureLocked() {
	s.log.Info("tcp connections under pressure: shorter idle timeout", "open", len(s.conns), "max", s.cfg.MaxTCPConns, "idle_timeout", s.cfg.PressureIdleTimeout)
	dl := time.Now().Add(s.cfg.PressureIdleTimeout)
	for c := range s.conns {
		c.SetReadDeadline(dl)
	}
}

// idleTimeout is how long a connection may wait for its next query.
func (s *Server) idleTimeout() time.Duration {
	if s.pressure.Load() {
		return s.cfg.PressureIdleTimeout
	}
	return s.cfg.TCPIdleTimeout
}

// serveConn answers the queries of one TCP connection in order, reading
// the next while pipelined ones wait in the buffer (RFC 7766 §6.2.1.1).
func (s *Server) serveConn(c *net.TCPConn, source netip.Addr) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		if s.sources[source]--; s.sources[source] <= 0 {
			delete(s.sources, source)
		}
		if 2*len(s.conns) < s.cfg.MaxTCPConns {
			s.pressure.Store(false) // half free again: hysteresis
		}
		s.mu.Unlock()
		s.ctr.tcpOpen.Add(-1)
		c.Close()
	}()
	src, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	br := bufio.NewReaderSize(c, 4096)
	tap, local := s.tapFor(c.LocalAddr())
	var length [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(s.idleTimeout()))
		if s.closing.Load() {
			return
		}
		if _, err := io.ReadFull(br, length[:]); err != nil {
			return
		}
		// The buffers are taken only once a query is on its way: an idle
		// connection holds nothing but its small reader.
		if !s.serveFrame(c, br, int(binary.BigEndian.Uint16(length[:])), src, tap, local) {
			return
		}
	}
}

// serveFrame reads one length-prefixed query of n bytes from br and
// writes its answer to c (and the exchange to tap, when not nil). It
// reports whether the connection may go on.
func (s *Server) serveFrame(c *net.TCPConn, br *bufio.Reader, n int, src netip.AddrPort, tap *dnstap.Sink, local netip.AddrPort) bool {
	inp := s.bufs.Get().(*[]byte)
	outp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(inp)
	defer s.bufs.Put(outp)
	in, out := *inp, *outp
	if _, err := io.ReadFull(br, in[:n]); err != nil {
		return false
	}
	var qt time.Time
	if tap != nil {
		qt = time.Now()
	}
	resp := s.Handle(out[2:2], in[:n], src, true)
	if tap != nil {
		tap.Log(in[:n], resp, src, local, true, qt)
	}
	if resp == nil {
		return false // junk: a stream cannot resynchronise after it
	}
	binary.BigEndian.PutUint16(out, uint16(len(resp)))
	c.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
	if _, err := c.Write(out[:2+len(resp)]); err != nil {
		return false
	}
	s.sample(src, resp, true)
	return true
}

// tapFor returns the dnstap sink, or nil when none logs anything, and the
// local address of a listener for its messages.
func (s *Server) tapFor(local net.Addr) (*dnstap.Sink, netip.AddrPort) {
	if !s.cfg.Tap.Enabled() {
		return nil, netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(local.String())
	return s.cfg.Tap, ap
}

// sample logs one in sampleEvery answered queries at Info. Only sampled
// queries pay for the unpacking.
func (s *Server) sample(src netip.AddrPort, resp []byte, tcp bool) {
	if s.sampleEvery == 0 || s.sampleN.Add(1)%s.sampleEvery != 0 {
		return
	}
	var m dns.Msg
	if err := m.Unpack(resp); err != nil || len(m.Question) != 1 {
		return
	}
	s.log.Info("query", "client", src, "tcp", tcp, "name", m.Question[0].Name,
		"type", dns.TypeToString[m.Question[0].Qtype], "rcode", dns.RcodeToString[m.Rcode],
		"answers", len(m.Answer))
}

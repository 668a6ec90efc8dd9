// Package admin is gslbd's operator interface over HTTP (docs/operations.md, Admin API): health
// and Prometheus endpoints, a JSON API for status, explain, drains and
// reload, and a live status page embedded in the binary. It also holds the
// HTTP client the command line uses to talk to a node.
//
// admin knows the rest of gslbd only through small interfaces (Source, Mesh,
// Monitor, a reload function) so it can be tested against in-memory
// implementations and does not import the mesh or the monitor.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"gslbd/zones"
)

// Source gives the view the DNS server answers from right now. View must be
// cheap (an atomic load) and may be called from many goroutines at once.
type Source interface {
	View() *zones.View
}

// Explainer answers a query the way the DNS server does, tracing each
// step; ecsPrefix < 0 means no ECS (see dnsserver.Server.Explain).
type Explainer interface {
	Explain(name string, qtype uint16, client netip.Addr, ecsPrefix int) (*zones.Trace, error)
}

// Member is one node of the mesh as the mesh sees it.
type Member struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// State is the mesh's word for it: "alive", "suspect", "dead", "left".
	State string `json:"state"`
	// Config is the digest of the zones and pools the member announces
	// ("" when it announces none); ConfigDiffers is set when that differs
	// from this node's: the two may answer differently.
	Config        string `json:"config,omitempty"`
	ConfigDiffers bool   `json:"config_differs,omitempty"`
}

// Drain is one maintenance switch in force across the mesh.
type Drain struct {
	Pool string `json:"pool"`
	Site string `json:"site"`
	// Addr is the drained address; the zero Addr drains the whole site.
	Addr netip.Addr `json:"address,omitzero"`
}

// Mesh is what admin needs from the cluster. Implementations must be safe
// for concurrent use; every method is called from request goroutines and
// from the metrics collector and must not block for long.
type Mesh interface {
	// Members lists the nodes of the mesh, this one included.
	Members() []Member
	// Votes is each live monitor's fresh report on a target: monitor name →
	// up. The caller does not modify the map.
	Votes(targetKey string) map[string]bool
	// Drain switches maintenance for a site (zero addr) or one address of it
	// on or off, mesh-wide.
	Drain(pool, site string, addr netip.Addr, on bool) error
	// Drains lists the drains in force.
	Drains() []Drain
}

// ErrConflict marks a Mesh.Drain error where the write could not win over
// what the mesh already holds; the API answers 409 Conflict.
var ErrConflict = errors.New("conflict")

// Assigner is implemented by a Mesh that shards probing: which monitors
// probe a target (health.monitors_per_target).
type Assigner interface {
	// Monitors lists the monitors that probe the target now.
	Monitors(targetKey string) []string
	// MonitorsPerTarget is K, 0 when every monitor probes every target.
	MonitorsPerTarget() int
}

// ProbeState is this node's own latest probe result for one target.
type ProbeState struct {
	Up      bool
	Reason  string // why the last probe failed, or a short success note
	Latency time.Duration
	At      time.Time // when the last probe finished
}

// Monitor is this node's health monitor, for the reasons and latencies
// behind its own votes. Optional.
type Monitor interface {
	// Probes maps target key → latest local probe state. The caller does
	// not modify the map.
	Probes() map[string]ProbeState
}

// Options configure a Server.
type Options struct {
	// Listen is the TCP address to serve on ("127.0.0.1:8053"; port 0 picks
	// a free one, see Addr).
	Listen string
	// Token is the bearer token mutating calls must carry; "" disables
	// authentication, which Start allows only on a loopback address.
	// SetToken replaces it.
	Token  string
	Logger *slog.Logger

	// Hosts are the Host header names accepted besides IP literals and
	// localhost. Any other Host is refused, so a web page on a name that
	// an attacker re-binds to the node's address (DNS rebinding) cannot
	// talk to it through a browser.
	Hosts []string
	// Pprof serves Go's profiles under /debug/pprof/, to token holders
	// only; Start refuses it without a token.
	Pprof bool
	// Certificate, when set, makes the listener speak TLS only.
	// SetCertificate replaces it for new connections.
	Certificate *tls.Certificate

	// Gatherer is what /metrics exposes; nil serves the metrics of
	// Registerer when that is also a Gatherer, else an empty set.
	Gatherer prometheus.Gatherer
	// Registerer, when set, receives the reload and build metrics and the
	// state collector (verdicts, drains and votes as gauges).
	Registerer prometheus.Registerer

	Source Source
	// Explainer traces one query for GET /api/v1/explain: the running DNS
	// server's resolver with its trace hook set. nil (a node without DNS
	// listeners): the view of Source is compiled for each request into the
	// same table (dnsserver.Explain).
	Explainer Explainer
	Mesh      Mesh    // nil: a node without a mesh (no members, no drains)
	Monitor   Monitor // nil: no local probe details
	// External is the external health feed; nil on a node that does not
	// probe (its calls answer 503).
	External External

	// Reload re-reads the configuration and swaps it in (docs/operations.md). On
	// failure it returns every error, joined with errors.Join.
	Reload func(ctx context.Context) error

	NodeName string
	Version  string
}

// Limits of the HTTP server. Requests are small JSON bodies and the status
// page; anything larger or slower is a mistake or an attack.
const (
	maxBodyBytes      = 64 << 10
	maxHeaderBytes    = 64 << 10
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second // a reload may take a while
	idleTimeout       = 60 * time.Second
)

// Server serves the admin API. Create it with New; Start binds it.
type Server struct {
	opts    Options
	log     *slog.Logger
	handler http.Handler
	token   atomic.Pointer[tokenHash] // never nil
	cert    atomic.Pointer[tls.Certificate]
	hosts   map[string]bool

	reloadMu sync.Mutex // one reload at a time, SIGHUP and API alike
	reload   reloadState
	met      *metrics

	mu      sync.Mutex
	srv     *http.Server
	ln      net.Listener
	done    chan struct{} // closed when Serve returned
	stopCtx func() bool   // unhooks the close-on-context-done
}

// New builds a Server. It registers its metrics with opts.Registerer when
// set; a registration conflict is logged, not fatal, so a second Server in
// one process (tests) still serves.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:  opts,
		log:   log.With("component", "admin"),
		hosts: map[string]bool{"localhost": true},
	}
	s.SetToken(opts.Token)
	s.cert.Store(opts.Certificate)
	for _, h := range opts.Hosts {
		s.hosts[strings.ToLower(strings.TrimSuffix(h, "."))] = true
	}
	s.reload.ok = true
	s.reload.at = time.Now()
	s.met = newMetrics(opts.Version)
	s.met.setReload(true, s.reload.at)
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.met.reloadOK, s.met.reloadTS, s.met.buildInfo, NewStateCollector(opts.Source, opts.Mesh)} {
			if err := opts.Registerer.Register(c); err != nil {
				s.log.Error("register admin metrics", "err", err)
			}
		}
	}
	s.handler = s.routes()
	return s
}

// Handler is the complete admin HTTP handler, for embedding or tests.
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds opts.Listen and serves in the background until Shutdown or
// until ctx is done. The listener is bound when Start returns. It refuses
// a non-loopback address without a token: drains and reloads must not be
// open to the network.
func (s *Server) Start(ctx context.Context) error {
	if s.token.Load().none && !isLoopback(s.opts.Listen) {
		return fmt.Errorf("admin listen %q: a token_file is required when the admin address is not loopback", s.opts.Listen)
	}
	if s.opts.Pprof && s.token.Load().none {
		return fmt.Errorf("admin listen %q: pprof needs a token_file: profiles are for token holders only", s.opts.Listen)
	}
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("admin listen %q: %w", s.opts.Listen, err)
	}
	if s.cert.Load() != nil {
		ln = tls.NewListener(ln, &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"},
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.cert.Load(), nil
			},
		})
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	// The owner's context ending stops the server too; Shutdown is the
	// graceful path.
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	s.mu.Lock()
	s.srv, s.ln, s.done, s.stopCtx = srv, ln, done, stop
	s.mu.Unlock()
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	s.log.Info("admin listening", "addr", ln.Addr().String(), "auth", !s.token.Load().none, "tls", s.cert.Load() != nil, "pprof", s.opts.Pprof)
	return nil
}

// Addr is the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting, waits for requests in flight until ctx ends,
// then closes what is left. It is a no-op before Start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, done, stopCtx := s.srv, s.done, s.stopCtx
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	stopCtx()
	err := srv.Shutdown(ctx)
	if err != nil {
		srv.Close()
	}
	<-done
	if err != nil {
		return fmt.Errorf("admin shutdown: %w", err)
	}
	return nil
}

// isLoopback reports whether listen ("host:port") accepts only local
// connections. An empty host means every interface.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// tokenHash is the bearer token as compared: its hash, or none.
type tokenHash struct {
	none bool
	sum  [sha256.Size]byte
}

// SetToken replaces the bearer token (SIGHUP re-reads the token file, so a
// token can be rotated without a restart). "" turns authentication off;
// Start has refused that already on a non-loopback address, so callers
// must not set "" on one.
func (s *Server) SetToken(token string) {
	s.token.Store(&tokenHash{none: token == "", sum: sha256.Sum256([]byte(token))})
}

// SetCertificate replaces the TLS certificate for new connections; nil is
// ignored (a listener started with TLS keeps speaking it).
func (s *Server) SetCertificate(c *tls.Certificate) {
	if c != nil {
		s.cert.Store(c)
	}
}

// authorized reports whether r may mutate: always when no token is
// configured, else when it carries "Authorization: Bearer TOKEN". Hashing
// both sides first makes the comparison constant-time in the length too.
func (s *Server) authorized(r *http.Request) bool {
	return s.authorizedBy(r, false)
}

// authorizedBy is authorized; strict refuses every request when no token
// is configured (for what only token holders may do).
func (s *Server) authorizedBy(r *http.Request, strict bool) bool {
	th := s.token.Load()
	if th.none {
		return !strict
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], th.sum[:]) == 1
}

// hostAllowed reports whether the request's Host is one this node answers
// to: an IP literal, localhost, or a name in Options.Hosts. A browser
// sends the name of the page's origin, so a page served from an
// attacker's name that re-resolves to this node (DNS rebinding) is turned
// away even though it reached the right address.
func (s *Server) hostAllowed(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(host, "]"), "["), ".")
	if host == "" {
		return false // HTTP/1.1 requires Host; only HTTP/1.0 omits it
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return s.hosts[strings.ToLower(host)]
}

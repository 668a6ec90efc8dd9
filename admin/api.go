package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// route is one path with a handler per method. A method not in the table
// gets 405 with an Allow header listing those that are.
type route map[string]http.HandlerFunc

func (s *Server) routes() http.Handler {
	var g prometheus.Gatherer = prometheus.NewRegistry()
	if s.opts.Gatherer != nil {
		g = s.opts.Gatherer
	} else if rg, ok := s.opts.Registerer.(prometheus.Gatherer); ok {
		g = rg
	}
	metricsH := promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}})

	table := map[string]route{
		"/healthz":        {"GET": s.handleHealthz},
		"/metrics":        {"GET": metricsH.ServeHTTP},
		"/api/v1/status":  {"GET": s.handleStatus},
		"/api/v1/drain":   {"GET": s.handleDrains, "POST": s.mutating(s.handleDrain(true)), "DELETE": s.mutating(s.handleDrain(false))},
		"/api/v1/explain": {"GET": s.handleExplain},
		"/api/v1/reload":  {"POST": s.mutating(s.handleReload)},
		"/api/v1/external": {"GET": s.handleExternalList, "POST": s.mutating(s.handleExternalSet),
			"DELETE": s.mutating(s.handleExternalClear)},
		"/api/v1/external/alertmanager": {"POST": s.mutating(s.handleAlertmanager)},
		"/":                             {"GET": s.handleIndex},
	}
	static := s.staticHandler()
	profiles := s.tokenOnly(pprofHandler)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r) {
			writeError(w, http.StatusMisdirectedRequest, "host %q is not one of this node's names: use its IP address or localhost, or add the name to admin.hosts", r.Host)
			s.log.Warn("admin request for a foreign host refused", "host", r.Host, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			return
		}
		rt, ok := table[r.URL.Path]
		if !ok {
			if s.opts.Pprof && strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
				profiles(w, r)
				return
			}
			if strings.HasPrefix(r.URL.Path, "/ui/") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				static.ServeHTTP(w, r)
				return
			}
			if strings.HasPrefix(r.URL.Path, "/api/") {
				writeError(w, http.StatusNotFound, "no such endpoint %s", r.URL.Path)
				return
			}
			http.NotFound(w, r)
			return
		}
		h, ok := rt[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = rt[http.MethodGet]
		}
		if !ok {
			methods := make([]string, 0, len(rt))
			for m := range rt {
				methods = append(methods, m)
			}
			slices.Sort(methods)
			w.Header().Set("Allow", strings.Join(methods, ", "))
			writeError(w, http.StatusMethodNotAllowed, "method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(methods, ", "))
			return
		}
		h(w, r)
	})
}

// pprofHandler serves Go's runtime profiles under /debug/pprof/, for
// profiling a node under load. It is off unless admin.pprof is set, and
// then only for token holders: profiling costs CPU, and a heap profile
// shows memory contents.
func pprofHandler(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	default:
		pprof.Index(w, r)
	}
}

// slogPrinter lets promhttp report gathering errors through our logger.
type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Error("metrics", "err", fmt.Sprint(v...)) }

// tokenOnly guards a handler with the bearer token, which must be
// configured, and against cross-site browser requests.
func (s *Server) tokenOnly(h http.HandlerFunc) http.HandlerFunc {
	var csrf http.CrossOriginProtection
	return func(w http.ResponseWriter, r *http.Request) {
		if err := csrf.Check(r); err != nil {
			writeError(w, http.StatusForbidden, "cross-origin request refused: %v", err)
			return
		}
		if !s.authorizedBy(r, true) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gslbd"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			s.log.Warn("unauthorized admin call", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			return
		}
		h(w, r)
	}
}

// mutating guards a handler that changes state: with the bearer token, and
// against cross-site browser requests, which matter most when no token is
// configured — a page in the operator's browser could otherwise post a
// drain to 127.0.0.1.
func (s *Server) mutating(h http.HandlerFunc) http.HandlerFunc {
	var csrf http.CrossOriginProtection
	return func(w http.ResponseWriter, r *http.Request) {
		if err := csrf.Check(r); err != nil {
			writeError(w, http.StatusForbidden, "cross-origin request refused: %v", err)
			s.log.Warn("cross-origin admin call refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
			return
		}
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gslbd"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			s.log.Warn("unauthorized admin call", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			return
		}
		h(w, r)
	}
}

// errorBody is every /api/v1 error answer.
type errorBody struct {
	Error string `json:"error"`
	// Errors lists each problem when there are several (a failed reload).
	Errors []string `json:"errors,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		// Our own types always marshal; this is a programming error.
		code = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, errorBody{Error: fmt.Sprintf(format, args...)})
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Status())
}

// DrainRequest is the body of POST and DELETE /api/v1/drain.
type DrainRequest struct {
	Pool    string `json:"pool"`
	Site    string `json:"site"`
	Address string `json:"address,omitempty"`
}

// DrainResult is the answer to a drain or undrain.
type DrainResult struct {
	Pool    string     `json:"pool"`
	Site    string     `json:"site"`
	Address netip.Addr `json:"address,omitzero"`
	Drained bool       `json:"drained"`
}

// DrainList is the answer to GET /api/v1/drain.
type DrainList struct {
	Drains []Drain `json:"drains"`
}

func (s *Server) handleDrains(w http.ResponseWriter, r *http.Request) {
	l := DrainList{Drains: []Drain{}}
	if s.opts.Mesh != nil {
		l.Drains = append(l.Drains, s.opts.Mesh.Drains()...)
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) handleDrain(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req DrainRequest
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if req.Pool == "" || req.Site == "" {
			writeError(w, http.StatusBadRequest, "drain: body needs \"pool\" and \"site\", got pool %q site %q", req.Pool, req.Site)
			return
		}
		var addr netip.Addr
		if req.Address != "" {
			a, err := netip.ParseAddr(req.Address)
			if err != nil {
				writeError(w, http.StatusBadRequest, "drain: invalid address %q: want an IPv4 or IPv6 address", req.Address)
				return
			}
			addr = a.Unmap()
		}
		if code, err := s.checkTarget(req.Pool, req.Site, addr); err != nil {
			writeError(w, code, "drain: %v", err)
			return
		}
		if s.opts.Mesh == nil {
			writeError(w, http.StatusServiceUnavailable, "drain: this node has no mesh")
			return
		}
		if err := s.opts.Mesh.Drain(req.Pool, req.Site, addr, on); err != nil {
			s.log.Error("drain failed", "pool", req.Pool, "site", req.Site, "address", req.Address, "on", on, "err", err)
			code := http.StatusInternalServerError
			if errors.Is(err, ErrConflict) {
				code = http.StatusConflict
			}
			writeError(w, code, "drain %s/%s: %v", req.Pool, req.Site, err)
			return
		}
		s.log.Info("drain", "pool", req.Pool, "site", req.Site, "address", req.Address, "on", on, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, DrainResult{Pool: req.Pool, Site: req.Site, Address: addr, Drained: on})
	}
}

// checkTarget validates a drain target against the current snapshot, so a
// typo does not gossip a drain that matches nothing.
func (s *Server) checkTarget(pool, site string, addr netip.Addr) (int, error) {
	v := s.view()
	if v == nil {
		return http.StatusServiceUnavailable, errors.New("no configuration loaded yet")
	}
	p := v.Snap.Pools[pool]
	if p == nil {
		return http.StatusNotFound, fmt.Errorf("unknown pool %q", pool)
	}
	for _, st := range p.Sites {
		if st.Name != site {
			continue
		}
		if !addr.IsValid() {
			return 0, nil
		}
		for _, a := range st.Addrs {
			if a.Addr == addr {
				return 0, nil
			}
		}
		return http.StatusNotFound, fmt.Errorf("unknown address %s in site %q of pool %q", addr, site, pool)
	}
	return http.StatusNotFound, fmt.Errorf("unknown site %q in pool %q", site, pool)
}

// decodeBody reads one JSON object, strictly: unknown fields, trailing data
// and bodies over maxBodyBytes are errors.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	// Any content type is accepted (curl -d sends a form type); the body
	// must still be one JSON object.
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("decode body: empty, want a JSON object")
		}
		return fmt.Errorf("decode body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("decode body: trailing data after the JSON object")
	}
	return nil
}

// ReloadResult is the answer to POST /api/v1/reload, and the last reload's
// outcome in the status.
type ReloadResult struct {
	OK     bool      `json:"ok"`
	At     time.Time `json:"at"`
	Took   string    `json:"took,omitempty"`
	Errors []string  `json:"errors,omitempty"`
	// Error summarises a failure, like every other /api/v1 error answer.
	Error string `json:"error,omitempty"`
	// ConfigLoadedAt is when the snapshot in service was loaded.
	ConfigLoadedAt time.Time `json:"config_loaded_at,omitzero"`
}

type reloadState struct {
	ok     bool
	at     time.Time
	took   time.Duration
	errors []string
}

// Reload runs opts.Reload, one at a time, and records the outcome for the
// status and the metrics. cmd/gslbd calls it for SIGHUP too, so both paths
// count alike.
func (s *Server) Reload(ctx context.Context) error {
	if s.opts.Reload == nil {
		return errors.New("reload: not available on this node")
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	start := time.Now()
	err := s.opts.Reload(ctx)
	st := reloadState{ok: err == nil, at: time.Now(), took: time.Since(start), errors: splitErrors(err)}
	s.mu.Lock()
	s.reload = st
	s.mu.Unlock()
	s.met.setReload(st.ok, st.at)
	if err != nil {
		for _, e := range st.errors {
			s.log.Error("reload failed", "err", e)
		}
		return err
	}
	s.log.Info("reload done", "took", st.took)
	return nil
}

func (s *Server) lastReload() ReloadResult {
	s.mu.Lock()
	st := s.reload
	s.mu.Unlock()
	res := ReloadResult{OK: st.ok, At: st.at, Errors: st.errors}
	if st.took > 0 {
		res.Took = st.took.Round(time.Microsecond).String()
	}
	if v := s.view(); v != nil {
		res.ConfigLoadedAt = v.Snap.LoadedAt
	}
	return res
}

// splitErrors flattens an errors.Join tree into one message per leaf, the
// way `gslbd check` prints them.
func splitErrors(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	if s.opts.Reload == nil {
		writeError(w, http.StatusServiceUnavailable, "reload: not available on this node")
		return
	}
	s.log.Info("reload requested", "remote", r.RemoteAddr)
	// A client that hangs up must not cancel a reload half-way.
	err := s.Reload(context.WithoutCancel(r.Context()))
	res := s.lastReload()
	if err != nil {
		res.Error = fmt.Sprintf("reload failed with %d errors", len(res.Errors))
		writeJSON(w, http.StatusUnprocessableEntity, res)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

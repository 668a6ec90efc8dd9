package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"gslbd/dnsserver"
	"gslbd/zones"
)

// handleExplain answers GET /api/v1/explain?name=N&type=A&client=IP[&ecs=P]
// with the trace of the DNS server's own resolver answering that query
// from the view in service.
func (s *Server) handleExplain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" {
		writeError(w, http.StatusBadRequest, "explain: query parameter \"name\" is required")
		return
	}
	qtype, err := ParseType(q.Get("type"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "explain: %v", err)
		return
	}
	cs := q.Get("client")
	if cs == "" {
		writeError(w, http.StatusBadRequest, "explain: query parameter \"client\" is required (an IP address)")
		return
	}
	client, err := netip.ParseAddr(cs)
	if err != nil {
		writeError(w, http.StatusBadRequest, "explain: invalid client %q: want an IPv4 or IPv6 address", cs)
		return
	}
	client = client.Unmap()
	ecs := -1
	if es := q.Get("ecs"); es != "" {
		ecs, err = strconv.Atoi(es)
		if err != nil || ecs < 0 || ecs > client.BitLen() {
			writeError(w, http.StatusBadRequest, "explain: invalid ecs %q: want a source prefix length 0..%d", es, client.BitLen())
			return
		}
	}
	v := s.view()
	if v == nil {
		writeError(w, http.StatusServiceUnavailable, "explain: no configuration loaded yet")
		return
	}
	var tr *zones.Trace
	if s.opts.Explainer != nil {
		tr, err = s.opts.Explainer.Explain(name, qtype, client, ecs)
	} else {
		tr, err = dnsserver.Explain(v, name, qtype, client, ecs)
	}
	if errors.Is(err, dnsserver.ErrGeoReloading) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, tr)
}

// ParseType reads a query type the way dig takes it: a mnemonic ("aaaa")
// or "TYPEn"; "" means A.
func ParseType(s string) (uint16, error) {
	if s == "" {
		return dns.TypeA, nil
	}
	u := strings.ToUpper(s)
	if t, ok := dns.StringToType[u]; ok {
		return t, nil
	}
	if n, ok := strings.CutPrefix(u, "TYPE"); ok {
		if v, err := strconv.ParseUint(n, 10, 16); err == nil {
			return uint16(v), nil
		}
	}
	return 0, fmt.Errorf("invalid query type %q: want a type such as A, AAAA, MX or TYPE65", s)
}

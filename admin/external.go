package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// External is this node's external health feed (docs/operations.md,
// "External health"): statements
// from outside that an address or a site is up or down for a while. They
// are this monitor's report on the targets they name, so they enter the
// quorum like a probe result. Optional; safe for concurrent use.
type External interface {
	// Set adds or replaces the API entry for e's target; an error
	// wrapping ErrUnknownTarget when no pool has it.
	Set(e ExternalEntry) error
	// Clear removes the API entry for e's target; false when there was none.
	Clear(e ExternalEntry) bool
	// Entries lists the entries in force, from the file and the API.
	Entries() []ExternalEntry
}

// ErrUnknownTarget is what External.Set wraps for an address or site no
// pool has.
var ErrUnknownTarget = errors.New("unknown target")

// ExternalEntry is one external statement, as GET /api/v1/external lists
// it.
type ExternalEntry struct {
	Address netip.Addr `json:"address,omitzero"`
	Pool    string     `json:"pool,omitempty"`
	Site    string     `json:"site,omitempty"`
	Up      bool       `json:"up"`
	Reason  string     `json:"reason,omitempty"`
	// Expires is when the entry ends; zero: while it is in the file.
	Expires time.Time `json:"expires,omitzero"`
	Source  string    `json:"source"` // "file" or "api"
}

// ExternalList is the answer to GET /api/v1/external.
type ExternalList struct {
	Entries []ExternalEntry `json:"entries"`
}

// ExternalRequest is the body of POST and DELETE /api/v1/external: an
// address, or a pool and a site; for POST also the state and a TTL.
type ExternalRequest struct {
	Address string `json:"address,omitempty"`
	Pool    string `json:"pool,omitempty"`
	Site    string `json:"site,omitempty"`
	State   string `json:"state,omitempty"`  // "up" or "down"
	TTL     string `json:"ttl,omitempty"`    // Go duration, e.g. "10m"
	Reason  string `json:"reason,omitempty"` // shown as the vote's reason
}

// MaxExternalTTL bounds how long one call can set a state: a forgotten
// "down" must end by itself.
const MaxExternalTTL = 7 * 24 * time.Hour

// DefaultAlertTTL is how long a firing alert's state lasts without being
// repeated (label gslbd_ttl overrides it). Alertmanager's repeat_interval
// for the route must be shorter, or a long-firing alert's state lapses.
const DefaultAlertTTL = time.Hour

// target reads the address or pool/site of a request.
func (req ExternalRequest) target() (ExternalEntry, error) {
	var e ExternalEntry
	switch {
	case req.Address != "" && (req.Pool != "" || req.Site != ""):
		return e, errors.New("give an address, or a pool and a site, not both")
	case req.Address != "":
		a, err := netip.ParseAddr(req.Address)
		if err != nil || a.Zone() != "" {
			return e, fmt.Errorf("invalid address %q: want an IPv4 or IPv6 address", req.Address)
		}
		e.Address = a.Unmap()
	case req.Pool != "" && req.Site != "":
		e.Pool, e.Site = req.Pool, req.Site
	default:
		return e, errors.New("body needs \"address\", or \"pool\" and \"site\"")
	}
	return e, nil
}

func (s *Server) handleExternalList(w http.ResponseWriter, r *http.Request) {
	l := ExternalList{Entries: []ExternalEntry{}}
	if s.opts.External != nil {
		l.Entries = append(l.Entries, s.opts.External.Entries()...)
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) handleExternalSet(w http.ResponseWriter, r *http.Request) {
	req, e, ok := decodeExternal(w, r)
	if !ok {
		return
	}
	switch req.State {
	case "up":
		e.Up = true
	case "down":
	default:
		writeError(w, http.StatusBadRequest, "external: state %q: want \"up\" or \"down\"", req.State)
		return
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil || ttl <= 0 || ttl > MaxExternalTTL {
		writeError(w, http.StatusBadRequest, "external: ttl %q: want a duration from 1s to %s, e.g. \"10m\"", req.TTL, MaxExternalTTL)
		return
	}
	e.Reason, e.Expires, e.Source = req.Reason, time.Now().Add(ttl), "api"
	if !s.setExternal(w, e) {
		return
	}
	s.log.Info("external health set", "target", describeTarget(e), "up", e.Up, "ttl", ttl, "reason", e.Reason, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, e)
}

// decodeExternal reads an /api/v1/external body and the target it names,
// answering 400 itself when either is bad.
func decodeExternal(w http.ResponseWriter, r *http.Request) (ExternalRequest, ExternalEntry, bool) {
	var req ExternalRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return req, ExternalEntry{}, false
	}
	e, err := req.target()
	if err != nil {
		writeError(w, http.StatusBadRequest, "external: %v", err)
		return req, ExternalEntry{}, false
	}
	return req, e, true
}

// setExternal applies e, answering the error itself when it fails.
func (s *Server) setExternal(w http.ResponseWriter, e ExternalEntry) bool {
	if s.opts.External == nil {
		writeError(w, http.StatusServiceUnavailable, "external: this node does not probe (health.probe = false), so it has no vote to set")
		return false
	}
	if err := s.opts.External.Set(e); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrUnknownTarget) {
			code = http.StatusNotFound
		}
		writeError(w, code, "external %s: %v", describeTarget(e), err)
		return false
	}
	return true
}

func (s *Server) handleExternalClear(w http.ResponseWriter, r *http.Request) {
	_, e, ok := decodeExternal(w, r)
	if !ok {
		return
	}
	if s.opts.External == nil || !s.opts.External.Clear(e) {
		writeError(w, http.StatusNotFound, "external: no API entry for %s", describeTarget(e))
		return
	}
	s.log.Info("external health cleared", "target", describeTarget(e), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]string{"cleared": describeTarget(e)})
}

func describeTarget(e ExternalEntry) string {
	if e.Address.IsValid() {
		return e.Address.String()
	}
	return e.Pool + "/" + e.Site
}

// alertmanagerWebhook is the part of Alertmanager's webhook payload
// (version 4) that matters here.
type alertmanagerWebhook struct {
	Version string `json:"version"`
	Alerts  []struct {
		Status      string            `json:"status"` // firing or resolved
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
}

// AlertmanagerResult is the answer to POST /api/v1/external/alertmanager.
type AlertmanagerResult struct {
	Set     int      `json:"set"`
	Cleared int      `json:"cleared"`
	Skipped []string `json:"skipped,omitempty"`
}

// handleAlertmanager takes Alertmanager's webhook: each alert labelled
// gslbd_address (or gslbd_pool and gslbd_site) sets that target down
// while it fires (gslbd_state = "up" asserts up instead) for gslbd_ttl
// (default DefaultAlertTTL), and clears it when resolved. Alerts without
// those labels, or naming a target no pool has, are skipped and listed,
// with 200 all the same: Alertmanager retries a failed webhook, and a
// retry would fail again.
func (s *Server) handleAlertmanager(w http.ResponseWriter, r *http.Request) {
	var hook alertmanagerWebhook
	// The payload carries many fields we do not need: unknown fields are
	// fine here, unlike the API's own bodies.
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20))
	if err := dec.Decode(&hook); err != nil {
		writeError(w, http.StatusBadRequest, "alertmanager webhook: decode body: %v", err)
		return
	}
	if hook.Version != "" && hook.Version != "4" {
		writeError(w, http.StatusBadRequest, "alertmanager webhook: version %q, want 4", hook.Version)
		return
	}
	var res AlertmanagerResult
	for _, a := range hook.Alerts {
		name := a.Labels["alertname"]
		e, err := ExternalRequest{Address: a.Labels["gslbd_address"], Pool: a.Labels["gslbd_pool"], Site: a.Labels["gslbd_site"]}.target()
		if err != nil {
			res.Skipped = append(res.Skipped, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if a.Status == "resolved" {
			if s.opts.External != nil && s.opts.External.Clear(e) {
				res.Cleared++
			}
			continue
		}
		ttl := DefaultAlertTTL
		if v := a.Labels["gslbd_ttl"]; v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > MaxExternalTTL {
				res.Skipped = append(res.Skipped, fmt.Sprintf("%s: gslbd_ttl %q: want a duration up to %s", name, v, MaxExternalTTL))
				continue
			}
			ttl = d
		}
		e.Up = strings.EqualFold(a.Labels["gslbd_state"], "up")
		e.Reason = strings.TrimSpace("alert " + name + " " + a.Annotations["summary"])
		e.Expires, e.Source = time.Now().Add(ttl), "api"
		if s.opts.External == nil {
			writeError(w, http.StatusServiceUnavailable, "external: this node does not probe (health.probe = false), so it has no vote to set")
			return
		}
		if err := s.opts.External.Set(e); err != nil {
			res.Skipped = append(res.Skipped, fmt.Sprintf("%s: %s: %v", name, describeTarget(e), err))
			continue
		}
		res.Set++
	}
	if len(res.Skipped) > 0 {
		s.log.Warn("alertmanager webhook: alerts skipped", "skipped", strings.Join(res.Skipped, "; "))
	}
	s.log.Info("alertmanager webhook", "set", res.Set, "cleared", res.Cleared, "skipped", len(res.Skipped), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, res)
}

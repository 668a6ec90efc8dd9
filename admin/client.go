package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gslbd/zones"
)

// DefaultURL is where `gslbd` commands look for a node's admin API.
const DefaultURL = "http://127.0.0.1:8053"

// Client talks to a node's admin API; the command line uses it.
type Client struct {
	// Base is the admin URL, "http://127.0.0.1:8053".
	Base string
	// Token is sent as a bearer token when not empty.
	Token string
	// HTTP is the client to use; nil means one with a 30 s timeout.
	HTTP *http.Client
}

// APIError is a non-2xx answer from the admin API.
type APIError struct {
	Status  int
	Message string
	// Errors lists every problem when there are several (a failed reload).
	Errors []string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if len(e.Errors) > 0 {
		msg += ":\n  " + strings.Join(e.Errors, "\n  ")
	}
	return fmt.Sprintf("admin api: %d: %s", e.Status, msg)
}

// Status fetches GET /api/v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, "/api/v1/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Explain fetches the trace for a query of qtype at name from client;
// ecs < 0 means without ECS.
func (c *Client) Explain(ctx context.Context, name, qtype string, client netip.Addr, ecs int) (*zones.Trace, error) {
	q := url.Values{"name": {name}, "client": {client.String()}}
	if qtype != "" {
		q.Set("type", qtype)
	}
	if ecs >= 0 {
		q.Set("ecs", strconv.Itoa(ecs))
	}
	var t zones.Trace
	if err := c.do(ctx, http.MethodGet, "/api/v1/explain?"+q.Encode(), nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Drain switches maintenance of a site (zero addr) or one of its addresses
// on or off, mesh-wide.
func (c *Client) Drain(ctx context.Context, pool, site string, addr netip.Addr, on bool) (*DrainResult, error) {
	req := DrainRequest{Pool: pool, Site: site}
	if addr.IsValid() {
		req.Address = addr.String()
	}
	method := http.MethodPost
	if !on {
		method = http.MethodDelete
	}
	var res DrainResult
	if err := c.do(ctx, method, "/api/v1/drain", req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Reload asks the node to reload its configuration. A failed reload is an
// *APIError with Status 422 and every error in Errors.
func (c *Client) Reload(ctx context.Context) (*ReloadResult, error) {
	var res ReloadResult
	if err := c.do(ctx, http.MethodPost, "/api/v1/reload", nil, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// maxResponseBytes bounds what the client reads: a status of a large
// configuration is well under this.
const maxResponseBytes = 32 << 20

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	base := strings.TrimRight(c.Base, "/")
	if base == "" {
		base = DefaultURL
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("admin api %s %s: encode body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return fmt.Errorf("admin api %s %s: %w", method, base+path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin api %s %s: %w", method, base+path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("admin api %s %s: read answer: %w", method, base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb struct {
			Error  string   `json:"error"`
			Errors []string `json:"errors"`
		}
		ae := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, &eb) == nil {
			ae.Message, ae.Errors = eb.Error, eb.Errors
		} else {
			// Not our API (a proxy's error page?): a short excerpt is enough.
			msg := strings.TrimSpace(string(data))
			if len(msg) > 200 {
				msg = msg[:200] + "…"
			}
			ae.Message = msg
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin api %s %s: decode answer: %w", method, base+path, err)
	}
	return nil
}

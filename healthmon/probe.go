package healthmon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gslbd/zones"
)

// maxBody is how much of a response body a probe reads before closing the
// connection: enough for any health page, too little for a misconfigured
// path that serves a large file to cost anything.
const maxBody = 64 << 10

// maxHead bounds the status line and headers of a probe's response: a
// backend that streams an endless header (broken, or hostile) costs this
// much memory and fails the probe, instead of growing a buffer until the
// deadline.
const maxHead = 16 << 10

// netProber probes over real sockets. Every probe dials its own
// connection and closes it, as a client would: a pooled connection would
// keep passing after the backend stopped accepting new ones. HTTP is
// spoken directly over that connection (HTTP/1.1, Connection: close) so a
// probe needs no goroutine besides the worker running it and ends exactly
// at its deadline.
type netProber struct {
	agent  string
	roots  *x509.CertPool
	dialer net.Dialer
}

// NewProber returns the network prober: http, https, tcp and dns checks over
// fresh connections, sending `User-Agent: gslbd-health/VERSION (node
// NAME)`. roots verifies https backends; nil means the system roots.
func NewProber(node, version string, roots *x509.CertPool) Prober {
	return &netProber{
		agent: fmt.Sprintf("gslbd-health/%s (node %s)", version, node),
		roots: roots,
		// A probe's connection lives for one exchange: TCP keepalives
		// would only cost four setsockopt calls per probe.
		dialer: net.Dialer{KeepAlive: -1},
	}
}

// probeError is a failure with its metric class and a short reason for
// status pages and logs; Error returns the reason.
type probeError struct {
	class  string
	reason string
	err    error
}

func (e *probeError) Error() string { return e.reason }
func (e *probeError) Unwrap() error { return e.err }

// Probe implements Prober.
func (p *netProber) Probe(ctx context.Context, t zones.Target) error {
	c := t.Check
	port := c.Port
	if port == 0 {
		switch c.Type {
		case zones.CheckHTTP:
			port = 80
		case zones.CheckHTTPS:
			port = 443
		default:
			return &probeError{class: "other", reason: "no port configured"}
		}
	}
	addr := netip.AddrPortFrom(t.Addr, port).String()
	if c.Type == zones.CheckDNS {
		return p.probeDNS(ctx, addr, c)
	}
	conn, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return stageError("connect", err)
	}
	defer conn.Close()
	if c.Type == zones.CheckTCP || c.Type == zones.CheckNone {
		return nil
	}

	// The deadline bounds every read and write; AfterFunc also unblocks
	// them when the monitor stops before the deadline.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	host := c.Host
	scheme := "http"
	if c.Type == zones.CheckHTTPS {
		scheme = "https"
		name := host
		if name == "" {
			// No host: verify against the address itself (an IP SAN).
			name = t.Addr.String()
		}
		tc := tls.Client(conn, &tls.Config{
			ServerName:         name,
			RootCAs:            p.roots,
			InsecureSkipVerify: c.Insecure,
			NextProtos:         []string{"http/1.1"},
		})
		if err := tc.HandshakeContext(ctx); err != nil {
			return tlsError(err)
		}
		conn = tc
	}
	if host == "" {
		host = addr
	}

	path := c.Path
	if path == "" {
		path = "/"
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		return &probeError{class: "other", reason: fmt.Sprintf("bad path %q", path), err: err}
	}
	u.Scheme, u.Host = scheme, addr
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     header(p.agent, c.Headers),
		Host:       host,
		Close:      true,
	}
	bw := bufio.NewWriterSize(conn, 512)
	if err := req.Write(bw); err != nil {
		return stageError("send", err)
	}
	if err := bw.Flush(); err != nil {
		return stageError("send", err)
	}
	// Everything is read through one budget: maxHead for the head, then
	// maxBody more for the body.
	lr := &io.LimitedReader{R: conn, N: maxHead}
	resp, err := http.ReadResponse(bufio.NewReaderSize(lr, 4096), req)
	if err != nil {
		if lr.N == 0 {
			return &probeError{class: "other", reason: fmt.Sprintf("response header larger than %d KiB", maxHead>>10), err: err}
		}
		return stageError("response", err)
	}
	lr.N += maxBody
	// The status decides, then body_match in the body's first bytes; the
	// rest is drained only so the backend sees a complete exchange, and
	// its errors do not matter.
	var head []byte
	var readErr error
	if c.BodyMatch != "" {
		head, readErr = io.ReadAll(io.LimitReader(resp.Body, zones.BodyMatchBytes))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	expect := c.Expect
	if len(expect) == 0 {
		expect = []int{http.StatusOK}
	}
	if !slices.Contains(expect, resp.StatusCode) {
		return &probeError{class: "status", reason: "status " + strconv.Itoa(resp.StatusCode)}
	}
	if c.BodyMatch != "" && !bytes.Contains(head, []byte(c.BodyMatch)) {
		if readErr != nil {
			return stageError("body", readErr)
		}
		return &probeError{class: "body", reason: fmt.Sprintf("body lacks %q", truncate(c.BodyMatch, 40))}
	}
	return nil
}

// header is a probe's request header: the User-Agent and the check's own.
func header(agent string, extra []zones.Header) http.Header {
	h := make(http.Header, 1+len(extra))
	h["User-Agent"] = []string{agent}
	for _, x := range extra {
		h[x.Name] = append(h[x.Name], x.Value)
	}
	return h
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// stageError names the usual socket failures in a few words; the stage
// says where a timeout or a reset happened.
func stageError(stage string, err error) error {
	var reason string
	class := "other"
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		// The monitor adds the configured timeout to the reason.
		return &probeError{class: "timeout", reason: "timeout (" + stage + ")", err: err}
	case errors.Is(err, syscall.ECONNREFUSED):
		class, reason = "refused", "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		reason = "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		reason = "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		reason = "network unreachable"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		reason = "connection closed"
	default:
		reason = innermost(err)
	}
	if stage != "connect" {
		reason += " (" + stage + ")"
	}
	return &probeError{class: class, reason: reason, err: err}
}

// tlsError reduces a handshake failure to "tls: <what>", e.g. "tls:
// certificate is valid for a.example, not b.example".
func tlsError(err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return &probeError{class: "timeout", reason: "timeout (tls handshake)", err: err}
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) {
		return &probeError{class: "tls", reason: "tls: connection closed during handshake", err: err}
	}
	msg := err.Error()
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		msg = cv.Err.Error()
	}
	msg = strings.TrimPrefix(msg, "x509: ")
	msg = strings.TrimPrefix(msg, "tls: ")
	return &probeError{class: "tls", reason: "tls: " + msg, err: err}
}

// innermost strips the operation wrappers of net and os errors, whose
// addresses the status page shows already.
func innermost(err error) string {
	for {
		var op *net.OpError
		var sys *os.SyscallError
		switch {
		case errors.As(err, &op) && op.Err != nil:
			err = op.Err
		case errors.As(err, &sys) && sys.Err != nil:
			return sys.Err.Error()
		default:
			return err.Error()
		}
	}
}

// classify turns a prober's error into a metric class and a reason. Any
// prober's error is a timeout when the probe's deadline passed, so fake
// and custom probers get the same "timeout after 2s" wording.
func classify(err error, expired bool, timeout time.Duration) (class, reason string) {
	var pe *probeError
	if errors.As(err, &pe) {
		if pe.class == "timeout" {
			return "timeout", strings.Replace(pe.reason, "timeout", "timeout after "+timeout.String(), 1)
		}
		return pe.class, pe.reason
	}
	if expired || errors.Is(err, context.DeadlineExceeded) {
		return "timeout", "timeout after " + timeout.String()
	}
	return "other", err.Error()
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gslbd/internal/testlog"
)

// inproc is a node run in the test's own process, every listener on
// 127.0.0.1 port 0, the way CoreDNS's test/server.go starts a server from
// a config string: no free-port guessing, no subprocess. Tests that need
// separate processes (the mesh tests, signals) use testNode instead.
type inproc struct {
	t     testing.TB
	n     *node
	dir   string
	DNS   string // 127.0.0.1:port
	Admin string // http://127.0.0.1:port
	stop  context.CancelFunc
	done  chan error
	hup   chan os.Signal
}

// startInproc writes files (relative paths; gslbd.toml gets [node],
// [dns], [cluster] and [admin] sections prepended with port 0 listeners)
// and runs the node until the test ends. setup, when set, adjusts the
// node before it runs (test hooks).
func startInproc(t testing.TB, name string, files nodeFiles, extra string, join []string, setup func(*node)) *inproc {
	t.Helper()
	dir := t.TempDir()
	var quoted []string
	for _, j := range join {
		quoted = append(quoted, fmt.Sprintf("%q", j))
	}
	cfg := fmt.Sprintf(`[node]
name = %q

[dns]
listen = ["127.0.0.1:0"]

[cluster]
bind = "127.0.0.1:0"
profile = "local"
join = [%s]

[admin]
listen = "127.0.0.1:0"

[zones]
dir = "zones"

[pools]
dir = "pools"

%s`, name, strings.Join(quoted, ", "), extra)
	writeFile(t, filepath.Join(dir, "gslbd.toml"), cfg)
	for rel, body := range files {
		writeFile(t, filepath.Join(dir, rel), body)
	}
	n, err := newNode(filepath.Join(dir, "gslbd.toml"), testlog.New(t, slog.LevelDebug).With("node", name), 0)
	if err != nil {
		t.Fatalf("new node %s: %v", name, err)
	}
	if setup != nil {
		setup(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &inproc{t: t, n: n, dir: dir, stop: cancel, done: make(chan error, 1), hup: make(chan os.Signal, 1)}
	go func() { p.done <- n.run(ctx, p.hup) }()
	select {
	case <-n.ready:
	case err := <-p.done:
		t.Fatalf("node %s stopped before it served: %v", name, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s not ready within 30s", name)
	}
	p.DNS = n.dns.Addrs()[0].String()
	p.Admin = "http://" + n.admin.Addr().String()
	t.Cleanup(func() { p.Stop() })
	return p
}

// Stop shuts the node down (as SIGTERM does) and waits for it; safe to
// call twice.
func (p *inproc) Stop() error {
	p.stop()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		p.t.Errorf("node did not stop within 30s")
		return nil
	}
}

// healthz reports whether the admin server answers GET /healthz.
func (p *inproc) healthz() bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(p.Admin + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gslbd/internal/testlog"
)

// inproc is a node run in the test's own process, every listener on
// 127.0.0.1 port 0, the way CoreDNS's test/server.go starts a server from
// a config string: no free-port guessing, no subprocess. The addresses
// are read from the bound listeners once it runs. Tests that need a
// separate process (signals to the process, its exit status, the mesh
// across processes) use testNode instead.
type inproc struct {
	t       testing.TB
	Name    string
	n       *node
	dir     string
	DNS     string // 127.0.0.1:port, once started
	Admin   string // http://127.0.0.1:port, once started
	Cluster string // 127.0.0.1:port, once started
	log     *syncBuffer
	stop    context.CancelFunc
	done    chan error
	hup     chan os.Signal
}

// writeInproc writes a node's files without starting it: files by
// relative path, and gslbd.toml with [node], [dns], [cluster] and [admin]
// sections (port 0 listeners) before extra; join lists peers' cluster
// addresses. The zones and pools directories exist even when empty.
func writeInproc(t testing.TB, name string, files nodeFiles, extra string, join []string) *inproc {
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
	for _, sub := range []string{"zones", "pools"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &inproc{t: t, Name: name, dir: dir}
}

// startInproc writes a node's files (writeInproc) and runs it until the
// test ends. setup, when set, adjusts the node before it runs (test
// hooks).
func startInproc(t testing.TB, name string, files nodeFiles, extra string, join []string, setup func(*node)) *inproc {
	t.Helper()
	p := writeInproc(t, name, files, extra, join)
	p.Start(setup)
	return p
}

// Start runs the node from its directory's gslbd.toml until the test
// ends and returns once every listener is bound. Its log goes to the
// test's output and, for tests that look for a line, to p.log.
func (p *inproc) Start(setup func(*node)) {
	t := p.t
	t.Helper()
	p.log = &syncBuffer{}
	log := slog.New(slog.NewMultiHandler(
		testlog.New(t, slog.LevelDebug).With("node", p.Name).Handler(),
		slog.NewTextHandler(p.log, &slog.HandlerOptions{Level: slog.LevelDebug}),
	))
	n, err := newNode(filepath.Join(p.dir, "gslbd.toml"), log)
	if err != nil {
		t.Fatalf("new node %s: %v", p.Name, err)
	}
	if setup != nil {
		setup(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.n, p.stop, p.done, p.hup = n, cancel, make(chan error, 1), make(chan os.Signal, 1)
	go func() { p.done <- n.run(ctx, p.hup) }()
	select {
	case <-n.ready:
	case err := <-p.done:
		t.Fatalf("node %s stopped before it served: %v", p.Name, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s not ready within 30s", p.Name)
	}
	p.DNS = n.dns.Addrs()[0].String()
	p.Admin = "http://" + n.admin.Addr().String()
	p.Cluster = n.mesh.Addr()
	t.Cleanup(func() { p.Stop() })
}

// Reload asks the node to reload, as SIGHUP does.
func (p *inproc) Reload() {
	select {
	case p.hup <- syscall.SIGHUP:
	case <-time.After(10 * time.Second):
		p.t.Fatal("the node took no SIGHUP for 10s")
	}
}

// Stop shuts the node down (as SIGTERM does) and waits for it; safe to
// call twice.
func (p *inproc) Stop() error {
	if p.stop == nil {
		return nil
	}
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

// adminNode is a node whose admin API a test calls, in this process or
// another.
type adminNode interface{ adminURL() string }

func (p *inproc) adminURL() string   { return p.Admin }
func (n *testNode) adminURL() string { return n.Admin }

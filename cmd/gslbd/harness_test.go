package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The end-to-end tests run the real binary, built once per test run;
// the partition test runs one built with the gslbdfault tag.
var (
	plainBin = &binBuild{}
	faultBin = &binBuild{tags: "gslbdfault"}
)

// binBuild is one build of ./cmd/gslbd, made on first use.
type binBuild struct {
	tags string
	once sync.Once
	dir  string
	path string
	err  error
}

func (b *binBuild) get(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "gslbd-e2e-")
		if b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "gslbd")
		out, err := exec.Command("go", "build", "-tags="+b.tags, "-o", b.path, ".").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build -tags=%q: %v\n%s", b.tags, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, b := range []*binBuild{plainBin, faultBin} {
		if b.dir != "" {
			os.RemoveAll(b.dir)
		}
	}
	os.Exit(code)
}

// gslbdBinary builds ./cmd/gslbd once and returns its path.
func gslbdBinary(t testing.TB) string { return plainBin.get(t) }

// freePort asks the kernel for a port free on host for TCP (and UDP when
// udp is set). Another process may take it before we use it; on loopback in
// a test run that is rare enough.
func freePort(t testing.TB, host string, udp bool) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !udp {
			return port
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// testNode is one `gslbd serve` process with its own directory.
type testNode struct {
	t       testing.TB
	Name    string
	Dir     string
	DNS     string // 127.0.0.1:port
	Admin   string // http://127.0.0.1:port
	Cluster string // 127.0.0.1:port
	// Bin and Env, when set before Start, are the binary to run instead
	// of the plain build and variables added to its environment.
	Bin      string
	Env      []string
	cmd      *exec.Cmd
	logBuf   *syncBuffer
	waitDone chan struct{}
	waitErr  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// nodeFiles are the files of a node besides gslbd.toml, by relative path.
type nodeFiles map[string]string

// newTestNode writes a node's files. config is the body of gslbd.toml after
// the [node], [dns], [cluster] and [admin] sections, which newTestNode
// writes itself with free ports; join lists peers' cluster addresses.
func newTestNode(t testing.TB, name string, files nodeFiles, extra string, join []string) *testNode {
	t.Helper()
	dir := t.TempDir()
	n := &testNode{
		t: t, Name: name, Dir: dir,
		DNS:     fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1", true)),
		Admin:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t, "127.0.0.1", false)),
		Cluster: fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1", true)),
		logBuf:  &syncBuffer{},
	}
	var quoted []string
	for _, j := range join {
		quoted = append(quoted, fmt.Sprintf("%q", j))
	}
	cfg := fmt.Sprintf(`[node]
name = %q

[dns]
listen = [%q]

[cluster]
bind = %q
join = [%s]
profile = "local"

[admin]
listen = %q

[zones]
dir = "zones"

[pools]
dir = "pools"

%s
`, name, n.DNS, n.Cluster, strings.Join(quoted, ", "), strings.TrimPrefix(n.Admin, "http://"), extra)
	writeFile(t, filepath.Join(dir, "gslbd.toml"), cfg)
	for rel, content := range files {
		writeFile(t, filepath.Join(dir, rel), content)
	}
	for _, sub := range []string{"zones", "pools"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("log of node %s:\n%s", n.Name, tail(n.logBuf.String(), 60))
		}
	})
	return n
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Start runs `gslbd serve` and waits until its admin API answers.
func (n *testNode) Start() {
	n.t.Helper()
	bin := n.Bin
	if bin == "" {
		bin = gslbdBinary(n.t)
	}
	n.cmd = exec.Command(bin, "serve", "-config", filepath.Join(n.Dir, "gslbd.toml"), "-log-level", "debug")
	n.cmd.Dir = os.TempDir()
	if len(n.Env) > 0 {
		n.cmd.Env = append(os.Environ(), n.Env...)
	}
	n.cmd.Stdout = n.logBuf
	n.cmd.Stderr = n.logBuf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.waitDone = make(chan struct{})
	go func() { n.waitErr = n.cmd.Wait(); close(n.waitDone) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-n.waitDone:
			n.t.Fatalf("gslbd serve exited early: %v\n%s", n.waitErr, tail(n.logBuf.String(), 40))
		default:
		}
		resp, err := http.Get(n.Admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatalf("node %s not ready after 20s\n%s", n.Name, tail(n.logBuf.String(), 40))
}

// Signal sends sig to the process.
func (n *testNode) Signal(sig os.Signal) {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(sig)
	}
}

// Stop ends the process with SIGTERM (SIGKILL after 10 s) and returns its
// exit error.
func (n *testNode) Stop() error {
	if n.cmd == nil || n.waitDone == nil {
		return nil
	}
	select {
	case <-n.waitDone:
		return n.waitErr
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.waitDone:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.waitDone
	}
	return n.waitErr
}

// Kill ends the process with SIGKILL, as a crash would.
func (n *testNode) Kill() {
	if n.cmd == nil || n.waitDone == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.waitDone
}

// exchange sends one query over UDP; subnet, when non-empty, adds ECS.
func exchange(t testing.TB, server, name string, qtype uint16, subnet string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	if subnet != "" {
		_, ipnet, err := net.ParseCIDR(subnet)
		if err != nil {
			t.Fatal(err)
		}
		ones, _ := ipnet.Mask.Size()
		e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ones), Address: ipnet.IP}
		if ipnet.IP.To4() == nil {
			e.Family = 2
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, e)
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	var lastErr error
	for range 3 {
		r, _, err := c.Exchange(m, server)
		if err == nil {
			return r
		}
		lastErr = err
	}
	t.Fatalf("query %s %s @%s: %v", name, dns.TypeToString[qtype], server, lastErr)
	return nil
}

// answerAddrs lists the A/AAAA addresses of r's answer section, sorted.
func answerAddrs(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

// eventually polls cond every 50 ms until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, within)
	return 0
}

// probedPool is pool file "web": weighted, answering up to every address,
// one site per address (named a, b, c, …), each probed every 200 ms by a
// check of type typ ("tcp", or "http" on /healthz) on port, rise 1, fall 2.
func probedPool(typ string, port int, addrs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[web]\npolicy = \"weighted\"\nanswers = %d\n\n[web.check]\ntype = %q\nport = %d\n", len(addrs), typ, port)
	if typ == "http" {
		b.WriteString("path = \"/healthz\"\n")
	}
	b.WriteString("interval = \"200ms\"\ntimeout = \"150ms\"\nrise = 1\nfall = 2\n")
	for i, a := range addrs {
		fmt.Fprintf(&b, "\n[[web.sites]]\nname = %q\naddresses = [%q]\n", string(rune('a'+i)), a)
	}
	return b.String()
}

// startNodes starts count `gslbd serve` processes named ns1, ns2, …, each
// joining those before it; setup, when set, adjusts each before it starts.
func startNodes(t *testing.T, count int, files nodeFiles, setup func(*testNode)) []*testNode {
	t.Helper()
	var nodes []*testNode
	for i := range count {
		var join []string
		for _, p := range nodes {
			join = append(join, p.Cluster)
		}
		n := newTestNode(t, fmt.Sprintf("ns%d", i+1), files, "", join)
		if setup != nil {
			setup(n)
		}
		n.Start()
		nodes = append(nodes, n)
	}
	return nodes
}

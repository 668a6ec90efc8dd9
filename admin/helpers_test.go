package admin

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"gslbd/cluster/clustertest"
	"gslbd/internal/testlog"
	"gslbd/zones"
	"gslbd/zones/config"
)

// testToken is the bearer token of the test servers.
const testToken = "s3cret-token"

// testConfig is a small but complete configuration: a geo pool with three
// sites (one drained in the file, one without coordinates), a failover pool,
// and a zone binding both to names.
var testConfig = map[string]string{
	"gslbd.toml": `
[node]
name = "ns1"

[geo]
city_db = "CITY_DB"

[[geo.networks]]
cidr = "10.1.0.0/16"
country = "DE"
continent = "EU"
lat = 50.11
lon = 8.68

[[geo.networks]]
cidr = "10.2.0.0/16"
country = "US"
continent = "NA"
lat = 38.9
lon = -77.0

[zones]
dir = "zones"

[pools]
dir = "pools"
`,
	"zones/example.toml": `
origin = "gslb.example.com."
ttl = 300
nameservers = ["ns1.gslb.example.com."]

[soa]
rname = "hostmaster.example.com."
serial = 1

[records.ns1]
A = ["192.0.2.53"]

[records.www]
pool = "web"

[records.api]
pool = "api"

[records.mail]
MX = ["10 mx.example.com."]
`,
	"pools/web.toml": `
[web]
policy = "geo"
answers = 2

[[web.sites]]
name = "fra"
lat = 50.11
lon = 8.68
countries = ["DE", "AT", "CH"]
continents = ["EU"]
addresses = ["192.0.2.10", "192.0.2.11", "2001:db8:10::1"]

[[web.sites]]
name = "iad"
lat = 38.95
lon = -77.45
countries = ["US", "CA"]
continents = ["NA", "SA"]
addresses = ["198.51.100.10", "2001:db8:20::1"]

[[web.sites]]
name = "sgp"
lat = 1.35
lon = 103.82
drained = true
addresses = ["203.0.113.10"]
`,
	"pools/api.toml": `
[api]
policy = "failover"
answers = 1

[[api.sites]]
name = "ams"
lat = 52.37
lon = 4.90
addresses = ["192.0.2.20"]

[[api.sites]]
name = "sfo"
addresses = ["198.51.100.20"]
`,
}

// writeConfig writes files (relative path → content) under a new temp
// directory and returns the path of its gslbd.toml.
func writeConfig(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "gslbd.toml")
}

func loadSnapshot(t testing.TB, path string) *zones.Snapshot {
	t.Helper()
	cfg, err := config.LoadNodeConfig(path)
	if err != nil {
		t.Fatalf("load node config: %v", err)
	}
	snap, err := config.Load(cfg)
	if err != nil {
		t.Fatalf("load snapshot: %v", err)
	}
	return snap
}

// memMesh is the in-memory mesh of cluster/clustertest with admin's
// member and drain types: it implements both Mesh and zones.Health, so
// views built from it show its verdicts and drains.
type memMesh = clustertest.Mesh[Member, Drain]

func newMemMesh(members ...string) *memMesh {
	var ms []Member
	for i, name := range members {
		ms = append(ms, Member{Name: name, Address: "127.0.0." + string(rune('1'+i)) + ":7946", State: "alive"})
	}
	return memMeshOf(ms...)
}

// memMeshOf is a memMesh of the given members.
func memMeshOf(ms ...Member) *memMesh {
	return clustertest.New(func(pool, site string, addr netip.Addr) Drain {
		return Drain{Pool: pool, Site: site, Addr: addr}
	}, ms...)
}

// liveSource rebuilds the view from the snapshot and the mesh on every
// call, so a drain or vote is visible at once, as it is on a node after it
// republishes.
type liveSource struct {
	mu   sync.Mutex
	snap *zones.Snapshot
	mesh *memMesh
}

func (s *liveSource) View() *zones.View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return zones.NewView(s.snap, s.mesh)
}

func (s *liveSource) set(snap *zones.Snapshot) {
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
}

// memMonitor is this node's probe results.
type memMonitor map[string]ProbeState

func (m memMonitor) Probes() map[string]ProbeState { return m }

// fixture is a configured Server with its collaborators.
type fixture struct {
	srv    *Server
	mesh   *memMesh
	src    *liveSource
	reg    *prometheus.Registry
	path   string // gslbd.toml
	reload func(ctx context.Context) error
}

// keyOf finds the target key of an address in the snapshot.
func keyOf(t testing.TB, snap *zones.Snapshot, addr string) string {
	t.Helper()
	a := netip.MustParseAddr(addr)
	for _, tg := range snap.Targets {
		if tg.Addr == a {
			return tg.Key
		}
	}
	t.Fatalf("no target for %s", addr)
	return ""
}

func testLogger(t testing.TB) *slog.Logger {
	return testlog.New(t, slog.LevelDebug)
}

// newFixture builds a Server over testConfig. Monitors ns1 and ns2 vote
// 198.51.100.10 (iad) down and everything else has no votes (up).
func newFixture(t testing.TB, token string) *fixture {
	t.Helper()
	files := maps.Clone(testConfig)
	db, err := filepath.Abs("../testdata/geo/city.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	files["gslbd.toml"] = strings.Replace(files["gslbd.toml"], "CITY_DB", db, 1)
	path := writeConfig(t, files)
	snap := loadSnapshot(t, path)
	// ns2 serves this node's files, ns3 others (config drift).
	ms := newMemMesh("ns1", "ns2", "ns3").Members()
	ms[0].Config, ms[1].Config, ms[2].Config = snap.ConfigDigest, snap.ConfigDigest, "0123456789abcdef"
	mesh := memMeshOf(ms...)
	iad := keyOf(t, snap, "198.51.100.10")
	mesh.Vote(iad, "ns1", false)
	mesh.Vote(iad, "ns2", false)
	mesh.Vote(iad, "ns3", true)
	fra := keyOf(t, snap, "192.0.2.10")
	mesh.Vote(fra, "ns1", true)
	mesh.Vote(fra, "ns2", true)
	src := &liveSource{snap: snap, mesh: mesh}
	f := &fixture{mesh: mesh, src: src, reg: prometheus.NewRegistry(), path: path}
	f.reload = func(ctx context.Context) error {
		cfg, err := config.LoadNodeConfig(path)
		if err != nil {
			return err
		}
		s, err := config.Load(cfg)
		if err != nil {
			return err
		}
		src.set(s)
		return nil
	}
	f.srv = New(Options{
		Listen:     "127.0.0.1:0",
		Token:      token,
		Logger:     testLogger(t),
		Registerer: f.reg,
		Source:     src,
		Mesh:       mesh,
		Monitor: memMonitor{
			iad: {Up: false, Reason: "connect: connection refused", Latency: 1500 * time.Microsecond, At: time.Now()},
			fra: {Up: true, Reason: "200 OK", Latency: 2 * time.Millisecond, At: time.Now()},
		},
		Reload:   func(ctx context.Context) error { return f.reload(ctx) },
		NodeName: "ns1",
		Version:  "v1.2.3-test",
		Hosts:    []string{"gslb-admin.example.net"},
		Pprof:    token != "", // profiles need a token
	})
	return f
}

// start binds the fixture's server on 127.0.0.1:0 and returns its base URL.
func (f *fixture) start(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := f.srv.Start(ctx); err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := f.srv.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
	})
	return "http://" + f.srv.Addr().String()
}

// call makes one request against base and returns the status, headers and
// body.
func call(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

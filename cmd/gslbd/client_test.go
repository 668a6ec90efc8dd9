package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gslbd/admin"
	"gslbd/cluster/clustertest"
	"gslbd/internal/testlog"
	"gslbd/zones"
	"gslbd/zones/config"
)

// cliRun runs one client command the way main dispatches it and returns
// its exit code and output.
func cliRun(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestParseInterleaved(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		adm  string
		json bool
	}{
		{[]string{"web", "fra"}, []string{"web", "fra"}, "", false},
		{[]string{"-admin", "X", "web", "fra"}, []string{"web", "fra"}, "X", false},
		{[]string{"web", "-json", "fra", "-admin=Y"}, []string{"web", "fra"}, "Y", true},
		{[]string{"web", "fra", "-admin", "Z", "-json"}, []string{"web", "fra"}, "Z", true},
		{[]string{"web", "--", "-fra"}, []string{"web", "-fra"}, "", false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		adm := fs.String("admin", "", "")
		js := fs.Bool("json", false, "")
		pos, err := parseInterleaved(fs, tc.args)
		if err != nil || !reflect.DeepEqual(pos, tc.pos) || *adm != tc.adm || *js != tc.json {
			t.Errorf("parseInterleaved(%q) = %q admin %q json %v err %v; want %q %q %v", tc.args, pos, *adm, *js, err, tc.pos, tc.adm, tc.json)
		}
	}
}

func TestCLIKeygen(t *testing.T) {
	code, out1, _ := cliRun("keygen")
	if code != 0 {
		t.Fatalf("keygen exit %d", code)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out1))
	if err != nil || len(key) != 32 {
		t.Fatalf("keygen printed %q: %d bytes, err %v; want base64 of 32 bytes", out1, len(key), err)
	}
	_, out2, _ := cliRun("keygen")
	if out1 == out2 {
		t.Errorf("two keygen runs printed the same key")
	}
	code, out, _ := cliRun("keygen", "-json")
	var j struct{ Key string }
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil || len(j.Key) != 44 {
		t.Errorf("keygen -json = %d %q", code, out)
	}
	if code, _, errOut := cliRun("keygen", "extra"); code != 2 || !strings.Contains(errOut, "usage: gslbd keygen") {
		t.Errorf("keygen extra = %d %q, want usage error 2", code, errOut)
	}
	if code, _, _ := cliRun("keygen", "-h"); code != 0 {
		t.Errorf("keygen -h = %d, want 0", code)
	}
}

// cliConfig is a node's files for the in-process server: a geo pool and
// a failover pool whose answers do not depend on rotation.
var cliConfig = map[string]string{
	"gslbd.toml": `
[node]
name = "cli1"

[[geo.networks]]
cidr = "10.1.0.0/16"
country = "DE"
continent = "EU"

[zones]
dir = "zones"

[pools]
dir = "pools"
`,
	"zones/z.toml": `
origin = "gslb.example.net."
nameservers = ["ns1.gslb.example.net."]

[soa]
rname = "hostmaster.example.net."
serial = 7

[records.ns1]
A = ["192.0.2.53"]

[records.www]
pool = "web"

[records.api]
pool = "api"

[records.alias]
CNAME = "api.gslb.example.net."
`,
	"pools/p.toml": `
[web]
answers = 2

[[web.sites]]
name = "fra"
lat = 50.11
lon = 8.68
countries = ["DE"]
addresses = ["192.0.2.10", "192.0.2.11"]

[[web.sites]]
name = "iad"
lat = 38.95
lon = -77.45
countries = ["US"]
addresses = ["198.51.100.10"]

[api]
policy = "failover"
answers = 1

[[api.sites]]
name = "ams"
addresses = ["192.0.2.20"]

[[api.sites]]
name = "sfo"
addresses = ["198.51.100.20"]
`,
}

// cliMesh is the in-memory mesh of cluster/clustertest for the
// in-process admin server: two monitors' votes and the drains.
type cliMesh = clustertest.Mesh[admin.Member, admin.Drain]

type cliSource struct {
	snap *zones.Snapshot
	mesh *cliMesh
}

func (s cliSource) View() *zones.View { return zones.NewView(s.snap, s.mesh) }

// startCLIServer runs an admin server over cliConfig on 127.0.0.1:0 with
// the token "cli-token"; 198.51.100.10 (iad) is voted down by both
// monitors. It returns the admin URL and the config path.
func startCLIServer(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range cliConfig {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "gslbd.toml")
	cfg, err := config.LoadNodeConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mesh := clustertest.New(func(pool, site string, addr netip.Addr) admin.Drain {
		return admin.Drain{Pool: pool, Site: site, Addr: addr}
	}, admin.Member{Name: "cli1", Address: "127.0.0.1:7946", State: "alive"}, admin.Member{Name: "cli2", Address: "127.0.0.2:7946", State: "suspect"})
	for _, tg := range snap.Targets {
		if tg.Addr == netip.MustParseAddr("198.51.100.10") {
			mesh.Vote(tg.Key, "cli1", false)
			mesh.Vote(tg.Key, "cli2", false)
		}
	}
	srv := admin.New(admin.Options{
		Listen:   "127.0.0.1:0",
		Token:    "cli-token",
		Logger:   testlog.New(t, slog.LevelInfo),
		Source:   cliSource{snap, mesh},
		Mesh:     mesh,
		NodeName: "cli1",
		Version:  "test",
	})
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
	})
	return "http://" + srv.Addr().String(), path
}

func TestCLIStatus(t *testing.T) {
	url, _ := startCLIServer(t)
	code, out, errOut := cliRun("status", "-admin", url)
	if code != 0 {
		t.Fatalf("status = %d\n%s", code, errOut)
	}
	for _, want := range []string{
		"node cli1  version test",
		"MEMBER  ADDRESS         STATE",
		"cli2    127.0.0.2:7946  suspect",
		"POOL  SITE  ADDRESS        VERDICT  DRAINED  VOTES                REASON",
		"web   iad   198.51.100.10  down     -        cli1=down cli2=down  -",
		"web   fra   192.0.2.10     up       -        -                    -",
		"api   sfo   198.51.100.20  up",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	// Without the scheme, as people type it; JSON for scripts.
	code, out, _ = cliRun("status", "-json", "-admin", strings.TrimPrefix(url, "http://"))
	var st admin.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Node != "cli1" || len(st.Pools) != 2 {
		t.Errorf("status -json = %d %q", code, out)
	}
	if code, _, errOut := cliRun("status", "-admin", url, "extra"); code != 2 || !strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Errorf("status extra = %d %q", code, errOut)
	}
	if code, _, errOut := cliRun("status", "-nope"); code != 2 || !strings.Contains(errOut, "-nope") {
		t.Errorf("status -nope = %d %q", code, errOut)
	}
	// Nothing listening: a failure with a hint, not a usage error.
	code, _, errOut = cliRun("status", "-admin", "http://127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "hint: is a node's admin API listening at http://127.0.0.1:1") {
		t.Errorf("status unreachable = %d %q", code, errOut)
	}
}

func TestCLIDrain(t *testing.T) {
	url, _ := startCLIServer(t)
	t.Setenv("GSLBD_TOKEN", "")

	code, _, errOut := cliRun("drain", "web", "fra", "-admin", url)
	if code != 1 || !strings.Contains(errOut, "401") || !strings.Contains(errOut, "-token-file") {
		t.Fatalf("drain without token = %d %q, want 1 with a hint", code, errOut)
	}

	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte("cli-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cliRun("drain", "web", "fra", "-admin", url, "-token-file", tokenFile)
	if code != 0 || out != "drained web/fra mesh-wide\n" {
		t.Fatalf("drain = %d %q %q", code, out, errOut)
	}
	_, out, _ = cliRun("status", "-admin", url)
	if !strings.Contains(out, "web   fra   192.0.2.10     up       site (mesh)") || !strings.Contains(out, "DRAINS (mesh-wide)\n  web/fra\n") {
		t.Errorf("status after drain:\n%s", out)
	}

	// The token from the environment; one address; JSON.
	t.Setenv("GSLBD_TOKEN", "cli-token")
	code, out, errOut = cliRun("drain", "-json", "web", "iad/198.51.100.10", "-admin", url)
	var res admin.DrainResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Address != netip.MustParseAddr("198.51.100.10") || !res.Drained {
		t.Fatalf("drain address = %d %q %q", code, out, errOut)
	}
	_, out, _ = cliRun("status", "-admin", url)
	if !strings.Contains(out, "web   iad   198.51.100.10  down     yes") {
		t.Errorf("status after address drain:\n%s", out)
	}
	code, out, _ = cliRun("undrain", "web", "fra", "-admin", url)
	if code != 0 || out != "undrained web/fra mesh-wide\n" {
		t.Errorf("undrain = %d %q", code, out)
	}
	_, out, _ = cliRun("status", "-admin", url)
	if strings.Contains(out, "site (mesh)") {
		t.Errorf("status after undrain still shows the site drain:\n%s", out)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"drain", "web", "nope", "-admin", url}, 1, `unknown site "nope"`},
		{[]string{"drain", "web", "fra/192.0.2.99", "-admin", url}, 1, "unknown address 192.0.2.99"},
		{[]string{"drain", "web", "-admin", url}, 2, "want POOL and SITE"},
		{[]string{"drain", "web", "fra", "extra", "-admin", url}, 2, "want POOL and SITE"},
		{[]string{"undrain", "web", "fra/not-an-ip", "-admin", url}, 2, `invalid address "not-an-ip"`},
		{[]string{"drain", "web", "fra", "-token-file", "/nonexistent/token"}, 1, "read token file"},
	} {
		code, _, errOut := cliRun(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q = %d %q, want %d with %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

func TestCLIExplain(t *testing.T) {
	url, path := startCLIServer(t)

	code, out, errOut := cliRun("explain", "www.gslb.example.net", "-client", "10.1.2.3", "-admin", url)
	if code != 0 {
		t.Fatalf("explain = %d %q", code, errOut)
	}
	for _, want := range []string{
		"query    www.gslb.example.net. A",
		"client   10.1.2.3 (packet)",
		"zone     gslb.example.net.  owner www.gslb.example.net.",
		"location DE",
		"pool web: policy geo, 2 answers",
		"site order:",
		"1.  fra",
		"answer   NOERROR 192.0.2.1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	// The live view knows iad is down; the offline one (files only) does not.
	_, live, _ := cliRun("explain", "www.gslb.example.net", "A", "-client", "10.2.0.1", "-admin", url, "-json")
	_, offline, _ := cliRun("explain", "-json", "www.gslb.example.net", "A", "-client", "10.2.0.1", "-config", path)
	if !strings.Contains(live, `"state": "down"`) || strings.Contains(offline, `"state": "down"`) {
		t.Errorf("live trace should show iad down, offline not:\nlive %s\noffline %s", live, offline)
	}

	// Through the API and offline the trace is the same when the state is:
	// a failover pool behind a CNAME, with ECS.
	args := []string{"alias.gslb.example.net.", "a", "-client", "192.0.2.77", "-ecs", "24", "-json"}
	code, viaAPI, errOut := cliRun(append([]string{"explain", "-admin", url}, args...)...)
	if code != 0 {
		t.Fatalf("explain via API = %d %q", code, errOut)
	}
	code, viaFiles, errOut := cliRun(append([]string{"explain", "-config", path}, args...)...)
	if code != 0 {
		t.Fatalf("explain -config = %d %q", code, errOut)
	}
	if viaAPI != viaFiles {
		t.Errorf("explain through the API differs from offline:\nAPI:\n%s\nfiles:\n%s", viaAPI, viaFiles)
	}
	var tr zones.Trace
	if err := json.Unmarshal([]byte(viaAPI), &tr); err != nil || len(tr.CNAMEs) != 1 || !reflect.DeepEqual(tr.Answer, []string{"192.0.2.20"}) || tr.Client.Source != "ecs" {
		t.Errorf("trace = %+v, err %v", tr, err)
	}
	// The human form of the same trace.
	_, text, _ := cliRun("explain", "-config", path, "alias.gslb.example.net.", "-client", "192.0.2.77", "-ecs", "24")
	for _, want := range []string{"cname    alias.gslb.example.net.", "client   192.0.2.0 (ecs, source prefix /24)", "answer   NOERROR 192.0.2.20", "scope    /"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain text lacks %q:\n%s", want, text)
		}
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"explain", "www.gslb.example.net", "-admin", url}, 2, "-client IP is required"},
		{[]string{"explain", "-client", "10.1.2.3"}, 2, "want NAME"},
		{[]string{"explain", "www.gslb.example.net", "BOGUS", "-client", "10.1.2.3"}, 2, "invalid query type"},
		{[]string{"explain", "www.gslb.example.net", "-client", "nope"}, 2, "invalid -client"},
		{[]string{"explain", "www.gslb.example.net", "-client", "10.1.2.3", "-ecs", "40"}, 2, "invalid -ecs"},
		{[]string{"explain", "www.gslb.example.net", "-client", "10.1.2.3", "-admin", url, "-config", path}, 2, "exclude each other"},
		{[]string{"explain", "www.gslb.example.net", "-client", "10.1.2.3", "-config", "/nonexistent/gslbd.toml"}, 1, "nonexistent"},
		{[]string{"explain", "www..bad", "-client", "10.1.2.3", "-admin", url}, 1, "invalid name"},
	} {
		code, _, errOut := cliRun(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q = %d %q, want %d with %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// TestCLIAgainstNode runs the client commands against a real node (run
// in-process on port 0): its mesh, its monitor, its admin API.
func TestCLIAgainstNode(t *testing.T) {
	n := e2eInproc(t, "clinode")

	code, out, errOut := cliRun("status", "-admin", n.Admin)
	if code != 0 {
		t.Fatalf("status = %d %q", code, errOut)
	}
	for _, want := range []string{"node clinode", "clinode", "alive", "web   fra   192.0.2.10", "web   sin   203.0.113.10"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	if code, _, errOut := cliRun("drain", "web", "fra", "-admin", n.Admin); code != 0 {
		t.Fatalf("drain = %d %q", code, errOut)
	}
	eventually(t, 10*time.Second, "the drain shows in status", func() bool {
		_, out, _ := cliRun("status", "-admin", n.Admin)
		return strings.Contains(out, "site (mesh)") && strings.Contains(out, "web/fra")
	})
	eventually(t, 10*time.Second, "the drain moves DE clients away from fra", func() bool {
		_, out, _ := cliRun("explain", "www.gslb.test", "-client", "127.0.1.1", "-admin", n.Admin, "-json")
		var tr zones.Trace
		return json.Unmarshal([]byte(out), &tr) == nil && len(tr.Answer) == 1 && tr.Answer[0] != "192.0.2.10"
	})
	if code, _, errOut := cliRun("undrain", "web", "fra", "-admin", n.Admin); code != 0 {
		t.Fatalf("undrain = %d %q", code, errOut)
	}
	eventually(t, 10*time.Second, "the undrain shows in status", func() bool {
		_, out, _ := cliRun("status", "-admin", n.Admin)
		return !strings.Contains(out, "site (mesh)")
	})

	// Same trace through the node and from its files, for a name whose
	// answer does not rotate (one address per site, answers = 1).
	cfg := filepath.Join(n.dir, "gslbd.toml")
	args := []string{"www.gslb.test", "AAAA", "-client", "127.0.2.9", "-json"}
	_, viaNode, _ := cliRun(append([]string{"explain", "-admin", n.Admin}, args...)...)
	_, viaFiles, _ := cliRun(append([]string{"explain", "-config", cfg}, args...)...)
	if viaNode == "" || viaNode != viaFiles {
		t.Errorf("explain via the node differs from offline:\nnode:\n%s\nfiles:\n%s", viaNode, viaFiles)
	}
}

// chromiumDOM loads url in headless Chromium and returns the DOM after the
// page's scripts ran (virtual time lets its timers and fetches run without
// the test waiting for them in real time).
func chromiumDOM(t *testing.T, url string) string {
	t.Helper()
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("headless Chromium is required for the status page tests and is missing at %s (apt-get install chromium): %v", chromium, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom", url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, stderr.String())
	}
	return string(out)
}

// TestStatusPageOnNode loads the status page of a real node (in-process)
// in headless Chromium and checks the DOM after the scripts ran: every site
// with its state, every address with its verdict, the node as a member.
func TestStatusPageOnNode(t *testing.T) {
	n := e2eInproc(t, "pagenode")
	dom := chromiumDOM(t, n.Admin+"/")
	want := []string{`<tr class="member alive"><td>pagenode<span class="muted"> (this node)</span>`}
	for _, site := range []string{"fra", "iad", "sin"} {
		want = append(want, `<div class="site up" data-site="`+site+`"><div class="site-head"><span class="site-name">`+site+`</span><span class="pill up">up</span>`)
	}
	for _, addr := range []string{"192.0.2.10", "2001:db8:10::1", "198.51.100.10", "2001:db8:20::1", "203.0.113.10", "2001:db8:30::1"} {
		want = append(want, `<li class="addr up"><span class="ip">`+addr+`</span><span class="states"><span class="pill up">up</span></span>`)
	}
	for _, w := range want {
		if !strings.Contains(dom, w) {
			t.Errorf("rendered status page lacks %s", w)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}

package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The end-to-end tests run the node in this process on port 0 (inproc)
// unless what they test is the process itself: its signals and exit
// status (TestServeAnswersAndExitsCleanly, TestCheckCommand) or a mesh of
// separate processes (mesh_e2e_test.go).

const e2eZone = `origin = "gslb.test."
ttl = 300
nameservers = ["ns1.gslb.test."]

[soa]
rname = "hostmaster.gslb.test."

[records.ns1]
A = ["127.0.0.53"]

[records.www]
pool = "web"

[records.static]
A = ["192.0.2.1"]
`

const e2ePools = `[web]
policy = "geo"
answers = 1

[[web.sites]]
name = "fra"
lat = 50.11
lon = 8.68
countries = ["DE"]
continents = ["EU"]
addresses = ["192.0.2.10", "2001:db8:10::1"]

[[web.sites]]
name = "iad"
lat = 38.95
lon = -77.45
countries = ["US"]
continents = ["NA"]
addresses = ["198.51.100.10", "2001:db8:20::1"]

[[web.sites]]
name = "sin"
lat = 1.35
lon = 103.82
continents = ["AS"]
addresses = ["203.0.113.10", "2001:db8:30::1"]
`

// geoDBPath is the committed test database (testdata/geo/README.md).
func geoDBPath(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs("../../testdata/geo/city.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test GeoIP database: %v", err)
	}
	return p
}

// e2eInproc runs a node (in this process, inproc_test.go) that serves
// the test zone and pools with the test GeoIP database.
func e2eInproc(t *testing.T, name string) *inproc {
	p := e2eFiles(t, name)
	p.Start(nil)
	return p
}

// e2eFiles writes e2eInproc's files without starting the node, for tests
// that add files (keys) first and then Start it.
func e2eFiles(t *testing.T, name string) *inproc {
	return writeInproc(t, name, nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": e2ePools},
		fmt.Sprintf("[geo]\ncity_db = %q\n", geoDBPath(t)), nil)
}

// TestServeAnswersAndExitsCleanly runs `gslbd serve` as a process, as
// users do: it answers, a SIGHUP sent to the process reloads the zones,
// and SIGTERM ends it with exit status 0. (The other tests send SIGHUP
// through the node's channel; this one holds the signal wiring.)
func TestServeAnswersAndExitsCleanly(t *testing.T) {
	n := newTestNode(t, "e2e", nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": e2ePools},
		fmt.Sprintf("[geo]\ncity_db = %q\n", geoDBPath(t)), nil)
	n.Start()

	for _, tc := range []struct {
		subnet string
		qtype  uint16
		want   string
	}{
		{"127.0.1.0/24", dns.TypeA, "192.0.2.10"},
		{"127.0.2.0/24", dns.TypeA, "198.51.100.10"},
		{"127.0.3.0/24", dns.TypeA, "203.0.113.10"},
		{"127.0.2.0/24", dns.TypeAAAA, "2001:db8:20::1"},
	} {
		r := exchange(t, n.DNS, "www.gslb.test.", tc.qtype, tc.subnet)
		if got := answerAddrs(r); !slices.Equal(got, []string{tc.want}) || !r.Authoritative {
			t.Errorf("www %s from %s: got %v (aa=%v), want [%s]", dns.TypeToString[tc.qtype], tc.subnet, got, r.Authoritative, tc.want)
		}
	}
	if r := exchange(t, n.DNS, "nope.gslb.test.", dns.TypeA, ""); r.Rcode != dns.RcodeNameError {
		t.Errorf("nope: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	if r := exchange(t, n.DNS, "example.org.", dns.TypeA, ""); r.Rcode != dns.RcodeRefused {
		t.Errorf("outside: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	writeFile(t, filepath.Join(n.Dir, "zones/test.toml"), strings.Replace(e2eZone, "192.0.2.1", "192.0.2.2", 1))
	n.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "SIGHUP reloads the zone", func() bool {
		return slices.Equal(answerAddrs(exchange(t, n.DNS, "static.gslb.test.", dns.TypeA, "")), []string{"192.0.2.2"})
	})
	if err := n.Stop(); err != nil {
		t.Fatalf("SIGTERM: serve exited with %v, want 0", err)
	}
}

// TestReloadKeepsServingOnError: SIGHUP with a broken zone file keeps the
// old data serving and reports the failure; a good reload is served.
func TestReloadKeepsServingOnError(t *testing.T) {
	p := e2eInproc(t, "reload")
	static := func() []string { return answerAddrs(exchange(t, p.DNS, "static.gslb.test.", dns.TypeA, "")) }
	if got := static(); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("static before reload: %v", got)
	}

	writeFile(t, filepath.Join(p.dir, "zones/test.toml"), strings.Replace(e2eZone, `pool = "web"`, `pool = "nope"`, 1))
	p.Reload()
	eventually(t, 10*time.Second, "the failed reload is reported", func() bool {
		r := p.n.admin.Status().LastReload
		return !r.At.IsZero() && !r.OK && len(r.Errors) > 0 && strings.Contains(r.Errors[0], `unknown pool "nope"`)
	})
	if got := static(); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("after a failed reload: %v, want the old answer", got)
	}

	writeFile(t, filepath.Join(p.dir, "zones/test.toml"), strings.Replace(e2eZone, "192.0.2.1", "192.0.2.2", 1))
	p.Reload()
	eventually(t, 10*time.Second, "good reload is served", func() bool {
		return slices.Equal(static(), []string{"192.0.2.2"})
	})
}

// TestCheckCommand runs `gslbd check` as a process: what it tests is the
// command's output and exit status, as a deploy script sees them.
func TestCheckCommand(t *testing.T) {
	bin := gslbdBinary(t)
	out, err := exec.Command(bin, "check", "-config", "../../testdata/example/gslbd.toml").CombinedOutput()
	if err != nil {
		t.Fatalf("check on the example: %v\n%s", err, out)
	}
	for _, want := range []string{"zones/gslb.example.com.toml", "zones/gslb.example.org.toml", "pools/pools.toml"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output does not name %s:\n%s", want, out)
		}
	}

	n := writeInproc(t, "bad", nodeFiles{
		"zones/test.toml": strings.Replace(e2eZone, `pool = "web"`, `pool = "wbe"`, 1),
		"pools/web.toml":  strings.Replace(e2ePools, `answers = 1`, "answers = 1\nbogus = 3", 1),
	}, "", nil)
	cmd := exec.Command(bin, "check", "-config", filepath.Join(n.dir, "gslbd.toml"))
	out, err = cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("check on a broken config: exit %d (%v), want 1\n%s", code, err, out)
	}
	for _, want := range []string{"zones/test.toml:12:", `"wbe"`, "pools/web.toml:4:", "bogus"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check errors lack %q:\n%s", want, out)
		}
	}
}

// TestThroughUnbound checks the user's path: a real recursive resolver
// (unbound) with a stub-zone for our zone, queried with the real dig, sends
// the client's subnet to gslbd (ECS), and the client gets its nearest site.
// unbound talks only to loopback: the root is forwarded to a closed port.
func TestThroughUnbound(t *testing.T) {
	dig := requireTool(t, "dig")
	n := e2eInproc(t, "behind-unbound")

	port := startUnbound(t, n.DNS, "\tmodule-config: \"subnetcache iterator\"\n\tsend-client-subnet: 127.0.0.1\n\tmax-client-subnet-ipv4: 24\n")

	digFrom := func(src string) string {
		out, err := exec.Command(dig, "@127.0.0.1", "-p", fmt.Sprint(port), "-b", src, "+short", "+tries=1", "+time=2",
			"www.gslb.test", "A").CombinedOutput()
		if err != nil {
			return "error: " + err.Error() + ": " + string(out)
		}
		return strings.TrimSpace(string(out))
	}
	var got string
	eventually(t, 15*time.Second, "unbound answers", func() bool {
		got = digFrom("127.0.1.7")
		return got == "192.0.2.10"
	})
	for src, want := range map[string]string{"127.0.2.7": "198.51.100.10", "127.0.3.7": "203.0.113.10"} {
		if got := digFrom(src); got != want {
			t.Errorf("dig via unbound from %s: %q, want %q", src, got, want)
		}
	}
}

// requireTool finds a binary the test needs. A missing tool fails the test:
// CI installs them, and a skipped end-to-end test proves nothing.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	for _, dir := range []string{"", "/usr/sbin/", "/usr/bin/"} {
		if p, err := exec.LookPath(dir + name); err == nil {
			return p
		}
	}
	pkg := map[string]string{"dig": "dnsutils"}[name]
	if pkg == "" {
		pkg = name
	}
	t.Fatalf("%s is not installed (Debian: apt-get install -y %s); .ci/run installs it", name, pkg)
	return ""
}

// TestReloadRestoresGeoAfterLateFailure: a reload that read a new version
// of the GeoIP database (retiring the running one's table) and then fails
// after the load, here on a broken cookie secret, leaves the running
// snapshot's database whole again, so explain still locates clients.
func TestReloadRestoresGeoAfterLateFailure(t *testing.T) {
	src, err := os.ReadFile(geoDBPath(t))
	if err != nil {
		t.Fatal(err)
	}
	p := writeInproc(t, "late", nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": e2ePools,
		"city.mmdb": string(src), "cookie.key": "00112233445566778899aabbccddeeff\n"},
		"[geo]\ncity_db = \"city.mmdb\"\n\n[dns.cookies]\nsecret_file = \"cookie.key\"\n", nil)
	// The secret breaks between the load and the reading of the secrets
	// (after the config check), as a file can change under a reload.
	var breakSecret atomic.Bool
	p.Start(func(n *node) {
		n.reloadHook = func() {
			if breakSecret.Load() {
				writeFile(t, filepath.Join(p.dir, "cookie.key"), "not hex\n")
			}
		}
	})
	running := p.n.snap.Geo
	if running.Retired() {
		t.Fatal("retired at start")
	}
	// A new version of the database, renamed into place.
	writeFile(t, filepath.Join(p.dir, "city.new"), string(src))
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(p.dir, "city.new"), later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(p.dir, "city.new"), filepath.Join(p.dir, "city.mmdb")); err != nil {
		t.Fatal(err)
	}
	breakSecret.Store(true)
	if err := p.n.reload(context.Background()); err == nil || !strings.Contains(err.Error(), "read cookie secret") {
		t.Fatalf("reload with a broken cookie secret: err = %v", err)
	}
	p.n.mu.Lock()
	geo := p.n.snap.Geo
	p.n.mu.Unlock()
	if geo != running || geo.Retired() {
		t.Fatalf("after the failed reload: same database %v, retired %v", geo == running, geo.Retired())
	}
	if loc, _ := geo.Lookup(netip.MustParseAddr("127.0.1.1")); loc.Country != "DE" {
		t.Fatalf("127.0.1.1 located in %+v after the failed reload", *loc)
	}
}

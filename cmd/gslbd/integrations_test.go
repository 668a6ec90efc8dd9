package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The files in contrib/ are what operators plug into their own tools: the
// Grafana dashboard, the Prometheus rules and the systemd unit. These tests
// hold them to the server as it is: every metric they use is one a serving
// node exports, every query parses, the rules fire as their unit tests say,
// and systemd accepts the unit.

const contribDir = "../../contrib"

// promtool finds Prometheus's promtool: on PATH, or unpacked from Debian's
// prometheus package into .cache by `make test` (never installed as a
// service). A missing promtool fails the test.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	p, err := filepath.Abs("../../.cache/prometheus/usr/bin/promtool")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("promtool not found on PATH nor at %s: run `make test`, which unpacks it from Debian's prometheus package, or apt-get install prometheus", p)
	}
	return p
}

func runTool(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	scrapeOnce sync.Once
	scrapeBody string
)

// exercisedMetrics scrapes a node of a two-node mesh that has answered
// queries, probed a live and a dead backend and gossiped, so that every
// metric vector has samples; it returns the metric family names (from the
// TYPE lines) and the whole scrape. The mesh runs once per test binary.
func exercisedMetrics(t *testing.T) (map[string]string, string) {
	t.Helper()
	scrapeOnce.Do(func() { scrapeBody = scrapeExercised(t) })
	if scrapeBody == "" {
		t.Fatal("no scrape of an exercised node (see the first test that asked)")
	}
	families := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE ([a-zA-Z0-9_:]+) ([a-z]+)$`).FindAllStringSubmatch(scrapeBody, -1) {
		families[m[1]] = m[2]
	}
	return families, scrapeBody
}

func scrapeExercised(t *testing.T) string {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	go acceptAll(backend)
	port := backend.Addr().(*net.TCPAddr).Port
	// 127.0.0.2 has nothing listening on the port: refused, so down.
	pools := e2ePools + fmt.Sprintf(`
[checked]
policy = "failover"

[checked.check]
type = "tcp"
port = %d
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1

[[checked.sites]]
name = "live"
addresses = ["127.0.0.1"]

[[checked.sites]]
name = "dead"
addresses = ["127.0.0.2"]
`, port)
	zone := e2eZone + "\n[records.checked]\npool = \"checked\"\n"
	files := nodeFiles{"zones/test.toml": zone, "pools/web.toml": pools}
	geo := fmt.Sprintf("[geo]\ncity_db = %q\n\n[dnstap]\nfile = \"dnstap.fstrm\"\n", geoDBPath(t))
	a := startInproc(t, "metrics-a", files, geo, nil, nil)
	startInproc(t, "metrics-b", files, geo, []string{a.Cluster}, nil)

	exchange(t, a.DNS, "www.gslb.test.", dns.TypeA, "127.0.1.0/24")
	exchange(t, a.DNS, "checked.gslb.test.", dns.TypeA, "")
	var body string
	eventually(t, 20*time.Second, "node a scrapes votes of both monitors, probe failures and gossip", func() bool {
		resp, err := http.Get(a.Admin + "/metrics")
		if err != nil {
			return false
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(raw)
		return strings.Contains(body, `monitor="metrics-b"`) && strings.Contains(body, "gslbd_health_probe_failures_total{") &&
			strings.Contains(body, "gslbd_gossip_messages_total{") && strings.Contains(body, `gslbd_address_up{address="127.0.0.2"`) &&
			strings.Contains(body, `gslbd_health_state_changes_total{state="down"}`)
	})
	return body
}

// metricNames are the metric names an expression uses: every identifier
// followed by a selector, a range or an aggregation's end; label names
// and function names are left out by what follows them.
func metricNames(expr string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`\b((?:gslbd|go|process)_[a-z0-9_]+)\b`).FindAllString(expr, -1) {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// family maps a sample name to its metric family: histogram series carry
// _bucket, _sum and _count.
func family(name string, families map[string]string) (string, bool) {
	if _, ok := families[name]; ok {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok && (families[base] == "histogram" || families[base] == "summary") {
			return base, true
		}
	}
	return "", false
}

// grafanaVars stand in for the dashboard's variables so its queries are
// plain PromQL that promtool can parse.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$instance", ".+", "$pool", ".+")

func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(contribDir, "grafana/gslbd-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) < 20 {
		t.Fatalf("dashboard: title %q, uid %q, %d panels", dash.Title, dash.UID, len(dash.Panels))
	}

	// Layout: unique ids, panels inside the 24-column grid, none overlapping.
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	var exprs []string
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps %q at (%d,%d)", p.Title, other, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource is not the ${datasource} variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Datasource == nil || q.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a query's datasource is not ${datasource}", p.Title)
			}
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}

	// Every query is valid PromQL: promtool parses them as recording rules.
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		if strings.HasPrefix(e, "label_values(") {
			continue // a Grafana function; its metric is checked below
		}
		fmt.Fprintf(&rules, "      - record: dashboard:query%d\n        expr: %s\n", i, strconv.Quote(grafanaVars.Replace(e)))
	}
	tmp := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(tmp, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, "", promtool(t), "check", "rules", tmp)

	// Every metric a query uses is one a serving node exports.
	families, _ := exercisedMetrics(t)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, name := range metricNames(e) {
			if _, ok := family(name, families); !ok {
				t.Errorf("dashboard query uses %s, which a serving node does not export: %s", name, e)
			}
			used[name] = true
		}
	}
	// Every gslbd metric the exercised node exports is documented (the
	// documented table is checked against a plain node elsewhere; this
	// one has dnstap and probes too).
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range families {
		if strings.HasPrefix(name, "gslbd_") && !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("metric %s is exported but not in the metrics table of docs/operations.md", name)
		}
	}
	// And the dashboard covers what operators look at.
	for _, want := range []string{"gslbd_dns_queries_total", "gslbd_dns_pool_answers_total", "gslbd_address_up", "gslbd_votes",
		"gslbd_health_probe_duration_seconds_bucket", "gslbd_health_probe_failures_total", "gslbd_gossip_messages_total",
		"gslbd_config_last_reload_successful", "gslbd_dnstap_dropped_total"} {
		if !used[want] {
			t.Errorf("dashboard has no panel on %s", want)
		}
	}
}

func TestPrometheusRules(t *testing.T) {
	dir := filepath.Join(contribDir, "prometheus")
	pt := promtool(t)
	out := runTool(t, dir, pt, "check", "rules", "gslbd-rules.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules:\n%s", out)
	}
	runTool(t, dir, pt, "test", "rules", "gslbd-rules.test.yml")

	raw, err := os.ReadFile(filepath.Join(dir, "gslbd-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	families, _ := exercisedMetrics(t)
	n := 0
	for _, m := range regexp.MustCompile(`(?s)expr: (\|\n.*?\n        \S|[^\n]*)`).FindAllStringSubmatch(string(raw), -1) {
		for _, name := range metricNames(m[1]) {
			n++
			if _, ok := family(name, families); !ok {
				t.Errorf("rule uses %s, which a serving node does not export", name)
			}
		}
	}
	if n < 10 {
		t.Errorf("found %d metric uses in the rules, want every rule's", n)
	}

	// docs/operations.md names every alert the file has.
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^      - alert: (\w+)`).FindAllStringSubmatch(string(raw), -1) {
		if !strings.Contains(string(doc), m[1]) {
			t.Errorf("alert %s is not described in docs/operations.md", m[1])
		}
	}
}

// TestSystemdUnit runs `systemd-analyze verify` on the unit as shipped,
// with only the binary's path pointed at the one this test built (verify
// checks that ExecStart exists), and holds it to the hardening the
// documentation promises.
func TestSystemdUnit(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (Debian package systemd): %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(contribDir, "systemd/gslbd.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{
		"\nUser=gslbd\n", "\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n", "\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
		"\nNoNewPrivileges=yes\n", "\nProtectSystem=strict\n", "\nStateDirectory=gslbd\n", "\nLogsDirectory=gslbd\n",
		"\nExecReload=/bin/kill -HUP $MAINPID\n", "\nKillSignal=SIGTERM\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "gslbd.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/gslbd", gslbdBinary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, dir, sa, "verify", path)
	if strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify complains:\n%s", out)
	}
	// The exposure score of `systemd-analyze security`: 0 is locked down,
	// 10 is a unit without any sandboxing; "OK" ends below 2.1 (it reads
	// 1.6 for this unit).
	out = runTool(t, dir, sa, "security", "--offline=true", "--no-pager", path)
	m := regexp.MustCompile(`Overall exposure level for gslbd.service: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(m[1], 64); level > 2.0 {
		t.Errorf("exposure level %s, want at most 2.0:\n%s", m[1], out)
	}
}

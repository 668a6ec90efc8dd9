package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHealthz(t *testing.T) {
	f := newFixture(t, "")
	base := f.start(t)
	code, h, body := call(t, "GET", base+"/healthz", "", "")
	if code != 200 || body != "ok\n" || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /healthz = %d %q %q, want 200 \"ok\\n\" text/plain", code, h.Get("Content-Type"), body)
	}
	code, h, _ = call(t, "POST", base+"/healthz", "", "")
	if code != 405 || h.Get("Allow") != "GET" {
		t.Fatalf("POST /healthz = %d Allow %q, want 405 Allow GET", code, h.Get("Allow"))
	}
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, body)
	}
	return v
}

func findAddr(t *testing.T, st *Status, pool, site, addr string) (SiteStatus, AddressStatus) {
	t.Helper()
	for _, p := range st.Pools {
		if p.Name != pool {
			continue
		}
		for _, s := range p.Sites {
			if s.Name != site {
				continue
			}
			for _, a := range s.Addresses {
				if a.Address.String() == addr {
					return s, a
				}
			}
		}
	}
	t.Fatalf("status has no %s/%s/%s", pool, site, addr)
	return SiteStatus{}, AddressStatus{}
}

func TestStatus(t *testing.T) {
	f := newFixture(t, testToken)
	base := f.start(t)
	code, h, body := call(t, "GET", base+"/api/v1/status", "", "")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/v1/status = %d %q, want 200 application/json\n%s", code, h.Get("Content-Type"), body)
	}
	st := decode[Status](t, body)
	if st.Node != "ns1" || st.Version != "v1.2.3-test" {
		t.Errorf("node, version = %q, %q", st.Node, st.Version)
	}
	if len(st.Members) != 3 || st.Members[0].Name != "ns1" || st.Members[0].State != "alive" || st.Members[0].Address == "" {
		t.Errorf("members = %+v", st.Members)
	}
	if len(st.Pools) != 2 {
		t.Fatalf("pools = %d, want 2", len(st.Pools))
	}
	var web PoolStatus
	for _, p := range st.Pools {
		if p.Name == "web" {
			web = p
		}
	}
	if web.Policy != "geo" || web.Answers != 2 || len(web.Sites) != 3 {
		t.Fatalf("web = %+v", web)
	}
	// iad's first address: two of three monitors say down.
	iad, a := findAddr(t, &st, "web", "iad", "198.51.100.10")
	if a.Verdict != "down" || a.Eligible || a.Drained {
		t.Errorf("iad 198.51.100.10 = %+v, want down, not eligible", a)
	}
	if a.Votes["ns1"] != "down" || a.Votes["ns2"] != "down" || a.Votes["ns3"] != "up" || len(a.Votes) != 3 {
		t.Errorf("iad votes = %v", a.Votes)
	}
	if a.Reason != "connect: connection refused" || a.LatencyMS != 1.5 || a.CheckedAt.IsZero() {
		t.Errorf("iad probe = %q %v %v", a.Reason, a.LatencyMS, a.CheckedAt)
	}
	if iad.Drained || !iad.HasCoords || iad.Lat != 38.95 || iad.Lon != -77.45 {
		t.Errorf("iad site = %+v", iad)
	}
	_, a = findAddr(t, &st, "web", "fra", "192.0.2.10")
	if a.Verdict != "up" || !a.Eligible || len(a.Votes) != 2 {
		t.Errorf("fra 192.0.2.10 = %+v", a)
	}
	// An address nobody has voted on yet is up, with an empty vote map
	// (not null: the page iterates it).
	_, a = findAddr(t, &st, "web", "fra", "2001:db8:10::1")
	if a.Verdict != "up" || a.Votes == nil || len(a.Votes) != 0 || !strings.Contains(body, `"votes": {}`) {
		t.Errorf("fra 2001:db8:10::1 = %+v", a)
	}
	sgp, a := findAddr(t, &st, "web", "sgp", "203.0.113.10")
	if !sgp.Drained || sgp.DrainedBy != "config" || !a.Drained || a.Verdict != "up" || a.Eligible {
		t.Errorf("sgp = %+v %+v, want drained by config, verdict up, not eligible", sgp, a)
	}
	sfo, _ := findAddr(t, &st, "api", "sfo", "198.51.100.20")
	if sfo.HasCoords {
		t.Errorf("sfo has coords, want none")
	}
	if !st.LastReload.OK || st.ConfigLoadedAt.IsZero() {
		t.Errorf("last reload = %+v, loaded at %v", st.LastReload, st.ConfigLoadedAt)
	}
	if st.Geo == nil || st.Geo.Type == "" || st.Geo.BuildTime.IsZero() || st.Geo.Networks == 0 || st.Geo.Overrides != 2 {
		t.Errorf("geo = %+v", st.Geo)
	}
	if len(st.Zones) != 1 || st.Zones[0] != "gslb.example.com." {
		t.Errorf("zones = %v", st.Zones)
	}
	if st.Drains == nil || len(st.Drains) != 0 {
		t.Errorf("drains = %#v, want []", st.Drains)
	}
}

// TestStatusWithoutMesh: a node without a mesh or a loaded view still
// answers, with empty lists rather than nulls.
func TestStatusWithoutMesh(t *testing.T) {
	s := New(Options{NodeName: "solo", Logger: testLogger(t)})
	rec := serve(s, "GET", "/api/v1/status", "", "")
	if rec.code != 200 {
		t.Fatalf("status = %d %s", rec.code, rec.body)
	}
	for _, want := range []string{`"members": []`, `"pools": []`, `"drains": []`, `"node": "solo"`} {
		if !strings.Contains(rec.body, want) {
			t.Errorf("status lacks %s:\n%s", want, rec.body)
		}
	}
	rec = serve(s, "POST", "/api/v1/drain", "", `{"pool":"web","site":"fra"}`)
	if rec.code != 503 {
		t.Errorf("drain without a view = %d, want 503", rec.code)
	}
	rec = serve(s, "POST", "/api/v1/reload", "", "")
	if rec.code != 503 {
		t.Errorf("reload without a reload func = %d, want 503", rec.code)
	}
}

func TestDrain(t *testing.T) {
	f := newFixture(t, testToken)
	base := f.start(t)
	url := base + "/api/v1/drain"

	code, _, body := call(t, "POST", url, testToken, `{"pool":"web","site":"fra"}`)
	if code != 200 {
		t.Fatalf("drain fra = %d %s", code, body)
	}
	res := decode[DrainResult](t, body)
	if res != (DrainResult{Pool: "web", Site: "fra", Drained: true}) {
		t.Errorf("drain result = %+v", res)
	}
	_, _, body = call(t, "GET", base+"/api/v1/status", "", "")
	st := decode[Status](t, body)
	site, a := findAddr(t, &st, "web", "fra", "192.0.2.11")
	if !site.Drained || site.DrainedBy != "mesh" || !a.Drained || a.Eligible || a.Verdict != "up" {
		t.Errorf("after drain: site %+v addr %+v", site, a)
	}
	if len(st.Drains) != 1 || st.Drains[0] != (Drain{Pool: "web", Site: "fra"}) {
		t.Errorf("drains = %+v", st.Drains)
	}

	code, _, body = call(t, "DELETE", url, testToken, `{"pool":"web","site":"fra"}`)
	if code != 200 || decode[DrainResult](t, body).Drained {
		t.Fatalf("undrain fra = %d %s", code, body)
	}
	_, _, body = call(t, "GET", base+"/api/v1/status", "", "")
	st = decode[Status](t, body)
	if site, a := findAddr(t, &st, "web", "fra", "192.0.2.11"); site.Drained || a.Drained {
		t.Errorf("after undrain: site %+v addr %+v", site, a)
	}

	// One address; IPv6 in a non-canonical spelling is accepted.
	code, _, body = call(t, "POST", url, testToken, `{"pool":"web","site":"fra","address":"2001:DB8:10:0::1"}`)
	if code != 200 {
		t.Fatalf("drain address = %d %s", code, body)
	}
	if d := f.mesh.Drains(); len(d) != 1 || d[0].Addr != netip.MustParseAddr("2001:db8:10::1") {
		t.Errorf("mesh drains = %+v", d)
	}
	_, _, body = call(t, "GET", url, "", "")
	if l := decode[DrainList](t, body); len(l.Drains) != 1 || l.Drains[0].Addr.String() != "2001:db8:10::1" {
		t.Errorf("GET drain = %s", body)
	}
	_, _, body = call(t, "GET", base+"/api/v1/status", "", "")
	st = decode[Status](t, body)
	if site, a := findAddr(t, &st, "web", "fra", "2001:db8:10::1"); site.Drained || !a.Drained {
		t.Errorf("address drain: site %+v addr %+v", site, a)
	}

	f.mesh.FailDrains(errors.New("gossip queue full"))
	code, _, body = call(t, "POST", url, testToken, `{"pool":"web","site":"iad"}`)
	if code != 500 || !strings.Contains(body, "gossip queue full") {
		t.Errorf("failing mesh = %d %s, want 500 with the cause", code, body)
	}
	// A write that cannot win over what the mesh holds is a conflict, so a
	// script sees that its drain did not take effect.
	f.mesh.FailDrains(fmt.Errorf("%w: drain clock ahead of this node's clock", ErrConflict))
	code, _, body = call(t, "DELETE", url, testToken, `{"pool":"web","site":"iad"}`)
	if code != 409 || !strings.Contains(body, "clock ahead") {
		t.Errorf("lost write = %d %s, want 409 with the cause", code, body)
	}
}

func TestDrainErrors(t *testing.T) {
	f := newFixture(t, testToken)
	base := f.start(t)
	url := base + "/api/v1/drain"
	big := `{"pool":"` + strings.Repeat("x", 70<<10) + `","site":"fra"}`
	cases := []struct {
		name, method, token, body string
		code                      int
		want                      string
	}{
		{"no token", "POST", "", `{"pool":"web","site":"fra"}`, 401, "token"},
		{"wrong token", "POST", "nope", `{"pool":"web","site":"fra"}`, 401, "token"},
		{"token prefix", "POST", testToken[:4], `{"pool":"web","site":"fra"}`, 401, "token"},
		{"undrain no token", "DELETE", "", `{"pool":"web","site":"fra"}`, 401, "token"},
		{"empty body", "POST", testToken, ``, 400, "empty"},
		{"not json", "POST", testToken, `pool=web`, 400, "decode body"},
		{"unknown field", "POST", testToken, `{"pool":"web","site":"fra","force":true}`, 400, "force"},
		{"trailing data", "POST", testToken, `{"pool":"web","site":"fra"} {}`, 400, "trailing"},
		{"array", "POST", testToken, `[1]`, 400, "decode body"},
		{"missing site", "POST", testToken, `{"pool":"web"}`, 400, "site"},
		{"bad address", "POST", testToken, `{"pool":"web","site":"fra","address":"192.0.2.300"}`, 400, "192.0.2.300"},
		{"too large", "POST", testToken, big, 400, "too large"},
		{"unknown pool", "POST", testToken, `{"pool":"nope","site":"fra"}`, 404, `unknown pool \"nope\"`},
		{"unknown site", "POST", testToken, `{"pool":"web","site":"ams"}`, 404, `unknown site \"ams\"`},
		{"address of another site", "POST", testToken, `{"pool":"web","site":"fra","address":"198.51.100.10"}`, 404, "unknown address 198.51.100.10"},
		{"undrain unknown pool", "DELETE", testToken, `{"pool":"nope","site":"fra"}`, 404, "unknown pool"},
		{"wrong method", "PUT", testToken, `{"pool":"web","site":"fra"}`, 405, "DELETE, GET, POST"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, h, body := call(t, c.method, url, c.token, c.body)
			if code != c.code {
				t.Fatalf("%s = %d, want %d: %s", c.method, code, c.code, body)
			}
			if h.Get("Content-Type") != "application/json" {
				t.Errorf("content type %q", h.Get("Content-Type"))
			}
			e := decode[errorBody](t, body)
			if e.Error == "" || !strings.Contains(body, c.want) {
				t.Errorf("body %s lacks %q", body, c.want)
			}
			if c.code == 405 && h.Get("Allow") != "DELETE, GET, POST" {
				t.Errorf("Allow = %q", h.Get("Allow"))
			}
			if c.code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", h.Get("WWW-Authenticate"))
			}
		})
	}
	if d := f.mesh.Drains(); len(d) != 0 {
		t.Errorf("a refused call drained %+v", d)
	}
}

// TestCrossOrigin: a browser page elsewhere cannot drive the API, even
// without a token; the same call from the CLI (no browser headers) can.
func TestCrossOrigin(t *testing.T) {
	f := newFixture(t, "")
	base := f.start(t)
	for _, hdr := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "http://evil.example"},
	} {
		req, _ := http.NewRequest("POST", base+"/api/v1/drain", strings.NewReader(`{"pool":"web","site":"fra"}`))
		req.Header.Set("Content-Type", "text/plain")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("drain with %v = %d, want 403", hdr, resp.StatusCode)
		}
	}
	if d := f.mesh.Drains(); len(d) != 0 {
		t.Fatalf("a cross-origin call drained %+v", d)
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/drain", strings.NewReader(`{"pool":"web","site":"fra"}`))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // what curl -d sends
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("same-origin drain = %d, want 200", resp.StatusCode)
	}
}

// TestNoToken: without a configured token mutating calls are open (the
// server is on loopback).
func TestNoToken(t *testing.T) {
	f := newFixture(t, "")
	base := f.start(t)
	if code, _, body := call(t, "POST", base+"/api/v1/drain", "", `{"pool":"web","site":"iad"}`); code != 200 {
		t.Fatalf("drain without token config = %d %s", code, body)
	}
	if code, _, body := call(t, "POST", base+"/api/v1/reload", "", ""); code != 200 {
		t.Fatalf("reload without token config = %d %s", code, body)
	}
}

func TestExplain(t *testing.T) {
	f := newFixture(t, testToken)
	base := f.start(t)

	code, h, body := call(t, "GET", base+"/api/v1/explain?name=www.gslb.example.com&type=A&client=10.1.2.3", "", "")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("explain = %d %q %s", code, h.Get("Content-Type"), body)
	}
	tr := decode[struct {
		Name   string   `json:"name"`
		Rcode  string   `json:"rcode"`
		Answer []string `json:"answer"`
		Pools  []struct {
			Pool  string `json:"pool"`
			Sites []struct {
				Site string `json:"site"`
			} `json:"sites"`
		} `json:"pools"`
		Location struct {
			Country string `json:"country"`
		} `json:"location"`
	}](t, body)
	if tr.Rcode != "NOERROR" || tr.Name != "www.gslb.example.com." || tr.Location.Country != "DE" {
		t.Errorf("trace = %+v", tr)
	}
	if len(tr.Pools) == 0 || tr.Pools[0].Pool != "web" || len(tr.Pools[0].Sites) == 0 || tr.Pools[0].Sites[0].Site != "fra" {
		t.Errorf("trace pools = %+v, want web with fra first", tr.Pools)
	}
	if len(tr.Answer) != 2 || !strings.HasPrefix(tr.Answer[0], "192.0.2.1") {
		t.Errorf("answer = %v, want two fra addresses", tr.Answer)
	}

	// ECS and AAAA; type in lower case.
	code, _, body = call(t, "GET", base+"/api/v1/explain?name=www.gslb.example.com.&type=aaaa&client=10.2.9.9&ecs=24", "", "")
	if code != 200 || !strings.Contains(body, `"source": "ecs"`) || !strings.Contains(body, "2001:db8:20::1") {
		t.Errorf("explain ecs = %d %s", code, body)
	}
	// A name outside every zone is REFUSED, not an HTTP error.
	code, _, body = call(t, "GET", base+"/api/v1/explain?name=example.org&client=10.1.2.3", "", "")
	if code != 200 || !strings.Contains(body, `"rcode": "REFUSED"`) {
		t.Errorf("explain outside = %d %s", code, body)
	}

	bad := []struct{ query, want string }{
		{"type=A&client=10.1.2.3", `\"name\" is required`},
		{"name=www.gslb.example.com", `\"client\" is required`},
		{"name=www.gslb.example.com&client=not-an-ip", "invalid client"},
		{"name=www.gslb.example.com&client=10.1.2.3&type=BOGUS", "invalid query type"},
		{"name=www.gslb.example.com&client=10.1.2.3&ecs=33", "invalid ecs"},
		{"name=www.gslb.example.com&client=10.1.2.3&ecs=-1", "invalid ecs"},
		{"name=www..bad&client=10.1.2.3", "invalid name"},
	}
	for _, b := range bad {
		code, _, body := call(t, "GET", base+"/api/v1/explain?"+b.query, "", "")
		if code != 400 || !strings.Contains(body, b.want) {
			t.Errorf("explain?%s = %d %s, want 400 with %q", b.query, code, body, b.want)
		}
	}
	if code, h, _ := call(t, "POST", base+"/api/v1/explain", testToken, ""); code != 405 || h.Get("Allow") != "GET" {
		t.Errorf("POST explain = %d Allow %q", code, h.Get("Allow"))
	}
}

func TestReload(t *testing.T) {
	f := newFixture(t, testToken)
	base := f.start(t)
	url := base + "/api/v1/reload"

	if code, _, body := call(t, "POST", url, "", ""); code != 401 {
		t.Fatalf("reload without token = %d %s", code, body)
	}
	// Add a site; the reload makes it visible.
	pools := filepath.Join(filepath.Dir(f.path), "pools", "api.toml")
	orig, err := os.ReadFile(pools)
	if err != nil {
		t.Fatal(err)
	}
	added := string(orig) + "\n[[api.sites]]\nname = \"syd\"\naddresses = [\"192.0.2.99\"]\n"
	if err := os.WriteFile(pools, []byte(added), 0o644); err != nil {
		t.Fatal(err)
	}
	code, h, body := call(t, "POST", url, testToken, "")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("reload = %d %s", code, body)
	}
	if r := decode[ReloadResult](t, body); !r.OK || r.At.IsZero() || len(r.Errors) != 0 {
		t.Errorf("reload result = %+v", r)
	}
	_, _, body = call(t, "GET", base+"/api/v1/status", "", "")
	st := decode[Status](t, body)
	findAddr(t, &st, "api", "syd", "192.0.2.99")

	// Two errors in one file: both come back, each with its place.
	broken := string(orig) + "\n[[api.sites]]\nname = \"bad\"\nweight = \"heavy\"\naddresses = [\"192.0.2.300\"]\n"
	if err := os.WriteFile(pools, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	code, h, body = call(t, "POST", url, testToken, "")
	if code != 422 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("broken reload = %d %s", code, body)
	}
	r := decode[ReloadResult](t, body)
	if r.OK || r.Error == "" || len(r.Errors) == 0 {
		t.Fatalf("broken reload result = %+v", r)
	}
	for _, e := range r.Errors {
		if !strings.Contains(e, "api.toml:") {
			t.Errorf("error %q lacks its file:line", e)
		}
	}
	// The old snapshot stays in service, and the status tells of the failure.
	_, _, body = call(t, "GET", base+"/api/v1/status", "", "")
	st = decode[Status](t, body)
	findAddr(t, &st, "api", "syd", "192.0.2.99")
	if st.LastReload.OK || len(st.LastReload.Errors) != len(r.Errors) {
		t.Errorf("status last reload = %+v", st.LastReload)
	}
	if got := gaugeValue(t, f.reg, "gslbd_config_last_reload_successful"); got != 0 {
		t.Errorf("gslbd_config_last_reload_successful = %v after a failed reload, want 0", got)
	}
	if code, h, _ := call(t, "GET", url, "", ""); code != 405 || h.Get("Allow") != "POST" {
		t.Errorf("GET reload = %d Allow %q", code, h.Get("Allow"))
	}

	// Repaired: 1 again. Server.Reload is the SIGHUP path and counts alike.
	if err := os.WriteFile(pools, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := gaugeValue(t, f.reg, "gslbd_config_last_reload_successful"); got != 1 {
		t.Errorf("gslbd_config_last_reload_successful = %v after a good reload, want 1", got)
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	f := newFixture(t, testToken)
	base := f.start(t)
	code, h, body := call(t, "GET", base+"/api/v1/nope", "", "")
	if code != 404 || h.Get("Content-Type") != "application/json" || !strings.Contains(body, "no such endpoint") {
		t.Errorf("GET /api/v1/nope = %d %q %s", code, h.Get("Content-Type"), body)
	}
	if code, _, _ := call(t, "GET", base+"/nope", "", ""); code != 404 {
		t.Errorf("GET /nope = %d", code)
	}
	code, h, body = call(t, "POST", base+"/api/v1/status", testToken, "{}")
	if code != 405 || h.Get("Allow") != "GET" || h.Get("Content-Type") != "application/json" {
		t.Errorf("POST status = %d Allow %q %s", code, h.Get("Allow"), body)
	}
	code, h, _ = call(t, "DELETE", base+"/", "", "")
	if code != 405 || h.Get("Allow") != "GET" {
		t.Errorf("DELETE / = %d Allow %q", code, h.Get("Allow"))
	}
	// HEAD works wherever GET does.
	if code, _, _ := call(t, "HEAD", base+"/api/v1/status", "", ""); code != 200 {
		t.Errorf("HEAD status = %d", code)
	}
}

func TestStartRefusesOpenNonLoopback(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0"} {
		s := New(Options{Listen: listen, Logger: testLogger(t)})
		err := s.Start(context.Background())
		if err == nil {
			s.Shutdown(context.Background())
			t.Errorf("Start(%q) without token succeeded, want refusal", listen)
			continue
		}
		if !strings.Contains(err.Error(), "token") || !strings.Contains(err.Error(), listen) {
			t.Errorf("Start(%q) error %q does not name the address and the token", listen, err)
		}
	}
	for _, tc := range []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:8053", true}, {"127.0.0.5:1", true}, {"[::1]:8053", true}, {"localhost:8053", true},
		{"[::ffff:127.0.0.1]:8053", true}, {"0.0.0.0:8053", false}, {":8053", false}, {"10.0.0.1:8053", false},
		{"example.com:8053", false}, {"garbage", false},
	} {
		if got := isLoopback(tc.listen); got != tc.want {
			t.Errorf("isLoopback(%q) = %v, want %v", tc.listen, got, tc.want)
		}
	}
}

func TestStartShutdown(t *testing.T) {
	s := New(Options{Listen: "127.0.0.1:0", Logger: testLogger(t)})
	if s.Addr() != nil {
		t.Fatalf("Addr before Start = %v", s.Addr())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr().String()
	if code, _, _ := call(t, "GET", base+"/healthz", "", ""); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c := &http.Client{}
	if resp, err := c.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("server still answers after Shutdown")
	}
	// Another server on the same address now starts: the port was freed.
	s2 := New(Options{Listen: s.Addr().String(), Logger: testLogger(t)})
	if err := s2.Start(ctx); err != nil {
		t.Fatalf("restart on %s: %v", s.Addr(), err)
	}
	// Cancelling the owner's context stops it too.
	cancel()
	if err := s2.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after cancel: %v", err)
	}
}

func TestPprofNeedsToken(t *testing.T) {
	f := newFixture(t, "s3cret")
	base := f.start(t)
	if code, _, _ := call(t, "GET", base+"/debug/pprof/", "", ""); code != 401 {
		t.Fatalf("GET /debug/pprof/ without token = %d, want 401", code)
	}
	code, _, body := call(t, "GET", base+"/debug/pprof/goroutine?debug=1", "s3cret", "")
	if code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Fatalf("GET /debug/pprof/goroutine with token = %d %.80q, want 200 with a goroutine profile", code, body)
	}
}

package admin

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestIndexAndAssets(t *testing.T) {
	f := newFixture(t, testToken)
	base := f.start(t)
	code, h, body := call(t, "GET", base+"/", "", "")
	if code != 200 || h.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET / = %d %q", code, h.Get("Content-Type"))
	}
	if strings.Contains(body, initialMarker) || !strings.Contains(body, `window.GSLBD_INITIAL = {"node":"ns1"`) {
		t.Errorf("GET / lacks the inlined status")
	}
	// Nothing is loaded from elsewhere: the page works on an isolated node.
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).FindString(body); m != "" {
		t.Errorf("page refers to an external resource: %s", m)
	}
	for path, ct := range map[string]string{
		"/ui/app.js":    "text/javascript; charset=utf-8",
		"/ui/world.js":  "text/javascript; charset=utf-8",
		"/ui/style.css": "text/css; charset=utf-8",
	} {
		code, h, body := call(t, "GET", base+path, "", "")
		if code != 200 || h.Get("Content-Type") != ct || len(body) < 100 {
			t.Errorf("GET %s = %d %q (%d bytes)", path, code, h.Get("Content-Type"), len(body))
		}
	}
	if code, _, _ := call(t, "GET", base+"/ui/nope.js", "", ""); code != 404 {
		t.Errorf("GET /ui/nope.js = %d", code)
	}
}

// TestIndexEscapesStatus: names in the status cannot break out of the
// <script> element they are inlined into.
func TestIndexEscapesStatus(t *testing.T) {
	s := New(Options{NodeName: "</script><script>alert(1)</script>", Logger: testLogger(t)})
	rec := serve(s, "GET", "/", "", "")
	if strings.Contains(rec.body, "<script>alert(1)") || !strings.Contains(rec.body, `\u003c/script\u003e`) {
		t.Errorf("node name not escaped in the page")
	}
}

const chromiumPath = "/usr/bin/chromium"

// chromium runs headless Chromium on url with the extra flags and returns
// its standard output. Virtual time lets the page's timers and fetches run
// without the test waiting in real time for them.
func chromium(t *testing.T, url string, extra ...string) []byte {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is required for the status page test and is missing at %s (apt-get install chromium): %v", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000"}
	args = append(args, extra...)
	args = append(args, url)
	cmd := exec.CommandContext(ctx, chromiumPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\nstderr:\n%s", url, err, stderr.String())
	}
	return stdout.Bytes()
}

// TestStatusPageChromium loads GET / in a real browser and checks the DOM
// after the scripts ran: every site with its state, every address with its
// verdict, the votes, the members, the map. It also checks the page
// refreshes itself: the first status fetch drains iad, and the final DOM
// must show that.
func TestStatusPageChromium(t *testing.T) {
	f := newFixture(t, testToken)
	var fetches atomic.Int32
	h := f.srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/status" && fetches.Add(1) == 1 {
			f.mesh.Drain("web", "iad", netip.Addr{}, true)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)

	start := time.Now()
	dom := string(chromium(t, ts.URL+"/", "--dump-dom"))
	t.Logf("chromium took %v, page fetched the status %d times", time.Since(start).Round(time.Millisecond), fetches.Load())

	// Rendered elements only: the inlined JSON also holds the names, so
	// look for the markup the script builds.
	want := []string{
		`<div class="site up" data-site="fra">`,
		`<div class="site drained" data-site="sgp">`,
		`<div class="site up" data-site="ams">`,
		`<div class="site up" data-site="sfo">`,
		`<li class="addr up"><span class="ip">192.0.2.10</span><span class="states"><span class="pill up">up</span></span>`,
		`<li class="addr drained"><span class="ip">203.0.113.10</span><span class="states"><span class="pill up">up</span><span class="pill drained">drained</span>`,
		`<span class="vote down" title="ns1 says down">ns1 down</span>`,
		`<span class="vote up" title="ns3 says up">ns3 up</span>`,
		`connect: connection refused`,
		`<tr class="member alive"><td>ns1<span class="muted"> (this node)</span></td>`,
		`<svg viewBox="0 0 360 142" class="map"`,
		`<circle cx="188.68" cy="33.89"`, // fra at 50.11N 8.68E
		`class="live ok"`,
		// Config drift: ns3 serves other files than this node and ns2.
		`<td class="mono config">0123456789abcdef<span> <span class="pill down">differs</span></span></td>`,
		`<td class="mono config">` + f.src.snap.ConfigDigest + `</td>`,
		`<p class="divergent bad">serving a different configuration than this node (` + f.src.snap.ConfigDigest + `): ns3</p>`,
	}
	if fetches.Load() > 0 {
		// The refresh re-rendered with iad drained by the mesh.
		want = append(want,
			`<div class="site drained" data-site="iad">`,
			`<span class="pill drained">drained (mesh)</span>`,
			`<li class="addr drained"><span class="ip">198.51.100.10</span><span class="states"><span class="pill down">down</span><span class="pill drained">drained</span>`)
	} else {
		t.Errorf("the page never fetched /api/v1/status within the virtual time budget: it does not refresh")
	}
	for _, w := range want {
		if !strings.Contains(dom, w) {
			t.Errorf("rendered DOM lacks %s", w)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}

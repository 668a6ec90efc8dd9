package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// metricSum adds up the samples of a metric whose label text contains
// labels ("" for all).
func metricSum(t testing.TB, adminURL, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if labels != "" && !strings.Contains(line, labels) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// internetNode is a node as the README's "Running on the internet"
// section configures it: rate limiting, a shared cookie secret, a token.
func internetNode(t *testing.T, rrl string) *inproc {
	n := writeInproc(t, "edge", nodeFiles{
		"zones/test.toml": e2eZone,
		"pools/web.toml":  e2ePools,
		"cookie.key":      "e5e973e5a6b2a43f48e7dc849e37bfcf\n",
		"admin.token":     "first-token\n",
	}, fmt.Sprintf("[geo]\ncity_db = %q\n\n[dns.rrl]\n%s\n[dns.cookies]\nsecret_file = \"cookie.key\"\n", geoDBPath(t), rrl), nil)
	cfgPath := filepath.Join(n.dir, "gslbd.toml")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "[admin]\n", "[admin]\ntoken_file = \"admin.token\"\n", 1)
	writeFile(t, cfgPath, cfg)
	n.Start(nil)
	return n
}

func postReload(t *testing.T, n *inproc, token string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", n.Admin+"/api/v1/reload", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

var digCookie = regexp.MustCompile(`; COOKIE: ([0-9a-f]{48}) \(good\)`)

// TestCookiesWithDig: dig +cookie gets a server cookie (dig checks that
// our answer echoes its client cookie: "good"); coming back with it is
// valid and exempts it from rate limiting; the secret rotates on SIGHUP
// without turning the previous cookie away; the token rotates on SIGHUP
// too, an emptied token file fails the reload and keeps the old token;
// group-readable secret files are warned about.
func TestCookiesWithDig(t *testing.T) {
	dig := requireTool(t, "dig")
	n := internetNode(t, "responses_per_second = 1\nwindow = 2\nslip = 1\n")
	host, port, _ := net.SplitHostPort(n.DNS)
	digRun := func(args ...string) string {
		all := append([]string{"@" + host, "-p", port, "+tries=1", "+time=2", "-b", "127.0.4.4"}, args...)
		out, err := exec.Command(dig, all...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", all, err, out)
		}
		return string(out)
	}
	out := digRun("+cookie", "static.gslb.test", "A")
	m := digCookie.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "192.0.2.1") {
		t.Fatalf("dig +cookie: no good cookie or no answer:\n%s", out)
	}
	full := m[1]
	// Quick queries with the server cookie, at a limit of 1 a second with
	// every limited answer slipped: all answered in full over UDP.
	for i := range 3 {
		out := digRun("+cookie="+full, "+ignore", "static.gslb.test", "A")
		if !strings.Contains(out, "192.0.2.1") || strings.Contains(out, " tc") {
			t.Fatalf("query %d with a valid cookie was limited:\n%s", i, out)
		}
	}
	if v := metricSum(t, n.Admin, "gslbd_dns_cookie_queries_total", `state="valid"`); v < 3 {
		t.Errorf("valid cookies counted %v, want at least 3", v)
	}
	// A burst from the same address with a client cookie alone is limited,
	// and the slipped answers are BADCOOKIE with a fresh cookie to come
	// back with (a burst with the server cookie is not limited at all).
	burst := func(cookie string) (answered, badcookie int) {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 4, 4)}}}
		for range 8 {
			m := new(dns.Msg)
			m.SetQuestion("static.gslb.test.", dns.TypeA)
			o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
			o.SetUDPSize(1232)
			o.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie}}
			m.Extra = []dns.RR{o}
			r, _, err := c.Exchange(m, n.DNS)
			switch {
			case err != nil:
			case r.Rcode == dns.RcodeBadCookie:
				badcookie++
			case len(r.Answer) == 1:
				answered++
			}
		}
		return
	}
	if a, b := burst(full[:16]); b == 0 || a+b != 8 {
		t.Errorf("8 quick queries with a client cookie alone: %d answered, %d BADCOOKIE; want BADCOOKIE slips", a, b)
	}
	if a, b := burst(full); a != 8 || b != 0 {
		t.Errorf("8 quick queries with the server cookie: %d answered, %d BADCOOKIE; want all answered", a, b)
	}

	// Rotate the cookie secret and the token; reload by SIGHUP.
	writeFile(t, filepath.Join(n.dir, "cookie.key"), "dd3bdf9344b678b185a6f5cb60fca715\n")
	writeFile(t, filepath.Join(n.dir, "admin.token"), "second-token\n")
	n.Reload()
	eventually(t, 10*time.Second, "the new token is in force", func() bool {
		return postReload(t, n, "second-token") == 200
	})
	if code := postReload(t, n, "first-token"); code != 401 {
		t.Errorf("reload with the rotated-out token: %d, want 401", code)
	}
	before := metricSum(t, n.Admin, "gslbd_dns_cookie_queries_total", `state="valid"`)
	out = digRun("+cookie="+full, "static.gslb.test", "A")
	if got := metricSum(t, n.Admin, "gslbd_dns_cookie_queries_total", `state="valid"`); got != before+1 {
		t.Errorf("the previous secret's cookie after a rotation: valid count %v → %v", before, got)
	}
	if m := digCookie.FindStringSubmatch(out); m == nil || m[1] == full {
		t.Errorf("after a rotation the answer should carry a new cookie:\n%s", out)
	}

	// An emptied token file is a failed reload: the token stays.
	writeFile(t, filepath.Join(n.dir, "admin.token"), "  \n")
	if code := postReload(t, n, "second-token"); code != 422 {
		t.Errorf("reload with an empty token file: %d, want 422", code)
	}
	if code := postReload(t, n, "second-token"); code != 422 {
		t.Errorf("the token after a failed reload: %d, want 422 (authorized, still failing)", code)
	}
	if !strings.Contains(n.log.String(), "secret file is readable by group or others") {
		t.Error("no warning about the group-readable secret files")
	}
	// AXFR is refused, over TCP as dig asks it.
	if out := digRun("gslb.test", "AXFR"); !strings.Contains(out, "Transfer failed") {
		t.Errorf("dig AXFR:\n%s", out)
	}
}

// TestRRLThroughUnbound: a real resolver, unbound (which sends no
// cookies), behind a network that gslbd rate-limits to one answer a
// second with every limited answer slipped: it gets every answer anyway,
// retrying over TCP after each truncated one.
func TestRRLThroughUnbound(t *testing.T) {
	dig := requireTool(t, "dig")
	n := internetNode(t, "responses_per_second = 1\nwindow = 5\nslip = 1\n")

	port := startUnbound(t, n.DNS, "\tcache-max-ttl: 0\n\tcache-max-negative-ttl: 0\n")
	ask := func(name, qtype string) string {
		out, _ := exec.Command(dig, "@127.0.0.1", "-p", fmt.Sprint(port), "+tries=1", "+time=5", name, qtype).CombinedOutput()
		return string(out)
	}
	eventually(t, 15*time.Second, "unbound answers", func() bool {
		return strings.Contains(ask("static.gslb.test", "A"), "192.0.2.1")
	})
	// Eight names at once: one NXDOMAIN bucket for the zone, so at least
	// seven of unbound's questions are over the limit.
	outs := make([]string, 8)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Go(func() { outs[i] = ask(fmt.Sprintf("nope%d.gslb.test", i), "A") })
	}
	wg.Wait()
	for i, out := range outs {
		if !strings.Contains(out, "status: NXDOMAIN") {
			t.Errorf("nope%d through unbound:\n%s", i, out)
		}
	}
	slipped := metricSum(t, n.Admin, "gslbd_dns_rrl_slipped_total", "")
	tcp := metricSum(t, n.Admin, "gslbd_dns_tcp_connections_total", "")
	if slipped == 0 || tcp == 0 {
		t.Errorf("unbound was never slipped (%v) or never came back over TCP (%v connections)", slipped, tcp)
	}
	t.Logf("through unbound: %v responses slipped, %v TCP connections", slipped, tcp)
}

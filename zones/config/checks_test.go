package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// TestDNSAndHTTPCheckKeys loads a dns check and an http check with headers
// and body_match, and a site override, into targets.
func TestDNSAndHTTPCheckKeys(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"gslbd.toml": "[node]\nname = \"ns1\"\n",
		"zones/z.toml": `origin = "gslb.test."
nameservers = ["ns1.gslb.test."]
[soa]
rname = "hostmaster.gslb.test."
[records.ns1]
A = ["192.0.2.53"]
[records.resolvers]
pool = "resolvers"
[records.www]
pool = "web"
`,
		"pools/p.toml": `[resolvers]
[resolvers.check]
type = "dns"
name = "Example.COM"
qtype = "soa"
rcode = "noerror"
[[resolvers.sites]]
name = "a"
addresses = ["127.0.0.1"]
[[resolvers.sites]]
name = "b"
addresses = ["127.0.0.2"]
check = { name = "www.example.com.", qtype = "A", answer = "192.0.2.1", port = 5353 }

[web]
[web.check]
type = "https"
headers = { "x-health-token" = "s3cret", "Accept" = "application/json" }
body_match = '"status":"ok"'
[[web.sites]]
name = "a"
addresses = ["127.0.0.3"]
`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := LoadNodeConfig(filepath.Join(dir, "gslbd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]zones.Check{}
	for _, tg := range snap.Targets {
		checks[tg.Addr.String()] = tg.Check
		if !strings.HasPrefix(tg.Key, tg.Addr.String()+"|"+tg.Check.String()) {
			t.Errorf("target key %q does not carry the check %q", tg.Key, tg.Check.String())
		}
	}
	a, b, web := checks["127.0.0.1"], checks["127.0.0.2"], checks["127.0.0.3"]
	if a.Type != zones.CheckDNS || a.Port != 53 || a.QName != "Example.COM." || a.QType != dns.TypeSOA || a.RCode != dns.RcodeSuccess || a.Answer != "" {
		t.Errorf("dns check: %+v", a)
	}
	if b.Port != 5353 || b.QName != "www.example.com." || b.QType != dns.TypeA || b.Answer != "192.0.2.1" {
		t.Errorf("dns check with site override: %+v", b)
	}
	if a.String() == b.String() {
		t.Errorf("different dns checks with one key %q", a.String())
	}
	want := []zones.Header{{Name: "Accept", Value: "application/json"}, {Name: "X-Health-Token", Value: "s3cret"}}
	if !slices.Equal(web.Headers, want) || web.BodyMatch != `"status":"ok"` {
		t.Errorf("https check: headers %v body_match %q", web.Headers, web.BodyMatch)
	}
	if s := web.String(); !strings.Contains(s, "&h=Accept:application/json&h=X-Health-Token:s3cret&body=\"status\":\"ok\"") {
		t.Errorf("https check key %q lacks its headers and body_match", s)
	}
}

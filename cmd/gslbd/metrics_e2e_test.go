package main

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestMetricsDocumented scrapes a serving node and checks that every gslbd_
// metric it exports is in the metrics table of docs/operations.md, so the
// list operators alert on cannot silently fall behind the code.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(gslbd_[a-z0-9_]+)`").FindAllSubmatch(doc, -1) {
		documented[string(m[1])] = true
	}
	if len(documented) < 10 {
		t.Fatalf("found %d metrics in docs/operations.md, want the whole table", len(documented))
	}

	n := e2eInproc(t, "metrics")
	exchange(t, n.DNS, "www.gslb.test.", dns.TypeA, "127.0.1.0/24") // so query counters have samples
	resp, err := http.Get(n.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	exported := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^# TYPE (gslbd_[a-z0-9_]+) ").FindAllSubmatch(body, -1) {
		exported[string(m[1])] = true
	}
	if !exported["gslbd_dns_queries_total"] {
		t.Fatalf("node exports no gslbd_dns_queries_total:\n%s", body)
	}
	for name := range exported {
		if !documented[name] {
			t.Errorf("metric %s is exported but not documented in docs/operations.md", name)
		}
	}
	for name := range documented {
		if !exported[name] && !strings.Contains(string(body), name) {
			t.Logf("documented %s has no sample yet on a fresh node (a vector without observations)", name)
		}
	}
}

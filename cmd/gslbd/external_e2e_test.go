package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestExternalHealthQuorum runs two nodes (in-process) joined on
// loopback and drives the external feed: an API "down" on one monitor is
// gossiped (the other node shows its vote) but is one vote of two, so the
// address stays in the answers; the other monitor's watched file saying
// the site is down makes it a majority and the answers move on both
// nodes; clearing the API entry, then an Alertmanager webhook firing and
// resolving, move them back and forth.
func TestExternalHealthQuorum(t *testing.T) {
	files := nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": e2ePools}
	geo := "[geo]\ncity_db = \"" + geoDBPath(t) + "\"\n"
	a := startInproc(t, "ext-a", files, geo, nil, nil)
	b := startInproc(t, "ext-b", files, geo+"\n[health]\nexternal_file = \"external.txt\"\n", []string{a.Cluster}, nil)
	extFile := filepath.Join(b.dir, "external.txt")

	fra := func(n *inproc) bool {
		return slices.Equal(answerAddrs(exchange(t, n.DNS, "www.gslb.test.", dns.TypeA, "127.0.1.0/24")), []string{"192.0.2.10"})
	}
	both := func(what string, want bool) {
		t.Helper()
		eventually(t, 15*time.Second, what, func() bool { return fra(a) == want && fra(b) == want })
	}
	both("fra answered at start", true)
	// Both monitors' votes are known on both nodes before anything
	// changes, so no node decides alone.
	var since time.Time
	eventually(t, 20*time.Second, "both votes on both nodes for a second", func() bool {
		va, vb := votesOn(t, a, "192.0.2.10"), votesOn(t, b, "192.0.2.10")
		if !(va["ext-a"] == "up" && va["ext-b"] == "up" && vb["ext-a"] == "up" && vb["ext-b"] == "up") {
			since = time.Time{}
			return false
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) > time.Second
	})

	// One monitor says down through its API: gossiped, outvoted.
	code, body := call(t, "POST", a.Admin+"/api/v1/external", `{"address":"192.0.2.10","state":"down","ttl":"10m","reason":"deploy 4711"}`)
	if code != 200 {
		t.Fatalf("POST external: %d %s", code, body)
	}
	eventually(t, 15*time.Second, "both nodes see a's external vote", func() bool {
		va, vb := votesOn(t, a, "192.0.2.10"), votesOn(t, b, "192.0.2.10")
		return va["ext-a"] == "down" && va["ext-b"] == "up" && vb["ext-a"] == "down" && vb["ext-b"] == "up"
	})
	// Outvoted: the answers keep fra over several gossip rounds.
	for hold := time.Now().Add(time.Second); time.Now().Before(hold); time.Sleep(50 * time.Millisecond) {
		if !fra(a) || !fra(b) {
			t.Fatal("one down vote of two took the address out")
		}
	}
	if _, st := call(t, "GET", a.Admin+"/api/v1/status", ""); !strings.Contains(st, `"reason": "external (api): deploy 4711"`) {
		t.Errorf("a's status does not give the external reason for its vote:\n%s", st)
	}
	code, body = call(t, "GET", a.Admin+"/api/v1/external", "")
	if code != 200 || !strings.Contains(body, `"address": "192.0.2.10"`) || !strings.Contains(body, `"reason": "deploy 4711"`) || !strings.Contains(body, `"source": "api"`) {
		t.Errorf("GET external: %d %s", code, body)
	}

	// The other monitor's file takes the whole site down: two of two.
	writeFile(t, extFile, "# from the deploy pipeline\nweb/fra down 10m maintenance\n")
	both("fra out of the answers on both nodes", false)

	// The API entry cleared: one vote of two again.
	if code, body := call(t, "DELETE", a.Admin+"/api/v1/external", `{"address":"192.0.2.10"}`); code != 200 {
		t.Fatalf("DELETE external: %d %s", code, body)
	}
	both("fra back after the API entry was cleared", true)

	// Alertmanager fires on a for the address: down again (a's API and b's
	// file); resolved: back.
	hook := func(status string) {
		t.Helper()
		payload, _ := json.Marshal(map[string]any{
			"version": "4", "status": status, "receiver": "gslbd", "groupKey": "{}:{}",
			"alerts": []map[string]any{{
				"status":      status,
				"labels":      map[string]string{"alertname": "FraBackendErrors", "gslbd_address": "192.0.2.10", "gslbd_ttl": "30m", "severity": "page"},
				"annotations": map[string]string{"summary": "5xx over 5%"},
				"startsAt":    time.Now().Format(time.RFC3339), "fingerprint": "abc",
			}},
		})
		code, body := call(t, "POST", a.Admin+"/api/v1/external/alertmanager", string(payload))
		if code != 200 {
			t.Fatalf("alertmanager webhook (%s): %d %s", status, code, body)
		}
	}
	hook("firing")
	both("fra out while the alert fires", false)
	if v := votesOn(t, a, "192.0.2.10"); v["ext-a"] != "down" {
		t.Errorf("a's vote while the alert fires: %v", v)
	}
	hook("resolved")
	both("fra back when the alert resolved", true)

	// The file emptied: b's vote follows its (none) check again.
	writeFile(t, extFile, "")
	eventually(t, 15*time.Second, "b's vote up again", func() bool { return votesOn(t, a, "192.0.2.10")["ext-b"] == "up" })

	// Bad calls.
	for _, tc := range []struct {
		method, body string
		code         int
	}{
		{"POST", `{"address":"192.0.2.99","state":"down","ttl":"1m"}`, 404},
		{"POST", `{"pool":"web","site":"nope","state":"down","ttl":"1m"}`, 404},
		{"POST", `{"address":"192.0.2.10","state":"down"}`, 400},
		{"POST", `{"address":"192.0.2.10","state":"sideways","ttl":"1m"}`, 400},
		{"POST", `{"address":"192.0.2.10","pool":"web","site":"fra","state":"down","ttl":"1m"}`, 400},
		{"DELETE", `{"address":"192.0.2.10"}`, 404},
	} {
		if code, body := call(t, tc.method, a.Admin+"/api/v1/external", tc.body); code != tc.code {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.body, code, body, tc.code)
		}
	}
	if !bytes.Contains([]byte(scrape(t, b)), []byte("gslbd_health_external_file_ok 1")) {
		t.Error("b's external file not flagged as read")
	}
	_ = os.Remove(extFile)
}

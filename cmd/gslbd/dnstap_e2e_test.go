package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestDnstapRotation runs a node with [dnstap] file, queries it, rotates
// the file as logrotate does (rename, then SIGHUP), queries again and
// stops it: dnstap-read reads each file to its end, the first with the
// first exchange, the second with the second, ECS and all.
func TestDnstapRotation(t *testing.T) {
	n := writeInproc(t, "tap", nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": e2ePools},
		"[dnstap]\nfile = \"log/dnstap.fstrm\"\nidentity = \"tap-node\"\n", nil)
	if err := os.MkdirAll(filepath.Join(n.dir, "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	n.Start(nil)
	path := filepath.Join(n.dir, "log/dnstap.fstrm")

	exchange(t, n.DNS, "www.gslb.test.", dns.TypeA, "127.0.1.0/24")
	eventually(t, 10*time.Second, "the first exchange is written", func() bool {
		return strings.Contains(scrape(t, n), "gslbd_dnstap_messages_total 2")
	})
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	n.Reload()
	eventually(t, 10*time.Second, "a new file after SIGHUP", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
	exchange(t, n.DNS, "static.gslb.test.", dns.TypeA, "")
	if err := n.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	for _, tc := range []struct {
		file string
		want []string
	}{
		{path + ".1", []string{"AQ 127.0.0.1:", "AR 127.0.0.1:", "www.gslb.test/IN/A"}},
		{path, []string{"AQ 127.0.0.1:", "AR 127.0.0.1:", "static.gslb.test/IN/A"}},
	} {
		out, err := exec.Command("dnstap-read", tc.file).CombinedOutput()
		if err != nil {
			t.Fatalf("dnstap-read %s: %v\n%s", tc.file, err, out)
		}
		if lines := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; lines != 2 {
			t.Errorf("%s: %d messages, want 2:\n%s", filepath.Base(tc.file), lines, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s lacks %q:\n%s", filepath.Base(tc.file), w, out)
			}
		}
	}
	out, err := exec.Command("dnstap-read", "-y", path+".1").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"identity: tap-node", "version: gslbd ", "CLIENT-SUBNET: 127.0.1.0/24/0"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("dnstap-read -y lacks %q:\n%s", w, out)
		}
	}
	// The query's ECS and the answer's, with its scope: twice in each message's dump.
	if c := strings.Count(string(out), "CLIENT-SUBNET: 127.0.1.0/24/"); c != 4 {
		t.Errorf("ECS option %d times in dnstap-read -y, want 4 (query and response, each shown twice):\n%s", c, out)
	}
}

func scrape(t *testing.T, n adminNode) string {
	t.Helper()
	resp, err := http.Get(n.adminURL() + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

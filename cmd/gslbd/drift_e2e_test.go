package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gslbd/admin"
)

// TestConfigDrift: two nodes of one mesh load different pool files. Each
// names the other as serving a different configuration everywhere an
// operator looks: /api/v1/status (config_divergent, the member's
// config_differs, which the status page renders: admin's
// TestStatusPageChromium), `gslbd status` and
// gslbd_mesh_config_differs{member}. Once the second node reloads the
// first one's files, all of it clears on both.
func TestConfigDrift(t *testing.T) {
	geo := fmt.Sprintf("[geo]\ncity_db = %q\n", geoDBPath(t))
	other := strings.Replace(e2ePools, "answers = 1\n", "answers = 2\n", 1)
	if other == e2ePools {
		t.Fatal("the pool file has no answers = 1 to change")
	}
	a := startInproc(t, "drifta", nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": e2ePools}, geo, nil, nil)
	b := startInproc(t, "driftb", nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": other}, geo, []string{a.n.mesh.Addr()}, nil)
	pairs := []struct {
		n    *inproc
		peer string
	}{{a, "driftb"}, {b, "drifta"}}

	// differs says what each view of n shows about peer, and whether all
	// of them agree with drift.
	differs := func(n *inproc, peer string, drift bool) (bool, string) {
		st := apiStatus(t, n)
		var m *admin.Member
		for i := range st.Members {
			if st.Members[i].Name == peer {
				m = &st.Members[i]
			}
		}
		if m == nil || m.State != "alive" || m.Config == "" || st.Config == "" {
			return false, fmt.Sprintf("%s not an alive member announcing a digest: %+v", peer, st.Members)
		}
		_, cli, _ := cliRun("status", "-admin", n.Admin)
		metric := fmt.Sprintf("gslbd_mesh_config_differs{member=%q} %d", peer, b2i(drift))
		got := fmt.Sprintf("api: config %s, member %+v, divergent %v; metric %q present %v; status:\n%s",
			st.Config, *m, st.ConfigDivergent, metric, strings.Contains(metrics(t, n.Admin), metric+"\n"), cli)
		ok := m.ConfigDiffers == drift && (m.Config != st.Config) == drift &&
			slices.Equal(st.ConfigDivergent, map[bool][]string{true: {peer}}[drift]) &&
			strings.Contains(metrics(t, n.Admin), metric+"\n") &&
			strings.Contains(cli, "WARNING: "+peer+" serve a configuration different from this node's ("+st.Config+")") == drift &&
			strings.Contains(cli, m.Config+" DIFFERS") == drift
		return ok, got
	}
	var last string // what the last failed look saw
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(last)
		}
	})
	check := func(drift bool, what string) {
		t.Helper()
		took := eventually(t, 15*time.Second, what, func() bool {
			for _, p := range pairs {
				ok, got := differs(p.n, p.peer, drift)
				if !ok {
					last = p.peer + " as seen by the other node: " + got
					return false
				}
			}
			return true
		})
		t.Logf("%s: %v", what, took.Round(time.Millisecond))
	}
	check(true, "each node names the other as serving a different configuration")

	writeFile(t, filepath.Join(b.dir, "pools/web.toml"), e2ePools)
	b.hup <- syscall.SIGHUP
	check(false, "after driftb reloaded drifta's files, no node differs")
}

func apiStatus(t *testing.T, n *inproc) admin.Status {
	t.Helper()
	resp, err := http.Get(n.Admin + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decode status: %v", err)
	}
	return st
}

func metrics(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

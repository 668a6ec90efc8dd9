package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// uaBackend is an HTTP backend that fails (503) the health checks of the
// monitors named in its failing set, identified by the User-Agent that
// every probe sends (gslbd-health/VERSION (node NAME)), and answers 200
// to everyone else.
type uaBackend struct {
	mu      sync.Mutex
	failing map[string]bool
	srv     *http.Server
}

func startUABackend(t *testing.T, addr string) *uaBackend {
	t.Helper()
	b := &uaBackend{failing: map[string]bool{}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		defer b.mu.Unlock()
		for name := range b.failing {
			if r.UserAgent() == fmt.Sprintf("gslbd-health/%s (node %s)", version, name) {
				http.Error(w, "failing for "+name, http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *uaBackend) failFor(names ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failing = map[string]bool{}
	for _, n := range names {
		b.failing[n] = true
	}
}

type meshStatus struct {
	Members []struct{ Name, State string }
	Pools   []struct {
		Sites []struct {
			Name      string
			Addresses []struct {
				Address string
				Verdict string
				Drained bool
				Votes   map[string]string
			}
		}
	}
}

func statusOf(t *testing.T, n adminNode) meshStatus {
	t.Helper()
	resp, err := http.Get(n.adminURL() + "/api/v1/status")
	if err != nil {
		t.Fatalf("status of %s: %v", n.adminURL(), err)
	}
	defer resp.Body.Close()
	var s meshStatus
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("status of %s: %v", n.adminURL(), err)
	}
	return s
}

// votesOn is what node n's status says the monitors voted on addr.
func votesOn(t *testing.T, n adminNode, addr string) map[string]string {
	for _, p := range statusOf(t, n).Pools {
		for _, s := range p.Sites {
			for _, a := range s.Addresses {
				if a.Address == addr {
					return a.Votes
				}
			}
		}
	}
	return nil
}

// TestMeshQuorumAcrossProcesses runs three `gslbd serve` processes joined
// on loopback that all probe two HTTP backends, and checks the quorum rule
// (more than half of the live monitors) through their DNS answers: one dissenting monitor changes nothing, two of three
// take the address down on every node, a kill -9 of a dissenter hands the
// verdict back to the survivors, and a drain set on one node reaches the
// answers of the others.
func TestMeshQuorumAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three gslbd processes")
	}
	port := freePort(t, "127.0.0.61", false)
	a := startUABackend(t, fmt.Sprintf("127.0.0.61:%d", port))
	startUABackend(t, fmt.Sprintf("127.0.0.62:%d", port))
	nodes := startNodes(t, 3, nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": probedPool("http", port, "127.0.0.61", "127.0.0.62")}, nil)
	answers := func(n *testNode) []string {
		return answerAddrs(exchange(t, n.DNS, "www.gslb.test.", dns.TypeA, ""))
	}
	all := func(ns []*testNode, want ...string) func() bool {
		return func() bool {
			for _, n := range ns {
				if !slices.Equal(answers(n), want) {
					return false
				}
			}
			return true
		}
	}
	both := []string{"127.0.0.61", "127.0.0.62"}
	took := eventually(t, 20*time.Second, "three members alive and both addresses answered everywhere", func() bool {
		for _, n := range nodes {
			alive := 0
			for _, m := range statusOf(t, n).Members {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return all(nodes, both...)()
	})
	t.Logf("mesh of 3 formed and serving in %v", took.Round(10*time.Millisecond))

	// One of three monitors fails the backend: the address stays in.
	a.failFor("ns1")
	eventually(t, 10*time.Second, "ns1's down vote seen by every node", func() bool {
		for _, n := range nodes {
			v := votesOn(t, n, "127.0.0.61")
			if v["ns1"] != "down" || v["ns2"] != "up" || v["ns3"] != "up" {
				return false
			}
		}
		return true
	})
	hold := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(hold) {
		if !all(nodes, both...)() {
			t.Fatal("one dissenting monitor of three took the address out of an answer")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Two of three: down on every node.
	start := time.Now()
	a.failFor("ns1", "ns2")
	eventually(t, 10*time.Second, "127.0.0.61 out of every node's answers", all(nodes, "127.0.0.62"))
	t.Logf("two monitors failing → address out of all 3 nodes' answers in %v (probes: interval 200ms × fall 2)", time.Since(start).Round(10*time.Millisecond))

	// A drain through ns1's admin API reaches the answers of ns2 and ns3.
	start = time.Now()
	drain(t, nodes[0], "POST", `{"pool":"web","site":"b"}`)
	// Site b drained and 127.0.0.61 down: no eligible address, and
	// when_all_down = answer-all answers every address not drained.
	eventually(t, 10*time.Second, "drain of site b in every node's answers", all(nodes, "127.0.0.61"))
	t.Logf("drain on ns1 → answers of all 3 nodes in %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	drain(t, nodes[0], "DELETE", `{"pool":"web","site":"b"}`)
	eventually(t, 10*time.Second, "undrain in every node's answers", all(nodes, "127.0.0.62"))
	t.Logf("undrain on ns1 → answers of all 3 nodes in %v", time.Since(start).Round(time.Millisecond))

	// kill -9 of a dissenting monitor: its vote goes when the mesh declares
	// it dead, leaving 1 down of 2, which is no majority.
	start = time.Now()
	nodes[1].Kill()
	rest := []*testNode{nodes[0], nodes[2]}
	eventually(t, 20*time.Second, "127.0.0.61 back in the survivors' answers", all(rest, both...))
	t.Logf("kill -9 of ns2 → verdict recomputed on ns1 and ns3 in %v (failure detection of profile local)", time.Since(start).Round(10*time.Millisecond))
	for _, n := range rest {
		if v := votesOn(t, n, "127.0.0.61"); len(v) != 2 || v["ns1"] != "down" || v["ns3"] != "up" {
			t.Fatalf("votes on %s after the kill: %v", n.Name, v)
		}
	}
}

func drain(t *testing.T, n *testNode, method, body string) {
	t.Helper()
	req, err := http.NewRequest(method, n.Admin+"/api/v1/drain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s drain on %s: %v", method, n.Name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s drain on %s: status %d", method, n.Name, resp.StatusCode)
	}
}

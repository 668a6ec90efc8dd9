package main

import (
	"bufio"
	"debug/elf"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var (
	partitionRounds    = flag.Int("partition.rounds", 1, "partition-and-heal rounds of TestPartitionAcrossProcesses (each cuts off another node)")
	partitionReconnect = flag.Duration("partition.reconnect", time.Second, "cluster.reconnect_interval of TestPartitionAcrossProcesses's nodes (the default of gslbd is 5s)")
)

// TestPartitionAcrossProcesses runs three `gslbd serve` processes on
// profile lan, built with the gslbdfault tag so that each drops its mesh
// traffic with the peers listed in its cut file, and cuts one node off at
// a time. Monitors ns1 and ns2 see 127.0.0.61 fail, ns3 sees it up. While
// cut, each side decides by the monitors it still sees: the lone node
// answers by its own vote (a tie of one down and one up keeps an address),
// the pair by theirs, and a drain set on the lone node stays on its side.
// When the cut ends, every node must see three alive members within 10 s,
// and then answer identically with identical verdicts, the drain included:
// memberlist alone never contacts a dead member again, the reconnect loop
// does. `-partition.rounds 3 -partition.reconnect 5s` measures the heal
// time with gslbd's default reconnect interval.
func TestPartitionAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three gslbd processes")
	}
	bin := faultBin.get(t)
	if hasFaultnet(t, gslbdBinary(t)) {
		t.Fatal("the release build links gslbd/cluster/faultnet: it could drop its own mesh traffic")
	}
	if !hasFaultnet(t, bin) {
		t.Fatal("the gslbdfault build has no gslbd/cluster/faultnet symbols: the check above proves nothing")
	}

	port := freePort(t, "127.0.0.61", false)
	flaky := startUABackend(t, fmt.Sprintf("127.0.0.61:%d", port))
	startUABackend(t, fmt.Sprintf("127.0.0.62:%d", port))
	startUABackend(t, fmt.Sprintf("127.0.0.63:%d", port))
	flaky.failFor("ns1", "ns2")
	files := nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": probedPool("http", port, "127.0.0.61", "127.0.0.62", "127.0.0.63")}
	nodes := startNodes(t, 3, files, func(n *testNode) {
		n.setCluster(t, fmt.Sprintf("profile = \"lan\"\nreconnect_interval = %q", partitionReconnect.String()))
		n.Bin = bin
		n.Env = []string{"GSLBD_FAULT_CUT_FILE=" + n.cutFile()}
	})

	// want is what the nodes of one side answer: 127.0.0.61 is down when
	// most of the side's monitors (ns1, ns2 fail it) say so.
	want := func(side []*testNode, drainedC bool) []string {
		down := 0
		for _, n := range side {
			if n.Name != "ns3" {
				down++
			}
		}
		out := []string{"127.0.0.62"}
		if 2*down <= len(side) {
			out = append(out, "127.0.0.61")
		}
		if !drainedC {
			out = append(out, "127.0.0.63")
		}
		slices.Sort(out)
		return out
	}
	answer := func(n *testNode) []string {
		return answerAddrs(exchange(t, n.DNS, "www.gslb.test.", dns.TypeA, ""))
	}
	sideAnswers := func(side []*testNode, want []string) bool {
		for _, n := range side {
			if !slices.Equal(answer(n), want) {
				return false
			}
		}
		return true
	}
	sees := func(n *testNode, alive int) bool { return aliveMembers(t, n) == alive }
	// agree: every node answers w and reports the same verdicts and drains.
	agree := func(w []string) bool {
		if !sideAnswers(nodes, w) {
			return false
		}
		first := verdicts(t, nodes[0])
		for _, n := range nodes[1:] {
			if v := verdicts(t, n); v != first {
				return false
			}
		}
		return true
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("%s: %d alive, answers %v, verdicts %s", n.Name, aliveMembers(t, n), answer(n), verdicts(t, n))
			}
		}
	})

	formed := eventually(t, 30*time.Second, "three members alive everywhere, verdicts agreed", func() bool {
		return sees(nodes[0], 3) && sees(nodes[1], 3) && sees(nodes[2], 3) && agree(want(nodes, false))
	})
	t.Logf("mesh of 3 on profile lan formed and agreed in %v", formed.Round(10*time.Millisecond))

	var heals, agreed []time.Duration
	for r := range *partitionRounds {
		lone := nodes[2-r%3]
		var rest []*testNode
		for _, n := range nodes {
			if n != lone {
				rest = append(rest, n)
			}
		}
		reconnectsBefore := meshReconnects(t, nodes)
		lone.cut(t, rest[0].Cluster, rest[1].Cluster)
		rest[0].cut(t, lone.Cluster)
		rest[1].cut(t, lone.Cluster)
		split := eventually(t, 30*time.Second, fmt.Sprintf("round %d: %s and %s, %s each see the other side dead and decide alone", r+1, rest[0].Name, rest[1].Name, lone.Name), func() bool {
			return sees(lone, 1) && sees(rest[0], 2) && sees(rest[1], 2) &&
				sideAnswers([]*testNode{lone}, want([]*testNode{lone}, false)) && sideAnswers(rest, want(rest, false))
		})
		// A drain made on the lone side stays there while the cut lasts.
		drain(t, lone, "POST", `{"pool":"web","site":"c"}`)
		eventually(t, 10*time.Second, "drain on the lone node in its answers", func() bool {
			return sideAnswers([]*testNode{lone}, want([]*testNode{lone}, true))
		})
		for hold := time.Now().Add(time.Second); time.Now().Before(hold); time.Sleep(100 * time.Millisecond) {
			if !sideAnswers(rest, want(rest, false)) {
				t.Fatalf("round %d: the drain on %s crossed the partition, or %s and %s changed their answers: %v", r+1, lone.Name, rest[0].Name, rest[1].Name, answer(rest[0]))
			}
		}

		for _, n := range nodes {
			n.cut(t)
		}
		heal := eventually(t, 30*time.Second, fmt.Sprintf("round %d: every node sees 3 alive members after the cut ended", r+1), func() bool {
			return sees(nodes[0], 3) && sees(nodes[1], 3) && sees(nodes[2], 3)
		})
		same := heal + eventually(t, 30*time.Second, fmt.Sprintf("round %d: identical verdicts and answers, drain included, after the heal", r+1), func() bool {
			return agree(want(nodes, true))
		})
		heals, agreed = append(heals, heal), append(agreed, same)
		t.Logf("round %d: %s cut off; sides split in %v; after the cut ended all saw 3 alive in %v, identical verdicts and answers in %v", r+1, lone.Name, split.Round(10*time.Millisecond), heal.Round(10*time.Millisecond), same.Round(10*time.Millisecond))
		if heal > 10*time.Second {
			t.Errorf("round %d: heal took %v, want at most 10 s on profile lan", r+1, heal)
		}
		if got := meshReconnects(t, nodes); got <= reconnectsBefore {
			t.Errorf("round %d: healed with gslbd_mesh_reconnects_total still %v: not the reconnect loop", r+1, got)
		}

		drain(t, rest[0], "DELETE", `{"pool":"web","site":"c"}`)
		eventually(t, 10*time.Second, "undrain everywhere", func() bool { return agree(want(nodes, false)) })
	}
	t.Logf("profile lan, reconnect_interval %v: heal (3 alive everywhere) %v, identical verdicts %v after the cut ended", *partitionReconnect, roundAll(heals), roundAll(agreed))
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

// setCluster replaces the node's `profile = "local"` line of [cluster]
// with keys.
func (n *testNode) setCluster(t *testing.T, keys string) {
	t.Helper()
	path := filepath.Join(n.Dir, "gslbd.toml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	if !strings.Contains(cfg, "profile = \"local\"\n") {
		t.Fatalf("%s has no profile line to replace", path)
	}
	writeFile(t, path, strings.Replace(cfg, "profile = \"local\"\n", keys+"\n", 1))
}

func (n *testNode) cutFile() string { return filepath.Join(n.Dir, "cut") }

// cut makes the node drop its mesh traffic with exactly these peers
// (cluster addresses); none heals it.
func (n *testNode) cut(t *testing.T, peers ...string) {
	writeFile(t, n.cutFile(), strings.Join(peers, "\n")+"\n")
}

func aliveMembers(t *testing.T, n *testNode) int {
	alive := 0
	for _, m := range statusOf(t, n).Members {
		if m.State == "alive" {
			alive++
		}
	}
	return alive
}

// verdicts renders a node's verdict and drain of every address.
func verdicts(t *testing.T, n *testNode) string {
	var b strings.Builder
	for _, p := range statusOf(t, n).Pools {
		for _, s := range p.Sites {
			for _, a := range s.Addresses {
				fmt.Fprintf(&b, "%s=%s,drained=%v ", a.Address, a.Verdict, a.Drained)
			}
		}
	}
	return b.String()
}

// meshReconnects sums gslbd_mesh_reconnects_total over the nodes.
func meshReconnects(t *testing.T, nodes []*testNode) float64 {
	var sum float64
	for _, n := range nodes {
		resp, err := http.Get(n.Admin + "/metrics")
		if err != nil {
			t.Fatalf("metrics of %s: %v", n.Name, err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "gslbd_mesh_reconnects_total "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("metrics of %s: %q: %v", n.Name, sc.Text(), err)
				}
				sum += f
			}
		}
		resp.Body.Close()
	}
	return sum
}

// hasFaultnet says whether the binary at path links the fault-injecting
// transport.
func hasFaultnet(t *testing.T, path string) bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatalf("symbols of %s: %v", path, err)
	}
	return slices.ContainsFunc(syms, func(s elf.Symbol) bool { return strings.HasPrefix(s.Name, "gslbd/cluster/faultnet.") })
}

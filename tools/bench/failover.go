package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// The failover pool: active/standby over two real local backends, a tcp
// check every 1 s that turns an address down after 2 failures (the issue's
// setup). Only gslbd is measured: gdnsd cannot probe more often than every
// 2 s with a timeout shorter than the interval.
var (
	foPrimary = netip.MustParseAddr("127.0.60.1")
	foStandby = netip.MustParseAddr("127.0.60.2")
	foName    = "fo." + zoneName + "."
)

const (
	foQueryEvery = 20 * time.Millisecond
	foQuiet      = 3 * time.Second  // clean answers this long after the last bad one end a trial
	foLimit      = 20 * time.Second // a trial longer than this failed
)

// failoverResult is the failover time of each trial: from stopping the
// primary's backend until the first clean answer after the last answer
// that still held the primary, the worst node of the mesh counting.
type failoverResult struct {
	nodes   int
	trials  []time.Duration
	perNode [][]time.Duration
	queries int // answers looked at
}

type foNode struct {
	name, dns, admin string
	proc             *proc
}

func failover(ctx context.Context, o options, work, gslbdBin, db string, n int, procs *procSet, bk *backends, log *slog.Logger) (*failoverResult, error) {
	port, err := freePort([]netip.Addr{foPrimary, foStandby})
	if err != nil {
		return nil, err
	}
	for _, a := range []netip.Addr{foPrimary, foStandby} {
		if err := bk.start(a, port); err != nil {
			return nil, err
		}
	}
	pool := poolData{Name: "fo", Policy: "failover", Answers: 1, TTL: 5, Port: port, Sites: []poolSite{
		{Name: "primary", Addrs: []string{foPrimary.String()}},
		{Name: "standby", Addrs: []string{foStandby.String()}},
	}}
	nodes := make([]*foNode, n)
	clusters := make([]string, n)
	for i := range n {
		nodes[i] = &foNode{name: "n" + strconv.Itoa(i+1)}
		dp, err1 := freeDNSPort("127.0.0.1")
		cp, err2 := freeDNSPort("127.0.0.1")
		ap, err3 := freeDNSPort("127.0.0.1")
		if err := firstErr(err1, err2, err3); err != nil {
			return nil, err
		}
		nodes[i].dns = "127.0.0.1:" + strconv.Itoa(dp)
		nodes[i].admin = "127.0.0.1:" + strconv.Itoa(ap)
		clusters[i] = "127.0.0.1:" + strconv.Itoa(cp)
	}
	role := fmt.Sprintf("failover, %d node(s)", n)
	for i, nd := range nodes {
		dir := filepath.Join(work, fmt.Sprintf("failover%d", n), nd.name)
		var join []string
		for j, c := range clusters {
			if j != i {
				join = append(join, c)
			}
		}
		node := gslbdNode{Role: role, Name: nd.name, DNS: nd.dns, Cluster: clusters[i], Admin: nd.admin, Join: join}
		if err := writeGslbd(dir, node, zoneData{Zone: zoneName, TTL: poolTTL, Pools: []zonePool{{"fo", "fo"}}},
			poolsData{Role: role, Pools: []poolData{pool}}); err != nil {
			return nil, err
		}
		nd.proc, err = procs.start(nd.name, "", dir, filepath.Join(dir, "gslbd.log"),
			gslbdBin, "serve", "-config", filepath.Join(dir, "gslbd.toml"))
		if err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, nd := range nodes {
			procs.stop(nd.proc)
		}
	}()
	for _, nd := range nodes {
		if err := waitReady(ctx, &server{name: nd.name, addr: nd.dns, proc: nd.proc}, 60*time.Second); err != nil {
			return nil, err
		}
	}
	if err := waitMembers(ctx, nodes, 30*time.Second); err != nil {
		return nil, err
	}
	log.Info("failover setup ready", "nodes", n)

	res := &failoverResult{nodes: n, perNode: make([][]time.Duration, n)}
	for trial := range o.trials {
		if err := bk.start(foPrimary, port); err != nil {
			return nil, err
		}
		if err := waitAnswer(ctx, nodes, foPrimary, 30*time.Second); err != nil {
			return nil, fmt.Errorf("trial %d: primary did not come back: %w", trial+1, err)
		}
		worst, per, count, err := failoverTrial(ctx, nodes, func() { bk.stop(foPrimary, port) })
		if err != nil {
			return nil, fmt.Errorf("failover trial %d on %d node(s): %w", trial+1, n, err)
		}
		res.trials = append(res.trials, worst)
		res.queries += count
		for i, d := range per {
			res.perNode[i] = append(res.perNode[i], d)
		}
		log.Info("failover trial", "nodes", n, "trial", trial+1, "time", worst.Round(time.Millisecond), "per_node", per)
	}
	return res, nil
}

// failoverTrial queries every node every 20 ms, calls kill after a short
// baseline, and measures per node when the dead address stopped appearing.
func failoverTrial(ctx context.Context, nodes []*foNode, kill func()) (time.Duration, []time.Duration, int, error) {
	type obs struct {
		mu        sync.Mutex
		lastBad   time.Time
		firstGood time.Time // first clean answer after lastBad
		count     int
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	state := make([]*obs, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		state[i] = &obs{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(foQueryEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				r, err := query(ctx, nd.dns, foName, dns.TypeA, netip.Prefix{}, 200*time.Millisecond)
				now := time.Now()
				if err != nil || r.Rcode != dns.RcodeSuccess {
					continue
				}
				o := state[i]
				o.mu.Lock()
				o.count++
				if slices.Contains(answerAddrs(r), foPrimary) {
					o.lastBad, o.firstGood = now, time.Time{}
				} else if o.firstGood.IsZero() {
					o.firstGood = now
				}
				o.mu.Unlock()
			}
		}()
	}
	defer wg.Wait()

	time.Sleep(500 * time.Millisecond) // baseline: answers hold the primary
	t0 := time.Now()
	kill()
	deadline := t0.Add(foLimit)
	for {
		select {
		case <-ctx.Done():
			return 0, nil, 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		done := true
		for _, o := range state {
			o.mu.Lock()
			if o.firstGood.IsZero() || time.Since(o.lastBad) < foQuiet {
				done = false
			}
			o.mu.Unlock()
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			return 0, nil, 0, fmt.Errorf("answers still held the dead address %s %s after stopping its backend", foPrimary, foLimit)
		}
	}
	cancel()
	var worst time.Duration
	per := make([]time.Duration, len(nodes))
	count := 0
	for i, o := range state {
		o.mu.Lock()
		per[i] = o.firstGood.Sub(t0).Round(time.Millisecond)
		count += o.count
		o.mu.Unlock()
		worst = max(worst, per[i])
	}
	return worst, per, count, nil
}

// waitAnswer waits until every node answers with want.
func waitAnswer(ctx context.Context, nodes []*foNode, want netip.Addr, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ok := true
		for _, nd := range nodes {
			r, err := query(ctx, nd.dns, foName, dns.TypeA, netip.Prefix{}, 200*time.Millisecond)
			if err != nil || !slices.Contains(answerAddrs(r), want) {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes do not answer %s after %s", want, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitMembers waits until every node's admin API lists all nodes as
// alive members, so the trials measure a formed mesh.
func waitMembers(ctx context.Context, nodes []*foNode, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: time.Second}
	var last string
	for {
		ok := true
		for _, nd := range nodes {
			n, err := aliveMembers(ctx, c, nd.admin)
			if err != nil || n < len(nodes) {
				ok = false
				last = fmt.Sprintf("%s sees %d alive members (err %v)", nd.name, n, err)
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mesh did not form in %s: %s", limit, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func aliveMembers(ctx context.Context, c *http.Client, admin string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/api/v1/status", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Members []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("decode status from %s: %w", admin, err)
	}
	n := 0
	for _, m := range st.Members {
		if m.State == "alive" {
			n++
		}
	}
	return n, nil
}

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// scopeStats compares the ECS answers of both servers for one family.
type scopeStats struct {
	family   string
	n        int
	equal    int // same scope prefix
	wider    int // gslbd's scope is shorter (wider) than gdnsd's
	narrower int // gslbd's scope is longer (narrower)
	// Scopes longer than the source prefix: the database holds finer
	// networks there, and the answer is only good for part of the source
	// prefix (RFC 7871 §7.2.1). Both servers may do it; counted per server.
	finer    [2]int
	sameSite int // both answered from the same site
	sumG     int // sums of the scopes, for the mean
	sumD     int
	examples []string // a few disagreements, for the report
	noScopeG int      // responses without ECS
	noScopeD int
	// Scopes that claim too much: another client network inside the
	// scope was answered from another site (probed with scopeProbes
	// random networks inside each scope wider than the source prefix).
	tooWide [2]int
	probed  [2]int
}

const scopeProbes = 4

// compareScopes asks both servers for the geo name's A record with ECS for
// n IPv4 client networks (and n/5 IPv6 ones), and compares the scope
// prefixes and the chosen site.
func compareScopes(ctx context.Context, p *pair, nets *clientNets, n int) ([]scopeStats, error) {
	var out []scopeStats
	for _, fam := range []struct {
		name string
		list []netip.Prefix
		n    int
	}{{"IPv4 /24", nets.v4, n}, {"IPv6 /56", nets.v6, n / 5}} {
		list := fam.list[:min(fam.n, len(fam.list))]
		if len(list) == 0 {
			continue
		}
		st := scopeStats{family: fam.name, n: len(list)}
		type res struct {
			scope [2]int
			site  [2]string
		}
		results := make([]res, len(list))
		errs := make([]error, len(list))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i, cn := range list {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				for j, s := range []*server{p.gslbd, p.gdnsd} {
					var r *dns.Msg
					var err error
					for range 3 {
						if r, err = query(ctx, s.addr, geoName, dns.TypeA, cn, time.Second); err == nil {
							break
						}
					}
					if err != nil {
						errs[i] = fmt.Errorf("scope query for %s on %s: %w", cn, s.name, err)
						return
					}
					results[i].scope[j] = responseScope(r)
					results[i].site[j] = siteNames(r)
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		// Check each claimed scope: a few other client networks inside it
		// must get the same site from the same server.
		rng := rand.New(rand.NewPCG(7, 11))
		probes := make([][2][]netip.Prefix, len(list))
		for i, cn := range list {
			for j := range 2 {
				sc := results[i].scope[j]
				if sc < 0 || sc >= cn.Bits() {
					continue
				}
				outer := netip.PrefixFrom(cn.Addr(), sc).Masked()
				for range scopeProbes {
					probes[i][j] = append(probes[i][j], clientNet(outer, rng))
				}
			}
		}
		var mu sync.Mutex
		for i := range list {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				for j, s := range []*server{p.gslbd, p.gdnsd} {
					if len(probes[i][j]) == 0 {
						continue
					}
					bad := false
					for _, pn := range probes[i][j] {
						r, err := query(ctx, s.addr, geoName, dns.TypeA, pn, time.Second)
						if err != nil {
							continue
						}
						if siteNames(r) != results[i].site[j] {
							bad = true
							mu.Lock()
							if len(st.examples) < 10 {
								st.examples = append(st.examples, fmt.Sprintf("%s answered %s for %s with scope /%d, but %s for %s inside it",
									s.name, results[i].site[j], list[i], results[i].scope[j], siteNames(r), pn))
							}
							mu.Unlock()
						}
					}
					mu.Lock()
					st.probed[j]++
					if bad {
						st.tooWide[j]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for i, r := range results {
			g, d := r.scope[0], r.scope[1]
			if g < 0 {
				st.noScopeG++
			}
			if d < 0 {
				st.noScopeD++
			}
			st.sumG += g
			st.sumD += d
			for j, sc := range [2]int{g, d} {
				if sc > list[i].Bits() {
					st.finer[j]++
				}
			}
			switch {
			case g == d:
				st.equal++
			case g < d:
				st.wider++
			default:
				st.narrower++
			}
			if r.site[0] == r.site[1] {
				st.sameSite++
			}
			if (g != d || r.site[0] != r.site[1]) && len(st.examples) < 12 {
				st.examples = append(st.examples, fmt.Sprintf("%s: gslbd /%d %s, gdnsd /%d %s", list[i], g, r.site[0], d, r.site[1]))
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// siteNames names the sites of r's answer addresses ("fra", "fra+iad").
func siteNames(r *dns.Msg) string {
	var names []string
	for _, a := range answerAddrs(r) {
		names = append(names, siteOf(a))
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), "+")
}

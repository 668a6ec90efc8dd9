package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

type report struct {
	machine   machine
	opts      options
	netsTotal int
	mix       []mixEntry
	// servers are gslbd and gdnsd of the comparison, with their start
	// times and resident sets.
	servers [2]*server
	perf    []perfRun
	signed  []perfRun // gslbd unsigned (plain mix) and gslbd-signed (mix with DO)
	// dnstap: gslbd without and with dnstap (queries and responses to a
	// file), interleaved; the counters of the tapped node after its runs.
	dnstap        []perfRun
	dnstapMetrics string
	dnstapBytes   int64
	// compare: gslbd (-gslbd) and gslbd-compare (-compare), interleaved.
	compare   []perfRun
	latency   []perfRun
	scope     []scopeStats
	failover1 *failoverResult
	failover3 *failoverResult
	elapsed   time.Duration
}

func parseSkip(s string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			m[f] = true
		}
	}
	return m
}

// agg sums the runs of one server.
type agg struct {
	runs               int
	qps                []float64
	completed, lost    int64
	sent               int64
	lat                time.Duration // mean of the runs' averages
	serverCPU, loadCPU time.Duration
	wall               time.Duration
}

func aggregate(runs []perfRun, server string) agg {
	var a agg
	for _, r := range runs {
		if r.server != server {
			continue
		}
		a.runs++
		a.qps = append(a.qps, r.qps)
		a.completed += r.completed
		a.sent += r.sent
		a.lost += r.lost
		a.lat += r.avgLat
		a.serverCPU += r.serverCPU
		a.loadCPU += r.loadCPU
		a.wall += r.wall
	}
	if a.runs > 0 {
		a.lat /= time.Duration(a.runs)
	}
	return a
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// print writes the results as Markdown, ready for docs/performance.md.
func (r *report) print(w io.Writer) {
	m := r.machine
	fmt.Fprintf(w, "\n### gslbd vs gdnsd — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- machine: %d CPUs (nproc), %s at %s MHz, Linux %s; load average at start %s, at end %s (the harness's own server and dnsperf add about 2 while they run)\n",
		m.cpus, m.cpuModel, m.cpuMHz, m.kernel, m.loadStart, loadAvg())
	fmt.Fprintf(w, "- %s; %s; %s; %s\n", m.gslbdVer, m.gdnsdVer, m.perfVer, m.goVer)
	fmt.Fprintf(w, "- GeoIP database: %s (%d located networks)\n", m.geoNote, r.netsTotal)
	if r.opts.serverCPU != "" && r.opts.serverCPU != "-1" && r.opts.loadCPU >= 0 {
		fmt.Fprintf(w, "- pinning: servers on CPU %s, dnsperf on CPU %d (taskset); gdnsd udp_threads = %d\n", r.opts.serverCPU, r.opts.loadCPU, r.opts.udpThreads)
	} else {
		fmt.Fprintf(w, "- pinning: none\n")
	}
	if len(r.mix) > 0 {
		fmt.Fprintf(w, "- query mix (%d queries, all with EDNS): %s\n", r.opts.lines, mixString(r.mix))
	}

	if g, d := r.servers[0], r.servers[1]; g != nil && d != nil {
		fmt.Fprintf(w, "\n#### Start and memory (each server started alone, pinned as below)\n\n")
		fmt.Fprintf(w, "| | gslbd | gdnsd | gslbd/gdnsd |\n|---|---:|---:|---:|\n")
		fmt.Fprintf(w, "| start until first answer, database loaded (s) | %.2f | %.2f | %s |\n",
			g.startup.Seconds(), d.startup.Seconds(), ratio(g.startup.Seconds(), d.startup.Seconds()))
		fmt.Fprintf(w, "| CPU used until first answer (s) | %.2f | %.2f | %s |\n",
			g.startCPU.Seconds(), d.startCPU.Seconds(), ratio(g.startCPU.Seconds(), d.startCPU.Seconds()))
		fmt.Fprintf(w, "| RSS after load, %s after the first answer (MiB) | %.0f | %.0f | %s |\n",
			settle, mib(g.loaded.rss), mib(d.loaded.rss), ratio(mib(g.loaded.rss), mib(d.loaded.rss)))
		if g.after.rss > 0 && d.after.rss > 0 {
			fmt.Fprintf(w, "| RSS after every phase (MiB) | %.0f | %.0f | %s |\n",
				mib(g.after.rss), mib(d.after.rss), ratio(mib(g.after.rss), mib(d.after.rss)))
			gp, dp := max(g.loaded.peak, g.after.peak), max(d.loaded.peak, d.after.peak)
			fmt.Fprintf(w, "| peak RSS, VmHWM (MiB) | %.0f | %.0f | %s |\n",
				mib(gp), mib(dp), ratio(mib(gp), mib(dp)))
		} else {
			fmt.Fprintf(w, "| peak RSS until then, VmHWM (MiB) | %.0f | %.0f | %s |\n",
				mib(g.loaded.peak), mib(d.loaded.peak), ratio(mib(g.loaded.peak), mib(d.loaded.peak)))
		}
		for _, r := range []struct {
			what string
			p    reloadPeak
		}{{"zones and pools, same database", g.reloadSame}, {"database file changed, read anew", g.reloadChanged}} {
			if r.p.before > 0 {
				fmt.Fprintf(w, "| reload (SIGHUP), %s: peak RSS (MiB) / RSS before / CPU (s) | %.0f = %.2f × %.0f, %.2f s | | |\n",
					r.what, mib(r.p.peak), r.p.ratio(), mib(r.p.before), r.p.cpu.Seconds())
			}
		}
	}

	if len(r.perf) > 0 {
		g, d := aggregate(r.perf, "gslbd"), aggregate(r.perf, "gdnsd")
		fmt.Fprintf(w, "\n#### Throughput (%d × %s per server, interleaved; dnsperf -c %d -q %d -T 1)\n\n",
			g.runs, r.opts.duration, r.opts.clients, r.opts.outstand)
		fmt.Fprintf(w, "| | gslbd | gdnsd | gslbd/gdnsd |\n|---|---:|---:|---:|\n")
		gq, dq := mean(g.qps), mean(d.qps)
		fmt.Fprintf(w, "| QPS (mean of runs) | %.0f | %.0f | %s |\n", gq, dq, ratio(gq, dq))
		fmt.Fprintf(w, "| QPS per run | %s | %s | |\n", floats(g.qps), floats(d.qps))
		fmt.Fprintf(w, "| avg latency, saturated (ms) | %.3f | %.3f | %s |\n", ms(g.lat), ms(d.lat), ratio(ms(g.lat), ms(d.lat)))
		gp, dp := perSec(g.completed, g.serverCPU), perSec(d.completed, d.serverCPU)
		fmt.Fprintf(w, "| server CPU per run (s) | %.2f | %.2f | %s |\n", g.serverCPU.Seconds()/float64(g.runs), d.serverCPU.Seconds()/float64(d.runs), ratio(g.serverCPU.Seconds(), d.serverCPU.Seconds()))
		fmt.Fprintf(w, "| queries per server CPU-second | %.0f | %.0f | %s |\n", gp, dp, ratio(gp, dp))
		fmt.Fprintf(w, "| server CPU s / queries per CPU-s, per run | %s | %s | |\n", cpuRuns(r.perf, "gslbd"), cpuRuns(r.perf, "gdnsd"))
		fmt.Fprintf(w, "| dnsperf CPU per run (s) | %.2f | %.2f | |\n", g.loadCPU.Seconds()/float64(g.runs), d.loadCPU.Seconds()/float64(d.runs))
		fmt.Fprintf(w, "| queries lost | %d of %d | %d of %d | |\n", g.lost, g.sent, d.lost, d.sent)
	}
	if len(r.signed) > 0 {
		u, sg := aggregate(r.signed, "gslbd"), aggregate(r.signed, "gslbd-signed")
		fmt.Fprintf(w, "\n#### DNSSEC: the same mix with DO against the zone signed with an ECDSA P-256 key (%d × %s per server, interleaved)\n\n",
			u.runs, r.opts.duration)
		fmt.Fprintf(w, "| | gslbd unsigned, no DO | gslbd signed, DO | signed/unsigned |\n|---|---:|---:|---:|\n")
		abRows(w, u, sg)
		fmt.Fprintf(w, "| avg latency, saturated (ms) | %.3f | %.3f | |\n", ms(u.lat), ms(sg.lat))
		fmt.Fprintf(w, "| queries lost | %d of %d | %d of %d | |\n", u.lost, u.sent, sg.lost, sg.sent)
	}
	if len(r.dnstap) > 0 {
		off, on := aggregate(r.dnstap, "gslbd"), aggregate(r.dnstap, "gslbd+dnstap")
		fmt.Fprintf(w, "\n#### dnstap on vs off (%d × %s per server, interleaved ABBA, same pinning and query mix)\n\n", off.runs, r.opts.duration)
		fmt.Fprintf(w, "Two gslbd processes with the same configuration, one with `[dnstap] file` (queries and responses), measured in alternation.\n\n")
		fmt.Fprintf(w, "| | dnstap off | dnstap on | on/off |\n|---|---:|---:|---:|\n")
		abRows(w, off, on)
		fmt.Fprintf(w, "| avg latency, saturated (ms) | %.3f | %.3f | %s |\n", ms(off.lat), ms(on.lat), ratio(ms(on.lat), ms(off.lat)))
		fmt.Fprintf(w, "| queries lost | %d of %d | %d of %d | |\n", off.lost, off.sent, on.lost, on.sent)
		fmt.Fprintf(w, "\ndnstap node after its runs (warm-up included): %s; file %.1f MiB.\n", r.dnstapMetrics, float64(r.dnstapBytes)/(1<<20))
	}
	if len(r.compare) > 0 {
		a, b := aggregate(r.compare, "gslbd"), aggregate(r.compare, "gslbd-compare")
		fmt.Fprintf(w, "\n#### gslbd (%s) vs gslbd-compare (%s) (%d × %s per server, interleaved ABBA, same pinning and query mix)\n\n",
			r.opts.gslbd, r.opts.compare, a.runs, r.opts.duration)
		fmt.Fprintf(w, "| | gslbd | gslbd-compare | compare/gslbd |\n|---|---:|---:|---:|\n")
		abRows(w, a, b)
		fmt.Fprintf(w, "| server CPU s / queries per CPU-s, per run | %s | %s | |\n", cpuRuns(r.compare, "gslbd"), cpuRuns(r.compare, "gslbd-compare"))
		fmt.Fprintf(w, "| queries lost | %d of %d | %d of %d | |\n", a.lost, a.sent, b.lost, b.sent)
	}
	if len(r.latency) > 0 {
		fmt.Fprintf(w, "\n#### Latency at a fixed %d QPS (%d s per run, 2 runs each, every query timed with dnsperf -v)\n\n", r.opts.latRate, r.opts.latSecs)
		fmt.Fprintf(w, "| | gslbd | gdnsd | gslbd/gdnsd |\n|---|---:|---:|---:|\n")
		var lg, ld []time.Duration
		var cg, cd perfRun
		for _, run := range r.latency {
			if run.server == "gslbd" {
				lg = append(lg, run.lats...)
				cg.completed += run.completed
				cg.serverCPU += run.serverCPU
			} else {
				ld = append(ld, run.lats...)
				cd.completed += run.completed
				cd.serverCPU += run.serverCPU
			}
		}
		for _, p := range []float64{50, 90, 99, 99.9} {
			a, b := pct(lg, p), pct(ld, p)
			fmt.Fprintf(w, "| p%v (ms) | %.3f | %.3f | %s |\n", p, ms(a), ms(b), ratio(ms(a), ms(b)))
		}
		a, b := lg[len(lg)-1], ld[len(ld)-1]
		fmt.Fprintf(w, "| max (ms) | %.3f | %.3f | |\n", ms(a), ms(b))
		fmt.Fprintf(w, "| server CPU share at this rate | %.0f%% | %.0f%% | %s |\n",
			100*cg.serverCPU.Seconds()/float64(2*r.opts.latSecs), 100*cd.serverCPU.Seconds()/float64(2*r.opts.latSecs),
			ratio(cg.serverCPU.Seconds(), cd.serverCPU.Seconds()))
	}
	if len(r.scope) > 0 {
		fmt.Fprintf(w, "\n#### ECS scopes (geo A, one query per client network and server)\n\n")
		fmt.Fprintf(w, "| client networks | n | same scope | gslbd wider | gslbd narrower | mean scope gslbd | mean scope gdnsd | longer than the source gslbd | longer than the source gdnsd | same site | scopes too wide gslbd | scopes too wide gdnsd |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range r.scope {
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | /%.1f | /%.1f | %s | %s | %s | %d of %d | %d of %d |\n", s.family, s.n,
				share(s.equal, s.n), share(s.wider, s.n), share(s.narrower, s.n),
				float64(s.sumG)/float64(s.n), float64(s.sumD)/float64(s.n),
				share(s.finer[0], s.n), share(s.finer[1], s.n), share(s.sameSite, s.n),
				s.tooWide[0], s.probed[0], s.tooWide[1], s.probed[1])
		}
		fmt.Fprintf(w, "\n\"Longer than the source\": the scope is longer than the query's source prefix, because the database is finer there and the answer holds for only part of the client network (RFC 7871 §7.2.1); both servers do it. \"Too wide\": of the responses whose scope is shorter than the source prefix, how many had another client network inside the scope (%d random ones probed each) answered from another site by the same server.\n", scopeProbes)
		for _, s := range r.scope {
			if s.noScopeG+s.noScopeD > 0 {
				fmt.Fprintf(w, "\n%s: responses without ECS: gslbd %d, gdnsd %d\n", s.family, s.noScopeG, s.noScopeD)
			}
			if len(s.examples) > 0 {
				fmt.Fprintf(w, "\n%s, examples of differences:\n", s.family)
				for _, e := range s.examples {
					fmt.Fprintf(w, "- %s\n", e)
				}
			}
		}
	}
	if r.failover1 != nil || r.failover3 != nil {
		fmt.Fprintf(w, "\n#### Failover (gslbd; tcp check interval 1 s, fall 2; queries every %s; time from stopping the backend to the first answer without it, after which none holds it)\n\n", foQueryEvery)
		fmt.Fprintf(w, "| setup | trials | min | median | max |\n|---|---:|---:|---:|---:|\n")
		for _, f := range []*failoverResult{r.failover1, r.failover3} {
			if f == nil || len(f.trials) == 0 {
				continue
			}
			t := slices.Clone(f.trials)
			slices.Sort(t)
			what := "one node"
			if f.nodes > 1 {
				what = fmt.Sprintf("%d-node mesh (profile local; worst node)", f.nodes)
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", what, len(t), sec(t[0]), sec(t[len(t)/2]), sec(t[len(t)-1]))
		}
		if f := r.failover3; f != nil && len(f.trials) > 0 {
			fmt.Fprintf(w, "\nper node (mesh): ")
			for i, p := range f.perNode {
				fmt.Fprintf(w, "n%d %v; ", i+1, p)
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintf(w, "\n(bench ran %s)\n", r.elapsed.Round(time.Second))
}

// abRows writes the rows every two-gslbd table shares: QPS, the runs'
// QPS and queries per server CPU-second, each with b over a.
func abRows(w io.Writer, a, b agg) {
	aq, bq := mean(a.qps), mean(b.qps)
	fmt.Fprintf(w, "| QPS (mean of runs) | %.0f | %.0f | %s |\n", aq, bq, ratio(bq, aq))
	fmt.Fprintf(w, "| QPS per run | %s | %s | |\n", floats(a.qps), floats(b.qps))
	ap, bp := perSec(a.completed, a.serverCPU), perSec(b.completed, b.serverCPU)
	fmt.Fprintf(w, "| queries per server CPU-second | %.0f | %.0f | %s |\n", ap, bp, ratio(bp, ap))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func share(k, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%d (%.0f%%)", k, 100*float64(k)/float64(n))
}

func floats(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.0f", x))
	}
	return strings.Join(s, ", ")
}

func cpuRuns(runs []perfRun, server string) string {
	var s []string
	for _, r := range runs {
		if r.server == server {
			s = append(s, fmt.Sprintf("%.2f / %.0f", r.serverCPU.Seconds(), r.perCPU()))
		}
	}
	return strings.Join(s, ", ")
}

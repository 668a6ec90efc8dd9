package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"gslbd/dnssec"
)

// signedThroughput starts a second gslbd serving the same zone signed
// with an ECDSA P-256 key (a CSK) and runs the query mix with DO set
// against it, interleaved with the plain mix against the unsigned gslbd
// of p, like throughput. The first pass of the mix signs each distinct
// RRset (the NXDOMAIN names are distinct); the warm-up takes it, so the
// rounds measure the steady state of cached signatures.
func signedThroughput(ctx context.Context, o options, work, gslbdBin, db string, procs *procSet, p *pair, qfile, qfileDO string, log *slog.Logger) ([]perfRun, error) {
	dir := filepath.Join(work, "gslbd-signed")
	node, err := benchNode("signed throughput", "bench-signed", db, false)
	if err != nil {
		return nil, err
	}
	key, err := dnssec.Generate(zoneName, dnssec.ECDSAP256SHA256, true, 300, dnssec.Timing{})
	if err != nil {
		return nil, err
	}
	zone := zoneData{Zone: zoneName, TTL: poolTTL, Pools: []zonePool{{"geo", "geo"}}, KeyFile: key.BaseName() + ".key"}
	if err := writeGslbd(dir, node, zone, poolsData{Role: "signed throughput", Pools: []poolData{benchPool(p.checkPort)}}); err != nil {
		return nil, err
	}
	if err := key.Write(filepath.Join(dir, "zones")); err != nil {
		return nil, err
	}
	signed := &server{name: "gslbd-signed", addr: node.DNS}
	signed.proc, err = procs.start("gslbd-signed", o.serverCPU, dir, filepath.Join(work, "gslbd-signed.log"),
		gslbdBin, "serve", "-config", filepath.Join(dir, "gslbd.toml"))
	if err != nil {
		return nil, err
	}
	defer procs.stop(signed.proc)
	if err := waitReady(ctx, signed, 120*time.Second); err != nil {
		return nil, err
	}

	secs := max(1, int(o.duration.Seconds()))
	runs := []struct {
		s     *server
		qfile string
	}{{p.gslbd, qfile}, {signed, qfileDO}}
	for _, x := range runs {
		if _, err := runDnsperf(ctx, o, x.s, dnsperfArgs(o, x.s, x.qfile, 3), false); err != nil {
			return nil, fmt.Errorf("signed warm-up: %w", err)
		}
	}
	var out []perfRun
	for round := range o.rounds {
		order := runs
		if round%2 == 1 {
			order = []struct {
				s     *server
				qfile string
			}{runs[1], runs[0]}
		}
		for _, x := range order {
			r, err := runDnsperf(ctx, o, x.s, dnsperfArgs(o, x.s, x.qfile, secs), false)
			if err != nil {
				return nil, err
			}
			log.Info("dnsperf run (dnssec)", "round", round+1, "server", x.s.name, "qps", int(r.qps),
				"server_cpu", r.serverCPU, "per_cpu_s", int(r.perCPU()), "lost", r.lost, "rcodes", r.rcodes)
			out = append(out, r)
		}
	}
	return out, nil
}

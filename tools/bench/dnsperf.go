package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// perfRun is one dnsperf run against one server.
type perfRun struct {
	server    string
	sent      int64
	completed int64
	lost      int64
	qps       float64
	avgLat    time.Duration
	wall      time.Duration // dnsperf's measured run time
	serverCPU time.Duration // server user+system CPU during the run
	loadCPU   time.Duration // dnsperf's own user+system CPU
	rcodes    string
	lats      []time.Duration // per-query latencies (verbose runs only)
}

// cpuPerQuery is queries answered per server CPU-second.
func (r perfRun) perCPU() float64 {
	if r.serverCPU <= 0 {
		return 0
	}
	return float64(r.completed) / r.serverCPU.Seconds()
}

// dnsperfArgs are the common arguments: binary query file, one thread (it
// has one core), -c sockets so the servers' SO_REUSEPORT sockets all get
// traffic, -q queries in flight to keep the server busy.
func dnsperfArgs(o options, s *server, qfile string, secs int) []string {
	host, port, _ := net.SplitHostPort(s.addr)
	return []string{"dnsperf", "-B", "-d", qfile, "-s", host, "-p", port,
		"-l", strconv.Itoa(secs), "-c", strconv.Itoa(o.clients), "-T", "1",
		"-q", strconv.Itoa(o.outstand), "-t", "2"}
}

// runDnsperf runs dnsperf (pinned to the load CPU) against s and measures
// the server's CPU time around it. verbose parses every query's latency
// from dnsperf -v.
func runDnsperf(ctx context.Context, o options, s *server, args []string, verbose bool) (perfRun, error) {
	if o.loadCPU >= 0 {
		args = append([]string{"taskset", "-c", strconv.Itoa(o.loadCPU)}, args...)
	}
	if verbose {
		args = append(args, "-v")
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return perfRun{}, err
	}
	pid := s.proc.cmd.Process.Pid
	if dead, why := s.proc.exited(); dead {
		return perfRun{}, fmt.Errorf("server died before the run: %s", why)
	}
	cpu0, err := cpuTime(pid)
	if err != nil {
		return perfRun{}, err
	}
	if err := cmd.Start(); err != nil {
		return perfRun{}, fmt.Errorf("start dnsperf: %w", err)
	}
	var summary bytes.Buffer
	var lats []time.Duration
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if verbose {
			if d, ok := parseVerbose(line); ok {
				lats = append(lats, d)
				continue
			}
		}
		summary.Write(line)
		summary.WriteByte('\n')
	}
	_, _ = io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	if dead, why := s.proc.exited(); dead {
		return perfRun{}, fmt.Errorf("server died under load: %s", why)
	}
	cpu1, err := cpuTime(pid)
	if err != nil {
		return perfRun{}, err
	}
	if werr != nil {
		return perfRun{}, fmt.Errorf("dnsperf against %s: %w: %s %s", s.name, werr, stderr.String(), summary.String())
	}
	r, err := parseSummary(summary.String())
	if err != nil {
		return perfRun{}, fmt.Errorf("dnsperf against %s: %w", s.name, err)
	}
	r.server = s.name
	r.serverCPU = cpu1 - cpu0
	r.loadCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	r.lats = lats
	return r, nil
}

var (
	reSent      = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	reCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reLost      = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	reQPS       = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
	reAvg       = regexp.MustCompile(`Average Latency \(s\):\s+([\d.]+)`)
	reRun       = regexp.MustCompile(`Run time \(s\):\s+([\d.]+)`)
	reRcodes    = regexp.MustCompile(`Response codes:\s+(.*)`)
)

func parseSummary(s string) (perfRun, error) {
	var r perfRun
	num := func(re *regexp.Regexp) (float64, error) {
		m := re.FindStringSubmatch(s)
		if m == nil {
			return 0, fmt.Errorf("no %q in output: %s", re.String(), s)
		}
		return strconv.ParseFloat(m[1], 64)
	}
	var err error
	var f float64
	if f, err = num(reSent); err != nil {
		return r, err
	}
	r.sent = int64(f)
	if f, err = num(reCompleted); err != nil {
		return r, err
	}
	r.completed = int64(f)
	if f, err = num(reLost); err != nil {
		return r, err
	}
	r.lost = int64(f)
	if r.qps, err = num(reQPS); err != nil {
		return r, err
	}
	if f, err = num(reAvg); err != nil {
		return r, err
	}
	r.avgLat = time.Duration(f * float64(time.Second))
	if f, err = num(reRun); err != nil {
		return r, err
	}
	r.wall = time.Duration(f * float64(time.Second))
	if m := reRcodes.FindStringSubmatch(s); m != nil {
		r.rcodes = strings.TrimSpace(m[1])
	}
	return r, nil
}

// parseVerbose reads the latency of one "> RCODE ... latency" line of
// dnsperf -v (the last field, in seconds).
func parseVerbose(line []byte) (time.Duration, bool) {
	if len(line) < 2 || line[0] != '>' {
		return 0, false
	}
	f := bytes.Fields(line)
	if len(f) < 3 {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(f[len(f)-1]), 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(v * float64(time.Second)), true
}

// throughput runs the saturating rounds: a short warm-up per server, then
// o.rounds runs each, interleaved in ABBA order (a b, b a, …) so a drift
// in background load hits both servers alike.
func throughput(ctx context.Context, o options, a, b *server, qfile string, log *slog.Logger) ([]perfRun, error) {
	secs := max(1, int(o.duration.Seconds()))
	for _, s := range []*server{a, b} {
		if _, err := runDnsperf(ctx, o, s, dnsperfArgs(o, s, qfile, 2), false); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	var runs []perfRun
	for round := range o.rounds {
		order := []*server{a, b}
		if round%2 == 1 {
			order = []*server{b, a}
		}
		for _, s := range order {
			r, err := runDnsperf(ctx, o, s, dnsperfArgs(o, s, qfile, secs), false)
			if err != nil {
				return nil, err
			}
			log.Info("dnsperf run", "round", round+1, "server", s.name, "qps", int(r.qps),
				"avg_latency", r.avgLat.Round(time.Microsecond), "server_cpu", r.serverCPU,
				"per_cpu_s", int(r.perCPU()), "lost", r.lost, "load", loadAvg())
			runs = append(runs, r)
		}
	}
	return runs, nil
}

// latency runs each server at a fixed rate below both servers' capacity,
// with every query's latency recorded: under saturation latency is just
// queue length over throughput (Little's law), so percentiles mean more
// at an equal, sustainable load.
func latency(ctx context.Context, o options, p *pair, qfile string, log *slog.Logger) ([]perfRun, error) {
	var runs []perfRun
	for _, s := range []*server{p.gslbd, p.gdnsd, p.gslbd, p.gdnsd} {
		args := append(dnsperfArgs(o, s, qfile, o.latSecs), "-Q", strconv.Itoa(o.latRate))
		r, err := runDnsperf(ctx, o, s, args, true)
		if err != nil {
			return nil, err
		}
		if len(r.lats) == 0 {
			return nil, fmt.Errorf("dnsperf -v against %s printed no latencies", s.name)
		}
		log.Info("latency run", "server", s.name, "qps", int(r.qps), "p50", pct(r.lats, 50), "p99", pct(r.lats, 99))
		runs = append(runs, r)
	}
	return runs, nil
}

// pct is the p-th percentile of ds (sorted in place).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	if !slices.IsSorted(ds) {
		slices.Sort(ds)
	}
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}

// dnstapCounters reads the dnstap counters of a node's /metrics.
func dnstapCounters(ctx context.Context, adminURL string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/metrics", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "metrics unavailable: " + err.Error()
	}
	defer resp.Body.Close()
	var parts []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "gslbd_dnstap_messages_total") || strings.HasPrefix(line, "gslbd_dnstap_dropped_total") {
			parts = append(parts, "`"+line+"`")
		}
	}
	return strings.Join(parts, ", ")
}

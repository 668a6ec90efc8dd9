package main

import (
	"context"
	"embed"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/miekg/dns"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.ParseFS(templateFS, "templates/*.tmpl"))

const (
	zoneName   = "bench.example"
	geoName    = "geo." + zoneName + "."
	staticName = "static." + zoneName + "."
	poolTTL    = 30
)

// site is one data center of the benchmark pool. Both servers get the
// same three, with the same coordinates, as distance-only geo sites (gdnsd
// "city auto mode", gslbd policy geo without countries or continents).
type site struct {
	Name     string
	Lat, Lon float64
	V4, V6   []string
}

var sites = []site{
	{"fra", 50.11, 8.68, []string{"127.0.50.1", "127.0.50.2"}, []string{"2001:db8:50::1", "2001:db8:50::2"}},
	{"iad", 38.95, -77.45, []string{"127.0.50.3", "127.0.50.4"}, []string{"2001:db8:51::1", "2001:db8:51::2"}},
	{"sin", 1.35, 103.82, []string{"127.0.50.5", "127.0.50.6"}, []string{"2001:db8:52::1", "2001:db8:52::2"}},
}

// siteOf names the site an answer address belongs to.
func siteOf(a netip.Addr) string {
	for _, s := range sites {
		for _, x := range append(slices.Clone(s.V4), s.V6...) {
			if netip.MustParseAddr(x) == a {
				return s.Name
			}
		}
	}
	return "?"
}

func checkedAddrs() []netip.Addr {
	var out []netip.Addr
	for _, s := range sites {
		for _, a := range s.V4 {
			out = append(out, netip.MustParseAddr(a))
		}
	}
	return out
}

// Template data for the gslbd files.
type (
	gslbdNode struct {
		Role, Name, DNS, Cluster, GeoDB, Admin, Dnstap string
		Join                                           []string
	}
	zoneData struct {
		Zone    string
		TTL     int
		Pools   []zonePool // names bound to pools (gslbd)
		KeyFile string     // signs the zone (gslbd) when set
	}
	zonePool  struct{ Name, Pool string }
	poolsData struct {
		Role  string
		Pools []poolData
	}
	poolData struct {
		Name, Policy string
		Answers, TTL int
		Port         int
		Sites        []poolSite
		DefaultOrder []string // geo: site order for clients no site can place
	}
	poolSite struct {
		Name      string
		Geo       bool
		Lat, Lon  float64
		Addrs     []string
		Unchecked bool
	}
	gdnsdData struct {
		DNS, Dir, GeoDB string
		Port, Interval  int
		UDPThreads      int
		Sites           []site
	}
)

// benchPool is the geo pool in gslbd's terms. gslbd has one check per pool
// or per site, not per address family, and IPv6 documentation addresses
// cannot be probed on loopback, so each data center is two gslbd sites at
// the same coordinates: one with the checked IPv4 VIPs, one with the
// IPv6 VIPs and check "none". A query of one family only ever sees the
// sites with addresses of that family, so the answers equal those of
// gdnsd's three data centers with addrs_v4 (tcp_connect) and addrs_v6
// (always up).
func benchPool(port int) poolData {
	p := poolData{Name: "geo", Policy: "geo", Answers: 2, TTL: poolTTL, Port: port}
	for _, s := range sites {
		p.Sites = append(p.Sites,
			poolSite{Name: s.Name, Geo: true, Lat: s.Lat, Lon: s.Lon, Addrs: s.V4},
			poolSite{Name: s.Name + "6", Geo: true, Lat: s.Lat, Lon: s.Lon, Addrs: s.V6, Unchecked: true})
		p.DefaultOrder = append(p.DefaultOrder, s.Name, s.Name+"6")
	}
	return p
}

func render(path, tmpl string, data any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := templates.ExecuteTemplate(f, tmpl, data); err != nil {
		f.Close()
		return fmt.Errorf("render %s: %w", path, err)
	}
	return f.Close()
}

// writeGslbd writes a node directory: gslbd.toml, zones/, pools/.
func writeGslbd(dir string, node gslbdNode, zone zoneData, pools poolsData) error {
	return firstErr(
		render(filepath.Join(dir, "gslbd.toml"), "gslbd.toml.tmpl", node),
		render(filepath.Join(dir, "zones", zoneName+".toml"), "zone.toml.tmpl", zone),
		render(filepath.Join(dir, "pools", "pools.toml"), "pool.toml.tmpl", pools),
	)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// benchNode is a single gslbd of the benchmark on 127.0.0.1 with fresh
// DNS and cluster ports (and an admin port when admin is set), reading db.
func benchNode(role, name, db string, admin bool) (gslbdNode, error) {
	n := 2
	if admin {
		n = 3
	}
	lo := netip.MustParseAddr("127.0.0.1")
	var addrs [3]string
	for i := range n {
		port, err := freeDNSPort(lo.String())
		if err != nil {
			return gslbdNode{}, err
		}
		addrs[i] = hostPort(lo, port)
	}
	return gslbdNode{Role: role, Name: name, DNS: addrs[0], Cluster: addrs[1], Admin: addrs[2], GeoDB: db}, nil
}

// freeDNSPort finds a port free for both UDP and TCP on ip.
func freeDNSPort(ip string) (int, error) {
	for range 50 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, fmt.Errorf("find a free udp port on %s: %w", ip, err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free for udp and tcp on %s", ip)
}

// server is a running DNS server under test.
type server struct {
	name    string
	addr    string // host:port
	proc    *proc
	startup time.Duration // start until the first answer (includes loading the GeoIP database)
	// startCPU is the CPU time used until the first answer: the cost of
	// loading, whatever else the machine runs.
	startCPU time.Duration
	// loaded is the memory a second after the first answer (the database
	// loaded, nothing asked yet); after, once every phase ran.
	loaded, after memory
	// reloadSame and reloadChanged are gslbd's reloads right after the
	// start (measureReloads): the database kept, and read anew.
	reloadSame, reloadChanged reloadPeak
}

// settle is how long after its first answer a server's resident set is
// read as "after load": long enough for a server that hands load garbage
// back to the system to have done so.
const settle = time.Second

// launch starts s with start, waits until it answers, and records its
// start time, start CPU and resident set after load.
func launch(ctx context.Context, s *server, start func() (*proc, error), log *slog.Logger) error {
	t0 := time.Now()
	var err error
	if s.proc, err = start(); err != nil {
		return err
	}
	if err := waitReady(ctx, s, 120*time.Second); err != nil {
		return err
	}
	s.startup = time.Since(t0)
	pid := s.proc.cmd.Process.Pid
	if s.startCPU, err = cpuTime(pid); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settle):
	}
	if s.loaded, err = memStatus(pid); err != nil {
		return err
	}
	log.Info("server ready", "server", s.name, "addr", s.addr, "pid", pid, "startup", s.startup.Round(time.Millisecond),
		"start_cpu", s.startCPU, "rss_mib", s.loaded.rss>>20)
	return nil
}

// readAfter records s's resident set once the phases are done.
func (s *server) readAfter() {
	if s == nil || s.proc == nil {
		return
	}
	if m, err := memStatus(s.proc.cmd.Process.Pid); err == nil {
		s.after = m
	}
}

type pair struct {
	gslbd, gdnsd *server
	checkPort    int // the backends' port the pools probe
}

// startPair starts the backends, then gslbd and gdnsd with equivalent
// configurations, both pinned to the server CPU, and waits until both
// answer.
func startPair(ctx context.Context, o options, work, gslbdBin, db string, procs *procSet, bk *backends, log *slog.Logger) (*pair, error) {
	addrs := checkedAddrs()
	port, err := freePort(addrs)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if err := bk.start(a, port); err != nil {
			return nil, err
		}
	}

	gdir := filepath.Join(work, "gslbd")
	// gslbd reads its own copy of the database: the reload measurement
	// touches it.
	gdb := filepath.Join(work, "gslbd-city.mmdb")
	if err := copyFile(db, gdb); err != nil {
		return nil, err
	}
	node, err := benchNode("throughput", "bench", gdb, false)
	if err != nil {
		return nil, err
	}
	if err := writeGslbd(gdir, node, zoneData{Zone: zoneName, TTL: poolTTL, Pools: []zonePool{{"geo", "geo"}}},
		poolsData{Role: "throughput", Pools: []poolData{benchPool(port)}}); err != nil {
		return nil, err
	}

	dPort, err := freeDNSPort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	ddir := filepath.Join(work, "gdnsd")
	// gdnsd wants whole seconds and timeout < interval, so 1 s is not
	// possible: it probes every 2 s with a 1 s timeout. Probing is a few
	// connects a second on both sides and does not show in the numbers.
	gd := gdnsdData{DNS: hostPort(netip.MustParseAddr("127.0.0.1"), dPort), Dir: ddir, GeoDB: db,
		Port: port, Interval: 2, UDPThreads: o.udpThreads, Sites: sites}
	if err := firstErr(
		render(filepath.Join(ddir, "config"), "gdnsd.config.tmpl", gd),
		render(filepath.Join(ddir, "zones", zoneName), "zone.gdnsd.tmpl", zoneData{Zone: zoneName, TTL: poolTTL}),
		os.MkdirAll(filepath.Join(ddir, "run"), 0o750),
		os.MkdirAll(filepath.Join(ddir, "state"), 0o750),
	); err != nil {
		return nil, err
	}

	p := &pair{
		gslbd:     &server{name: "gslbd", addr: node.DNS},
		gdnsd:     &server{name: "gdnsd", addr: gd.DNS},
		checkPort: port,
	}
	// One after the other, so neither loads its database while the other
	// takes the same CPU: the start times are each server's own.
	if err := launch(ctx, p.gslbd, func() (*proc, error) {
		return procs.start("gslbd", o.serverCPU, gdir, filepath.Join(work, "gslbd.log"),
			gslbdBin, "serve", "-config", filepath.Join(gdir, "gslbd.toml"))
	}, log); err != nil {
		return nil, err
	}
	// Reloads while nothing else runs, before gdnsd starts.
	if p.gslbd.reloadSame, p.gslbd.reloadChanged, err = measureReloads(ctx, p.gslbd, gdb, log); err != nil {
		return nil, err
	}
	if err := launch(ctx, p.gdnsd, func() (*proc, error) {
		return procs.start("gdnsd", o.serverCPU, ddir, filepath.Join(work, "gdnsd.log"),
			gdnsdPath(), "-c", ddir, "start")
	}, log); err != nil {
		return nil, err
	}
	return p, nil
}

// startTapped starts a second gslbd, configured as the pair's with dnstap
// on (queries and responses to a file in its directory) and an admin
// address for its dnstap counters, pinned to the same CPU.
func startTapped(ctx context.Context, o options, work, gslbdBin, db string, p *pair, procs *procSet, log *slog.Logger) (*server, string, error) {
	return startSecond(ctx, o, work, gslbdBin, db, "gslbd+dnstap", "gslbd-dnstap", true, p, procs, log)
}

// startSecond starts another gslbd from bin with the pair's
// configuration, in its own directory under work, pinned to the same CPU;
// with dnstap, it logs queries and responses to a file there and gets an
// admin address (returned as a URL) for its counters.
func startSecond(ctx context.Context, o options, work, bin, db, name, dirName string, dnstap bool, p *pair, procs *procSet, log *slog.Logger) (*server, string, error) {
	dir := filepath.Join(work, dirName)
	node, err := benchNode("throughput: "+name, "bench-"+dirName, db, dnstap)
	if err != nil {
		return nil, "", err
	}
	if dnstap {
		node.Dnstap = filepath.Join(dir, "dnstap.fstrm")
	}
	if err := writeGslbd(dir, node, zoneData{Zone: zoneName, TTL: poolTTL, Pools: []zonePool{{"geo", "geo"}}},
		poolsData{Role: "throughput", Pools: []poolData{benchPool(p.checkPort)}}); err != nil {
		return nil, "", err
	}
	s := &server{name: name, addr: node.DNS}
	if err := launch(ctx, s, func() (*proc, error) {
		return procs.start(name, o.serverCPU, dir, filepath.Join(work, dirName+".log"),
			bin, "serve", "-config", filepath.Join(dir, "gslbd.toml"))
	}, log); err != nil {
		return nil, "", err
	}
	adminURL := ""
	if dnstap {
		adminURL = "http://" + node.Admin
	}
	return s, adminURL, nil
}

// waitReady polls s with a static query until it answers or the deadline
// passes or the process dies.
func waitReady(ctx context.Context, s *server, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if dead, why := s.proc.exited(); dead {
			return fmt.Errorf("%s did not start: %s", s.name, why)
		}
		r, err := query(ctx, s.addr, staticName, dns.TypeA, netip.Prefix{}, 200*time.Millisecond)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s at %s not answering after %s: %v; log: %s", s.name, s.addr, limit, err, tail(s.proc.log, 15))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// query sends one UDP query with EDNS (and ECS when ecs is valid).
func query(ctx context.Context, addr, name string, qtype uint16, ecs netip.Prefix, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	if ecs.IsValid() {
		m.IsEdns0().Option = append(m.IsEdns0().Option, ecsOption(ecs))
	}
	c := &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 1232}
	r, _, err := c.ExchangeContext(ctx, m, addr)
	return r, err
}

func ecsOption(p netip.Prefix) *dns.EDNS0_SUBNET {
	o := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, SourceNetmask: uint8(p.Bits())}
	if p.Addr().Is4() {
		o.Family = 1
	} else {
		o.Family = 2
	}
	o.Address = p.Masked().Addr().AsSlice()
	return o
}

// answerAddrs are the A/AAAA addresses of r's answer section.
func answerAddrs(r *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			a, _ := netip.AddrFromSlice(rr.A.To4())
			out = append(out, a)
		case *dns.AAAA:
			a, _ := netip.AddrFromSlice(rr.AAAA)
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// responseScope is the ECS scope prefix of r, or -1 when r carries no ECS.
func responseScope(r *dns.Msg) int {
	if o := r.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
				return int(e.SourceScope)
			}
		}
	}
	return -1
}

// checkEquivalent asks both servers the same few questions and fails when
// they disagree on what the benchmark depends on: without equal answers
// the throughput comparison would compare different work.
func checkEquivalent(ctx context.Context, p *pair) error {
	cases := []struct {
		name  string
		qtype uint16
		ecs   string
	}{
		{staticName, dns.TypeA, ""},
		{"nx-check." + zoneName + ".", dns.TypeA, ""},
		{geoName, dns.TypeA, ""},
		{geoName, dns.TypeAAAA, ""},
	}
	for _, c := range cases {
		var ecs netip.Prefix
		if c.ecs != "" {
			ecs = netip.MustParsePrefix(c.ecs)
		}
		var got [2]string
		for i, s := range []*server{p.gslbd, p.gdnsd} {
			r, err := query(ctx, s.addr, c.name, c.qtype, ecs, time.Second)
			if err != nil {
				return fmt.Errorf("equivalence check %s %s on %s: %w", c.name, dns.TypeToString[c.qtype], s.name, err)
			}
			got[i] = fmt.Sprintf("%s %v", dns.RcodeToString[r.Rcode], answerAddrs(r))
		}
		if got[0] != got[1] {
			return fmt.Errorf("equivalence check %s %s: gslbd answers %s, gdnsd %s", c.name, dns.TypeToString[c.qtype], got[0], got[1])
		}
	}
	return nil
}

// reloadPeak is what one reload of a running gslbd cost: its resident set
// before, the most it held during the reload (VmHWM, reset just before),
// and the CPU it used.
type reloadPeak struct {
	before, peak int64
	cpu          time.Duration
}

func (r reloadPeak) ratio() float64 { return float64(r.peak) / float64(r.before) }

// measureReloads reloads s (SIGHUP) twice: with nothing changed (zones
// and pools are read again, the GeoIP database is kept), then with its
// database file touched, so that the database is read again as a new
// version; db must be s's own copy of the file.
func measureReloads(ctx context.Context, s *server, db string, log *slog.Logger) (same, changed reloadPeak, err error) {
	if same, err = reloadOnce(ctx, s); err != nil {
		return same, changed, err
	}
	now := time.Now()
	if err := os.Chtimes(db, now, now); err != nil {
		return same, changed, err
	}
	if changed, err = reloadOnce(ctx, s); err != nil {
		return same, changed, err
	}
	log.Info("reloads measured", "server", s.name,
		"same_peak_mib", same.peak>>20, "same_ratio", fmt.Sprintf("%.2f", same.ratio()),
		"changed_peak_mib", changed.peak>>20, "changed_ratio", fmt.Sprintf("%.2f", changed.ratio()), "changed_cpu", changed.cpu)
	return same, changed, nil
}

// reloadOnce sends s one SIGHUP and waits until its log says the reload
// is done.
func reloadOnce(ctx context.Context, s *server) (reloadPeak, error) {
	pid := s.proc.cmd.Process.Pid
	done := func() (int, int) {
		b, _ := os.ReadFile(s.proc.log)
		return strings.Count(string(b), "msg=reloaded"), strings.Count(string(b), "reload failed")
	}
	ok0, bad0 := done()
	// Writing 5 resets VmHWM to the current resident set.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return reloadPeak{}, fmt.Errorf("reset the peak of %s: %w", s.name, err)
	}
	sample := func() (memory, time.Duration, error) {
		m, err := memStatus(pid)
		if err != nil {
			return m, 0, err
		}
		cpu, err := cpuTime(pid)
		return m, cpu, err
	}
	m0, cpu0, err := sample()
	if err != nil {
		return reloadPeak{}, err
	}
	if err := s.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return reloadPeak{}, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ok, bad := done()
		if bad > bad0 {
			return reloadPeak{}, fmt.Errorf("%s: reload failed: %s", s.name, tail(s.proc.log, 10))
		}
		if ok > ok0 {
			break
		}
		if time.Now().After(deadline) {
			return reloadPeak{}, fmt.Errorf("%s: reload not done after 2 minutes: %s", s.name, tail(s.proc.log, 10))
		}
		select {
		case <-ctx.Done():
			return reloadPeak{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	m1, cpu1, err := sample()
	if err != nil {
		return reloadPeak{}, err
	}
	return reloadPeak{before: m0.rss, peak: m1.peak, cpu: cpu1 - cpu0}, nil
}

// copyFile copies src to dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"gslbd/admin"
	"gslbd/cluster"
	"gslbd/dnsserver"
	"gslbd/dnsserver/dnstap"
	"gslbd/healthmon"
	"gslbd/zones"
	"gslbd/zones/config"
)

// node is one running gslbd: it owns the components and is the only place
// that builds and publishes views, so a view never mixes a new snapshot
// with old verdicts or the other way round.
type node struct {
	path string
	log  *slog.Logger
	reg  *prometheus.Registry

	mesh *cluster.Mesh
	mon  *healthmon.Monitor // nil when health.probe = false
	feed *healthmon.Feed    // external health; nil when health.probe = false
	dns  *dnsserver.Server  // nil when dns.listen = []
	tap  *dnstap.Sink       // nil without [dnstap] (or without DNS)
	// stopTap ends the dnstap writer after DNS has stopped, so it writes
	// every exchange answered; tapDone closes when it has finished.
	stopTap context.CancelFunc
	tapDone chan struct{}
	admin   *admin.Server // nil when admin.listen = ""

	mu   sync.Mutex // serialises swapping the snapshot and publishing views
	snap *zones.Snapshot
	// probing is the target keys the monitor was last given (nil: none
	// yet for this snapshot).
	probing []string
	view    atomic.Pointer[zones.View]

	// loader keeps the geo database between reloads while its file is
	// unchanged. reloadMu serialises reloads (SIGHUP and the admin API);
	// they load and compile to the side and take mu only to swap.
	loader   *config.Loader
	reloadMu sync.Mutex
	// reloads asks the reloader for one more reload; its buffer of one
	// coalesces the SIGHUPs that arrive while a reload runs.
	reloads chan struct{}

	// ready is closed once every listener is bound (tests wait on it);
	// shutdownStep, when set (tests), is called after each shutdown step.
	ready        chan struct{}
	shutdownStep func(step string)
	// reloadHook, when set (tests), runs in every reload after the load
	// and before the swap.
	reloadHook func()
}

// newNode loads the configuration at path and builds every part of the
// node; udpSockets is the DNS server's UDP readers per listen address (0:
// its default).
func newNode(path string, log *slog.Logger, udpSockets int) (*node, error) {
	cfg, err := config.LoadNodeConfig(path)
	if err != nil {
		return nil, err
	}
	loader := new(config.Loader)
	// The first load runs at the operator's collector target: nothing is
	// serving yet, and at loadGCPercent the start took 0.2-0.3 s more CPU
	// (1.7 -> 1.95 s with GeoLite2-City) to save 20 MB of a peak that no
	// steady state sees.
	snap, err := loader.Load(cfg)
	if err != nil {
		loader.Close() //nolint:errcheck // read-only
		return nil, err
	}
	// A load leaves garbage about the size of what it built (the
	// GeoIP walk's decoded records and maps, the build's chunks); the
	// runtime would hand those pages back to the system only slowly, and
	// until then they count in the process's resident memory. Collect and
	// return them now, here and after every reload: it costs one
	// collection of a heap that is mostly the new tables.
	debug.FreeOSMemory()
	for _, w := range snap.Warnings {
		log.Warn("config", "warning", w)
	}
	n := &node{path: path, log: log, reg: prometheus.NewRegistry(), snap: snap, loader: loader,
		reloads: make(chan struct{}, 1), ready: make(chan struct{})}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	warnReadable(log, cfg)
	sec, err := readSecrets(cfg)
	if err != nil {
		return nil, err
	}

	var key []byte
	if cfg.Cluster.SecretFile != "" {
		raw, _, err := config.ReadFile(cfg.Cluster.SecretFile, config.MaxSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read mesh key: %w", err)
		}
		if key, err = cluster.ParseKey(raw); err != nil {
			return nil, fmt.Errorf("read mesh key %s: %w", cfg.Cluster.SecretFile, err)
		}
	}
	mopts := cluster.Options{
		Name:       cfg.Node.Name,
		Bind:       cfg.Cluster.Bind,
		Advertise:  cfg.Cluster.Advertise,
		Join:       cfg.Cluster.Join,
		Profile:    cfg.Cluster.Profile,
		SecretKey:  key,
		Label:      cfg.Cluster.Label,
		Monitor:    cfg.Health.Probe,
		Logger:     log,
		Registerer: n.reg,

		MonitorsPerTarget: cfg.Health.MonitorsPerTarget,
		ReconnectInterval: cfg.Cluster.ReconnectInterval,
		Retention:         cfg.Cluster.Retention,
	}
	if err := faultInjection(&mopts, log); err != nil {
		return nil, err
	}
	n.mesh, err = cluster.New(mopts)
	if err != nil {
		return nil, err
	}
	if cfg.Health.Probe {
		n.mon = healthmon.New(healthmon.Options{
			Node:       cfg.Node.Name,
			Version:    version,
			Logger:     log,
			Registerer: n.reg,
			Report:     func(r healthmon.Report) { n.mesh.SetLocal(r.Key, r.Up, r.Reason) },
		})
		n.feed = healthmon.NewFeed(healthmon.FeedOptions{
			File:       cfg.Health.ExternalFile,
			Monitor:    n.mon,
			Logger:     log,
			Registerer: n.reg,
		})
	}
	if len(cfg.DNS.Listen) > 0 && cfg.Dnstap.Enabled() {
		v := cfg.Dnstap.Version
		if v == "" {
			v = "gslbd " + version
		}
		n.tap, err = dnstap.New(dnstap.Config{
			File: cfg.Dnstap.File, Socket: cfg.Dnstap.Socket,
			Identity: cfg.Dnstap.Identity, Version: v,
			Queries: cfg.Dnstap.Queries, Responses: cfg.Dnstap.Responses,
		}, log, n.reg)
		if err != nil {
			return nil, err
		}
	}
	if len(cfg.DNS.Listen) > 0 {
		n.dns = dnsserver.New(dnsserver.Config{
			Listen:               cfg.DNS.Listen,
			UDPSize:              cfg.DNS.UDPSize,
			TCPIdleTimeout:       cfg.DNS.TCPIdleTimeout.Duration,
			MaxTCPConns:          cfg.DNS.MaxTCPConns,
			MaxTCPConnsPerSource: cfg.DNS.MaxTCPConnsPerSource,
			UDPSockets:           udpSockets,
			QueryLogSample:       querySample(cfg.Log),
			RRL:                  rrlConfig(cfg.DNS.RRL),
			Tap:                  n.tap,
		}, log, n.reg)
		if sec.cookie != nil {
			n.dns.SetCookieSecret(*sec.cookie)
		}
	}
	if err := n.compile(snap); err != nil {
		return nil, err
	}
	if cfg.Admin.Listen != "" {
		opts := admin.Options{
			Listen:      cfg.Admin.Listen,
			Token:       sec.token,
			Hosts:       cfg.Admin.Hosts,
			Pprof:       cfg.Admin.Pprof,
			Certificate: sec.cert,
			NodeName:    cfg.Node.Name,
			Version:     version,
			Logger:      log,
			Gatherer:    n.reg,
			Registerer:  n.reg,
			Source:      n,
			Mesh:        meshAdapter{n.mesh},
			Reload:      n.reload,
		}
		if n.mon != nil {
			opts.Monitor = monitorAdapter{n.mon}
			opts.External = externalAdapter{n.feed}
		}
		if n.dns != nil {
			opts.Explainer = n.dns
		}
		n.admin = admin.New(opts)
	}
	return n, nil
}

// View is the view in force; admin reads it through this.
func (n *node) View() *zones.View { return n.view.Load() }

// publish builds a view from the snapshot and the mesh's verdicts and hands
// it to every reader. Callers hold n.mu.
func (n *node) publish() {
	v := zones.NewView(n.snap, n.mesh.Health())
	old := n.view.Swap(v)
	if n.dns != nil {
		n.dns.Publish(v)
	}
	if old != nil && old.Snap == v.Snap {
		n.logChanges(old, v)
	}
}

// logChanges writes one line per target whose mesh verdict changed and per
// address whose drain changed between two views of one snapshot.
func (n *node) logChanges(old, v *zones.View) {
	seen := make([]bool, len(v.Snap.Targets))
	for _, p := range v.Snap.PoolList {
		for _, site := range p.Sites {
			for i := range site.Addrs {
				a := &site.Addrs[i]
				if old.IsDrained(a) != v.IsDrained(a) {
					n.log.Info("drain changed", "pool", p.Name, "site", site.Name, "addr", a.Addr, "drained", v.IsDrained(a))
				}
				if seen[a.Target] || old.Up(a) == v.Up(a) {
					continue
				}
				seen[a.Target] = true
				verdict := "down"
				if v.Up(a) {
					verdict = "up"
				}
				key := v.Snap.Targets[a.Target].Key
				n.log.Info("verdict changed", "addr", a.Addr, "verdict", verdict, "votes", formatVotes(n.mesh.Votes(key)), "target", key)
			}
		}
	}
}

// applyTargets tells the monitor and the mesh what the snapshot probes.
func (n *node) applyTargets() {
	intervals := make(map[string]time.Duration, len(n.snap.Targets))
	for _, t := range n.snap.Targets {
		intervals[t.Key] = t.Check.Interval
	}
	n.mesh.SetTargets(intervals)
	n.mesh.SetConfigDigest(n.snap.ConfigDigest)
	if n.mon != nil {
		n.feed.SetSnapshot(n.snap)
	}
	n.probing = nil // a new snapshot: hand the monitor its targets anew
	n.updateProbes()
}

// updateProbes gives the monitor the targets the mesh assigns to this
// node: all of them, or with health.monitors_per_target = K the ones this
// node ranks among the K for. It runs after every mesh change, so when a
// monitor dies its targets start being probed elsewhere at once. Callers
// hold n.mu.
func (n *node) updateProbes() {
	if n.mon == nil {
		return
	}
	ts := n.mesh.Assignment().Filter(n.snap.Targets)
	keys := make([]string, len(ts))
	for i, t := range ts {
		keys[i] = t.Key
	}
	if n.probing != nil && slices.Equal(keys, n.probing) {
		return
	}
	n.probing = append([]string{}, keys...)
	n.mon.Update(ts)
}

// compile builds the DNS wire table of snap ahead of the swap, so that a
// record that cannot be packed fails the load with its file and line.
func (n *node) compile(snap *zones.Snapshot) error {
	if n.dns != nil {
		return n.dns.Compile(snap)
	}
	return dnsserver.Check(snap)
}

// loadGCPercent is the collector's target while a reload loads.
// A load allocates about twice what it keeps (a GeoIP walk decodes every
// record, collects ranges and maps), on top of the running snapshot,
// which is most of the heap: at the default 100 the heap may grow to
// twice the running snapshot plus the new one before a collection. At
// 25 the collector runs a few more times during the load (the heap is
// mostly arrays without pointers: no CPU cost was measurable in a
// reload) and the garbage does not pile up: by itself this took the
// peak of a reload with a new GeoLite2-City from 190 to 160 MB.
const loadGCPercent = 25

// tightGC lowers the collector's target for a load and returns what puts
// it back. A target the operator set lower (GOGC), or off, is left alone.
// Reloads run one at a time (under reloadMu).
func tightGC() (restore func()) {
	old := debug.SetGCPercent(loadGCPercent)
	if old >= 0 && old <= loadGCPercent || old < 0 {
		debug.SetGCPercent(old)
		return func() {}
	}
	return func() { debug.SetGCPercent(old) }
}

// reload re-reads every file, compiles the DNS table, and swaps the new
// snapshot in only when all of it is valid; a failed reload changes
// nothing. The loading and compiling run without n.mu, so verdict changes
// keep reaching answers while a large reload runs.
func (n *node) reload(ctx context.Context) error {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	start := time.Now()
	defer debug.FreeOSMemory()
	cfg, err := config.LoadNodeConfig(n.path)
	var snap *zones.Snapshot
	restore := tightGC()
	if err == nil {
		snap, err = n.loader.Load(cfg)
	}
	if err == nil {
		err = n.compile(snap)
	}
	restore()
	if n.reloadHook != nil {
		n.reloadHook()
	}
	if err != nil {
		n.log.Error("reload failed; keeping the running configuration", "errors", strings.Count(err.Error(), "\n")+1)
		n.restoreGeo(snap)
		return err
	}
	sec, err := readSecrets(cfg)
	if err != nil {
		n.log.Error("reload failed; keeping the running configuration", "err", err)
		n.restoreGeo(snap)
		return err
	}
	n.mu.Lock()
	n.snap = snap
	n.applyTargets()
	n.publish()
	n.mu.Unlock()
	n.applySecrets(cfg, sec)
	for _, w := range snap.Warnings {
		n.log.Warn("config", "warning", w)
	}
	n.log.Info("reloaded", "zones", len(snap.Zones), "pools", len(snap.PoolList), "targets", len(snap.Targets), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// restoreGeo makes the running snapshot's GeoIP database whole again
// after a reload whose snapshot (loaded, when not nil) was not put in
// service: a load that read a new version of the database retired the
// running one's table (explain reads it), which the loader then reads
// again from its file.
func (n *node) restoreGeo(loaded *zones.Snapshot) {
	n.mu.Lock()
	running := n.snap
	n.mu.Unlock()
	if loaded == nil || running == nil || !running.Geo.Retired() {
		return
	}
	if err := n.loader.Restore(running.Geo); err != nil {
		n.log.Warn("reload: the running GeoIP database could not be read again; explain cannot locate clients until a reload succeeds", "err", err)
	}
}

// run starts everything, serves until ctx ends, then shuts down in order:
// stop probing, leave the mesh, stop DNS, stop admin. DNS and admin are
// started with a context of their own, not ctx, so that they keep serving
// while the mesh is left: peers learn of the leave while this node still
// answers, and the resolvers that still ask it get answers.
func (n *node) run(ctx context.Context, hup <-chan os.Signal) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Join and merge the peers' state before DNS opens (README, Health checks and the mesh).
	if err := n.mesh.Start(ctx); err != nil {
		return fmt.Errorf("start mesh: %w", err)
	}
	n.mu.Lock()
	n.applyTargets()
	n.publish()
	n.mu.Unlock()

	var wg sync.WaitGroup
	monCtx, stopMon := context.WithCancel(context.Background())
	defer stopMon()
	if n.mon != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.mon.Run(monCtx); err != nil && !errors.Is(err, context.Canceled) {
				n.log.Error("health monitor stopped", "err", err)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.feed.Run(monCtx)
		}()
	}
	if n.tap != nil {
		var tapCtx context.Context
		tapCtx, n.stopTap = context.WithCancel(context.Background())
		n.tapDone = make(chan struct{})
		go func() {
			defer close(n.tapDone)
			if err := n.tap.Run(tapCtx); err != nil {
				n.log.Error("dnstap stopped", "err", err)
			}
		}()
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	defer stopSrv()
	var startErr error
	if n.dns != nil {
		if err := n.dns.Start(srvCtx); err != nil {
			startErr = fmt.Errorf("start dns: %w", err)
		}
	}
	if startErr == nil && n.admin != nil {
		if err := n.admin.Start(srvCtx); err != nil {
			startErr = fmt.Errorf("start admin: %w", err)
		}
	}
	if startErr == nil {
		n.log.Info("serving", "config", n.path, "zones", len(n.snap.Zones), "pools", len(n.snap.PoolList), "targets", len(n.snap.Targets))
		var rwg sync.WaitGroup
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			n.reloader(ctx)
		}()
		close(n.ready)
		n.loop(ctx, hup)
		rwg.Wait() // a reload in progress finishes (or fails) first
	}
	n.shutdown(stopMon, &wg)
	n.loader.Close() //nolint:errcheck // the geo database's file, read-only
	return startErr
}

// loop republishes on every verdict or drain change. SIGHUP only asks the
// reloader: a reload reads files (a City database takes seconds) and must
// not hold verdict changes back from the answers.
func (n *node) loop(ctx context.Context, hup <-chan os.Signal) {
	changes := n.mesh.Changes()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
			n.mu.Lock()
			n.updateProbes()
			n.publish()
			n.mu.Unlock()
		case <-hup:
			n.requestReload()
		}
	}
}

// requestReload asks for a reload without waiting. Requests that arrive
// while one is pending are one request: the reload that runs next reads
// the files as they are then.
func (n *node) requestReload() {
	select {
	case n.reloads <- struct{}{}:
	default:
	}
}

// reloader runs the requested reloads one after another until ctx ends.
func (n *node) reloader(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.reloads:
			n.log.Info("SIGHUP: reloading")
			if n.tap != nil {
				n.tap.Reopen() // a new dnstap file if logrotate moved the old one
			}
			if n.admin != nil {
				_ = n.admin.Reload(ctx) // also keeps the reload metrics and status
			} else {
				_ = n.reload(ctx)
			}
		}
	}
}

func (n *node) shutdown(stopMon context.CancelFunc, wg *sync.WaitGroup) {
	n.log.Info("shutting down")
	watchdog := time.AfterFunc(shutdownTimeout, func() {
		n.log.Error("shutdown took too long; exiting", "err", errWatchdog)
		os.Exit(exitFail)
	})
	defer watchdog.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	step := func(name string) {
		n.log.Info("shutdown: " + name)
		if n.shutdownStep != nil {
			n.shutdownStep(name)
		}
	}

	stopMon()
	wg.Wait()
	step("probes stopped")
	if err := n.mesh.Leave(2 * time.Second); err != nil {
		n.log.Warn("leave mesh", "err", err)
	}
	if err := n.mesh.Shutdown(); err != nil {
		n.log.Warn("shutdown mesh", "err", err)
	}
	step("mesh left")
	if n.dns != nil {
		if err := n.dns.Shutdown(ctx); err != nil {
			n.log.Warn("shutdown dns", "err", err)
		}
	}
	if n.stopTap != nil {
		n.stopTap()
		select {
		case <-n.tapDone:
		case <-ctx.Done():
			n.log.Warn("dnstap did not finish its output in time")
		}
	}
	step("dns stopped")
	if n.admin != nil {
		if err := n.admin.Shutdown(ctx); err != nil {
			n.log.Warn("shutdown admin", "err", err)
		}
	}
	step("admin stopped")
}

// formatVotes renders monitor votes as "ns1=up ns2=down", sorted by name.
func formatVotes(votes map[string]bool) string {
	parts := make([]string, 0, len(votes))
	for name, up := range votes {
		v := "down"
		if up {
			v = "up"
		}
		parts = append(parts, name+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// secrets are what the node reads from the files the config names besides
// zones and pools: at start, and again on every reload so that a token, a
// cookie secret or a certificate can be rotated without a restart.
type secrets struct {
	token  string                  // "" without admin.token_file
	cookie *dnsserver.CookieSecret // nil without dns.cookies.secret_file
	cert   *tls.Certificate        // nil without admin TLS
}

// readSecrets reads them through config.ReadFile: bounded, regular files
// only.
func readSecrets(cfg *config.NodeConfig) (secrets, error) {
	var sec secrets
	if p := cfg.Admin.TokenFile; p != "" {
		b, _, err := config.ReadFile(p, config.MaxSecretFile)
		if err != nil {
			return sec, fmt.Errorf("read admin token: %w", err)
		}
		if sec.token = strings.TrimSpace(string(b)); sec.token == "" {
			return sec, fmt.Errorf("read admin token %s: the file is empty", p)
		}
	}
	if p := cfg.DNS.Cookies.SecretFile; p != "" {
		b, _, err := config.ReadFile(p, config.MaxSecretFile)
		if err != nil {
			return sec, fmt.Errorf("read cookie secret: %w", err)
		}
		c, err := dnsserver.ParseCookieSecret(string(b))
		if err != nil {
			return sec, fmt.Errorf("read cookie secret %s: %w", p, err)
		}
		sec.cookie = &c
	}
	if cfg.Admin.CertFile != "" {
		certPEM, _, err := config.ReadFile(cfg.Admin.CertFile, config.MaxSecretFile)
		if err != nil {
			return sec, fmt.Errorf("read admin certificate: %w", err)
		}
		keyPEM, _, err := config.ReadFile(cfg.Admin.KeyFile, config.MaxSecretFile)
		if err != nil {
			return sec, fmt.Errorf("read admin key: %w", err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return sec, fmt.Errorf("load admin certificate %s with key %s: %w", cfg.Admin.CertFile, cfg.Admin.KeyFile, err)
		}
		sec.cert = &c
	}
	return sec, nil
}

// applySecrets hands re-read secrets and rate limits to the running
// components. The admin listener's address, TLS on or off, and the DNS
// listeners stay as they started.
func (n *node) applySecrets(cfg *config.NodeConfig, sec secrets) {
	if n.dns != nil {
		n.dns.SetRRL(rrlConfig(cfg.DNS.RRL))
		if sec.cookie != nil {
			n.dns.SetCookieSecret(*sec.cookie)
		}
	}
	if n.admin != nil {
		if sec.token != "" {
			n.admin.SetToken(sec.token)
		}
		n.admin.SetCertificate(sec.cert)
	}
}

// rrlConfig maps [dns.rrl] onto the DNS server's settings.
func rrlConfig(r config.RRLSection) dnsserver.RRLConfig {
	c := dnsserver.RRLConfig{
		ResponsesPerSecond: r.ResponsesPerSecond,
		NXDomainsPerSecond: r.NXDomainsPerSecond,
		ErrorsPerSecond:    r.ErrorsPerSecond,
		Window:             r.Window,
		Slip:               r.Slip,
		IPv4PrefixLength:   r.IPv4PrefixLength,
		IPv6PrefixLength:   r.IPv6PrefixLength,
	}
	if r.Slip == 0 {
		c.Slip = dnsserver.NoSlip
	}
	return c
}

// warnReadable warns about key and token files that users other than
// gslbd's may read: the mesh key decrypts all gossip, the token drains
// sites, the cookie secret lets anyone forge cookies that skip rate
// limiting.
func warnReadable(log *slog.Logger, cfg *config.NodeConfig) {
	for _, f := range []struct{ key, path string }{
		{"cluster.secret_file", cfg.Cluster.SecretFile},
		{"admin.token_file", cfg.Admin.TokenFile},
		{"admin.key_file", cfg.Admin.KeyFile},
		{"dns.cookies.secret_file", cfg.DNS.Cookies.SecretFile},
	} {
		if f.path != "" && config.GroupOrOtherReadable(f.path) {
			log.Warn("secret file is readable by group or others; chmod 600 it", "key", f.key, "path", f.path)
		}
	}
}

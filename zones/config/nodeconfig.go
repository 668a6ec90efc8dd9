package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gslbd/zones"
)

// Defaults of gslbd.toml (docs/configuration.md).
const (
	DefaultDNSListen      = "127.0.0.1:5353"
	DefaultUDPSize        = zones.DefaultUDPSize
	DefaultTCPIdleTimeout = zones.DefaultTCPIdleTimeout
	DefaultMaxTCPConns    = zones.DefaultMaxTCPConns
	DefaultRRLWindow      = 15
	DefaultRRLSlip        = 2
	DefaultRRLIPv4Prefix  = 24
	DefaultRRLIPv6Prefix  = 56
	DefaultClusterBind    = "127.0.0.1:7946"
	// DefaultReconnectInterval and DefaultRetention match cluster's.
	DefaultReconnectInterval = 5 * time.Second
	DefaultRetention         = 24 * time.Hour
	// MaxMonitorsPerTarget bounds health.monitors_per_target.
	MaxMonitorsPerTarget = 1000
	DefaultProfile       = "wan"
	DefaultAdminListen   = "127.0.0.1:8053"
	DefaultSampleRate    = 0.01
	DefaultZonesDir      = "zones"
	DefaultPoolsDir      = "pools"
)

// Continents are the two-letter continent codes GeoIP databases use.
var continents = []string{"AF", "AN", "AS", "EU", "NA", "OC", "SA"}

// LoadNodeConfig reads gslbd.toml strictly (unknown keys are errors),
// applies the defaults (docs/configuration.md), resolves relative paths against the file's
// directory and validates every value. All problems are returned at once,
// joined, each an *Error with the place of the offending key.
func LoadNodeConfig(path string) (*NodeConfig, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load node config %s: %w", path, err)
	}
	display := displayName(abs)
	var errs []*Error
	data, _, ok := readFile(abs, display, &errs)
	if !ok {
		return nil, joinErrors(errs)
	}
	cfg := parseNodeConfig(display, abs, data, &errs)
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return cfg, nil
}

// displayName shows path relative to the working directory when it lies
// beneath it (as an operator typed it), else absolute.
func displayName(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return path
	}
	return rel
}

func parseNodeConfig(display, abs string, data []byte, errs *[]*Error) *NodeConfig {
	cfg := &NodeConfig{Path: abs, Dir: filepath.Dir(abs), display: display}
	d := parseDoc(display, data, errs)
	if d == nil {
		return nil
	}
	cfg.pos = d.pos
	root := d.table(nil, d.root)
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cfg.Dir, p)
	}

	cfg.Node.Name, _ = os.Hostname()
	if t := root.sub("node"); t != nil {
		if t.str("name", &cfg.Node.Name) && (cfg.Node.Name == "" || strings.TrimSpace(cfg.Node.Name) != cfg.Node.Name) {
			t.errf("name", "invalid node name %q: want a non-empty name without surrounding blanks", cfg.Node.Name)
			cfg.Node.Name = "invalid"
		}
		t.done("name")
	}
	if cfg.Node.Name == "" {
		d.errf([]string{"node", "name"}, "the host name is unknown: set node.name")
	}

	cfg.DNS = DNSSection{Listen: []string{DefaultDNSListen}, UDPSize: DefaultUDPSize,
		TCPIdleTimeout: Duration{DefaultTCPIdleTimeout}, MaxTCPConns: DefaultMaxTCPConns}
	if t := root.sub("dns"); t != nil {
		if t.strs("listen", false, &cfg.DNS.Listen) {
			seen := map[string]bool{}
			for i, a := range cfg.DNS.Listen {
				p := t.elemPath("listen", i)
				if _, err := parseListen(a); err != nil {
					d.errf(p, "%v", err)
				} else if seen[a] {
					d.errf(p, "duplicate listen address %q", a)
				}
				seen[a] = true
			}
		}
		var n int64
		if t.integer("udp_size", 512, 4096, &n) {
			cfg.DNS.UDPSize = uint16(n)
		}
		t.duration("tcp_idle_timeout", &cfg.DNS.TCPIdleTimeout.Duration)
		t.intVal("max_tcp_conns", 1, 1<<20, &cfg.DNS.MaxTCPConns)
		if t.intVal("max_tcp_conns_per_source", 1, 1<<20, &cfg.DNS.MaxTCPConnsPerSource) && cfg.DNS.MaxTCPConnsPerSource > cfg.DNS.MaxTCPConns {
			t.errf("max_tcp_conns_per_source", "%d is more than max_tcp_conns (%d)", cfg.DNS.MaxTCPConnsPerSource, cfg.DNS.MaxTCPConns)
		}
		if r := t.sub("rrl"); r != nil {
			parseRRL(r, &cfg.DNS.RRL)
		}
		if c := t.sub("cookies"); c != nil {
			if c.str("secret_file", &cfg.DNS.Cookies.SecretFile) {
				cfg.DNS.Cookies.SecretFile = checkFile(c, "secret_file", resolve(cfg.DNS.Cookies.SecretFile), checkSecret|checkCookieSecret)
			}
			c.done("secret_file")
		}
		t.done("listen", "udp_size", "tcp_idle_timeout", "max_tcp_conns", "max_tcp_conns_per_source", "rrl", "cookies")
	}
	if cfg.DNS.MaxTCPConnsPerSource == 0 {
		cfg.DNS.MaxTCPConnsPerSource = max(cfg.DNS.MaxTCPConns/10, 1)
	}
	if cfg.DNS.RRL.Window == 0 {
		cfg.DNS.RRL = RRLSection{Window: DefaultRRLWindow, Slip: DefaultRRLSlip,
			IPv4PrefixLength: DefaultRRLIPv4Prefix, IPv6PrefixLength: DefaultRRLIPv6Prefix}
	}

	if t := root.sub("geo"); t != nil {
		if t.str("city_db", &cfg.Geo.CityDB) {
			if cfg.Geo.CityDB == "" {
				t.errf("city_db", "empty path: omit the key for no database")
			}
			cfg.Geo.CityDB = resolve(cfg.Geo.CityDB)
		}
		seen := map[netip.Prefix]int{}
		for i, n := range t.tables("networks") {
			gn, pfx, ok := parseGeoNetwork(n)
			if ok {
				if j, dup := seen[pfx]; dup {
					n.errf("cidr", "duplicate network %s (also geo.networks[%d])", pfx, j)
				}
				seen[pfx] = i
			}
			cfg.Geo.Networks = append(cfg.Geo.Networks, gn)
		}
		t.done("city_db", "networks")
	}

	for _, sec := range []struct {
		key, def string
		dst      *DirSection
	}{{"zones", DefaultZonesDir, &cfg.Zones}, {"pools", DefaultPoolsDir, &cfg.Pools}} {
		sec.dst.Dir = sec.def
		if t := root.sub(sec.key); t != nil {
			if t.str("dir", &sec.dst.Dir) {
				sec.dst.explicit = true
				if sec.dst.Dir == "" {
					t.errf("dir", "empty path: want a directory")
				}
			}
			t.done("dir")
		}
		sec.dst.Dir = resolve(sec.dst.Dir)
	}

	cfg.Health.Probe = true
	if t := root.sub("health"); t != nil {
		t.boolean("probe", &cfg.Health.Probe)
		if t.str("external_file", &cfg.Health.ExternalFile) {
			switch {
			case cfg.Health.ExternalFile == "":
				t.errf("external_file", "empty path: omit the key for no external health file")
			case !cfg.Health.Probe:
				t.errf("external_file", "an external health file sets this monitor's votes, and with probe = false this node has none: set probe = true or remove external_file")
			}
			cfg.Health.ExternalFile = resolve(cfg.Health.ExternalFile)
		}
		t.intVal("monitors_per_target", 0, MaxMonitorsPerTarget, &cfg.Health.MonitorsPerTarget)
		t.done("probe", "external_file", "monitors_per_target")
	}

	cfg.Cluster = ClusterSection{Bind: DefaultClusterBind, Profile: DefaultProfile, Join: []string{},
		ReconnectInterval: DefaultReconnectInterval, Retention: DefaultRetention}
	if t := root.sub("cluster"); t != nil {
		if t.str("bind", &cfg.Cluster.Bind) {
			if _, err := parseListen(cfg.Cluster.Bind); err != nil {
				t.errf("bind", "%v", err)
			}
		}
		if t.str("advertise", &cfg.Cluster.Advertise) {
			if _, err := parseListen(cfg.Cluster.Advertise); err != nil {
				t.errf("advertise", "%v", err)
			}
		}
		if t.strs("join", false, &cfg.Cluster.Join) {
			for i, j := range cfg.Cluster.Join {
				if h, p, err := splitHostPort(j); err != nil || h == "" || p == "" {
					d.errf(t.elemPath("join", i), "invalid peer %q: want host:port, e.g. \"192.0.2.2:7946\" or \"ns2.example.net:7946\"", j)
				}
			}
		}
		if t.str("profile", &cfg.Cluster.Profile) && !slices.Contains([]string{"lan", "wan", "local"}, cfg.Cluster.Profile) {
			t.errf("profile", "unknown profile %q (allowed: lan, wan, local)", cfg.Cluster.Profile)
		}
		if t.str("secret_file", &cfg.Cluster.SecretFile) {
			cfg.Cluster.SecretFile = checkFile(t, "secret_file", resolve(cfg.Cluster.SecretFile), checkSecret)
		}
		t.str("label", &cfg.Cluster.Label)
		t.duration("reconnect_interval", &cfg.Cluster.ReconnectInterval)
		if t.duration("retention", &cfg.Cluster.Retention) && cfg.Cluster.Retention < time.Minute {
			t.errf("retention", "retention %v is too short: want at least 1m (tombstones must outlive many push/pull rounds)", cfg.Cluster.Retention)
		}
		t.done("bind", "advertise", "join", "profile", "secret_file", "label", "reconnect_interval", "retention")
	}
	if ap, err := parseListen(cfg.Cluster.Bind); err == nil && !ap.Addr().IsLoopback() && cfg.Cluster.SecretFile == "" {
		d.errf([]string{"cluster", "bind"}, "bind address %s is not loopback: set cluster.secret_file (a key from `gslbd keygen`) so the mesh is encrypted", cfg.Cluster.Bind)
	}

	cfg.Admin.Listen = DefaultAdminListen
	if t := root.sub("admin"); t != nil {
		if t.str("listen", &cfg.Admin.Listen) && cfg.Admin.Listen != "" {
			if _, err := parseListen(cfg.Admin.Listen); err != nil {
				t.errf("listen", "%v", err)
			}
		}
		if t.str("token_file", &cfg.Admin.TokenFile) {
			cfg.Admin.TokenFile = checkFile(t, "token_file", resolve(cfg.Admin.TokenFile), checkSecret)
		}
		if t.str("cert_file", &cfg.Admin.CertFile) {
			cfg.Admin.CertFile = checkFile(t, "cert_file", resolve(cfg.Admin.CertFile), 0)
		}
		if t.str("key_file", &cfg.Admin.KeyFile) {
			cfg.Admin.KeyFile = checkFile(t, "key_file", resolve(cfg.Admin.KeyFile), checkSecret)
		}
		if t.has("cert_file") != t.has("key_file") {
			t.errf("", "cert_file and key_file go together: give both for TLS, or neither")
		}
		if t.strs("hosts", false, &cfg.Admin.Hosts) {
			for i, h := range cfg.Admin.Hosts {
				if !isHostName(h) {
					d.errf(t.elemPath("hosts", i), "invalid host name %q: want a DNS name such as \"gslb-admin.example.net\", without port or scheme (IP literals and localhost are always accepted)", h)
				}
				cfg.Admin.Hosts[i] = strings.ToLower(strings.TrimSuffix(h, "."))
			}
		}
		if t.boolean("pprof", &cfg.Admin.Pprof) && cfg.Admin.Pprof && !t.has("token_file") {
			t.errf("pprof", "pprof needs admin.token_file: profiles are served to token holders only")
		}
		t.done("listen", "token_file", "cert_file", "key_file", "hosts", "pprof")
	}
	if ap, err := parseListen(cfg.Admin.Listen); err == nil && !ap.Addr().IsLoopback() && cfg.Admin.TokenFile == "" {
		d.errf([]string{"admin", "listen"}, "admin address %s is not loopback: set admin.token_file so that mutating calls need a token", cfg.Admin.Listen)
	}

	cfg.Log.SampleRate = DefaultSampleRate
	if t := root.sub("log"); t != nil {
		t.boolean("queries", &cfg.Log.Queries)
		t.float("sample_rate", 0, 1, &cfg.Log.SampleRate)
		t.done("queries", "sample_rate")
	}

	cfg.Dnstap = DnstapSection{Identity: cfg.Node.Name, Queries: true, Responses: true}
	if t := root.sub("dnstap"); t != nil {
		parseDnstap(t, &cfg.Dnstap, resolve)
	}

	root.done("node", "dns", "geo", "zones", "pools", "health", "cluster", "admin", "log", "dnstap")
	return cfg
}

// parseDnstap reads [dnstap]: a file or a collector socket (not both),
// the identity and version fields and the two message switches.
func parseDnstap(t *table, d *DnstapSection, resolve func(string) string) {
	hasFile := t.str("file", &d.File)
	if hasFile {
		if d.File == "" {
			t.errf("file", "empty path: omit the key for no dnstap file")
		}
		d.File = resolve(d.File)
	}
	if t.str("socket", &d.Socket) {
		network, addr, _ := strings.Cut(d.Socket, ":")
		switch {
		case hasFile:
			t.errf("socket", "dnstap goes to a file or a socket, not both: remove file or socket")
			d.Socket = ""
		case network == "unix" && addr != "":
			d.Socket = "unix:" + resolve(addr)
		case network == "tcp":
			if h, p, err := splitHostPort(addr); err != nil || h == "" || p == "" {
				t.errf("socket", "invalid collector address %q: want \"tcp:HOST:PORT\", e.g. \"tcp:127.0.0.1:6000\"", d.Socket)
			}
		default:
			t.errf("socket", "invalid socket %q: want \"unix:PATH\" or \"tcp:HOST:PORT\"", d.Socket)
		}
	}
	t.str("identity", &d.Identity)
	t.str("version", &d.Version)
	t.boolean("queries", &d.Queries)
	t.boolean("responses", &d.Responses)
	if (d.File != "" || d.Socket != "") && !d.Queries && !d.Responses {
		t.errf("", "queries and responses are both false: nothing would be logged; remove [dnstap] to turn it off")
	}
	t.done("file", "socket", "identity", "version", "queries", "responses")
}

// How checkFile looks at a file beyond its being a readable regular file.
const (
	// checkSecret: a key or token file, at most MaxSecretFile bytes and
	// not blank (an empty token would silently turn authentication off).
	checkSecret = 1 << iota
	// checkCookieSecret: 32 hexadecimal digits, a 128-bit SipHash key.
	checkCookieSecret
)

// MaxSecretFile bounds key, token and certificate files.
const MaxSecretFile = 64 << 10

// checkFile reports a file the config names but that cannot be read, and
// returns the path. The file is opened without blocking, so a FIFO or a
// device named by mistake is an error, never a hang.
func checkFile(t *table, key, path string, how int) string {
	if path == "" {
		t.errf(key, "empty path: omit the key instead")
		return path
	}
	data, _, err := ReadFile(path, MaxSecretFile)
	switch {
	case err != nil:
		t.errf(key, "cannot use %s: %v", displayName(path), pathReason(err))
	case how&checkSecret != 0 && strings.TrimSpace(string(data)) == "":
		t.errf(key, "cannot use %s: the file is empty", displayName(path))
	case how&checkCookieSecret != 0:
		if k, err := hex.DecodeString(strings.TrimSpace(string(data))); err != nil || len(k) != 16 {
			t.errf(key, "cannot use %s: want 32 hexadecimal digits (a 128-bit key, e.g. from `openssl rand -hex 16`)", displayName(path))
		}
	}
	return path
}

// parseRRL reads [dns.rrl]. A class rate left out takes the responses
// rate, as in BIND.
func parseRRL(t *table, r *RRLSection) {
	*r = RRLSection{Window: DefaultRRLWindow, Slip: DefaultRRLSlip, IPv4PrefixLength: DefaultRRLIPv4Prefix, IPv6PrefixLength: DefaultRRLIPv6Prefix}
	t.intVal("responses_per_second", 0, 1_000_000, &r.ResponsesPerSecond)
	r.NXDomainsPerSecond, r.ErrorsPerSecond = r.ResponsesPerSecond, r.ResponsesPerSecond
	t.intVal("nxdomains_per_second", 0, 1_000_000, &r.NXDomainsPerSecond)
	t.intVal("errors_per_second", 0, 1_000_000, &r.ErrorsPerSecond)
	t.intVal("window", 1, 3600, &r.Window)
	t.intVal("slip", 0, 10, &r.Slip)
	t.intVal("ipv4_prefix_length", 8, 32, &r.IPv4PrefixLength)
	t.intVal("ipv6_prefix_length", 16, 128, &r.IPv6PrefixLength)
	t.done("responses_per_second", "window", "slip", "ipv4_prefix_length", "ipv6_prefix_length", "nxdomains_per_second", "errors_per_second")
}

// isHostName reports whether h is a plausible DNS host name.
func isHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// pathReason strips the operation and path from a file error, for
// messages that name the path themselves.
func pathReason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseListen parses a listen or bind address: an IP literal and a port.
func parseListen(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("invalid address %q: want an IP literal and a port, e.g. \"127.0.0.1:5353\" or \"[::1]:5353\"", s)
	}
	if ap.Addr().Zone() != "" {
		return ap, fmt.Errorf("invalid address %q: IPv6 zones are not supported", s)
	}
	return ap, nil
}

func splitHostPort(s string) (host, port string, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", fmt.Errorf("missing port")
	}
	host, port = s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	} else if strings.Contains(host, ":") {
		return "", "", fmt.Errorf("IPv6 address without brackets")
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return "", "", fmt.Errorf("bad port")
		}
	}
	return host, port, nil
}

func parseGeoNetwork(t *table) (GeoNetwork, netip.Prefix, bool) {
	var n GeoNetwork
	var pfx netip.Prefix
	ok := false
	if !t.str("cidr", &n.CIDR) {
		if !t.has("cidr") {
			t.errf("", "missing cidr: every geo.networks entry needs one, e.g. cidr = \"10.1.0.0/16\"")
		}
	} else if p, err := netip.ParsePrefix(n.CIDR); err != nil {
		t.errf("cidr", "invalid network %q: want a CIDR prefix such as \"10.1.0.0/16\" or \"2001:db8::/32\"", n.CIDR)
	} else if p.Masked() != p {
		t.errf("cidr", "network %q has host bits set: did you mean %q?", n.CIDR, p.Masked().String())
	} else {
		pfx, ok = p, true
	}
	if t.str("country", &n.Country) {
		n.Country = strings.ToUpper(n.Country)
		if !isCountry(n.Country) {
			t.errf("country", "invalid country %q: want a two-letter ISO 3166-1 code such as \"DE\"", n.Country)
		}
	}
	if t.str("continent", &n.Continent) {
		n.Continent = strings.ToUpper(n.Continent)
		if !slices.Contains(continents, n.Continent) {
			t.errf("continent", "invalid continent %q (allowed: %s)", n.Continent, strings.Join(continents, " "))
		}
	}
	var lat, lon float64
	hasLat := t.float("lat", -90, 90, &lat)
	hasLon := t.float("lon", -180, 180, &lon)
	if t.has("lat") != t.has("lon") {
		t.errf("", "lat and lon go together: give both or neither")
	}
	if hasLat && hasLon {
		n.Lat, n.Lon = &lat, &lon
	}
	t.done("cidr", "country", "continent", "lat", "lon")
	return n, pfx, ok
}

func isCountry(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

package config

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gslbd/geo"
	"gslbd/zones"
)

func loadValid(t *testing.T) (*zones.Snapshot, *NodeConfig) {
	t.Helper()
	cfg, err := LoadNodeConfig("testdata/valid/gslbd.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, cfg
}

// TestValidConfigDefaults loads testdata/valid, which leaves out nearly
// every key that has a default, and checks each default and derived index.
func TestValidConfigDefaults(t *testing.T) {
	s, cfg := loadValid(t)
	dir, _ := filepath.Abs("testdata/valid")

	if cfg.Node.Name != "ns1" {
		t.Errorf("node.name = %q", cfg.Node.Name)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"Path", cfg.Path, filepath.Join(dir, "gslbd.toml")},
		{"Dir", cfg.Dir, dir},
		{"dns.listen", cfg.DNS.Listen, []string{"127.0.0.1:5353"}},
		{"dns.udp_size", cfg.DNS.UDPSize, uint16(1232)},
		{"dns.tcp_idle_timeout", cfg.DNS.TCPIdleTimeout.Duration, 10 * time.Second},
		{"dns.max_tcp_conns", cfg.DNS.MaxTCPConns, 1000},
		{"geo.city_db", cfg.Geo.CityDB, ""},
		{"zones.dir", cfg.Zones.Dir, filepath.Join(dir, "zones")},
		{"pools.dir", cfg.Pools.Dir, filepath.Join(dir, "pools")},
		{"health.probe", cfg.Health.Probe, true},
		{"cluster.bind", cfg.Cluster.Bind, "127.0.0.1:7946"},
		{"cluster.advertise", cfg.Cluster.Advertise, ""},
		{"cluster.profile", cfg.Cluster.Profile, "wan"},
		{"cluster.join", cfg.Cluster.Join, []string{"127.0.0.2:7946", "ns2.example.net:7946"}},
		{"admin.listen", cfg.Admin.Listen, "127.0.0.1:8053"},
		{"log.sample_rate", cfg.Log.SampleRate, 0.01},
		{"geo.networks[0].country", cfg.Geo.Networks[0].Country, "DE"},
		{"geo.networks[1].continent", cfg.Geo.Networks[1].Continent, "NA"},
		{"geo.networks[1].lat", cfg.Geo.Networks[1].Lat == nil, true},
	} {
		if !equal(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}

	// Zones: most labels first.
	var origins []string
	for _, z := range s.Zones {
		origins = append(origins, z.Origin)
	}
	if want := []string{"eu.gslb.example.com.", "gslb.example.com."}; !slices.Equal(origins, want) {
		t.Errorf("zone order = %v, want %v", origins, want)
	}
	z := s.Zones[1]
	if z.TTL != 300 || z.SOA.Refresh != 3600 || z.SOA.Retry != 600 || z.SOA.Expire != 86400 || z.SOA.Minttl != 60 {
		t.Errorf("zone defaults: ttl %d, soa %v", z.TTL, z.SOA)
	}
	if z.SOA.Ns != "ns1.gslb.example.com." || z.SOA.Mbox != "hostmaster.example.com." || z.SOA.Hdr.Ttl != 300 {
		t.Errorf("soa = %v, want mname = first nameserver, TTL = zone ttl", z.SOA)
	}
	fi, _ := os.Stat("testdata/valid/zones/example.toml")
	if z.SOA.Serial != uint32(fi.ModTime().Unix()) {
		t.Errorf("serial = %d, want the file's mtime %d", z.SOA.Serial, fi.ModTime().Unix())
	}
	apex := z.Names["gslb.example.com."]
	if apex == nil || len(apex.RRs) < 3 || apex.RRs[0].Header().Rrtype != dns.TypeSOA ||
		apex.RRs[1].Header().Rrtype != dns.TypeNS || apex.RRs[2].Header().Rrtype != dns.TypeNS {
		t.Fatalf("apex = %v, want SOA then NS first", apex)
	}
	if mx := apex.RRs[4].(*dns.MX); mx.Mx != "mx2.gslb.example.com." {
		t.Errorf("relative MX target = %q, want it completed with the origin", mx.Mx)
	}
	for name, want := range map[string]struct {
		pool string
		rrs  int
		ttl  uint32
	}{
		"www.gslb.example.com.":       {"web", 1, 300},
		"*.eu.gslb.example.com.":      {"web-eu", 0, 0},
		"legacy.gslb.example.com.":    {"", 2, 60},
		"ns.sub.gslb.example.com.":    {"", 1, 300},
		"_sip._tcp.gslb.example.com.": {"", 1, 300},
		"_tcp.gslb.example.com.":      {"", 0, 0}, // empty non-terminal
		"c.gslb.example.com.":         {"", 0, 0},
		"b.c.gslb.example.com.":       {"", 0, 0},
		"api.gslb.example.com.":       {"", 1, 300},
		"eu.gslb.example.com.":        {"", 0, 0},
		"a.b.c.gslb.example.com.":     {"", 1, 300},
		"sub.gslb.example.com.":       {"", 3, 300},
		"ns1.gslb.example.com.":       {"", 2, 300},
		"sip.gslb.example.com.":       {"", 1, 300},
		"gslb.example.com.":           {"", 8, 300},
	} {
		n := z.Names[name]
		if n == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if got := poolName(n.Pool); got != want.pool || len(n.RRs) != want.rrs || want.rrs > 0 && n.RRs[len(n.RRs)-1].Header().Ttl != want.ttl {
			t.Errorf("%s: pool %q, %d RRs %v; want pool %q, %d RRs with TTL %d", name, got, len(n.RRs), n.RRs, want.pool, want.rrs, want.ttl)
		}
	}
	if len(z.Names) != 15 {
		t.Errorf("%d names, want 15", len(z.Names))
	}
	if c := z.Names["api.gslb.example.com."].RRs[0].(*dns.CNAME); c.Target != "www.gslb.example.com." {
		t.Errorf("CNAME target %q", c.Target)
	}

	// Pools: file order, indices, defaults, check inheritance.
	var names []string
	for i, p := range s.PoolList {
		names = append(names, p.Name)
		if p.Index != i || s.Pools[p.Name] != p {
			t.Errorf("pool %s: index %d at %d", p.Name, p.Index, i)
		}
		for j, site := range p.Sites {
			if site.Pool != p || site.Index != j {
				t.Errorf("site %s/%s: pool %v index %d at %d", p.Name, site.Name, site.Pool, site.Index, j)
			}
		}
	}
	if want := []string{"web", "web-eu", "spare"}; !slices.Equal(names, want) {
		t.Errorf("pools = %v, want %v", names, want)
	}
	web := s.Pools["web"]
	if web.Policy != zones.PolicyGeo || web.Answers != 2 || web.TTL != 30 || web.Affinity != zones.AffinityNone ||
		web.WhenAllDown != zones.AllDownFallback || web.Fallback != s.Pools["web-eu"] {
		t.Errorf("web = %+v", web)
	}
	fra, iad, sin := web.Sites[0], web.Sites[1], web.Sites[2]
	wantHTTP := zones.Check{Type: zones.CheckHTTP, Port: 80, Path: "/healthz", Host: "www.example.com", Expect: []int{200, 301},
		Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3}
	if !equal(fra.Check, wantHTTP) || !equal(web.Check, wantHTTP) || !equal(sin.Check, wantHTTP) {
		t.Errorf("fra check = %+v, want %+v", fra.Check, wantHTTP)
	}
	if want := (zones.Check{Type: zones.CheckTCP, Port: 443, Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3}); !equal(iad.Check, want) {
		t.Errorf("iad check = %+v, want %+v", iad.Check, want)
	}
	if !fra.HasCoords || fra.Lat != 50.11 || !slices.Equal(fra.Countries, []string{"DE", "AT", "CH"}) ||
		!slices.Equal(fra.Continents, []string{"EU"}) || fra.Weight != 100 || fra.Priority != 1 || fra.Drained {
		t.Errorf("fra = %+v", fra)
	}
	if iad.Weight != 50 || iad.Priority != 2 || sin.Priority != 9 || !sin.Drained || sin.HasCoords {
		t.Errorf("iad weight %d priority %d; sin priority %d drained %v coords %v", iad.Weight, iad.Priority, sin.Priority, sin.Drained, sin.HasCoords)
	}
	eu := s.Pools["web-eu"]
	if eu.Policy != zones.PolicyFailover || eu.Answers != 1 || eu.TTL != 20 || eu.Affinity != zones.AffinityClientSubnet || eu.WhenAllDown != zones.AllDownNoData {
		t.Errorf("web-eu = %+v", eu)
	}
	if eu.Sites[0].Check.Port != 8080 || eu.Sites[0].Check.Interval != 10*time.Second || eu.Sites[1].Check.Port != 80 {
		t.Errorf("web-eu checks = %+v / %+v", eu.Sites[0].Check, eu.Sites[1].Check)
	}
	if c := s.Pools["spare"].Sites[0].Check; c.Type != zones.CheckNone {
		t.Errorf("spare check = %+v, want type none by default", c)
	}

	// Addresses and targets.
	idx := 0
	for _, p := range s.PoolList {
		for _, site := range p.Sites {
			for _, a := range site.Addrs {
				if a.Index != idx {
					t.Errorf("%s %s: index %d, want %d", site.Name, a.Addr, a.Index, idx)
				}
				idx++
				tg := s.Targets[a.Target]
				if tg.Addr != a.Addr || tg.Key != a.Addr.String()+"|"+site.Check.String() || !equal(tg.Check, site.Check) {
					t.Errorf("%s: target %+v", a.Addr, tg)
				}
			}
		}
	}
	if s.NumAddrs != idx || idx != 9 {
		t.Errorf("NumAddrs = %d, counted %d, want 9", s.NumAddrs, idx)
	}
	keys := map[string]bool{}
	for _, tg := range s.Targets {
		if keys[tg.Key] {
			t.Errorf("duplicate target %s", tg.Key)
		}
		keys[tg.Key] = true
	}
	if s.Geo == nil {
		t.Error("Geo is nil")
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "pool spare is used by no zone") {
		t.Errorf("warnings = %q", s.Warnings)
	}
}

func poolName(p *zones.Pool) string {
	if p == nil {
		return ""
	}
	return p.Name
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case []string:
		return slices.Equal(x, b.([]string))
	case zones.Check:
		y := b.(zones.Check)
		return slices.Equal(x.Expect, y.Expect) && x.Type == y.Type && x.Port == y.Port && x.Path == y.Path &&
			x.Host == y.Host && x.Interval == y.Interval && x.Timeout == y.Timeout && x.Rise == y.Rise &&
			x.Fall == y.Fall && x.Insecure == y.Insecure
	}
	return a == b
}

// TestSharedTargets: two pools probing one address the same way share a
// target; a different check on the same address is another target.
func TestSharedTargets(t *testing.T) {
	pools := `
[a]
check = { type = "tcp", port = 443 }
[[a.sites]]
name = "x"
addresses = ["192.0.2.1", "192.0.2.2"]

[b]
[b.check]
port = 443
type = "tcp"
[[b.sites]]
name = "y"
addresses = ["192.0.2.1"]
[[b.sites]]
name = "z"
addresses = ["192.0.2.2"]
check = { port = 444 }
`
	s := loadTree(t, map[string]string{"pools/p.toml": pools})
	var keys []string
	for _, tg := range s.Targets {
		keys = append(keys, tg.Key)
	}
	want := []string{"192.0.2.1|tcp:443?i=5s&t=2s&r=2&f=3", "192.0.2.2|tcp:443?i=5s&t=2s&r=2&f=3", "192.0.2.2|tcp:444?i=5s&t=2s&r=2&f=3"}
	if !slices.Equal(keys, want) {
		t.Errorf("targets = %q, want %q", keys, want)
	}
	if a, b := s.Pools["a"].Sites[0].Addrs[0], s.Pools["b"].Sites[0].Addrs[0]; a.Target != b.Target || a.Index == b.Index {
		t.Errorf("shared address: targets %d/%d, indices %d/%d", a.Target, b.Target, a.Index, b.Index)
	}
}

// loadTree writes files under a temporary directory with a minimal
// gslbd.toml and loads them.
func loadTree(t *testing.T, files map[string]string) *zones.Snapshot {
	t.Helper()
	dir := t.TempDir()
	if _, ok := files["gslbd.toml"]; !ok {
		files["gslbd.toml"] = defaultNodeConfig
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := LoadNodeConfig(filepath.Join(dir, "gslbd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRelativePaths: every relative path resolves against the directory of
// gslbd.toml, not the working directory; absolute paths stay.
func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "etc", "gslbd")
	for _, d := range []string{"etc/gslbd/keys", "etc/gslbd/z", "etc/gslbd/p", "elsewhere"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/gslbd/keys/gossip.key", "elsewhere/admin.token"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	token := filepath.Join(dir, "elsewhere", "admin.token")
	config := `
[geo]
city_db = "geo/city.mmdb"
[zones]
dir = "z"
[pools]
dir = "./p"
[cluster]
bind = "192.0.2.1:7946"
secret_file = "keys/gossip.key"
[admin]
listen = "[2001:db8::1]:8053"
token_file = "` + token + `"
`
	if err := os.WriteFile(filepath.Join(conf, "gslbd.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// Load through a relative path from another working directory.
	t.Chdir(filepath.Join(dir, "elsewhere"))
	cfg, err := LoadNodeConfig("../etc/gslbd/gslbd.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"Dir", cfg.Dir, conf},
		{"geo.city_db", cfg.Geo.CityDB, filepath.Join(conf, "geo", "city.mmdb")},
		{"zones.dir", cfg.Zones.Dir, filepath.Join(conf, "z")},
		{"pools.dir", cfg.Pools.Dir, filepath.Join(conf, "p")},
		{"cluster.secret_file", cfg.Cluster.SecretFile, filepath.Join(conf, "keys", "gossip.key")},
		{"admin.token_file", cfg.Admin.TokenFile, token},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestSnapshotZone(t *testing.T) {
	s, _ := loadValid(t)
	for name, want := range map[string]string{
		"gslb.example.com.":         "gslb.example.com.",
		"WWW.GSLB.Example.COM.":     "gslb.example.com.",
		"eu.gslb.example.com.":      "eu.gslb.example.com.",
		"x.Eu.gslb.example.com.":    "eu.gslb.example.com.",
		"xeu.gslb.example.com.":     "gslb.example.com.",
		"example.com.":              "",
		"agslb.example.com.":        "",
		"gslb.example.com.evil.":    "",
		".":                         "",
		"":                          "",
		`a\.eu.gslb.example.com.`:   "gslb.example.com.", // one label "a.eu"
		`www.eu\.gslb.example.com.`: "",                  // no zone example.com.
	} {
		got := ""
		if z := s.Zone(name); z != nil {
			got = z.Origin
		}
		if got != want {
			t.Errorf("Zone(%q) = %q, want %q", name, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { s.Zone("www.EU.gslb.example.com.") }); n != 0 {
		t.Errorf("Zone allocates %v times, want 0", n)
	}
}

func BenchmarkSnapshotZone(b *testing.B) {
	cfg, err := LoadNodeConfig("testdata/valid/gslbd.toml")
	if err != nil {
		b.Fatal(err)
	}
	s, err := Load(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Zone("www.GSLB.example.com.")
	}
}

func BenchmarkLoadValid(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := LoadNodeConfig("testdata/valid/gslbd.toml")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Load(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCheckString(t *testing.T) {
	base := zones.Check{Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3}
	with := func(f func(*zones.Check)) zones.Check { c := base; f(&c); return c }
	for _, c := range []struct {
		check zones.Check
		want  string
	}{
		{with(func(c *zones.Check) { c.Type = zones.CheckNone }), "none"},
		{with(func(c *zones.Check) { c.Type, c.Port = zones.CheckTCP, 80 }), "tcp:80?i=5s&t=2s&r=2&f=3"},
		{with(func(c *zones.Check) {
			c.Type, c.Port, c.Path, c.Host, c.Expect = zones.CheckHTTP, 80, "/healthz", "x", []int{200, 301}
		}), "http:80/healthz?host=x&expect=200,301&i=5s&t=2s&r=2&f=3"},
		{with(func(c *zones.Check) {
			c.Type, c.Port, c.Path, c.Expect, c.Insecure, c.Interval = zones.CheckHTTPS, 8443, "/a?b=c&d", []int{200}, true, 1500*time.Millisecond
		}), "https:8443/a%3Fb%3Dc%26d?expect=200&i=1.5s&t=2s&r=2&f=3&insecure=1"},
	} {
		if got := c.check.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
}

// TestTXT: TXT values are the text itself; long ones become several
// character-strings of at most 255 bytes, quotes and backslashes survive
// the wire.
func TestTXT(t *testing.T) {
	long := strings.Repeat("a", 300) + `"q" \ ` + "\x01é"
	for _, text := range []string{"", "v=spf1 -all", `say "hi" \ back`, long} {
		rr, err := parseRR(dns.RR_Header{Name: "x.example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1}, "TXT", text, "example.")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("pack %q: %v", text, err)
		}
		back, _, err := dns.UnpackRR(buf[:n], 0)
		if err != nil {
			t.Fatal(err)
		}
		// On the wire: length-prefixed strings whose concatenation is text.
		rdata := buf[n-int(back.Header().Rdlength) : n]
		var got []byte
		for len(rdata) > 0 {
			l := int(rdata[0])
			if l > 255 || 1+l > len(rdata) {
				t.Fatalf("bad character-string in %x", rdata)
			}
			got = append(got, rdata[1:1+l]...)
			rdata = rdata[1+l:]
		}
		if string(got) != text {
			t.Errorf("TXT %q came back as %q", text, got)
		}
	}
}

func TestAddrLiterals(t *testing.T) {
	if _, err := parseListen("127.0.0.1:5353"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"localhost:53", "127.0.0.1", "[fe80::1%eth0]:53", ":53"} {
		if _, err := parseListen(bad); err == nil {
			t.Errorf("parseListen(%q) accepted", bad)
		}
	}
}

// TestLoaderReusesGeo: a Loader reads the geo database again only when
// its file or the overrides changed.
func TestLoaderReusesGeo(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "city.mmdb")
	src, err := os.ReadFile("../../testdata/geo/city.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, src, 0o644); err != nil {
		t.Fatal(err)
	}
	node := "[node]\nname = \"t\"\n[geo]\ncity_db = \"city.mmdb\"\n"
	write := func(extra string) *NodeConfig {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "gslbd.toml"), []byte(node+extra), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadNodeConfig(filepath.Join(dir, "gslbd.toml"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	var ld Loader
	load := func(cfg *NodeConfig) *zones.Snapshot {
		t.Helper()
		s, err := ld.Load(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := load(write(""))
	if again := load(write("")); again.Geo != first.Geo {
		t.Error("unchanged database read again")
	} else if !strings.Contains(again.Files[len(again.Files)-1].Summary, "unchanged, reused") {
		t.Errorf("summary %q does not say the database was reused", again.Files[len(again.Files)-1].Summary)
	}
	over := load(write("[[geo.networks]]\ncidr = \"10.9.0.0/16\"\ncountry = \"DE\"\n"))
	if over.Geo == first.Geo {
		t.Error("database reused although geo.networks changed")
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(db, later, later); err != nil {
		t.Fatal(err)
	}
	if touched := load(write("[[geo.networks]]\ncidr = \"10.9.0.0/16\"\ncountry = \"DE\"\n")); touched.Geo == over.Geo {
		t.Error("database reused although its file changed")
	}
}

// TestLoaderRetiresGeo: a reload that reads the geo database again
// retires the table of the one in service first (geo.DB.Retire), and puts
// it back when the new file fails to load (read again from the old file,
// still open after a rename over it); a load that fails elsewhere first
// retires nothing.
func TestLoaderRetiresGeo(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "city.mmdb")
	good, err := os.ReadFile("../../testdata/geo/city.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	// replace renames a new file over the database, as geoipupdate does.
	replace := func(data []byte) {
		t.Helper()
		tmp := filepath.Join(dir, "city.mmdb.new")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, db); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Duration(rand.IntN(1e6)) * time.Second)
		if err := os.Chtimes(db, later, later); err != nil {
			t.Fatal(err)
		}
	}
	replace(good)
	path := filepath.Join(dir, "gslbd.toml")
	if err := os.WriteFile(path, []byte("[node]\nname = \"t\"\n[geo]\ncity_db = \"city.mmdb\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadNodeConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	var ld Loader
	defer ld.Close()
	probe := netip.MustParseAddr("127.0.1.1") // Frankfurt in the test database
	first, err := ld.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := first.Geo.Lookup(probe)
	if want.Source != geo.SourceDatabase {
		t.Fatalf("probe %v not in the test database: %+v", probe, want)
	}
	located := func(s *zones.Snapshot) bool {
		l, _ := s.Geo.Lookup(probe)
		return !s.Geo.Retired() && l.Country == want.Country && l.Source == geo.SourceDatabase
	}

	// A new file that is not a database: the load fails, and the
	// database in service is restored from its old file.
	replace([]byte("not a MaxMind database"))
	if _, err := ld.Load(cfg); err == nil {
		t.Fatal("a corrupt database loaded")
	}
	if !located(first) {
		t.Fatal("the database in service was not restored after a failed reload")
	}

	// A good new version: the old table is retired, the new one serves.
	replace(good)
	second, err := ld.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Geo.Retired() || !located(second) {
		t.Fatalf("after a reload of a new version: old retired %v, new located %v", first.Geo.Retired(), located(second))
	}
	// The caller kept the first snapshot in service after all (something
	// after the load failed): Restore reads its file again.
	if err := ld.Restore(first.Geo); err != nil || !located(first) {
		t.Fatalf("Restore of the database before: %v; located %v", err, located(first))
	}

	// A load that fails on a zone file reads the new database without
	// retiring the one in service.
	if err := os.WriteFile(path, []byte("[node]\nname = \"t\"\n[geo]\ncity_db = \"city.mmdb\"\n[zones]\ndir = \"missing\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken, err := LoadNodeConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	replace(good)
	if _, err := ld.Load(broken); err == nil {
		t.Fatal("a missing zone file loaded")
	}
	if !located(second) {
		t.Fatal("a load that failed on a zone file retired the database in service")
	}

	// The old file rewritten in place (not renamed over) and broken:
	// nothing can restore the database in service, and the error says so;
	// the next good file loads.
	third, err := ld.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, []byte("not a MaxMind database either"), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(db, later, later); err != nil {
		t.Fatal(err)
	}
	_, err = ld.Load(cfg)
	if err == nil || !strings.Contains(err.Error(), "could not be read again") {
		t.Fatalf("reload over a broken in-place rewrite: err = %v", err)
	}
	if !third.Geo.Retired() {
		t.Error("the database in service claims a table nothing could restore")
	}
	replace(good)
	fourth, err := ld.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !located(fourth) {
		t.Error("a good file after an unrestorable one does not locate")
	}
}

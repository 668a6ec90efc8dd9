package dnsserver

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gslbd/internal/testlog"
	"gslbd/zones"
)

// testNode is the node config of the wire tests: override networks put
// 10.1.0.0/16 and loopback in Germany and 10.2.0.0/16 in the US, so geo answers are predictable without a
// database.
const testNode = `
[node]
name = "t1"

[dns]
listen = []

[[geo.networks]]
cidr = "10.1.0.0/16"
country = "DE"
continent = "EU"
lat = 50.11
lon = 8.68

[[geo.networks]]
cidr = "10.2.0.0/16"
country = "US"
continent = "NA"
lat = 38.95
lon = -77.45

[[geo.networks]]
cidr = "127.0.0.0/8"
country = "DE"
continent = "EU"
lat = 50.11
lon = 8.68

[zones]
dir = "zones"

[pools]
dir = "pools"

[health]
probe = false

[admin]
listen = ""
`

const testZone = `
origin = "gslb.example.com."
ttl = 300
nameservers = ["ns1.gslb.example.com.", "ns2.gslb.example.com."]

[soa]
rname = "hostmaster.example.com."
serial = 2025010101
minimum = 60

[records."@"]
MX = ["10 mail.gslb.example.com."]
TXT = ["v=spf1 -all"]
CAA = ['0 issue "letsencrypt.org"']

[records.ns1]
A = ["192.0.2.53"]

[records.ns2]
AAAA = ["2001:db8::53"]

[records.mail]
A = ["192.0.2.25"]

[records.www]
pool = "web"
TXT = ["dynamic"]

[records.geo]
pool = "geo"

[records.aff]
pool = "aff"

[records.v4only]
pool = "v4only"

[records.geoalias]
CNAME = "geo.gslb.example.com."

[records.api]
CNAME = "www.gslb.example.com."

[records.chain1]
CNAME = "chain2.gslb.example.com."

[records.chain2]
CNAME = "static.gslb.example.com."

[records.static]
A = ["192.0.2.80", "192.0.2.81"]
ttl = 60

[records.out]
CNAME = "www.example.net."

[records.loop1]
CNAME = "loop2.gslb.example.com."

[records.loop2]
CNAME = "loop1.gslb.example.com."

[records.dangling]
CNAME = "nothere.gslb.example.com."

[records."*.wild"]
A = ["192.0.2.99"]

[records."host.wild"]
TXT = ["exists"]

[records."a.b.ent"]
A = ["192.0.2.77"]

[records.sub]
NS = ["ns1.sub.gslb.example.com.", "ns.elsewhere.net."]

[records."ns1.sub"]
A = ["192.0.2.153"]

[records._sip._udp]
SRV = ["10 60 5060 mail.gslb.example.com."]

[records.ptr]
PTR = ["host.example.net."]

[records.big]
TXT = [
  "0123456789012345678901234567890123456789012345678901234567890123456789",
  "1123456789012345678901234567890123456789012345678901234567890123456789",
  "2123456789012345678901234567890123456789012345678901234567890123456789",
  "3123456789012345678901234567890123456789012345678901234567890123456789",
  "4123456789012345678901234567890123456789012345678901234567890123456789",
  "5123456789012345678901234567890123456789012345678901234567890123456789",
  "6123456789012345678901234567890123456789012345678901234567890123456789",
  "7123456789012345678901234567890123456789012345678901234567890123456789",
]
`

const testOtherZone = `
origin = "other.test."
nameservers = ["ns1.gslb.example.com."]

[soa]
rname = "hostmaster.other.test."
serial = 7
minimum = 3600

[records.a]
A = ["192.0.2.200"]
`

const testPools = `
[web]
policy = "failover"
answers = 2
ttl = 30
[[web.sites]]
name = "fra"
addresses = ["192.0.2.10", "192.0.2.11", "2001:db8:10::1"]
[[web.sites]]
name = "iad"
addresses = ["198.51.100.10", "2001:db8:20::1"]

[v4only]
policy = "failover"
answers = 1
ttl = 20
[[v4only.sites]]
name = "fra"
addresses = ["192.0.2.30"]

[aff]
policy = "weighted"
affinity = "client-subnet"
answers = 1
[[aff.sites]]
name = "a"
addresses = ["192.0.2.60"]
[[aff.sites]]
name = "b"
addresses = ["192.0.2.61"]

[geo]
policy = "geo"
answers = 1
ttl = 25
[[geo.sites]]
name = "fra"
lat = 50.11
lon = 8.68
countries = ["DE"]
continents = ["EU"]
addresses = ["192.0.2.40", "2001:db8:40::1"]
[[geo.sites]]
name = "iad"
lat = 38.95
lon = -77.45
countries = ["US"]
continents = ["NA"]
addresses = ["198.51.100.40", "2001:db8:41::1"]
`

// loadView builds a view from TOML strings through the real loader.
func loadView(t testing.TB, files map[string]string) *zones.View {
	t.Helper()
	snap, err := loadSnap(t, files)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return zones.NewView(snap, nil)
}

func defaultFiles() map[string]string {
	return map[string]string{
		"gslbd.toml":       testNode,
		"zones/gslb.toml":  testZone,
		"zones/other.toml": testOtherZone,
		"pools/pools.toml": testPools,
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return testlog.New(t, slog.LevelDebug)
}

// startServer runs a server on 127.0.0.1 port 0 with the default test
// zones; it is shut down when the test ends.
func startServer(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = []string{"127.0.0.1:0"}
	}
	if cfg.UDPSockets == 0 {
		cfg.UDPSockets = 2
	}
	s := New(cfg, testLogger(t), nil)
	s.Publish(loadView(t, defaultFiles()))
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := s.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
	})
	return s, s.Addrs()[0].String()
}

// ecsOpt returns an OPT record with an ECS option.
func ecsOpt(size uint16, prefix string) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(size)
	if prefix != "" {
		p := netip.MustParsePrefix(prefix)
		e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()}
		e.Family = 1
		if p.Addr().Is6() {
			e.Family = 2
		}
		o.Option = append(o.Option, e)
	}
	return o
}

package config

import "time"

// NodeConfig is gslbd.toml (docs/configuration.md), decoded strictly, defaults applied,
// relative paths resolved against the file's directory.
type NodeConfig struct {
	Path string // the file it was read from
	Dir  string // its directory

	Node    NodeSection
	DNS     DNSSection
	Geo     GeoSection
	Zones   DirSection
	Pools   DirSection
	Health  HealthSection
	Cluster ClusterSection
	Admin   AdminSection
	Log     LogSection
	Dnstap  DnstapSection

	// display is Path as shown in errors; pos the places of its keys, so
	// that Load can point at geo.city_db or zones.dir when they fail.
	display string
	pos     posMap
}

type NodeSection struct {
	Name string // default: the host name
}

type DNSSection struct {
	Listen         []string // default ["127.0.0.1:5353"]; [] = no DNS
	UDPSize        uint16   // default 1232
	TCPIdleTimeout Duration // default 10s
	MaxTCPConns    int      // default 1000
	// MaxTCPConnsPerSource caps the connections of one IPv4 address or
	// IPv6 /64; default max_tcp_conns / 10.
	MaxTCPConnsPerSource int
	RRL                  RRLSection
	Cookies              CookiesSection
}

// RRLSection is [dns.rrl]: response rate limiting, named after BIND's
// options. Off unless ResponsesPerSecond > 0.
type RRLSection struct {
	ResponsesPerSecond int
	NXDomainsPerSecond int // default ResponsesPerSecond; 0 = unlimited
	ErrorsPerSecond    int // default ResponsesPerSecond; 0 = unlimited
	Window             int // seconds; default 15
	Slip               int // default 2; 0 = drop every limited response
	IPv4PrefixLength   int // default 24
	IPv6PrefixLength   int // default 56
}

// CookiesSection is [dns.cookies]: DNS Cookies are always on; the secret
// comes from SecretFile when set (shared by the nodes), else it is
// random per process.
type CookiesSection struct {
	SecretFile string // resolved to an absolute path
}

type GeoSection struct {
	CityDB   string // resolved to an absolute path; "" = none
	Networks []GeoNetwork
}

type GeoNetwork struct {
	CIDR      string
	Country   string
	Continent string
	Lat       *float64
	Lon       *float64
}

type DirSection struct {
	Dir string // resolved to an absolute path

	explicit bool // the key was given (a missing default directory is no error)
}

type HealthSection struct {
	Probe bool // default true
	// ExternalFile is the watched external health file (resolved to an
	// absolute path); "" for none. It need not exist yet.
	ExternalFile string
	// MonitorsPerTarget is how many monitors probe each target, chosen by
	// rendezvous hashing over the live monitors; 0 (default) means all.
	MonitorsPerTarget int
}

type ClusterSection struct {
	Bind       string // default "127.0.0.1:7946"
	Advertise  string // default: bind
	Join       []string
	Profile    string // lan | wan | local; default "wan"
	SecretFile string // resolved to an absolute path
	// Label isolates clusters that share a network (memberlist Label).
	Label string
	// ReconnectInterval is how often failed members and the join list are
	// tried again (default 5 s), so that a healed partition rejoins.
	ReconnectInterval time.Duration
	// Retention is how long monitors, members, drains and report
	// tombstones dead, gone or withdrawn are kept (default 24 h).
	Retention time.Duration
}

type AdminSection struct {
	Listen    string // default "127.0.0.1:8053"; "" disables
	TokenFile string // resolved to an absolute path
	// CertFile and KeyFile turn on TLS; both or neither.
	CertFile string
	KeyFile  string
	// Hosts are the Host header names accepted besides IP literals and
	// localhost (DNS rebinding protection).
	Hosts []string
	// Pprof serves /debug/pprof/ (token-guarded); default false.
	Pprof bool
}

// LogSection configures the optional sampled query log.
type LogSection struct {
	Queries    bool
	SampleRate float64 // share of queries logged, 0..1; default 0.01
}

// DnstapSection is [dnstap]: off unless File or Socket is set.
type DnstapSection struct {
	File      string // Frame Streams file, resolved to an absolute path
	Socket    string // "unix:PATH" (path resolved) or "tcp:HOST:PORT"
	Identity  string // default: the node name
	Version   string // "" = gslbd and its version (filled in by the server)
	Queries   bool   // default true
	Responses bool   // default true
}

// Enabled reports whether dnstap output is configured.
func (d DnstapSection) Enabled() bool { return d.File != "" || d.Socket != "" }

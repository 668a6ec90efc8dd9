package config

import "time"

// NodeConfig is gslbd.toml (SPEC §2), decoded strictly, defaults applied,
// relative paths resolved against the file's directory.
type NodeConfig struct {
	Path string `toml:"-"` // the file it was read from
	Dir  string `toml:"-"` // its directory

	Node    NodeSection    `toml:"node"`
	DNS     DNSSection     `toml:"dns"`
	Geo     GeoSection     `toml:"geo"`
	Zones   DirSection     `toml:"zones"`
	Pools   DirSection     `toml:"pools"`
	Health  HealthSection  `toml:"health"`
	Cluster ClusterSection `toml:"cluster"`
	Admin   AdminSection   `toml:"admin"`
	Log     LogSection     `toml:"log"`

	// display is Path as shown in errors; pos the places of its keys, so
	// that Load can point at geo.city_db or zones.dir when they fail.
	display string
	pos     posMap
}

type NodeSection struct {
	Name string `toml:"name"` // default: the host name
}

type DNSSection struct {
	Listen         []string `toml:"listen"`           // default ["127.0.0.1:5353"]; [] = no DNS
	UDPSize        uint16   `toml:"udp_size"`         // default 1232
	TCPIdleTimeout Duration `toml:"tcp_idle_timeout"` // default 10s
	MaxTCPConns    int      `toml:"max_tcp_conns"`    // default 1000
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
	CityDB   string       `toml:"city_db"` // resolved to an absolute path; "" = none
	Networks []GeoNetwork `toml:"networks"`
}

type GeoNetwork struct {
	CIDR      string   `toml:"cidr"`
	Country   string   `toml:"country"`
	Continent string   `toml:"continent"`
	Lat       *float64 `toml:"lat"`
	Lon       *float64 `toml:"lon"`
}

type DirSection struct {
	Dir string `toml:"dir"` // resolved to an absolute path

	explicit bool // the key was given (a missing default directory is no error)
}

type HealthSection struct {
	Probe bool `toml:"probe"` // default true
	// MonitorsPerTarget is how many monitors probe each target, chosen by
	// rendezvous hashing over the live monitors; 0 (default) means all.
	MonitorsPerTarget int `toml:"monitors_per_target"`
}

type ClusterSection struct {
	Bind       string   `toml:"bind"`      // default "127.0.0.1:7946"
	Advertise  string   `toml:"advertise"` // default: bind
	Join       []string `toml:"join"`
	Profile    string   `toml:"profile"`     // lan | wan | local; default "wan"
	SecretFile string   `toml:"secret_file"` // resolved to an absolute path
	// Label isolates clusters that share a network (memberlist Label).
	Label string `toml:"label"`
	// ReconnectInterval is how often failed members and the join list are
	// tried again (default 5 s), so that a healed partition rejoins.
	ReconnectInterval time.Duration `toml:"reconnect_interval"`
	// Retention is how long monitors, members, drains and report
	// tombstones dead, gone or withdrawn are kept (default 24 h).
	Retention time.Duration `toml:"retention"`
}

type AdminSection struct {
	Listen    string `toml:"listen"`     // default "127.0.0.1:8053"; "" disables
	TokenFile string `toml:"token_file"` // resolved to an absolute path
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
	Queries    bool    `toml:"queries"`
	SampleRate float64 `toml:"sample_rate"` // share of queries logged, 0..1; default 0.01
}

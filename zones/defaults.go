package zones

import "time"

// Defaults that both the config loader (zones/config, for keys left out)
// and the components (for values built without them: the DNS server's
// Config, a Check) apply. They live here, below both, so there is one copy;
// docs/configuration.md lists them with the others.
const (
	// DNS ([dns] of gslbd.toml, dnsserver.Config).
	DefaultUDPSize        = 1232 // the EDNS buffer size of DNS Flag Day 2020
	DefaultTCPIdleTimeout = 10 * time.Second
	DefaultMaxTCPConns    = 1000

	// Health checks ([POOL.check] of pool files, healthmon).
	DefaultCheckInterval = 5 * time.Second
	DefaultCheckTimeout  = 2 * time.Second
)

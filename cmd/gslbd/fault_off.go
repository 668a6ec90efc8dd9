//go:build !gslbdfault

package main

import (
	"log/slog"

	"gslbd/cluster"
)

// faultInjection does nothing in release builds; see fault.go (build tag
// gslbdfault) for the test builds that cut mesh traffic on command.
func faultInjection(*cluster.Options, *slog.Logger) error { return nil }

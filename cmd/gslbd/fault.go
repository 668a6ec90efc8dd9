//go:build gslbdfault

// This file exists only in test builds (go build -tags gslbdfault): the
// multi-process partition test cuts a `gslbd serve` off from chosen peers
// through the file named by GSLBD_FAULT_CUT_FILE. Release builds do not
// have the tag, so they cannot drop their own mesh traffic.

package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"gslbd/cluster"
	"gslbd/cluster/faultnet"
)

const faultCutEnv = "GSLBD_FAULT_CUT_FILE"

// faultInjection gives the mesh a faultnet transport on its bind address
// when GSLBD_FAULT_CUT_FILE is set; the file is re-read every 50 ms.
func faultInjection(o *cluster.Options, log *slog.Logger) error {
	path := os.Getenv(faultCutEnv)
	if path == "" {
		return nil
	}
	host, p, err := net.SplitHostPort(o.Bind)
	if err != nil {
		return fmt.Errorf("fault injection: bind %q: %w", o.Bind, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return fmt.Errorf("fault injection: bind %q: %w", o.Bind, err)
	}
	ft, err := faultnet.New(faultnet.Config{BindAddr: host, BindPort: port, Logger: log.With("component", "faultnet")})
	if err != nil {
		return fmt.Errorf("fault injection: %w", err)
	}
	ft.Watch(path, 50*time.Millisecond)
	o.Transport = ft
	log.Warn("fault-injection build: mesh traffic with the peers listed in the cut file is dropped", "file", path)
	return nil
}

//go:build !linux

package dnsserver

import "net"

// listenConfig without SO_REUSEPORT: a second UDP socket on the same
// address fails to bind, so use Config.UDPSockets = 1 on these systems.
func listenConfig(warn func(error)) net.ListenConfig { return net.ListenConfig{} }

const haveReusePort = false

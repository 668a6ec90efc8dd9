//go:build !linux

package dnsserver

import "net"

// haveBatch is false where recvmmsg/sendmmsg are not wired up: every
// reader uses the portable one-datagram-at-a-time loop.
const haveBatch = false

// serveUDPBatch reports that this system cannot batch, so serveUDP uses
// the portable loop.
func (s *Server) serveUDPBatch(c *net.UDPConn, n, shard int) bool { return false }

// wakeRawLocked has nothing to wake: no socket is detached here.
func (s *Server) wakeRawLocked() {}

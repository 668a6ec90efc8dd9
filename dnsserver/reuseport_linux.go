package dnsserver

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

const haveReusePort = true

// listenConfig sets SO_REUSEPORT before bind so that several UDP sockets
// share one address and the kernel spreads queries over their readers.
func listenConfig() net.ListenConfig {
	return net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
}

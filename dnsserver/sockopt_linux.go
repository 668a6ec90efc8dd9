package dnsserver

import (
	"fmt"
	"net"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const haveReusePort = true

// listenConfig sets SO_REUSEPORT before bind so that several UDP sockets
// share one address and the kernel spreads queries over their readers,
// and makes UDP answers unfragmentable (dontFragment). A kernel that
// refuses the latter (a sandbox's, say) still serves, with fragmentable
// answers: warn hears of it.
func listenConfig(warn func(error)) net.ListenConfig {
	return net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			if serr == nil && strings.HasPrefix(network, "udp") {
				if err := dontFragment(int(fd), network); err != nil {
					warn(err)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
}

// dontFragment keeps the kernel from ever fragmenting an answer (RFC 9715:
// fragments can be forged into a resolver's cache, and are often dropped
// on the way). IPv4 answers carry the Don't Fragment bit; IPv6 answers
// are never split by the sender. IP_PMTUDISC_PROBE also ignores path-MTU
// reports, so a forged ICMP "fragmentation needed" cannot shrink our
// answers either. An answer larger than the outgoing interface's MTU is
// refused by the kernel (EMSGSIZE); the readers then send it truncated,
// and the client asks again over TCP.
//
// It also spares the kernel the per-packet IP ID of fragmentable IPv4
// packets (__ip_select_ident), about 2.5 % of the server's CPU samples on
// loopback.
func dontFragment(fd int, network string) error {
	if network == "udp4" {
		return wrapDF(unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE))
	}
	// An IPv6 socket may serve IPv4 too (a wildcard listener): its IPv4
	// packets follow the IPv4 option, which an IPv6-only socket refuses.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
	return wrapDF(unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE))
}

func wrapDF(err error) error {
	if err != nil {
		return fmt.Errorf("keep udp answers from being fragmented: %w", err)
	}
	return nil
}

package dnsserver

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// netnsMTU is the loopback MTU of TestUDPNeverFragments' namespace: the
// IPv6 minimum, which the 3.4 KB answer exceeds and the 0.7 KB one fits.
const netnsMTU = 1280

// inNetns runs f on a thread moved into a network namespace of its own,
// whose loopback is up with an MTU of mtu. Sockets f opens stay in the
// namespace after it returns; the thread ends with f (it is never
// unlocked), so no other goroutine runs in the namespace. It needs
// CAP_SYS_ADMIN (root, as make test runs).
func inNetns(t *testing.T, mtu int, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare a network namespace (this test needs root): %w", err)
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			errc <- err
			return
		}
		ifr.SetUint32(uint32(mtu))
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr); err != nil {
			errc <- fmt.Errorf("set lo's MTU: %w", err)
			return
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			errc <- err
			return
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			errc <- fmt.Errorf("bring lo up: %w", err)
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestUDPNeverFragments checks that UDP answers are never fragmented
// (RFC 9715): in a namespace whose loopback MTU is 1280, an answer of
// 3.4 KB that the client's EDNS buffer and udp_size allow comes back
// truncated (TC, question and OPT kept) instead of in fragments, and
// counted; a 0.7 KB one comes back whole, over IPv4 with the Don't
// Fragment bit set. Both UDP readers (batched and one at a time), IPv4,
// IPv6 and a wildcard socket answering IPv4 are tried. Without
// dontFragment the kernel fragments the big answer and the client gets
// it whole.
func TestUDPNeverFragments(t *testing.T) {
	files := defaultFiles()
	var txt []string
	for i := range 16 {
		txt = append(txt, fmt.Sprintf("%q", fmt.Sprintf("%02d", i)+strings.Repeat("x", 198)))
	}
	files["zones/gslb.toml"] += "\n[records.huge]\nTXT = [" + strings.Join(txt, ", ") + "]\n"
	view := loadView(t, files)
	type setup struct {
		name, listen, dial string
		batch              int
		v4                 bool
	}
	setups := []setup{
		{"batch-ipv4", "127.0.0.1:0", "127.0.0.1", 0, true},
		{"each-ipv4", "127.0.0.1:0", "127.0.0.1", 1, true},
		{"batch-ipv6", "[::1]:0", "::1", 0, false},
		{"each-ipv6", "[::1]:0", "::1", 1, false},
		{"batch-wildcard-ipv4", "[::]:0", "127.0.0.1", 0, true},
	}
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			var s *Server
			var client *net.UDPConn
			raw := -1
			inNetns(t, netnsMTU, func() error {
				s = New(Config{Listen: []string{su.listen}, UDPSockets: 1, UDPBatch: su.batch, UDPSize: 4096}, testLogger(t), nil)
				s.Publish(view)
				if err := s.Start(context.Background()); err != nil {
					return err
				}
				port := s.Addrs()[0].Port()
				var err error
				client, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(su.dial), port)))
				if err != nil {
					return err
				}
				if su.v4 {
					// Every UDP packet to this namespace's IPv4 addresses,
					// IP header included.
					raw, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
					if err != nil {
						return fmt.Errorf("raw socket: %w", err)
					}
					tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
					return unix.SetsockoptTimeval(raw, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
				}
				return nil
			})
			t.Cleanup(func() {
				client.Close()
				if raw >= 0 {
					unix.Close(raw)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				s.Shutdown(ctx)
			})
			port := s.Addrs()[0].Port()
			co := &dns.Conn{Conn: client, UDPSize: 65535}
			ask := func(name string) *dns.Msg {
				t.Helper()
				q := mkQuery(name, dns.TypeTXT)
				q.SetEdns0(4096, false)
				co.SetDeadline(time.Now().Add(3 * time.Second))
				if err := co.WriteMsg(q); err != nil {
					t.Fatal(err)
				}
				r, err := co.ReadMsg()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				return r
			}

			before := s.ctr.truncated()
			r := ask("huge.gslb.example.com.")
			if !r.Truncated || len(r.Answer) != 0 || len(r.Question) != 1 || r.IsEdns0() == nil {
				t.Fatalf("huge answer over a %d-byte MTU: TC %v, %d answers, OPT %v; want it truncated, not fragmented",
					netnsMTU, r.Truncated, len(r.Answer), r.IsEdns0() != nil)
			}
			// The reader counts after sending: poll.
			for deadline := time.Now().Add(3 * time.Second); s.ctr.truncated()-before != 1 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if got := s.ctr.truncated() - before; got != 1 {
				t.Errorf("truncated counter rose by %d, want 1", got)
			}
			r = ask("big.gslb.example.com.")
			if r.Truncated || len(r.Answer) != 8 {
				t.Fatalf("big answer: TC %v, %d answers; want all 8 TXT records", r.Truncated, len(r.Answer))
			}
			if !su.v4 {
				return
			}
			// Both answers went by, IP header and all, on the raw socket;
			// neither may be fragmentable.
			buf := make([]byte, 65536)
			for range 1000 {
				n, _, err := unix.Recvfrom(raw, buf, 0)
				if err != nil {
					t.Fatalf("the big answer was not seen on the raw socket: %v", err)
				}
				p := buf[:n]
				ihl := int(p[0]&0xF) * 4
				if n < ihl+8 || binary.BigEndian.Uint16(p[ihl:]) != port {
					continue // a query
				}
				if frag := binary.BigEndian.Uint16(p[6:]); frag&0x4000 == 0 {
					t.Fatalf("an answer of %d bytes went out without Don't Fragment (flags and offset %#04x)", n, frag)
				}
				if n > 600 {
					return // the big one
				}
			}
			t.Fatal("no answer among 1000 packets on the raw socket")
		})
	}
}

package main

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// tcpBackend accepts and closes connections on addr until stopped; it
// can listen again on the same address.
type tcpBackend struct {
	addr string
	ln   net.Listener
}

// startTCPBackendPair starts backends on the same port of two loopback
// addresses (a pool's check has one port): the first on a port the
// kernel picks, the second on that port, with a new pick in the rare
// case that it is taken there. It returns the first backend (the test
// stops and restarts it) and the port.
func startTCPBackendPair(t *testing.T, first, second string) (*tcpBackend, int) {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", net.JoinHostPort(first, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		ln2, err := net.Listen("tcp", net.JoinHostPort(second, port))
		if err != nil {
			ln.Close()
			continue
		}
		a := &tcpBackend{addr: net.JoinHostPort(first, port), ln: ln}
		b := &tcpBackend{addr: net.JoinHostPort(second, port), ln: ln2}
		for _, x := range []*tcpBackend{a, b} {
			go acceptAll(x.ln)
			t.Cleanup(x.stop)
		}
		return a, ln.Addr().(*net.TCPAddr).Port
	}
	t.Fatalf("no port free on both %s and %s", first, second)
	return nil, 0
}

func (b *tcpBackend) listen(t *testing.T) {
	t.Helper()
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b.ln, err = net.Listen("tcp", b.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the old socket may linger briefly
	}
	if err != nil {
		t.Fatal(err)
	}
	go acceptAll(b.ln)
}

func (b *tcpBackend) stop() {
	if b.ln != nil {
		b.ln.Close()
		b.ln = nil
	}
}

// TestHealthDrivesAnswers runs a node whose pool probes two real TCP
// backends: stopping one takes its address out of the DNS answers, with a
// "verdict changed" log line, and starting it again brings it back.
func TestHealthDrivesAnswers(t *testing.T) {
	a, port := startTCPBackendPair(t, "127.0.0.41", "127.0.0.42")
	pools := probedPool("tcp", port, "127.0.0.41", "127.0.0.42")
	n := startInproc(t, "health", nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": pools}, "", nil, nil)
	answers := func() []string { return answerAddrs(exchange(t, n.DNS, "www.gslb.test.", dns.TypeA, "")) }
	both := []string{"127.0.0.41", "127.0.0.42"}
	eventually(t, 10*time.Second, "both backends answered", func() bool { return slices.Equal(answers(), both) })

	a.stop()
	took := eventually(t, 10*time.Second, "stopped backend leaves the answers", func() bool {
		return slices.Equal(answers(), []string{"127.0.0.42"})
	})
	t.Logf("backend stop → answer change: %v (interval 200ms × fall 2)", took.Round(10*time.Millisecond))
	eventually(t, 5*time.Second, "verdict change logged", func() bool {
		return strings.Contains(n.log.String(), `msg="verdict changed" addr=127.0.0.41 verdict=down`)
	})

	a.listen(t)
	took = eventually(t, 10*time.Second, "restarted backend returns", func() bool { return slices.Equal(answers(), both) })
	t.Logf("backend start → answer change: %v (rise 1)", took.Round(10*time.Millisecond))
}

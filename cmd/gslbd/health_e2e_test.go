package main

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// tcpBackend accepts and closes connections on addr until closed.
type tcpBackend struct {
	addr string
	ln   net.Listener
}

func startTCPBackend(t *testing.T, addr string) *tcpBackend {
	t.Helper()
	b := &tcpBackend{addr: addr}
	b.listen(t)
	t.Cleanup(b.stop)
	return b
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
	ln := b.ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
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
	port := freePort(t, "127.0.0.41", false)
	a := startTCPBackend(t, fmt.Sprintf("127.0.0.41:%d", port))
	startTCPBackend(t, fmt.Sprintf("127.0.0.42:%d", port))
	pools := probedPool("tcp", port, "127.0.0.41", "127.0.0.42")
	n := newTestNode(t, "health", nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": pools}, "", nil)
	n.Start()
	answers := func() []string { return answerAddrs(exchange(t, n.DNS, "www.gslb.test.", dns.TypeA, "")) }
	both := []string{"127.0.0.41", "127.0.0.42"}
	eventually(t, 10*time.Second, "both backends answered", func() bool { return slices.Equal(answers(), both) })

	a.stop()
	took := eventually(t, 10*time.Second, "stopped backend leaves the answers", func() bool {
		return slices.Equal(answers(), []string{"127.0.0.42"})
	})
	t.Logf("backend stop → answer change: %v (interval 200ms × fall 2)", took.Round(10*time.Millisecond))
	eventually(t, 5*time.Second, "verdict change logged", func() bool {
		return strings.Contains(n.logBuf.String(), `msg="verdict changed" addr=127.0.0.41 verdict=down`)
	})

	a.listen(t)
	took = eventually(t, 10*time.Second, "restarted backend returns", func() bool { return slices.Equal(answers(), both) })
	t.Logf("backend start → answer change: %v (rise 1)", took.Round(10*time.Millisecond))
}

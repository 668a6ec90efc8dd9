package dnsserver

import (
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// raiseFileLimit lifts the soft descriptor limit to the hard one: the
// fairness tests hold two thousand sockets (both ends of a thousand
// connections) in this one process.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < need {
		rl.Cur = min(rl.Max, need)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Fatalf("raise RLIMIT_NOFILE to %d: %v", need, err)
		}
	}
	if rl.Cur < need {
		t.Fatalf("RLIMIT_NOFILE hard limit %d is below the %d descriptors this test needs", rl.Max, need)
	}
}

// hog opens n TCP connections from src, asks one query on each as it
// opens it and, on each that was answered, sends a query every period
// until stop is closed. It returns how many were answered at first.
func hog(t *testing.T, addr, src string, n int, period time.Duration, stop <-chan struct{}, wg *sync.WaitGroup) int {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	query := tcpFrames(t, mkQuery("static.gslb.example.com.", dns.TypeA))
	ask := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(query); err != nil {
			return false
		}
		_, err := readTCP(c)
		return err == nil
	}
	held := 0
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			continue // refused at accept and reset before the handshake ended
		}
		if !ask(c) {
			c.Close()
			continue
		}
		held++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			tick := time.NewTicker(period)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if !ask(c) {
					return
				}
			}
		}()
	}
	return held
}

// askTCP tries until deadline to get a TCP answer from src.
func askTCP(t *testing.T, addr, src string, deadline time.Duration) (time.Duration, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	start := time.Now()
	var err error
	for time.Since(start) < deadline {
		var c net.Conn
		if c, err = d.Dial("tcp", addr); err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err = c.Write(tcpFrames(t, mkQuery("static.gslb.example.com.", dns.TypeA))); err == nil {
				var m *dns.Msg
				if m, err = readTCP(c); err == nil && len(m.Answer) == 2 {
					c.Close()
					return time.Since(start), nil
				}
			}
			c.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), err
}

// TestTCPPerSourceCap: one source opens a thousand connections and keeps
// querying on them every two seconds; the per-source cap leaves it a
// hundred, and another client is answered over TCP at once.
func TestTCPPerSourceCap(t *testing.T) {
	raiseFileLimit(t, 4096)
	s, addr := startServer(t, Config{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	held := hog(t, addr, "127.0.0.2", 1000, 2*time.Second, stop, &wg)
	if held != 100 {
		t.Errorf("one source holds %d connections, want the per-source cap of 100", held)
	}
	took, err := askTCP(t, addr, "127.0.0.3", 10*time.Second)
	if err != nil {
		t.Fatalf("another client got no TCP answer: %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("another client waited %v for a TCP answer", took)
	}
	if got := s.ctr.tcpSourceRefused.Load(); got < 800 {
		t.Errorf("per-source refusals counted %d, want about 900", got)
	}
	t.Logf("held %d of 1000; the other client answered after %v; %d refused by the per-source cap", held, took.Round(time.Millisecond), s.ctr.tcpSourceRefused.Load())
}

// TestTCPPressure: one source allowed every slot holds a thousand
// connections with a query every three seconds. Under pressure the idle
// timeout drops to 500ms (RFC 7766 §6.2.3), so its connections are closed
// between its queries and another client gets a slot and an answer.
func TestTCPPressure(t *testing.T) {
	raiseFileLimit(t, 4096)
	s, addr := startServer(t, Config{MaxTCPConns: 1000, MaxTCPConnsPerSource: 1000, TCPIdleTimeout: 10 * time.Second, PressureIdleTimeout: 500 * time.Millisecond})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	held := hog(t, addr, "127.0.0.2", 1000, 3*time.Second, stop, &wg)
	if held < 900 {
		t.Fatalf("the hog got only %d connections: the test needs most slots taken", held)
	}
	if !s.pressure.Load() && s.ctr.tcpOpen.Load() >= 750 {
		t.Error("three quarters of the slots taken, yet not under pressure")
	}
	took, err := askTCP(t, addr, "127.0.0.3", 15*time.Second)
	if err != nil {
		t.Fatalf("another client got no TCP answer while one source held %d connections: %v", held, err)
	}
	t.Logf("hog held %d connections; the other client answered after %v; %d open now", held, took.Round(time.Millisecond), s.ctr.tcpOpen.Load())
}

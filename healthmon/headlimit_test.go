package healthmon

import (
	"bufio"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gslbd/zones"
)

// TestEndlessHeader probes a backend that answers with a status line and
// then header lines without end. The probe fails on the 16 KiB header
// limit, long before its timeout, having read little of what the backend
// sent and allocated a bounded amount.
func TestEndlessHeader(t *testing.T) {
	checkLeaks(t)
	l := listen(t, "127.0.0.17")
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for { // the request head
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				w := bufio.NewWriterSize(c, 64<<10)
				w.WriteString("HTTP/1.1 200 OK\r\n")
				line := "X-Endless: " + strings.Repeat("a", 1000) + "\r\n"
				for sent.Load() < 64<<20 {
					n, err := w.WriteString(line)
					sent.Add(int64(n))
					if err != nil {
						return
					}
				}
			}(c)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	ap := netip.MustParseAddrPort(l.Addr().String())

	m := New(Options{Node: "n1", Version: "t", Logger: testLogger(t)})
	tg := target(ap, zones.Check{Type: zones.CheckHTTP, Port: ap.Port(), Path: "/", Expect: []int{200}, Timeout: 20 * time.Second})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	r := m.run(t.Context(), tg)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if r.ok || r.reason != "response header larger than 16 KiB" {
		t.Errorf("probe of an endless header: ok %v, reason %q", r.ok, r.reason)
	}
	if took > 10*time.Second {
		t.Errorf("probe took %v: it waited for the deadline instead of stopping at the limit", took)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("probe allocated %d bytes for an endless header, want a bounded amount under 1 MiB", alloc)
	}
	t.Logf("probe failed after %v; backend had written %d KiB; %d KiB allocated", took.Round(time.Millisecond), sent.Load()>>10, (after.TotalAlloc-before.TotalAlloc)>>10)
}

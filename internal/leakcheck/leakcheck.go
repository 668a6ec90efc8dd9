// Package leakcheck fails a test whose goroutines outlive it.
package leakcheck

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Check fails tb when, after every cleanup registered later has run,
// goroutines remain whose stacks mention one of the given substrings
// (e.g. "hashicorp/memberlist", "gslbd/cluster.(*Mesh)"); with none
// given, when more goroutines run than when Check was called. Register it
// first: cleanups run last-registered first. It polls for up to 10 s,
// since stopped goroutines take a moment to return.
func Check(tb testing.TB, match ...string) {
	base := runtime.NumGoroutine()
	tb.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			leaked := leaked(match)
			if len(match) == 0 && runtime.NumGoroutine() <= base {
				return
			}
			if len(match) > 0 && len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				if len(match) == 0 {
					tb.Errorf("%d goroutines before the test, %d after:\n%s", base, runtime.NumGoroutine(), strings.Join(leaked, "\n\n"))
				} else {
					tb.Errorf("%d goroutines leaked, first:\n%s", len(leaked), leaked[0])
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// leaked lists the goroutine stacks that match (all but this one's when
// match is empty).
func leaked(match []string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "leakcheck.") {
			continue
		}
		if len(match) == 0 {
			out = append(out, g)
			continue
		}
		for _, m := range match {
			if strings.Contains(g, m) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

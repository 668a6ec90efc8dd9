package main

import (
	"runtime/debug"
	"testing"
)

// TestTightGC: a reload runs with the collector's target at loadGCPercent
// and gets the operator's back afterwards; a lower target, or the
// collector off, is left as it is.
func TestTightGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct{ set, during int }{
		{100, loadGCPercent},
		{400, loadGCPercent},
		{10, 10},
		{-1, -1},
	} {
		debug.SetGCPercent(tc.set)
		restore := tightGC()
		during := debug.SetGCPercent(tc.during)
		debug.SetGCPercent(during)
		restore()
		after := debug.SetGCPercent(tc.set)
		if during != tc.during || after != tc.set {
			t.Errorf("GOGC %d: %d during the load, %d after, want %d and %d", tc.set, during, after, tc.during, tc.set)
		}
	}
}

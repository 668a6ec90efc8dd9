package zones

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"
)

// disputedHealth is a testHealth whose monitors disagree on some targets.
type disputedHealth struct {
	*testHealth
	disputed map[string]bool // by address
}

func (h disputedHealth) Disputed(key string) bool {
	for a := range h.disputed {
		if len(key) > len(a) && key[:len(a)+1] == a+"|" {
			return true
		}
	}
	return false
}

// TestHealthAwareTTL: a pool answers with its ttl while every address is
// up and undisputed, and with its min_ttl (default ttl/4) while any
// address is down or its monitors disagree, whichever site answers.
// Drains do not lower it.
func TestHealthAwareTTL(t *testing.T) {
	pools := "[h]\npolicy = \"geo\"\nanswers = 1\nttl = 40\nmin_ttl = 7\n" + fmt.Sprintf(sites3, "h") +
		"[d]\npolicy = \"geo\"\nanswers = 1\nttl = 40\n" + fmt.Sprintf(sites3, "d")
	s := loadSel(t, selPools()+pools)
	for _, tc := range []struct {
		name   string
		h      Health
		h1, d1 uint32
	}{
		{"all up", health(), 40, 40},
		{"an address down", health("203.0.113.10"), 7, 10},
		{"monitors disagree", disputedHealth{health(), map[string]bool{"198.51.100.11": true}}, 7, 10},
		{"drained only", health("drain:h/sin", "drain:d/fra/192.0.2.10"), 40, 40},
	} {
		v := NewView(s, tc.h)
		// A client near fra: the down address is in sin, the answer from fra.
		for pool, want := range map[string]uint32{"h": tc.h1, "d": tc.d1} {
			r := sel(v, pool, dns.TypeA, pkt("127.0.1.1"))
			if r.TTL != want || v.TTL(s.Pools[pool]) != want {
				t.Errorf("%s: pool %s answers %v with TTL %d (view %d), want %d", tc.name, pool, addrStrings(r.Addrs), r.TTL, v.TTL(s.Pools[pool]), want)
			}
		}
	}
}

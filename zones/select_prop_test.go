package zones

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// propPools covers every policy, affinity and when_all_down rule, a
// fallback chain and a pool with one family only.
var propPools = selPools() + `
[aa]
policy = "weighted"
answers = 3
when_all_down = "answer-all"
[[aa.sites]]
name = "a"
addresses = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
[[aa.sites]]
name = "b"
weight = 0
addresses = ["192.0.2.3", "2001:db8::3", "2001:db8::4"]

[nd]
policy = "geo"
answers = 2
affinity = "client-subnet"
when_all_down = "nodata"
[[nd.sites]]
name = "a"
lat = 50
lon = 8
addresses = ["192.0.2.4", "192.0.2.5"]
[[nd.sites]]
name = "b"
countries = ["US"]
addresses = ["198.51.100.4"]

[fb]
policy = "failover"
answers = 2
when_all_down = "fallback"
fallback = "nd"
[[fb.sites]]
name = "a"
addresses = ["192.0.2.6", "2001:db8::6"]
`

var propSnap struct {
	once sync.Once
	s    *Snapshot
}

// propSnapshot loads propPools once per test binary: the fuzz target calls
// it per input. The snapshot lives in memory (the geo database is read
// whole at load), so the first caller's temporary directory may go.
func propSnapshot(t testing.TB) *Snapshot {
	propSnap.once.Do(func() {
		propSnap.s = loadFiles(t, selNode, zoneText("geo", "w", "waff", "fo", "geoaff", "aa", "nd", "fb"), propPools)
	})
	if propSnap.s == nil {
		t.Fatal("property snapshot did not load")
	}
	return propSnap.s
}

// checkInvariants runs one selection and checks what must hold for every
// input (the list): never more than answers, only the queried
// family, never a down or drained address unless the all-down rule says
// so (and never a drained one at all), no duplicates, a scope no longer than the
// address, and determinism under affinity.
func checkInvariants(t *testing.T, v *View, p *Pool, qtype uint16, c Client) {
	t.Helper()
	r := v.Select(p, qtype, c, make([]netip.Addr, 0, 8))
	ap := r.Pool
	if ap == nil {
		t.Fatalf("%s %v: no answering pool", p.Name, c)
	}
	if len(r.Addrs) > ap.Answers {
		t.Fatalf("%s %v: %d addresses, answers = %d", p.Name, c, len(r.Addrs), ap.Answers)
	}
	if r.NoData != (len(r.Addrs) == 0) {
		t.Fatalf("%s %v: NoData %v with %v", p.Name, c, r.NoData, r.Addrs)
	}
	if r.Scope > 128 || c.Addr.Is4() && r.Scope > 32 {
		t.Fatalf("%s %v: scope %d longer than the address", p.Name, c, r.Scope)
	}
	fam := fam4
	if qtype == tAAAA {
		fam = fam6
	}
	state := map[netip.Addr]*Address{}
	eligible, live := 0, 0
	for _, s := range ap.Sites {
		for i := range s.Addrs {
			a := &s.Addrs[i]
			if familyOfAddr(a.Addr) != fam {
				continue
			}
			state[a.Addr] = a
			if !v.IsDrained(a) {
				live++
				if v.Up(a) {
					eligible++
				}
			}
		}
	}
	seen := map[netip.Addr]bool{}
	for _, a := range r.Addrs {
		if a.Is4() != (qtype == tA) {
			t.Fatalf("%s: %v answered for type %d", p.Name, a, qtype)
		}
		if seen[a] {
			t.Fatalf("%s: %v answered twice in %v", p.Name, a, r.Addrs)
		}
		seen[a] = true
		ad := state[a]
		if ad == nil {
			t.Fatalf("%s: %v is not an address of answering pool %s", p.Name, a, ap.Name)
		}
		if v.IsDrained(ad) {
			t.Fatalf("%s: drained %v answered", p.Name, a)
		}
		if !v.Up(ad) && (eligible > 0 || ap.WhenAllDown != AllDownAnswerAll) {
			t.Fatalf("%s: down %v answered while the all-down rule does not apply", p.Name, a)
		}
	}
	switch {
	case eligible > 0 && len(r.Addrs) != min(ap.Answers, eligible):
		t.Fatalf("%s: %d addresses, want min(answers %d, eligible %d)", p.Name, len(r.Addrs), ap.Answers, eligible)
	case eligible == 0 && ap.WhenAllDown == AllDownAnswerAll && len(r.Addrs) != min(ap.Answers, live):
		t.Fatalf("%s: answer-all gave %d addresses, want min(answers %d, non-drained %d)", p.Name, len(r.Addrs), ap.Answers, live)
	}
	if p.Affinity == AffinityClientSubnet {
		r2 := v.Select(p, qtype, c, make([]netip.Addr, 0, 8))
		if !slices.Equal(r.Addrs, r2.Addrs) || r.Scope != r2.Scope {
			t.Fatalf("%s %v: affinity answer changed from %v to %v", p.Name, c, r.Addrs, r2.Addrs)
		}
	}
}

// allAddrs lists every address of s with its pool and site, in order.
func allAddrs(s *Snapshot) (addrs []netip.Addr, sites []string) {
	for _, p := range s.PoolList {
		for _, site := range p.Sites {
			for _, a := range site.Addrs {
				addrs = append(addrs, a.Addr)
				sites = append(sites, p.Name+"/"+site.Name)
			}
		}
	}
	return addrs, sites
}

// viewFromBits derives a health state from two bit masks over the
// snapshot's addresses (down) and sites (drained).
func viewFromBits(s *Snapshot, down, drain uint64) *View {
	h := health()
	addrs, _ := allAddrs(s)
	for i, a := range addrs {
		if down>>(i%64)&1 == 1 {
			h.down[a] = true
		}
	}
	i := 0
	for _, p := range s.PoolList {
		for _, site := range p.Sites {
			if drain>>(i%64)&1 == 1 {
				h.drained[p.Name+"/"+site.Name] = true
			}
			i++
		}
	}
	return NewView(s, h)
}

func clientFrom(raw []byte, ecs bool, prefix uint8) Client {
	var a netip.Addr
	switch {
	case len(raw) >= 16:
		a = netip.AddrFrom16([16]byte(raw[:16]))
	case len(raw) >= 4:
		a = netip.AddrFrom4([4]byte(raw[:4]))
	default:
		a = netip.AddrFrom4([4]byte{127, 0, 1, 5})
	}
	if !ecs {
		return Client{Addr: a}
	}
	bits := int(prefix) % (a.BitLen() + 1)
	return Client{Addr: netip.PrefixFrom(a, bits).Masked().Addr(), ECS: true, SourcePrefix: uint8(bits)}
}

func TestSelectInvariants(t *testing.T) {
	s := propSnapshot(t)
	rng := rand.New(rand.NewPCG(3, 4))
	interesting := []string{"127.0.1.5", "127.0.8.9", "127.0.50.1", "10.1.2.3", "2001:db8:3::1", "2001:db8:2::5", "::ffff:127.0.9.1"}
	for i := range 3000 {
		// Mostly sparse masks, so that both partly and wholly down pools
		// occur.
		down := rng.Uint64() & rng.Uint64() & rng.Uint64()
		drain := rng.Uint64() & rng.Uint64() & rng.Uint64() & rng.Uint64()
		if i%5 == 0 {
			down = ^uint64(0)
		}
		v := viewFromBits(s, down, drain)
		p := s.PoolList[rng.IntN(len(s.PoolList))]
		qtype := []uint16{tA, tAAAA}[rng.IntN(2)]
		var c Client
		if rng.IntN(2) == 0 {
			c = pkt(interesting[rng.IntN(len(interesting))])
			if rng.IntN(2) == 0 {
				c = clientFrom(c.Addr.AsSlice(), true, uint8(rng.IntN(129)))
			}
		} else {
			raw := make([]byte, []int{4, 16}[rng.IntN(2)])
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			c = clientFrom(raw, rng.IntN(2) == 0, uint8(rng.IntN(129)))
		}
		checkInvariants(t, v, p, qtype, c)
	}
}

func FuzzSelect(f *testing.F) {
	f.Add(uint64(0), uint64(0), uint8(0), []byte{127, 0, 1, 5}, true, uint8(24), true)
	f.Add(^uint64(0), uint64(0), uint8(5), []byte{127, 0, 8, 5}, false, uint8(0), true)
	f.Add(uint64(0x5555), uint64(0x3), uint8(7), []byte{0x20, 0x01, 0x0d, 0xb8, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, true, uint8(56), false)
	f.Add(^uint64(0), ^uint64(0), uint8(6), []byte{10, 1, 2, 3}, true, uint8(32), true)
	f.Fuzz(func(t *testing.T, down, drain uint64, pool uint8, raw []byte, useECS bool, prefix uint8, a bool) {
		s := propSnapshot(t)
		v := viewFromBits(s, down, drain)
		qtype := tAAAA
		if a {
			qtype = tA
		}
		checkInvariants(t, v, s.PoolList[int(pool)%len(s.PoolList)], qtype, clientFrom(raw, useECS, prefix))
	})
}

// TestSelectAllocs is the allocation budget of the hot path: none. Every
// case reuses one dst with room for the answers.
func TestSelectAllocs(t *testing.T) {
	s := propSnapshot(t)
	v := NewView(s, health("192.0.2.6", "2001:db8::6"))
	dst := make([]netip.Addr, 0, 8)
	for _, tc := range []struct {
		pool  string
		qtype uint16
		c     Client
	}{
		{"geo", tA, ecs("127.0.1.0", 24)},
		{"geo", tAAAA, pkt("2001:db8:3::1")},
		{"geo", tA, pkt("127.0.50.1")}, // unknown: weighted
		{"geoaff", tA, ecs("127.0.20.0", 24)},
		{"w", tA, pkt("127.0.1.5")},
		{"waff", tAAAA, ecs("2001:db8:1::", 56)},
		{"fo", tA, pkt("127.0.1.5")},
		{"fb", tA, pkt("127.0.1.5")}, // all down: fallback to nd
		{"aa", tAAAA, pkt("::ffff:127.0.1.5")},
	} {
		p := s.Pools[tc.pool]
		if n := testing.AllocsPerRun(200, func() { v.Select(p, tc.qtype, tc.c, dst) }); n != 0 {
			t.Errorf("Select %s %v: %.1f allocations, want 0", tc.pool, tc.c.Addr, n)
		}
	}
}

func BenchmarkSelect(b *testing.B) {
	s := propSnapshot(b)
	v := NewView(s, nil)
	for _, bc := range []struct {
		name  string
		pool  string
		qtype uint16
		c     Client
	}{
		{"geo", "geo", tA, pkt("127.0.13.7")},
		{"geo-ecs", "geo", tA, ecs("127.0.13.0", 24)},
		{"geo-ecs-v6", "geo", tAAAA, ecs("2001:db8:3::", 56)},
		{"geo-unknown", "geo", tA, pkt("127.0.50.1")},
		{"weighted", "w", tA, pkt("127.0.1.5")},
		{"weighted-affinity", "waff", tA, ecs("127.0.1.0", 24)},
		{"geo-affinity", "geoaff", tA, ecs("127.0.1.0", 24)},
		{"failover", "fo", tA, pkt("127.0.1.5")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchSelect(b, v, s.Pools[bc.pool], bc.qtype, []Client{bc.c})
		})
	}
}

// TestSelectConcurrent shares one view between goroutines, as the server
// does: the rotation counters are the only state written, atomically (run
// with -race), and every answer stays valid.
func TestSelectConcurrent(t *testing.T) {
	s := propSnapshot(t)
	v := NewView(s, health("192.0.2.10"))
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]netip.Addr, 0, 8)
			for i := range 2000 {
				p := s.PoolList[(g+i)%len(s.PoolList)]
				r := v.Select(p, tA, pkt("127.0.1.5"), dst)
				for _, a := range r.Addrs {
					if a == netip.MustParseAddr("192.0.2.10") && p.Name != "aa" {
						errs <- "down address answered by " + p.Name
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

package zones

import (
	"net/netip"
)

// Health is what a View needs to know about the mesh: the verdict on each
// target and the drains in force. Implementations are immutable snapshots;
// NewView calls them only while it builds the view, never per query.
type Health interface {
	// Down reports whether the mesh verdict on the target is down.
	Down(targetKey string) bool
	// Drained reports whether the site as a whole, or that address of it,
	// is drained through the admin API.
	Drained(pool, site string, addr netip.Addr) bool
}

// View is a Snapshot together with the verdicts and drains in force when it
// was built. It is immutable; the hot path loads one per query.
type View struct {
	Snap    *Snapshot
	down    []bool // by Address.Index: the verdict on the address's target is down
	drained []bool // by Address.Index: drained by config or by the mesh

	// What selection needs per view, so that a query only reads slices:
	sites []siteView // by siteSel.seq
	pools []poolView // by poolSel.seq
}

// siteView holds a site's addresses by [set][family] in file order: set
// setUp the eligible ones (up, not drained), setLive the non-drained ones
// (what when_all_down = "answer-all" answers).
type siteView struct {
	addrs [2][2][]netip.Addr
}

// poolView counts a pool's addresses, and its sites with at least one,
// by [set][family].
type poolView struct {
	n     [2][2]int
	sites [2][2]int
	// ttl is the pool's answer TTL in this view: MinTTL while one of its
	// addresses is down or disputed, else TTL (see NewView).
	ttl uint32
}

// Disputer is implemented by Health values that know when the monitors of
// a target disagree: a change is under way (a backend failing for some
// monitors, or coming back).
type Disputer interface {
	Disputed(targetKey string) bool
}

// NewView computes the per-address state of s from h. A nil h means every
// address is up and only `drained = true` from the files applies.
func NewView(s *Snapshot, h Health) *View {
	s.Prepare()
	v := &View{Snap: s, down: make([]bool, s.NumAddrs), drained: make([]bool, s.NumAddrs)}
	for _, p := range s.PoolList {
		for _, site := range p.Sites {
			for _, a := range site.Addrs {
				v.drained[a.Index] = site.Drained
				if h == nil {
					continue
				}
				v.down[a.Index] = h.Down(s.Targets[a.Target].Key)
				if h.Drained(p.Name, site.Name, a.Addr) {
					v.drained[a.Index] = true
				}
			}
		}
	}
	v.prepareSites()
	v.prepareTTLs(h)
	return v
}

// prepareTTLs sets each pool's answer TTL. Health-aware TTL, as gdnsd
// does it: while an address of the pool is down, or its monitors disagree
// about it, answers carry the pool's min_ttl instead of its ttl, so that
// resolvers ask again soon and clients come back to a recovered address
// (or leave a failing one) sooner; when every address is up and every
// monitor agrees, answers carry the full ttl. Drains do not lower it: an
// operator's drain is not a change that is about to end by itself.
func (v *View) prepareTTLs(h Health) {
	d, _ := h.(Disputer)
	s := v.Snap
	for _, p := range s.PoolList {
		pv := &v.pools[p.sel.seq]
		pv.ttl = p.TTL
		low := p.MinTTL
		if low == 0 {
			low = p.TTL / 4
		}
		for _, site := range p.Sites {
			for _, a := range site.Addrs {
				if v.down[a.Index] || (d != nil && d.Disputed(s.Targets[a.Target].Key)) {
					pv.ttl = min(low, p.TTL)
				}
			}
		}
	}
}

// TTL is the TTL of p's answers in this view (health-aware: see
// prepareTTLs).
func (v *View) TTL(p *Pool) uint32 { return v.pools[p.sel.seq].ttl }

// prepareSites splits every site's addresses into the eligible and the
// non-drained ones per family, sharing one backing array.
func (v *View) prepareSites() {
	s := v.Snap
	v.sites = make([]siteView, s.sel.numSites)
	v.pools = make([]poolView, s.sel.numPools)
	n := 0
	for _, p := range s.PoolList {
		for _, site := range p.Sites {
			n += len(site.Addrs)
		}
	}
	backing := make([]netip.Addr, 0, 2*n)
	for _, p := range s.PoolList {
		pv := &v.pools[p.sel.seq]
		for _, site := range p.Sites {
			sv := &v.sites[site.sel.seq]
			for set := range 2 {
				for fam := range 2 {
					start := len(backing)
					for _, a := range site.Addrs {
						if familyOfAddr(a.Addr) != fam || v.drained[a.Index] || (set == setUp && v.down[a.Index]) {
							continue
						}
						backing = append(backing, a.Addr)
					}
					sv.addrs[set][fam] = backing[start:len(backing):len(backing)]
					pv.n[set][fam] += len(backing) - start
					if len(backing) > start {
						pv.sites[set][fam]++
					}
				}
			}
		}
	}
}

// Up reports whether the verdict on a is up.
func (v *View) Up(a *Address) bool { return !v.down[a.Index] }

// IsDrained reports whether a is drained, by config or through the mesh.
func (v *View) IsDrained(a *Address) bool { return v.drained[a.Index] }

// Client is who asks, as the DNS server saw it.
type Client struct {
	// Addr is the EDNS Client Subnet address when the query carried one,
	// else the packet's source address.
	Addr netip.Addr
	// ECS is set when Addr came from an ECS option; SourcePrefix is its
	// source prefix length.
	ECS          bool
	SourcePrefix uint8
}

// Result is the answer chosen for a pool name.
type Result struct {
	Addrs []netip.Addr // the caller's dst, filled
	TTL   uint32
	// Scope is the ECS scope prefix length for the response (README, How an answer is chosen);
	// longer than the client's source prefix where the database splits
	// it (RFC 7871 §7.2.1). Without ECS it is computed all the same, for
	// explain, and unused.
	// It is never wider than the network in which every address gets the
	// same answer set; rotation among a site's addresses does not count.
	Scope uint8
	// NoData is set when the answer is empty (no address of the family, or
	// when_all_down = "nodata").
	NoData bool
	// Pool is the pool that answered (differs from the asked one after a
	// fallback); Site the first site answered from, nil with NoData.
	Pool *Pool
	Site *Site
}

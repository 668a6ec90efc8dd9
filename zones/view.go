package zones

import (
	"net/netip"

	"github.com/miekg/dns"
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
}

// NewView computes the per-address state of s from h. A nil h means every
// address is up and only `drained = true` from the files applies.
func NewView(s *Snapshot, h Health) *View {
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
	return v
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
	// Scope is the ECS scope prefix length for the response (SPEC §5.7).
	Scope uint8
	// NoData is set when the answer is empty (no address of the family, or
	// when_all_down = "nodata").
	NoData bool
	// Pool is the pool that answered (differs from the asked one after a
	// fallback); Site the first site answered from, nil with NoData.
	Pool *Pool
	Site *Site
}

// Select chooses the addresses for a query of type qtype (A or AAAA) at a
// name bound to pool p, appending them to dst[:0]. It does not allocate when
// dst has room for p.Answers addresses.
func (v *View) Select(p *Pool, qtype uint16, c Client, dst []netip.Addr) Result {
	// Foundation behaviour until the selection lands: every address of the
	// family. Replaced by the SPEC §5 algorithm.
	r := Result{Addrs: dst[:0], TTL: p.TTL, Pool: p}
	for _, s := range p.Sites {
		for i := range s.Addrs {
			a := s.Addrs[i].Addr
			if (qtype == dns.TypeA) != a.Is4() {
				continue
			}
			if r.Site == nil {
				r.Site = s
			}
			r.Addrs = append(r.Addrs, a)
		}
	}
	r.NoData = len(r.Addrs) == 0
	return r
}

package dnsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// Explain answers a query for name and qtype from client the way the
// server would, with the resolver's trace hook set, and returns the trace:
// which zone and owner answered (exact, wildcard, CNAMEs followed,
// delegation), for pool names every step of the selection, and the
// response sections as sent. ecsPrefix < 0 means the query carries no ECS
// (client is the packet source); otherwise client is the ECS address,
// masked to ecsPrefix bits. It uses the table compiled for the published
// view, so it traces exactly what the listeners answer. Explain requests
// are not counted as queries.
func (s *Server) Explain(name string, qtype uint16, client netip.Addr, ecsPrefix int) (*zones.Trace, error) {
	if !client.IsValid() {
		return nil, errors.New("explain: a client address is required")
	}
	client = client.Unmap()
	if ecsPrefix > client.BitLen() {
		return nil, fmt.Errorf("explain: ecs prefix %d for %s: want 0..%d", ecsPrefix, client, client.BitLen())
	}
	name = dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("explain: invalid name %q", name)
	}
	if s.state.Load() == nil {
		return nil, errors.New("explain: no configuration loaded yet")
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if ecsPrefix >= 0 {
		pfx, err := client.Prefix(ecsPrefix)
		if err != nil {
			return nil, fmt.Errorf("explain: ecs prefix %d for %s: %w", ecsPrefix, client, err)
		}
		e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ecsPrefix), Address: pfx.Addr().AsSlice()}
		if client.Is6() {
			e.Family = 2
		}
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(dns.MaxMsgSize)
		o.Option = append(o.Option, e)
		m.Extra = append(m.Extra, o)
	}
	pkt, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("explain: pack query for %s: %w", name, err)
	}
	// While a new version of the geo database is loaded, the one in
	// service has no table to locate clients with (geo.DB.Retire): wait
	// for the reload to end, as a query would if it could, and trace
	// again.
	deadline := time.Now().Add(explainRetiredWait)
	for {
		tr := zones.NewTrace(qtype, zones.Client{Addr: client})
		tr.Name = name
		// As over TCP: the whole answer, never truncated.
		resp := s.handle(make([]byte, 0, maxTCP), pkt, netip.AddrPortFrom(client, 0), true, 0, tr)
		if resp == nil {
			return nil, fmt.Errorf("explain: the server dropped the query for %s", name)
		}
		if tr.GeoRetired() {
			if time.Now().Before(deadline) {
				time.Sleep(explainRetiredPoll)
				continue
			}
			return nil, ErrGeoReloading
		}
		var r dns.Msg
		if err := r.Unpack(resp); err != nil {
			return nil, fmt.Errorf("explain: unpack the response for %s: %w", name, err)
		}
		fillTrace(tr, &r)
		return tr, nil
	}
}

// ErrGeoReloading is Explain's error when a reload of the geo database
// outlasts its wait.
var ErrGeoReloading = errors.New("explain: the geo database is being reloaded and the client cannot be located yet; try again")

// explainRetiredWait bounds how long Explain waits for a geo database
// reload, polling every explainRetiredPoll. Loading GeoLite2-City takes
// about 2 s of CPU.
var (
	explainRetiredWait = 15 * time.Second
	explainRetiredPoll = 20 * time.Millisecond
)

// Explain is Server.Explain for a view no server has published, such as
// `gslbd explain -config` offline or a node without DNS listeners: it
// compiles the view's snapshot into the same table first.
func Explain(v *zones.View, name string, qtype uint16, client netip.Addr, ecsPrefix int) (*zones.Trace, error) {
	if v == nil || v.Snap == nil {
		return nil, errors.New("explain: no configuration loaded yet")
	}
	s := New(Config{}, slog.New(slog.DiscardHandler), nil)
	s.Publish(v)
	return s.Explain(name, qtype, client, ecsPrefix)
}

// fillTrace records the response the resolver wrote.
func fillTrace(tr *zones.Trace, r *dns.Msg) {
	tr.Rcode = dns.RcodeToString[r.Rcode]
	tr.Authoritative = r.Authoritative
	tr.Records = rrStrings(r.Answer)
	tr.Authority = rrStrings(r.Ns)
	tr.Additional = rrStrings(r.Extra)
	soa := false
	for _, rr := range r.Ns {
		soa = soa || rr.Header().Rrtype == dns.TypeSOA
	}
	tr.NoData = r.Rcode == dns.RcodeSuccess && soa
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				tr.Scope = int(e.SourceScope)
			}
		}
	}
	if len(tr.Pools) == 0 {
		tr.ScopeWhy = "static data: the answer does not depend on the client"
	}
	switch {
	case tr.Rcode == "NXDOMAIN" && len(tr.Notes) == 0:
		tr.Notef("NXDOMAIN")
	case tr.NoData && len(tr.Pools) == 0 && len(tr.Notes) == 0:
		tr.Notef("NODATA")
	}
}

func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr.String())
		}
	}
	return out
}

// The trace functions below run only with a trace set. They copy what
// they record from the wire names they are given and keep no reference
// to them: the names point into per-query memory.

// wireString is the presentation form of an uncompressed wire name.
func wireString(w []byte) string {
	var b strings.Builder
	for off := 0; off < len(w) && w[off] != 0; off += int(w[off]) + 1 {
		l := int(w[off])
		if off+1+l > len(w) {
			break
		}
		for _, c := range w[off+1 : off+1+l] {
			switch {
			case c == '.' || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';' || c == ' ' || c == '@':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < '!' || c > '~':
				fmt.Fprintf(&b, "\\%03d", c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('.')
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}

func traceOwner(tr *zones.Trace, name, owner []byte, wildcard bool) {
	tr.Owner, tr.Wildcard = wireString(owner), wildcard
	if wildcard {
		tr.Notef("%s synthesised from wildcard %s (RFC 4592)", wireString(name), tr.Owner)
	}
}

func traceCut(tr *zones.Trace, name, cut []byte, hop int) {
	if hop > 0 {
		tr.Notef("CNAME target %s is delegated at %s: not followed (the chain leaves our authority)", wireString(name), wireString(cut))
		return
	}
	tr.Notef("%s is delegated at %s: referral (not authoritative; NS and glue)", wireString(name), wireString(cut))
}

func traceCNAME(tr *zones.Trace, name, target []byte, noRoom, tooLong, outside bool) {
	tr.CNAMEs = append(tr.CNAMEs, wireString(name)+" CNAME "+wireString(target))
	switch {
	case noRoom:
		tr.Notef("the CNAME did not fit: truncated")
	case outside:
		tr.Notef("CNAME target %s is outside the zone: not followed", wireString(target))
	case tooLong:
		tr.Notef("CNAME chain reached %d links: not followed further", maxCNAMEHops)
	}
}

func traceNoData(tr *zones.Trace, owner []byte, qtype uint16, empty bool) {
	if empty {
		tr.Notef("%s is an empty non-terminal: NODATA", wireString(owner))
		return
	}
	tr.Notef("%s has no %s records: NODATA", wireString(owner), tr.Type)
}

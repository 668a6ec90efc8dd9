package healthmon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// probeDNS asks the target for the check's name and type over UDP (and
// again over TCP when the answer comes back truncated) and wants the
// check's rcode, and its answer when one is configured. It is for pools
// of DNS servers: resolvers, authoritative servers, DNS load balancers.
//
// The query has a random ID and RD clear (an authoritative server answers
// it, a resolver too unless it refuses non-recursive queries; then ask
// for a name it is authoritative for or expect REFUSED); the answer must
// carry that ID and the question asked, or it counts as a failure.
func (p *netProber) probeDNS(ctx context.Context, addr string, c zones.Check) error {
	m := new(dns.Msg)
	m.SetQuestion(c.QName, c.QType)
	m.Id = uint16(rand.N(1 << 16))
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	r, err := p.exchangeDNS(ctx, "udp", addr, m)
	if err == nil && r.Truncated {
		r, err = p.exchangeDNS(ctx, "tcp", addr, m)
	}
	if err != nil {
		return err
	}
	if r.Rcode != c.RCode {
		return &probeError{class: "status", reason: fmt.Sprintf("rcode %s, want %s", rcodeName(r.Rcode), rcodeName(c.RCode))}
	}
	if c.Answer == "" {
		return nil
	}
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == c.QType && strings.EqualFold(strings.TrimPrefix(rr.String(), rr.Header().String()), c.Answer) {
			return nil
		}
	}
	return &probeError{class: "status", reason: fmt.Sprintf("no %s %s in the answer (%d records)", dns.TypeToString[c.QType], truncate(c.Answer, 40), len(r.Answer))}
}

// exchangeDNS sends m over network and reads its answer, all bounded by
// ctx's deadline (and cut short when ctx ends).
func (p *netProber) exchangeDNS(ctx context.Context, network, addr string, m *dns.Msg) (*dns.Msg, error) {
	conn, err := p.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, stageError("connect", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	dc := &dns.Conn{Conn: conn, UDPSize: 1232}
	if err := dc.WriteMsg(m); err != nil {
		return nil, stageError("send", err)
	}
	for {
		r, err := dc.ReadMsg()
		if err != nil {
			if r == nil || isRefused(err) {
				return nil, stageError("response", err)
			}
			return nil, &probeError{class: "other", reason: "malformed answer", err: err}
		}
		// Over UDP, a stray datagram with another ID or question is not
		// the answer: keep reading until the deadline.
		if r.Id != m.Id || len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, m.Question[0].Name) || r.Question[0].Qtype != m.Question[0].Qtype {
			if network == "udp" {
				continue
			}
			return nil, &probeError{class: "other", reason: "answer does not match the query"}
		}
		return r, nil
	}
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprint(rc)
}

// isRefused reports an ICMP port unreachable seen on a connected UDP
// socket: nothing listens on the target's DNS port.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

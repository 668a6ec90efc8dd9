package dnsserver

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// RRLConfig is response rate limiting as BIND, NSD and Knot do it: every
// UDP response is charged to a bucket named by the client's network and
// by what the response is, and a bucket that spends more than its rate
// per second stops being answered; only every Slip-th of those goes out,
// truncated, so a real resolver behind a spoofed flood retries over TCP,
// which cannot be spoofed. TCP responses and clients that return a valid
// server cookie are never limited.
//
// The buckets (the answer classes) are:
//   - responses: answers and NODATA, one bucket per query name and type;
//     answers synthesised from a wildcard or a delegation share one bucket
//     per zone and type, so a flood of made-up names finds no fresh one;
//   - nxdomains: NXDOMAIN, one bucket per zone;
//   - errors: REFUSED, FORMERR, SERVFAIL, NOTIMP and BADVERS, one bucket.
type RRLConfig struct {
	// ResponsesPerSecond is the rate of each responses bucket; 0 turns
	// rate limiting off.
	ResponsesPerSecond int
	// NXDomainsPerSecond and ErrorsPerSecond are the rates of the other
	// classes; 0 leaves that class unlimited.
	NXDomainsPerSecond int
	ErrorsPerSecond    int
	// Window is how long, in seconds, a bucket remembers: it may owe up to
	// Window seconds of its rate, so a client flooding at twice the rate
	// stays limited for up to Window seconds after it stops (default 15).
	Window int
	// Slip sends every Slip-th limited response truncated (or BADCOOKIE
	// when the query had a cookie) instead of dropping it; 1 slips all, 0
	// drops all (default 2). Set explicitly, as the node config does, a
	// zero Config value means the default; use NoSlip for none.
	Slip int
	// IPv4PrefixLength and IPv6PrefixLength group clients into networks
	// (defaults 24 and 56).
	IPv4PrefixLength int
	IPv6PrefixLength int
	// Entries bounds the limiter's memory: at most this many buckets are
	// remembered (24 bytes each; default 131072, 3 MiB). When every slot
	// a new bucket may take is in use, the least recently charged one is
	// forgotten.
	Entries int
}

// NoSlip is the Slip value that drops every limited response.
const NoSlip = -1

// Enabled reports whether c limits anything.
func (c RRLConfig) Enabled() bool { return c.ResponsesPerSecond > 0 }

func (c *RRLConfig) defaults() {
	if c.Window <= 0 {
		c.Window = 15
	}
	switch {
	case c.Slip == 0:
		c.Slip = 2
	case c.Slip < 0:
		c.Slip = 0
	}
	if c.IPv4PrefixLength <= 0 || c.IPv4PrefixLength > 32 {
		c.IPv4PrefixLength = 24
	}
	if c.IPv6PrefixLength <= 0 || c.IPv6PrefixLength > 128 {
		c.IPv6PrefixLength = 56
	}
	if c.Entries <= 0 {
		c.Entries = 1 << 17
	}
}

// Answer classes of the limiter, also the index of their metrics.
const (
	rrlResponses = iota
	rrlNXDomains
	rrlErrors
	rrlClasses
)

var rrlClassNames = [rrlClasses]string{"responses", "nxdomains", "errors"}

type rrlVerdict uint8

const (
	rrlPass rrlVerdict = iota
	rrlDrop
	rrlSlip
)

const (
	rrlShards = 64 // locks; a reader holds one for a few tens of ns
	rrlWays   = 4  // slots a bucket may take in its shard
)

// limiter holds the buckets in a fixed table allocated once: bounded
// memory, and nothing allocated per query. The table is split into shards,
// each with its own lock, so the UDP readers rarely meet; inside a shard a
// bucket may sit in one of rrlWays slots of its set.
type limiter struct {
	cfg   RRLConfig
	rate  [rrlClasses]int64
	seed  maphash.Seed
	start int64 // Unix seconds at creation
	sets  int   // sets per shard, a power of two
	shard [rrlShards]rrlShard
}

type rrlShard struct {
	mu    sync.Mutex
	slots []rrlEntry
	_     [40]byte // keep neighbouring locks off one cache line
}

// rrlEntry is one bucket. The key is a 64-bit keyed hash of what names the
// bucket; a collision between two live buckets is as likely as guessing
// the process's random hash seed.
type rrlEntry struct {
	key     uint64
	balance int64  // responses still allowed; negative is debt
	last    uint32 // second the balance was last credited; 0: empty
	slip    uint32
}

func newLimiter(cfg RRLConfig) *limiter {
	cfg.defaults()
	l := &limiter{cfg: cfg, seed: maphash.MakeSeed(), start: time.Now().Unix()}
	l.rate = [rrlClasses]int64{int64(cfg.ResponsesPerSecond), int64(cfg.NXDomainsPerSecond), int64(cfg.ErrorsPerSecond)}
	per := max(cfg.Entries/rrlShards/rrlWays, 1)
	l.sets = 1
	for l.sets < per {
		l.sets <<= 1
	}
	for i := range l.shard {
		l.shard[i].slots = make([]rrlEntry, l.sets*rrlWays)
	}
	return l
}

// now turns Unix seconds into the limiter's clock, which starts at 1 so
// that 0 marks an empty slot.
func (l *limiter) now(unix int64) uint32 { return uint32(max(unix-l.start, 0)) + 1 }

// key hashes what names a bucket: the class, the client's network and,
// for the classes that have one, a name (lower-case wire) and a type.
// synth sets the bucket of synthesised answers apart from the one of the
// zone's apex.
func (l *limiter) key(class int, synth bool, client netip.Addr, name []byte, qtype uint16) uint64 {
	var b [1 + 16 + 2 + 255]byte
	b[0] = byte(class)
	if synth {
		b[0] |= 0x40
	}
	if client.Is4() {
		a := client.As4()
		bits := l.cfg.IPv4PrefixLength
		copy(b[1:], a[:])
		maskBits(b[1:5], bits)
		b[0] |= 0x80
	} else {
		a := client.As16()
		copy(b[1:], a[:])
		maskBits(b[1:17], l.cfg.IPv6PrefixLength)
	}
	b[17], b[18] = byte(qtype>>8), byte(qtype)
	n := 19 + copy(b[19:], name)
	return maphash.Bytes(l.seed, b[:n])
}

// maskBits clears every bit of a after the first bits.
func maskBits(a []byte, bits int) {
	for i := range a {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			a[i] &= 0xFF << (8 - bits)
			bits = 0
		default:
			a[i] = 0
		}
	}
}

// charge debits one response from the bucket of (class, client, name,
// qtype) and says whether it may go out, BIND's way: a bucket earns rate
// per second up to rate, spends one per response, may owe at most
// window × rate, and every slip-th response it cannot pay for slips.
func (l *limiter) charge(class int, synth bool, client netip.Addr, name []byte, qtype uint16, now uint32) rrlVerdict {
	rate := l.rate[class]
	if rate <= 0 {
		return rrlPass
	}
	h := l.key(class, synth, client.Unmap(), name, qtype)
	sh := &l.shard[h%rrlShards]
	set := int((h/rrlShards)&uint64(l.sets-1)) * rrlWays
	window := int64(l.cfg.Window)

	sh.mu.Lock()
	slots := sh.slots[set : set+rrlWays]
	var e *rrlEntry
	for i := range slots {
		if slots[i].key == h && slots[i].last != 0 {
			e = &slots[i]
			break
		}
	}
	if e == nil {
		// A new bucket takes an empty slot or the least recently
		// charged one, starting with a full balance.
		e = &slots[0]
		for i := 1; i < len(slots); i++ {
			if slots[i].last < e.last {
				e = &slots[i]
			}
		}
		*e = rrlEntry{key: h, balance: rate, last: now}
	} else if elapsed := int64(now) - int64(e.last); elapsed > 0 {
		e.balance = min(e.balance+min(elapsed, window)*rate, rate)
		e.last = now
	}
	e.balance--
	v := rrlPass
	if e.balance < 0 {
		e.balance = max(e.balance, -window*rate)
		v = rrlDrop
		if l.cfg.Slip > 0 {
			e.slip++
			if e.slip >= uint32(l.cfg.Slip) {
				e.slip = 0
				v = rrlSlip
			}
		}
	}
	sh.mu.Unlock()
	return v
}

// SetRRL replaces the rate limiter's settings; buckets start afresh when
// they change. A disabled config turns limiting off.
func (s *Server) SetRRL(cfg RRLConfig) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	cur := s.rrl.Load()
	if !cfg.Enabled() {
		s.rrl.Store(nil)
		return
	}
	n := cfg
	n.defaults()
	if cur != nil && cur.cfg == n {
		return
	}
	s.rrl.Store(newLimiter(cfg))
}

// rateLimit charges a UDP response to its bucket; rc is its rcode index.
func (s *Server) rateLimit(l *limiter, q *query, rc int) rrlVerdict {
	class, synth := rrlErrors, false
	var name []byte
	var qtype uint16
	switch {
	case rc == rcNoError && q.zoff >= 0:
		class, qtype, name, synth = rrlResponses, q.qtype, q.lname[:q.qlen], q.synth
		if synth {
			name = q.lname[q.zoff:q.qlen]
		}
	case rc == rcNXDomain && q.zoff >= 0:
		class, name = rrlNXDomains, q.lname[q.zoff:q.qlen]
	}
	v := l.charge(class, synth, q.src, name, qtype, l.now(s.unixNow()))
	if v != rrlPass {
		s.ctr.rrlLimited[class].Add(1)
	}
	if v == rrlSlip {
		s.ctr.rrlSlipped[class].Add(1)
	}
	return v
}

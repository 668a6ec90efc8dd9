package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Source prefixes the benchmark's ECS queries carry: what public
// resolvers send (RFC 7871 §11.1 recommends /24 and /56).
const (
	ecsBits4 = 24
	ecsBits6 = 56
)

// clientNets is a sample of client networks drawn from the GeoIP database:
// each is a /24 (IPv4) or /56 (IPv6) inside (or around) a database network
// that has coordinates, so both servers place it by distance.
type clientNets struct {
	v4, v6 []netip.Prefix
	total  int // located networks in the database
}

// sampleNetworks walks every network of db once and keeps a uniform
// sample (reservoir sampling) of n located networks per family, turned
// into client networks. The seed fixes the sample, so two runs query the
// same clients.
func sampleNetworks(db string, n int, seed uint64) (*clientNets, error) {
	r, err := maxminddb.Open(db)
	if err != nil {
		return nil, fmt.Errorf("open geo database %s: %w", db, err)
	}
	defer r.Close()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var rec struct {
		Location struct {
			Latitude  *float64 `maxminddb:"latitude"`
			Longitude *float64 `maxminddb:"longitude"`
		} `maxminddb:"location"`
	}
	out := &clientNets{}
	var seen [2]int
	for res := range r.Networks() {
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("walk geo database %s: %w", db, err)
		}
		rec.Location.Latitude, rec.Location.Longitude = nil, nil
		if err := res.Decode(&rec); err != nil || rec.Location.Latitude == nil || rec.Location.Longitude == nil {
			continue
		}
		p := res.Prefix()
		out.total++
		fam, list := 0, &out.v4
		if !p.Addr().Is4() {
			fam, list = 1, &out.v6
		}
		seen[fam]++
		if len(*list) < n {
			*list = append(*list, clientNet(p, rng))
		} else if j := rng.IntN(seen[fam]); j < n {
			(*list)[j] = clientNet(p, rng)
		}
	}
	if len(out.v4) == 0 {
		return nil, fmt.Errorf("geo database %s: no IPv4 network with coordinates", db)
	}
	return out, nil
}

// clientNet is a random /24 (/56) inside p, or the one around p when p is
// smaller.
func clientNet(p netip.Prefix, rng *rand.Rand) netip.Prefix {
	bits := ecsBits4
	if !p.Addr().Is4() {
		bits = ecsBits6
	}
	if p.Bits() >= bits {
		return netip.PrefixFrom(p.Addr(), bits).Masked()
	}
	b := p.Addr().As16()
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	if p.Addr().Is4() {
		v := uint32(lo)
		free := uint(bits - p.Bits())
		v |= uint32(rng.Uint64N(1<<free)) << (32 - bits)
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
	}
	// IPv6: the /56 lies in the upper 64 bits.
	free := uint(bits - p.Bits())
	if free >= 64 {
		free = 63
	}
	hi |= rng.Uint64N(1<<free) << (64 - bits)
	var out [16]byte
	binary.BigEndian.PutUint64(out[:8], hi)
	return netip.PrefixFrom(netip.AddrFrom16(out), bits).Masked()
}

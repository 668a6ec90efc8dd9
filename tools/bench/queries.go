package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"

	"github.com/miekg/dns"
)

// mixEntry is one kind of query in the dnsperf input and its share.
type mixEntry struct {
	what   string
	weight int
	count  int // lines written
}

// The query mix. Every query carries EDNS (as every modern resolver's
// does); dnsperf's -E would give all queries one fixed ECS option, so the
// file is in dnsperf's binary format (-B, length-prefixed wire messages)
// and each ECS query has its own client network from the database.
// Queries without ECS come from 127.0.0.1, which both servers place in
// Frankfurt (an override / nets entry), so they exercise the no-ECS path
// without a database miss.
var mixTemplate = []mixEntry{
	{what: "geo A, ECS", weight: 30},
	{what: "geo AAAA, ECS", weight: 15},
	{what: "geo A, no ECS", weight: 15},
	{what: "geo AAAA, no ECS", weight: 10},
	{what: "static A", weight: 15},
	{what: "NXDOMAIN (A)", weight: 15},
}

// writeQueryFile writes n queries in the mix, shuffled, to path. ECS client
// networks are 3/4 IPv4 /24 and 1/4 IPv6 /56.
// do sets the DO bit on every query (the signed run).
func writeQueryFile(path string, nets *clientNets, n int, do bool) ([]mixEntry, error) {
	mix := append([]mixEntry(nil), mixTemplate...)
	total := 0
	for _, m := range mix {
		total += m.weight
	}
	rng := rand.New(rand.NewPCG(2, 3))
	kinds := make([]int, 0, n)
	for i, m := range mix {
		for range n * m.weight / total {
			kinds = append(kinds, i)
		}
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })

	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("write query file: %w", err)
	}
	w := bufio.NewWriter(f)
	var i4, i6 int
	nextNet := func() netip.Prefix {
		if len(nets.v6) > 0 && rng.IntN(4) == 0 {
			i6++
			return nets.v6[i6%len(nets.v6)]
		}
		i4++
		return nets.v4[i4%len(nets.v4)]
	}
	for i, k := range kinds {
		var name string
		qtype := dns.TypeA
		var ecs netip.Prefix
		switch k {
		case 0:
			name, ecs = geoName, nextNet()
		case 1:
			name, qtype, ecs = geoName, dns.TypeAAAA, nextNet()
		case 2:
			name = geoName
		case 3:
			name, qtype = geoName, dns.TypeAAAA
		case 4:
			name = staticName
		case 5:
			name = fmt.Sprintf("nx%d-%x.%s.", i, rng.Uint32(), zoneName)
		}
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.RecursionDesired = false
		m.SetEdns0(1232, do)
		if ecs.IsValid() {
			m.IsEdns0().Option = append(m.IsEdns0().Option, ecsOption(ecs))
		}
		b, err := m.Pack()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("pack query %s: %w", name, err)
		}
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(b)))
		w.Write(l[:])
		w.Write(b)
		mix[k].count++
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, fmt.Errorf("write query file: %w", err)
	}
	return mix, f.Close()
}

func mixString(mix []mixEntry) string {
	var parts []string
	total := 0
	for _, m := range mix {
		total += m.count
	}
	for _, m := range mix {
		parts = append(parts, fmt.Sprintf("%s %d%%", m.what, (m.count*100+total/2)/max(total, 1)))
	}
	return strings.Join(parts, ", ")
}

package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

// The gossip fuzz targets feed one message type each to a running node,
// as a peer holding the mesh key could send it: any bytes after the type
// byte. Nothing may panic or block, the node must keep answering Health,
// and a message whose body is not even JSON must be dropped and counted.

// gossipSeeds are valid messages of each type, as encode writes them.
func gossipSeeds() map[byte][][]byte {
	entry := wireEntry{K: "192.0.2.10|http:80/healthz", S: 7, U: true, R: "200 OK"}
	mon := wireMonitor{M: "peer", E: []wireEntry{entry, {K: "198.51.100.10|tcp:443", S: 3, G: true}}, N: 2, H: 12345}
	drain := wireDrain{P: "web", S: "fra", A: "192.0.2.10", O: true, C: 4, N: "peer"}
	return map[byte][][]byte{
		msgReport:   {encode(msgReport, wireReport{M: "peer", E: entry}), encode(msgReport, wireReport{M: "fz", E: entry})},
		msgDigest:   {encode(msgDigest, wireDigest{M: "peer", T: 9, N: 2, H: 12345})},
		msgDrain:    {encode(msgDrain, drain), encode(msgDrain, wireDrain{P: "web", S: "fra", C: 5, N: "peer"})},
		msgStateReq: {encode(msgStateReq, wireStateReq{M: "fz", F: "peer"}), encode(msgStateReq, wireStateReq{M: "other", F: "peer"})},
		msgState:    {encode(msgState, mon)},
		msgFull:     {encode(msgFull, wireFull{Mons: []wireMonitor{mon}, D: []wireDrain{drain}})},
		msgLeave:    {encode(msgLeave, wireLeave{M: "peer"})},
	}
}

// fuzzMesh is a started node named "fz" that logs nothing.
func fuzzMesh(f *testing.F) *Mesh {
	return startMesh(f, Options{Name: "fz", Monitor: true, Logger: slog.New(slog.DiscardHandler)})
}

// deliver hands buf to m as memberlist would (push/pull state for
// msgFull, a user message otherwise) and waits until the owner goroutine
// has merged it.
func deliver(t *testing.T, m *Mesh, buf []byte) {
	d := (*delegate)(m)
	if len(buf) > 0 && buf[0] == msgFull {
		d.MergeRemoteState(buf, false)
	} else {
		d.NotifyMsg(buf)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m.sync(ctx)
	if ctx.Err() != nil {
		t.Fatalf("the node did not merge a message within 10s: %q", buf)
	}
}

func droppedTotal(m *Mesh) uint64 {
	n := uint64(0)
	for i := range m.stats.dropped {
		n += m.stats.dropped[i].Load()
	}
	return n
}

func fuzzGossip(f *testing.F, typ byte) {
	for _, s := range gossipSeeds()[typ] {
		f.Add(s[1:]) // version byte and body
	}
	f.Add([]byte{wireVersion})
	f.Add([]byte{wireVersion, '{', '}'})
	f.Add([]byte{wireVersion + 1, '{', '}'})
	m := fuzzMesh(f)
	f.Fuzz(func(t *testing.T, rest []byte) {
		buf := append([]byte{typ}, rest...)
		before := droppedTotal(m)
		deliver(t, m, buf)
		if len(rest) < 2 || !json.Valid(rest[1:]) {
			if droppedTotal(m) == before {
				t.Fatalf("message type %d with a body that is not JSON was not counted as dropped: %q", typ, buf)
			}
		}
		if m.Health() == nil {
			t.Fatal("no health view after a message")
		}
	})
}

func FuzzGossipReport(f *testing.F)   { fuzzGossip(f, msgReport) }
func FuzzGossipDigest(f *testing.F)   { fuzzGossip(f, msgDigest) }
func FuzzGossipDrain(f *testing.F)    { fuzzGossip(f, msgDrain) }
func FuzzGossipStateReq(f *testing.F) { fuzzGossip(f, msgStateReq) }
func FuzzGossipState(f *testing.F)    { fuzzGossip(f, msgState) }
func FuzzGossipFull(f *testing.F)     { fuzzGossip(f, msgFull) }
func FuzzGossipLeave(f *testing.F)    { fuzzGossip(f, msgLeave) }

// FuzzGossipType sends any type byte, known or not.
func FuzzGossipType(f *testing.F) {
	for _, seeds := range gossipSeeds() {
		for _, s := range seeds {
			f.Add(s)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0, wireVersion, '{', '}'})
	f.Add([]byte{255, wireVersion, '{', '}'})
	m := fuzzMesh(f)
	f.Fuzz(func(t *testing.T, buf []byte) {
		before := droppedTotal(m)
		deliver(t, m, buf)
		if (len(buf) == 0 || buf[0] == 0 || buf[0] > msgLeave) && droppedTotal(m) == before {
			t.Fatalf("message of unknown type not counted as dropped: %q", buf)
		}
	})
}

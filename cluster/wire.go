package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
)

// Every message is a type byte, a version byte and a JSON body. JSON costs
// some bytes over a binary encoding, but broadcasts are single reports far
// below the packet size, and the decoder rejects anything malformed without
// us writing a parser that peers can attack.
const (
	msgReport   byte = 1 // one report, broadcast and relayed
	msgDigest   byte = 2 // a monitor's periodic digest, broadcast and relayed
	msgDrain    byte = 3 // one drain or undrain, broadcast and relayed
	msgStateReq byte = 4 // "send me your own state", reliable, to one monitor
	msgState    byte = 5 // a monitor's own full state, reliable reply
	msgFull     byte = 6 // everything this node knows, push/pull
	msgLeave    byte = 7 // "I am leaving", broadcast before a graceful leave

	wireVersion byte = 1
)

// Bounds on what a peer may send. Anything beyond them is dropped whole.
const (
	maxNameLen    = 128
	maxKeyLen     = 512
	maxReasonLen  = 256
	maxEntries    = 100_000
	maxDrains     = 10_000
	maxMonitors   = 1_000
	maxMessageLen = 16 << 20
)

var (
	errTooLarge = errors.New("message too large")
	errVersion  = errors.New("unknown message version")
)

type wireEntry struct {
	K string `json:"k"`
	S uint64 `json:"s"`
	U bool   `json:"u,omitempty"`
	G bool   `json:"g,omitempty"`
	R string `json:"r,omitempty"`
}

type wireReport struct {
	M string    `json:"m"`
	E wireEntry `json:"e"`
}

type wireDigest struct {
	M string `json:"m"`
	T uint64 `json:"t"` // tick: increases with every digest of this monitor
	N int    `json:"n"`
	H uint64 `json:"h"`
}

type wireDrain struct {
	P string `json:"p"`
	S string `json:"s"`
	A string `json:"a,omitempty"` // empty: the whole site
	O bool   `json:"o,omitempty"`
	C uint64 `json:"c"`
	N string `json:"n"`
}

// wireLeave tells peers that the memberlist death of M that follows is a
// graceful leave: memberlist's event does not say which it was.
type wireLeave struct {
	M string `json:"m"`
}

type wireStateReq struct {
	M string `json:"m"` // the monitor asked
	F string `json:"f"` // who asks, to send the reply to
}

type wireMonitor struct {
	M string      `json:"m"`
	E []wireEntry `json:"e"`
	N int         `json:"n"`
	H uint64      `json:"h"`
}

type wireFull struct {
	Mons []wireMonitor `json:"mons"`
	D    []wireDrain   `json:"d"`
}

func encode(typ byte, v any) []byte {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own plain structs are encoded; this cannot fail.
		panic(fmt.Sprintf("cluster: encode message type %d: %v", typ, err))
	}
	return append([]byte{typ, wireVersion}, body...)
}

// decodeBody checks the header of buf and decodes its body into v.
func decodeBody(buf []byte, v any) error {
	if len(buf) > maxMessageLen {
		return fmt.Errorf("decode message of %d bytes: %w", len(buf), errTooLarge)
	}
	if len(buf) < 2 {
		return fmt.Errorf("decode message of %d bytes: too short", len(buf))
	}
	if buf[1] != wireVersion {
		return fmt.Errorf("decode message type %d version %d: %w", buf[0], buf[1], errVersion)
	}
	if err := json.Unmarshal(buf[2:], v); err != nil {
		return fmt.Errorf("decode message type %d: %w", buf[0], err)
	}
	return nil
}

func checkName(what, s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("%s %q: want 1 to %d bytes", what, s, maxNameLen)
	}
	return nil
}

func (e *wireEntry) check() error {
	if e.K == "" || len(e.K) > maxKeyLen {
		return fmt.Errorf("report key %q: want 1 to %d bytes", e.K, maxKeyLen)
	}
	if len(e.R) > maxReasonLen {
		return fmt.Errorf("report reason of %d bytes: %w", len(e.R), errTooLarge)
	}
	return nil
}

func (e *wireEntry) entry() entry { return entry{Seq: e.S, Up: e.U, Gone: e.G, Reason: e.R} }

func toWire(key string, e entry) wireEntry {
	return wireEntry{K: key, S: e.Seq, U: e.Up, G: e.Gone, R: e.Reason}
}

func (m *wireMonitor) check() error {
	if err := checkName("monitor", m.M); err != nil {
		return err
	}
	if len(m.E) > maxEntries {
		return fmt.Errorf("state of monitor %q with %d reports: %w", m.M, len(m.E), errTooLarge)
	}
	for i := range m.E {
		if err := m.E[i].check(); err != nil {
			return err
		}
	}
	return nil
}

func (d *wireDrain) check() (drainKey, drainVal, error) {
	if d.P == "" || len(d.P) > maxNameLen || d.S == "" || len(d.S) > maxNameLen {
		return drainKey{}, drainVal{}, fmt.Errorf("drain %q/%q: bad pool or site name", d.P, d.S)
	}
	if err := checkName("drain node", d.N); err != nil {
		return drainKey{}, drainVal{}, err
	}
	k := drainKey{Pool: d.P, Site: d.S}
	if d.A != "" {
		a, err := netip.ParseAddr(d.A)
		if err != nil {
			return drainKey{}, drainVal{}, fmt.Errorf("drain %s/%s address: %w", d.P, d.S, err)
		}
		k.Addr = a.Unmap()
	}
	return k, drainVal{On: d.O, Clock: d.C, Node: d.N}, nil
}

func drainToWire(k drainKey, v drainVal) wireDrain {
	d := wireDrain{P: k.Pool, S: k.Site, O: v.On, C: v.Clock, N: v.Node}
	if k.Addr.IsValid() {
		d.A = k.Addr.String()
	}
	return d
}

func (f *wireFull) check() error {
	if len(f.Mons) > maxMonitors || len(f.D) > maxDrains {
		return fmt.Errorf("state with %d monitors and %d drains: %w", len(f.Mons), len(f.D), errTooLarge)
	}
	for i := range f.Mons {
		if err := f.Mons[i].check(); err != nil {
			return err
		}
	}
	return nil
}

// nodeMeta is this node's memberlist metadata (Node.Meta, at most 512
// bytes): a version, whether it monitors, and the digest of the zones and
// pools it serves. Metadata changes reach peers as memberlist updates.
type nodeMeta struct {
	V   int    `json:"v"`
	Mon *bool  `json:"m,omitempty"`
	Cfg string `json:"c,omitempty"`
}

// monitor says whether the node probes. Nodes that announce no metadata
// (older versions) are taken as monitors: they probe every target.
func (nm nodeMeta) monitor() bool { return nm.Mon == nil || *nm.Mon }

// parseMeta decodes a peer's metadata; what does not decode counts as none.
func parseMeta(b []byte) nodeMeta {
	var nm nodeMeta
	if len(b) == 0 || json.Unmarshal(b, &nm) != nil || nm.V != 1 || len(nm.Cfg) > maxNameLen {
		return nodeMeta{}
	}
	return nm
}

// setMeta prepares the metadata NodeMeta returns. The caller holds m.mu or
// owns m exclusively.
func (m *Mesh) setMeta() {
	mon := m.opts.Monitor
	b, _ := json.Marshal(nodeMeta{V: 1, Mon: &mon, Cfg: m.configDig})
	m.meta.Store(&b)
}

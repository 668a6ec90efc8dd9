package geo

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// metadataMarker starts the metadata section of a MaxMind DB file.
var metadataMarker = []byte("\xAB\xCD\xEFMaxMind.com")

// walk reads the database at path and appends every network of its
// search tree, in address order, to the run lists. It walks the tree
// itself rather than through the reader's Networks iterator: that is
// about twice as fast on a full City database, and it sees the nodes, so
// it knows which subtrees alias the IPv4 subtree instead of guessing from
// gaps. Records are decoded through the reader, once per distinct record.
func (db *DB) walk(path string, buf []byte, md Metadata, decode DecodeFunc, tab *Table, b *builder, v4, v6 *ranges) error {
	if !supportedType(md.DatabaseType) {
		return fmt.Errorf("geo: open %s: database type %q has no city or country records (want a GeoIP2/GeoLite2 City or Country or a DB-IP City/Country Lite database)", path, md.DatabaseType)
	}
	if md.RecordSize != 24 && md.RecordSize != 28 && md.RecordSize != 32 {
		return fmt.Errorf("geo: open %s: record size %d: want 24, 28 or 32 bits", path, md.RecordSize)
	}
	db.info.Type = md.DatabaseType
	db.info.BuildTime = md.BuildTime
	db.info.IPVersion = int(md.IPVersion)

	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("geo: read %s: corrupt database: %s", path, fmt.Sprintf(format, args...))
	}
	nodeCount := uint64(md.NodeCount)
	nodeBytes := uint64(md.RecordSize) / 4
	treeSize := nodeCount * nodeBytes
	if uint64(len(buf)) >= 1<<32-1 {
		return fmt.Errorf("geo: open %s: %d bytes: databases of 4 GiB or more are not supported", path, len(buf))
	}
	metaStart := bytes.LastIndex(buf, metadataMarker)
	if metaStart < 0 || uint64(metaStart) < treeSize+16 {
		return corrupt("search tree of %d nodes does not fit in %d bytes", nodeCount, len(buf))
	}
	dataSize := uint64(metaStart) - treeSize - 16
	tree := buf[:treeSize]
	children := func(n uint64) (left, right uint64) {
		o := tree[n*nodeBytes : (n+1)*nodeBytes]
		switch md.RecordSize {
		case 24:
			return uint64(o[0])<<16 | uint64(o[1])<<8 | uint64(o[2]),
				uint64(o[3])<<16 | uint64(o[4])<<8 | uint64(o[5])
		case 28:
			return uint64(o[3]&0xF0)<<20 | uint64(o[0])<<16 | uint64(o[1])<<8 | uint64(o[2]),
				uint64(o[3]&0x0F)<<24 | uint64(o[4])<<16 | uint64(o[5])<<8 | uint64(o[6])
		default: // 32, checked above
			return uint64(o[0])<<24 | uint64(o[1])<<16 | uint64(o[2])<<8 | uint64(o[3]),
				uint64(o[4])<<24 | uint64(o[5])<<16 | uint64(o[6])<<8 | uint64(o[7])
		}
	}

	// The IPv4 subtree of an IPv6 database is the node at ::/96; other
	// records pointing at that node are aliases (::ffff:0:0/96,
	// 2001::/32, 2002::/16 in MaxMind's databases).
	rootDepth, v4Node := 0, nodeCount
	if md.IPVersion == 6 {
		n, d := uint64(0), 0
		for ; d < 96 && n < nodeCount; d++ {
			n, _ = children(n)
		}
		if d == 96 && n < nodeCount {
			v4Node = n
		}
	} else {
		rootDepth = 96 // an IPv4 tree is the ::/96 subtree of our space
	}

	// Neighbouring networks mostly share a record, so the last one is
	// checked first, then a small cache of recent records, then the
	// map: in address order the same few records come back again and
	// again (a City database's 3.6 million changes of record between
	// neighbouring networks find three in four in a cache of 4,096),
	// and the cache stays in the processor's cache where the map of all
	// records (hundreds of thousands) does not.
	// Distinct records are about one per 16 nodes in City databases
	// (fewer in Country ones): sized for that, the table rarely grows.
	var byPointer ptrMap
	byPointer.reserve(int(nodeCount / 16))
	// Locations are about one per 60 nodes in GeoLite2-City.
	b.reserve(int(nodeCount / 64))
	// decodeAt decodes the record at off in the data section into its
	// Location.
	decodeAt := func(off uint64) (uint32, error) {
		rec, err := decode(uintptr(off))
		if err != nil {
			return 0, corrupt("record at %d: %v", off, err)
		}
		country, continent := strings.ToUpper(rec.Country), strings.ToUpper(rec.Continent)
		k := locKey{
			country:   b.code(country),
			continent: b.code(continent),
			lat:       rec.Lat,
			lon:       rec.Lon,
			hasCoords: rec.HasCoords,
			source:    SourceDatabase,
		}
		if b.tooMany {
			return 0, corrupt("more than 65,535 country and continent names")
		}
		b.learn(country, continent, &rec)
		if k.country == 0 && k.continent == 0 && !k.hasCoords && rec.RegisteredCountry != "" {
			// Only the registered country: placed there after the
			// walk (builder.placeRegistered).
			k.country, k.registered = b.code(strings.ToUpper(rec.RegisteredCountry)), true
		}
		return b.location(k), nil
	}
	var recent [1 << recentBits]uint64 // pointer+1 << 32 | id, as ptrMap's slots
	lastPtr, lastID := uint64(0), uint32(0)
	locate := func(p uint64) (uint32, error) {
		if p == nodeCount {
			return 0, nil // no data
		}
		if p == lastPtr {
			return lastID, nil
		}
		slot := &recent[(p*0x9e3779b97f4a7c15)>>(64-recentBits)]
		if *slot>>32 == p+1 {
			lastPtr, lastID = p, uint32(*slot)
			return lastID, nil
		}
		off := p - nodeCount - 16
		if p < nodeCount+16 || off >= dataSize {
			return 0, corrupt("record pointer %d outside the data section", p)
		}
		id, ok := byPointer.get(p)
		if !ok || id == pendingID {
			var err error
			if id, err = decodeAt(off); err != nil {
				return 0, err
			}
			if ok {
				byPointer.set(p, id)
			} else {
				byPointer.put(p, id)
			}
		}
		*slot = (p+1)<<32 | uint64(id)
		lastPtr, lastID = p, id
		return id, nil
	}

	var emit6 func(s, e u128, depth int, id uint32) error
	inV4 := func(s u128, depth int) bool { return depth >= 96 && s.hi == 0 && s.lo>>32 == 0 }
	emit := func(s u128, depth int, id uint32) error {
		_, e := prefixRange(s, depth, 128)
		if inV4(s, depth) {
			if v4.done || u128From32(uint32(s.lo)) != v4.next {
				return corrupt("network %v out of order", u128Prefix(s, depth))
			}
			v4.add(u128From32(uint32(s.lo)), u128From32(uint32(e.lo)), id)
			return nil
		}
		return emit6(s, e, depth, id)
	}
	emit6 = func(s, e u128, depth int, id uint32) error {
		if v6.done || s != v6.next {
			return corrupt("network %v out of order", u128Prefix(s, depth))
		}
		if s == (u128{}) && !e.less(u128{0, 1<<32 - 1}) && id&aliasFlag == 0 {
			// A network containing ::/96 in a database without an
			// IPv4 subtree answers for IPv4 too.
			v4.add(u128{}, v4.spaceMax(), id)
		}
		v6.add(s, e, id)
		return nil
	}

	type item struct {
		ptr   uint64
		depth int
		path  u128
		v4    bool // the IPv4 subtree, to be walked
	}
	stack := make([]item, 0, 128)
	// traverse walks the tree in address order. With collect set it
	// only notes each distinct record pointer in byPointer (pendingID),
	// for the records to be decoded in file order; otherwise it locates
	// and emits every network.
	traverse := func(collect bool) error {
		stack = append(stack[:0], item{0, rootDepth, u128{}, false})
		visits := uint64(0)
		released := uint64(0) // bytes of the tree handed to md.Release
		for len(stack) > 0 {
			it := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch {
			case it.ptr >= nodeCount && collect:
				if p := it.ptr; p != nodeCount && p != lastPtr {
					if off := p - nodeCount - 16; p < nodeCount+16 || off >= dataSize {
						return corrupt("record pointer %d outside the data section", p)
					}
					if _, ok := byPointer.get(p); !ok {
						byPointer.put(p, pendingID)
					}
					lastPtr = p
				}
			case it.ptr >= nodeCount:
				id, err := locate(it.ptr)
				if err != nil {
					return err
				}
				if it.ptr != nodeCount {
					db.info.Networks++
				}
				if err := emit(it.path, it.depth, id); err != nil {
					return err
				}
			case it.ptr == v4Node && !it.v4:
				// In the IPv6 table the IPv4 subtree itself (::/96) and
				// each alias of it send lookups to the IPv4 table.
				if it.depth > 96 {
					return corrupt("IPv4 subtree aliased at %v", u128Prefix(it.path, it.depth))
				}
				if !collect {
					tab.aliases = append(tab.aliases, uint8(it.depth))
					_, e := prefixRange(it.path, it.depth, 128)
					if err := emit6(it.path, e, it.depth, aliasFlag|uint32(len(tab.aliases)-1)); err != nil {
						return err
					}
				}
				if it.depth == 96 && it.path == (u128{}) {
					it.v4 = true
					stack = append(stack, it) // now walk it, into the IPv4 table
				}
			default:
				// Each node is reached once in a tree; more visits mean a
				// corrupt file whose records form loops or shared subtrees,
				// which would make the walk explode.
				if visits++; visits > nodeCount || it.depth >= 128 {
					return corrupt("search tree is not a tree (node %d at depth %d)", it.ptr, it.depth)
				}
				switch {
				case md.Release == nil:
				case md.InOrder:
					// The records are decoded: only the tree is
					// read, and its nodes are not stored in the
					// order a walk visits them (a walk reads all of
					// it at once, in breadth, and would map
					// 20 MB of GeoLite2-City), so all of it goes
					// back every so often and the few pages of the
					// path being walked are mapped again.
					if visits%releaseVisits == 0 {
						md.Release(len(buf))
					}
				case it.ptr*nodeBytes >= released+releaseStep:
					released = it.ptr * nodeBytes &^ (releaseStep - 1)
					md.Release(int(released))
				}
				left, right := children(it.ptr)
				d := it.depth + 1
				stack = append(stack,
					item{right, d, it.path.setBit(it.depth), false},
					item{left, d, it.path, false})
			}
		}
		return nil
	}
	if md.InOrder {
		if err := traverse(true); err != nil {
			return err
		}
		// Decode the records in the order they lie in the file, handing
		// the data section's pages back behind the decoder: read in the
		// tree's order, records come from all over the data section,
		// which would be resident beside the new table through the walk.
		ptrs := byPointer.keys()
		slices.Sort(ptrs)
		dataStart := treeSize + 16
		released := uint64(0)
		for _, p := range ptrs {
			off := p - nodeCount - 16
			id, err := decodeAt(off)
			if err != nil {
				return err
			}
			byPointer.set(p, id)
			if md.Release != nil && off >= released+releaseStep/4 {
				released = off &^ (releaseStep/4 - 1)
				md.Release(int(dataStart + released))
			}
		}
		lastPtr, lastID = 0, 0
	}
	if err := traverse(false); err != nil {
		return err
	}
	if md.Release != nil {
		md.Release(len(buf))
	}
	if md.IPVersion != 6 {
		v6.add(u128{}, maxU128, 0)
	}
	if !v4.done || !v6.done {
		return corrupt("search tree does not cover the address space")
	}
	if db.info.Networks == 0 {
		return fmt.Errorf("geo: read %s: %w", path, errors.New("database has no networks with data"))
	}
	return nil
}

// releaseStep is how much of the tree the walk passes between two calls
// of Metadata.Release: 4 MiB, a dozen calls on a City database.
const releaseStep = 4 << 20

// releaseVisits is how many nodes an in-order walk visits between two
// calls of Metadata.Release: 2^18, about two dozen calls a pass over
// GeoLite2-City.
const releaseVisits = 1 << 18

// recentBits sizes the walk's cache of recent records: 4,096 entries,
// 32 KiB.
const recentBits = 12

func u128From32(v uint32) u128 { return u128{0, uint64(v)} }

// setBit sets bit i counted from the most significant.
func (a u128) setBit(i int) u128 {
	if i < 64 {
		a.hi |= 1 << (63 - i)
	} else {
		a.lo |= 1 << (127 - i)
	}
	return a
}

// u128Prefix formats a network of the 128-bit space for error messages.
func u128Prefix(s u128, depth int) string {
	if depth >= 96 && s.hi == 0 && s.lo>>32 == 0 {
		v := uint32(s.lo)
		return fmt.Sprintf("%v/%d", netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), depth-96)
	}
	return fmt.Sprintf("%v/%d", netipFrom(s), depth)
}

func supportedType(t string) bool {
	for _, s := range []string{"City", "Country", "Enterprise", "DBIP-Location"} {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}

// ptrMap maps record pointers to Location IDs during the walk: an open
// addressing table of packed (pointer+1, ID) words, one cache line per
// probe and no per-entry overhead, because a City database has hundreds
// of thousands of distinct records and millions of networks pointing at
// them. Pointers below 2^32 (files under 4 GiB) are the only kind.
type ptrMap struct {
	slots []uint64 // pointer+1 << 32 | id; 0 is empty
	n     int
}

// A table is at most 3/4 full: linear probing stays short at that load,
// and a City database's few hundred thousand records fit in 4 MiB of
// slots rather than 8 (the walk's largest structure after the table).
func (m *ptrMap) reserve(n int) {
	size := 1 << 10
	for 3*size < 4*n {
		size <<= 1
	}
	m.slots = make([]uint64, size)
}

func (m *ptrMap) slot(p uint64) int {
	return int((p * 0x9e3779b97f4a7c15) >> 32 & uint64(len(m.slots)-1))
}

func (m *ptrMap) get(p uint64) (uint32, bool) {
	if len(m.slots) == 0 {
		return 0, false
	}
	for i := m.slot(p); ; i = (i + 1) & (len(m.slots) - 1) {
		switch w := m.slots[i]; {
		case w == 0:
			return 0, false
		case w>>32 == p+1:
			return uint32(w), true
		}
	}
}

// pendingID marks a record pointer noted by the first pass of an in-order
// walk, not decoded yet.
const pendingID = ^uint32(0)

// keys returns the pointers in the map, in no order.
func (m *ptrMap) keys() []uint64 {
	out := make([]uint64, 0, m.n)
	for _, w := range m.slots {
		if w != 0 {
			out = append(out, w>>32-1)
		}
	}
	return out
}

// set changes the ID of p, which is in the map.
func (m *ptrMap) set(p uint64, id uint32) {
	for i := m.slot(p); ; i = (i + 1) & (len(m.slots) - 1) {
		if w := m.slots[i]; w>>32 == p+1 {
			m.slots[i] = (p+1)<<32 | uint64(id)
			return
		}
	}
}

func (m *ptrMap) put(p uint64, id uint32) {
	if 4*(m.n+1) > 3*len(m.slots) {
		old := m.slots
		m.slots = make([]uint64, max(1<<10, 2*len(old)))
		m.n = 0
		for _, w := range old {
			if w != 0 {
				m.put(w>>32-1, uint32(w))
			}
		}
	}
	i := m.slot(p)
	for m.slots[i] != 0 {
		i = (i + 1) & (len(m.slots) - 1)
	}
	m.slots[i] = (p+1)<<32 | uint64(id)
	m.n++
}

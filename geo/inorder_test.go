package geo

import (
	"net/netip"
	"strings"
	"testing"
)

// TestInOrderHandBuilt: a walk that decodes the records in file order
// (Metadata.InOrder) builds the same table as one that decodes them as
// the tree meets them, on a hand-built IPv4 tree whose records lie in
// the data section in another order than the tree points to them: the
// Location IDs differ, what each range says does not.
func TestInOrderHandBuilt(t *testing.T) {
	// Four /2 networks and one split /3 pair: 0/2 -> A, 64/2 -> B,
	// 128/3 -> C, 160/3 -> D, 192/2 -> A. Node 0 is the root; records
	// are 24-bit pointers, nodeCount + 16 + offset.
	const nodeCount = 4
	recs := map[uintptr]Record{ // by data offset: D, C, B, A in the file
		0:  {RegisteredCountry: "DE"},                                                              // D: only a registered country
		8:  {Country: "DE", Continent: "EU", Lat: 51, Lon: 9, HasCoords: true, CountryLevel: true}, // C
		16: {Country: "US", Continent: "NA", Lat: 39, Lon: -77, HasCoords: true},                   // B
		24: {Country: "JP", Continent: "AS", Lat: 35.7, Lon: 139.7, HasCoords: true},               // A
	}
	ptr := func(off int) int { return nodeCount + 16 + off }
	nodes := [nodeCount][2]int{
		{1, 2},             // root: 0/1, 128/1
		{ptr(24), ptr(16)}, // 0/2 A, 64/2 B
		{3, ptr(24)},       // 128/2 split, 192/2 A
		{ptr(8), ptr(0)},   // 128/3 C, 160/3 D
	}
	var buf []byte
	for _, n := range nodes {
		for _, c := range n {
			buf = append(buf, byte(c>>16), byte(c>>8), byte(c))
		}
	}
	buf = append(buf, make([]byte, 16+32)...) // separator and data section
	buf = append(buf, metadataMarker...)
	decode := func(off uintptr) (Record, error) { return recs[off], nil }
	build := func(inOrder bool) *DB {
		t.Helper()
		md := Metadata{DatabaseType: "GeoIP2-City", IPVersion: 4, NodeCount: nodeCount, RecordSize: 24, InOrder: inOrder}
		var released []int
		md.Release = func(n int) { released = append(released, n) }
		db, err := Build("hand.mmdb", buf, md, decode, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(released) == 0 || released[len(released)-1] != len(buf) {
			t.Errorf("inOrder %v: Release calls %v, want the last to be the whole file", inOrder, released)
		}
		return db
	}
	plain, ordered := build(false), build(true)
	if plain.NumLocations() != ordered.NumLocations() {
		t.Fatalf("%d Locations in order, %d as met", ordered.NumLocations(), plain.NumLocations())
	}
	var a, b []Range
	plain.set.Load().tab.All(func(r Range, alias bool) bool { a = append(a, r); return true })
	ordered.set.Load().tab.All(func(r Range, alias bool) bool { b = append(b, r); return true })
	if len(a) != len(b) {
		t.Fatalf("%d ranges in order, %d as met", len(b), len(a))
	}
	differ := 0
	for i := range a {
		la, lb := answerOf(plain.Location(int32(a[i].Value))), answerOf(ordered.Location(int32(b[i].Value)))
		if a[i].From != b[i].From || a[i].To != b[i].To || la != lb {
			t.Errorf("range %d: in order %v-%v %+v, as met %v-%v %+v", i, b[i].From, b[i].To, lb, a[i].From, a[i].To, la)
		}
		if a[i].Value != b[i].Value {
			differ++
		}
	}
	if differ == 0 {
		t.Error("the Location IDs are the same: the file order did not differ from the tree's")
	}
	// D names only its registered country, placed with C's country-level
	// coordinates whichever of the two was decoded first.
	if l, _ := ordered.Lookup(netip.MustParseAddr("160.1.2.3")); l.Country != "DE" || !l.Registered || l.Lat != 51 || l.Continent != "EU" {
		t.Errorf("160.1.2.3 in order: %+v", *l)
	}
}

// TestWalkCorrupt: a search tree with a record pointer outside the data
// section, a loop or a subtree reached twice is an error, not a crash or
// an endless walk, whether the records are decoded as met or in order.
func TestWalkCorrupt(t *testing.T) {
	const nodeCount = 3
	ptr := nodeCount + 16 // the record at offset 0
	for name, nodes := range map[string][nodeCount][2]int{
		"pointer past the data":      {{1, 2}, {ptr, ptr + 1000}, {ptr, ptr}},
		"pointer into the separator": {{1, 2}, {ptr, nodeCount + 3}, {ptr, ptr}},
		"loop":                       {{1, 2}, {ptr, 0}, {ptr, ptr}},
		"subtree reached twice":      {{1, 1}, {2, 2}, {ptr, ptr}},
	} {
		var buf []byte
		for _, n := range nodes {
			for _, c := range n {
				buf = append(buf, byte(c>>16), byte(c>>8), byte(c))
			}
		}
		buf = append(buf, make([]byte, 16+8)...)
		buf = append(buf, metadataMarker...)
		decode := func(off uintptr) (Record, error) { return Record{Country: "DE", Continent: "EU"}, nil }
		for _, inOrder := range []bool{false, true} {
			md := Metadata{DatabaseType: "GeoIP2-City", IPVersion: 4, NodeCount: nodeCount, RecordSize: 24, InOrder: inOrder}
			if _, err := Build("bad.mmdb", buf, md, decode, nil); err == nil || !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("%s, in order %v: err = %v, want corrupt", name, inOrder, err)
			}
		}
	}
}

package geo

import (
	"net/netip"
	"strings"
	"testing"
)

// TestRetireRestore: a retired DB answers SourceRetired and derives
// nothing; Restore takes back the table of a DB built again from the
// same file and refuses another database's.
func TestRetireRestore(t *testing.T) {
	db, err := open(cityDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	var probes []netip.Addr
	want := map[netip.Addr]answer{}
	db.set.Load().tab.All(func(r Range, alias bool) bool {
		if !alias && len(probes) < 500 {
			probes = append(probes, r.From)
			l, _ := db.Lookup(r.From)
			want[r.From] = answerOf(l)
		}
		return true
	})
	info, n := db.Info(), db.NumLocations()

	db.Retire()
	if !db.Retired() {
		t.Fatal("Retired() = false after Retire")
	}
	if l, bits := db.Lookup(probes[0]); l.Source != SourceRetired || bits != 0 {
		t.Errorf("retired Lookup = %+v /%d, want SourceRetired /0", l, bits)
	}
	if _, err := db.Derive(make([]uint32, db.NumLocations())); err == nil || !strings.Contains(err.Error(), "retired") {
		t.Errorf("Derive on a retired DB: err = %v", err)
	}
	if got := db.Info(); got.Ranges != info.Ranges || got.Locations != info.Locations {
		t.Errorf("Info changed by Retire: %+v, was %+v", got, info)
	}

	other, err := open(countryDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Restore(other); err == nil || !db.Retired() {
		t.Errorf("Restore from another database: err = %v, retired %v", err, db.Retired())
	}
	again, err := open(cityDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Restore(again); err != nil {
		t.Fatal(err)
	}
	if db.Retired() || db.NumLocations() != n {
		t.Fatalf("after Restore: retired %v, %d locations, want %d", db.Retired(), db.NumLocations(), n)
	}
	for _, a := range probes {
		if l, _ := db.Lookup(a); answerOf(l) != want[a] {
			t.Errorf("restored Lookup(%v) = %+v, want %+v", a, answerOf(l), want[a])
		}
	}

	// A DB without a file has nothing worth retiring.
	ov, err := New([]Override{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Country: "DE"}})
	if err != nil {
		t.Fatal(err)
	}
	ov.Retire()
	if l, _ := ov.Lookup(netip.MustParseAddr("10.1.2.3")); ov.Retired() || l.Country != "DE" {
		t.Errorf("overrides-only DB retired: %v, %+v", ov.Retired(), l)
	}
}

package geo

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/maxminddb-golang/v2"

	"gslbd/internal/cputime"
)

const (
	cityDB    = "../testdata/geo/city.mmdb"
	countryDB = "../testdata/geo/country.mmdb"
)

// answer is what a Location says, without its ID, for comparing a DB
// with the reference model and with the reader.
type answer struct {
	country, continent string
	lat, lon           float64
	hasCoords          bool
	source             Source
	registered         bool
}

func answerOf(l *Location) answer {
	return answer{l.Country, l.Continent, l.Lat, l.Lon, l.HasCoords, l.Source, l.Registered}
}

// matches compares a DB's answer with the reader's: where the record
// names only a registered country, the reader knows just that country
// (the continent and coordinates come from the rest of the database).
func (a answer) matches(reader answer) bool {
	if reader.registered {
		return a.registered && a.country == reader.country && a.source == reader.source
	}
	return a == reader
}

// record is the part of a City or Country record that locates a client.
type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

// readerAnswer asks the maxminddb reader directly: the answer and the
// prefix length of the network it found.
func readerAnswer(t testing.TB, r *maxminddb.Reader, a netip.Addr) (answer, int) {
	t.Helper()
	res := r.Lookup(a.Unmap())
	if err := res.Err(); err != nil {
		t.Fatalf("reader lookup %v: %v", a, err)
	}
	bits := res.Prefix().Bits()
	if !res.Found() {
		return answer{}, bits
	}
	var rec record
	if err := res.Decode(&rec); err != nil {
		t.Fatalf("reader decode %v: %v", a, err)
	}
	ans := answer{country: rec.Country.ISOCode, continent: rec.Continent.Code, source: SourceDatabase}
	if rec.Location.Latitude != nil && rec.Location.Longitude != nil {
		ans.lat, ans.lon, ans.hasCoords = *rec.Location.Latitude, *rec.Location.Longitude, true
	}
	if ans.country == "" && ans.continent == "" && !ans.hasCoords {
		if c := rec.RegisteredCountry.ISOCode; c != "" {
			return answer{country: c, source: SourceDatabase, registered: true}, bits
		}
		return answer{}, bits
	}
	return ans, bits
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// row is one line of testdata/geo/README.md.
type row struct {
	prefix       netip.Prefix
	ans          answer // as the City database has it
	countryLevel bool   // no city: coordinates, if any, are the country's
}

// readTable parses the network table of testdata/geo/README.md, which
// the generator writes from the same table it puts into the databases.
func readTable(t testing.TB) []row {
	t.Helper()
	f, err := os.ReadFile("../testdata/geo/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []row
	sc := bufio.NewScanner(bytes.NewReader(f))
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "|")
		if len(cells) != 8 {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		p, err := netip.ParsePrefix(cells[1])
		if err != nil {
			continue // the header
		}
		r := row{prefix: p}
		if c, ok := strings.CutPrefix(cells[2], "registered: "); ok {
			r.ans = answer{country: c, source: SourceDatabase, registered: true}
		} else if cells[2] != "" || cells[3] != "" {
			r.ans = answer{country: cells[2], continent: cells[3], source: SourceDatabase}
		}
		r.countryLevel = cells[4] == ""
		if cells[5] != "" {
			r.ans.lat, _ = strconv.ParseFloat(cells[5], 64)
			r.ans.lon, _ = strconv.ParseFloat(cells[6], 64)
			r.ans.hasCoords = true
		}
		rows = append(rows, r)
	}
	if len(rows) < 40 {
		t.Fatalf("README.md table has %d rows, want the full table", len(rows))
	}
	// A record with only a registered country is placed with what the
	// other rows say of that country: its continent, and the
	// coordinates of its country-level row (no city), if any.
	for i := range rows {
		r := &rows[i]
		if !r.ans.registered {
			continue
		}
		for _, o := range rows {
			if o.ans.registered || o.ans.country != r.ans.country {
				continue
			}
			r.ans.continent = o.ans.continent
			if o.ans.hasCoords && o.countryLevel {
				r.ans.lat, r.ans.lon, r.ans.hasCoords = o.ans.lat, o.ans.lon, true
			}
		}
	}
	return rows
}

// model is an independent, slow statement of what Lookup must return:
// the longest override, else the database network, else unknown, with
// the IPv6 subtrees the test databases alias onto IPv4 (as mmdbwriter
// writes them), and bits found by checking every point inside a
// candidate network where the answer could change.
type model struct {
	rows4, rows6 []row // database networks
	ovs4, ovs6   []row // overrides
	aliases      []netip.Prefix
	points6      []netip.Prefix // every prefix whose edges may change an IPv6 answer
}

func newModel(rows []row, ovs []Override, country bool) *model {
	m := &model{}
	if rows != nil {
		// Without a database nothing is aliased.
		m.aliases = []netip.Prefix{
			netip.MustParsePrefix("::/96"), netip.MustParsePrefix("::ffff:0:0/96"),
			netip.MustParsePrefix("2001::/32"), netip.MustParsePrefix("2002::/16"),
		}
	}
	for _, r := range rows {
		if country {
			r.ans.lat, r.ans.lon, r.ans.hasCoords = 0, 0, false
		}
		if r.ans == (answer{}) {
			continue
		}
		if r.prefix.Addr().Is4() {
			m.rows4 = append(m.rows4, r)
		} else {
			m.rows6 = append(m.rows6, r)
		}
	}
	for _, o := range ovs {
		r := row{prefix: o.Prefix, ans: answer{o.Country, o.Continent, o.Lat, o.Lon, o.HasCoords, SourceOverride, false}}
		if !o.HasCoords {
			r.ans.lat, r.ans.lon = 0, 0
		}
		if r.prefix.Addr().Is4In6() && r.prefix.Bits() >= 96 {
			r.prefix = netip.PrefixFrom(r.prefix.Addr().Unmap(), r.prefix.Bits()-96)
		}
		if r.prefix.Addr().Is4() {
			m.ovs4 = append(m.ovs4, r)
		} else {
			m.ovs6 = append(m.ovs6, r)
		}
	}
	for _, r := range append(m.rows6, m.ovs6...) {
		m.points6 = append(m.points6, r.prefix)
	}
	for _, al := range m.aliases {
		m.points6 = append(m.points6, al)
		for _, r := range append(m.rows4, m.ovs4...) {
			m.points6 = append(m.points6, embed(al, r.prefix))
		}
	}
	return m
}

// embed is the IPv6 network of alias al that holds IPv4 network p.
func embed(al, p netip.Prefix) netip.Prefix {
	b := al.Addr().As16()
	v4 := p.Addr().As4()
	for i := range 32 {
		if v4[i/8]&(0x80>>(i%8)) != 0 {
			k := al.Bits() + i
			b[k/8] |= 0x80 >> (k % 8)
		}
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), al.Bits()+p.Bits())
}

// extract is the IPv4 address alias al holds at a.
func extract(al netip.Prefix, a netip.Addr) netip.Addr {
	b := a.As16()
	var v4 [4]byte
	for i := range 32 {
		k := al.Bits() + i
		if b[k/8]&(0x80>>(k%8)) != 0 {
			v4[i/8] |= 0x80 >> (i % 8)
		}
	}
	return netip.AddrFrom4(v4)
}

func longest(rs []row, a netip.Addr) (answer, bool) {
	best, found := -1, answer{}
	for _, r := range rs {
		if r.prefix.Contains(a) && r.prefix.Bits() > best {
			best, found = r.prefix.Bits(), r.ans
		}
	}
	return found, best >= 0
}

func (m *model) answer(a netip.Addr) answer {
	if a.Is4() {
		if ans, ok := longest(m.ovs4, a); ok {
			return ans
		}
		ans, _ := longest(m.rows4, a)
		return ans
	}
	if ans, ok := longest(m.ovs6, a); ok {
		return ans
	}
	for _, al := range m.aliases {
		if al.Contains(a) {
			return m.answer(extract(al, a))
		}
	}
	ans, _ := longest(m.rows6, a)
	return ans
}

func (m *model) uniform(p netip.Prefix, want answer) bool {
	points := m.points6
	if p.Addr().Is4() {
		points = nil
		for _, r := range append(m.rows4, m.ovs4...) {
			points = append(points, r.prefix)
		}
	}
	if m.answer(p.Addr()) != want {
		return false
	}
	last := lastAddr(p)
	for _, q := range points {
		if !q.Overlaps(p) {
			continue
		}
		if s := q.Masked().Addr(); p.Contains(s) && m.answer(s) != want {
			return false
		}
		if e := lastAddr(q); e != last && p.Contains(e) && m.answer(e.Next()) != want {
			return false
		}
	}
	return true
}

// bits is the shortest prefix length around a with a uniform answer
// (uniformity only grows with the length, so a binary search finds it).
func (m *model) bits(a netip.Addr) int {
	want := m.answer(a)
	lo, hi := 0, a.BitLen()
	for lo < hi {
		mid := (lo + hi) / 2
		if m.uniform(netip.PrefixFrom(a, mid).Masked(), want) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// probes are the addresses the table tests look up: the edges and the
// middle of every network, the addresses just outside, the same as
// IPv4-mapped IPv6 and inside the aliased subtrees, and a fixed set of
// unknown ones.
func probes(rows []row, ovs []Override) []netip.Addr {
	var out []netip.Addr
	add := func(p netip.Prefix) {
		s, e := p.Masked().Addr(), lastAddr(p)
		mid := netip.PrefixFrom(s, min(p.Bits()+1, s.BitLen())).Masked()
		out = append(out, s, e, lastAddr(mid))
		if s.Prev().IsValid() {
			out = append(out, s.Prev())
		}
		if e.Next().IsValid() {
			out = append(out, e.Next())
		}
	}
	for _, r := range rows {
		add(r.prefix)
	}
	for _, o := range ovs {
		add(o.Prefix)
	}
	var mapped []netip.Addr
	for _, a := range out {
		if a.Is4() {
			mapped = append(mapped, netip.AddrFrom16(a.As16()), // ::ffff:a.b.c.d
				embed(netip.MustParsePrefix("2002::/16"), netip.PrefixFrom(a, 32)).Addr(),
				embed(netip.MustParsePrefix("::/96"), netip.PrefixFrom(a, 32)).Addr())
		}
	}
	for _, s := range []string{
		"0.0.0.0", "1.1.1.1", "10.0.0.1", "127.0.0.1", "127.255.255.255", "192.0.2.200",
		"255.255.255.255", "::", "::1", "2001::1", "2001:db8:99::1", "2001:db9::", "fe80::1",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	} {
		out = append(out, netip.MustParseAddr(s))
	}
	return append(out, mapped...)
}

// testOverrides nest inside each other and inside database networks.
var testOverrides = []Override{
	{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Country: "DE", Continent: "EU", Lat: 50, Lon: 8, HasCoords: true},
	{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Country: "US", Continent: "NA"},
	{Prefix: netip.MustParsePrefix("10.1.2.0/24"), Country: "JP", Continent: "AS", Lat: 35, Lon: 139, HasCoords: true},
	{Prefix: netip.MustParsePrefix("127.0.1.128/25"), Country: "FR", Continent: "EU"},
	{Prefix: netip.MustParsePrefix("192.168.0.0/24"), Country: "GB", Continent: "EU"},
	{Prefix: netip.MustParsePrefix("192.168.1.0/24"), Country: "GB", Continent: "EU"}, // same answer: merges to /23
	{Prefix: netip.MustParsePrefix("::ffff:172.16.0.0/108"), Country: "CA", Continent: "NA"},
	{Prefix: netip.MustParsePrefix("2001:db8:1:1::/64"), Country: "US", Continent: "NA"},
	{Prefix: netip.MustParsePrefix("2001:db8:40::/44"), Country: "AU", Continent: "OC", Lat: -33, Lon: 151, HasCoords: true},
	{Prefix: netip.MustParsePrefix("2001:db8:40:8::/64"), Country: "NZ", Continent: "OC"},
	// Longer than /64: range starts with low bits, which the table keeps
	// apart from the first 64 (Table.lo6).
	{Prefix: netip.MustParsePrefix("2001:db8:5:0:8000::/65"), Country: "NZ", Continent: "OC"},
	{Prefix: netip.MustParsePrefix("2001:db8:6::1:0/112"), Country: "CL", Continent: "SA"},
	{Prefix: netip.MustParsePrefix("2001:db8:6::1:5/128"), Country: "KE", Continent: "AF"},
}

func checkAgainstModel(t *testing.T, db *DB, m *model, addrs []netip.Addr) {
	t.Helper()
	for _, a := range addrs {
		loc, bits := db.Lookup(a)
		u := a.Unmap()
		want, wantBits := m.answer(u), m.bits(u)
		if got := answerOf(loc); got != want || bits != wantBits {
			t.Errorf("Lookup(%v) = %+v /%d, want %+v /%d", a, got, bits, want, wantBits)
		}
		if int(loc.ID) >= db.NumLocations() || db.Location(loc.ID) != loc {
			t.Errorf("Lookup(%v): ID %d does not index the location (NumLocations %d)", a, loc.ID, db.NumLocations())
		}
		if (loc.ID == 0) != (loc.Source == SourceUnknown) {
			t.Errorf("Lookup(%v): ID %d with source %v; ID 0 is the unknown location", a, loc.ID, loc.Source)
		}
	}
}

func TestLookupTable(t *testing.T) {
	rows := readTable(t)
	for _, tc := range []struct {
		name, path string
		country    bool
		ovs        []Override
	}{
		{"city", cityDB, false, nil},
		{"country", countryDB, true, nil},
		{"city+overrides", cityDB, false, testOverrides},
		{"none+overrides", "", false, testOverrides},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := open(tc.path, tc.ovs)
			if err != nil {
				t.Fatal(err)
			}
			tableRows := rows
			if tc.path == "" {
				tableRows = nil
			}
			m := newModel(tableRows, tc.ovs, tc.country)
			checkAgainstModel(t, db, m, probes(rows, tc.ovs))
		})
	}
}

// TestLookupRandom compares random addresses in and around the test
// networks with the model, and (without overrides) with the reader.
func TestLookupRandom(t *testing.T) {
	rows := readTable(t)
	db, err := open(cityDB, testOverrides)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := open(cityDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := maxminddb.Open(cityDB)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := newModel(rows, testOverrides, false)
	rnd := rand.New(rand.NewPCG(7, 8))
	regions := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/18"), netip.MustParsePrefix("10.0.0.0/14"),
		netip.MustParsePrefix("192.0.2.0/23"), netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("2001:db8::/42"), netip.MustParsePrefix("2001:db8:1::/56"),
		netip.MustParsePrefix("2002:7f00::/32"), netip.MustParsePrefix("0.0.0.0/0"),
		netip.MustParsePrefix("::/0"),
	}
	var addrs []netip.Addr
	for range 300 {
		p := regions[rnd.IntN(len(regions))]
		b := p.Addr().AsSlice()
		for i := p.Bits(); i < len(b)*8; i++ {
			if rnd.IntN(2) == 1 {
				b[i/8] |= 0x80 >> (i % 8)
			}
		}
		a, _ := netip.AddrFromSlice(b)
		addrs = append(addrs, a)
	}
	checkAgainstModel(t, db, m, addrs)
	for _, a := range addrs {
		loc, bits := plain.Lookup(a)
		want, readerBits := readerAnswer(t, r, a)
		if got := answerOf(loc); !got.matches(want) || bits > readerBits {
			t.Errorf("Lookup(%v) = %+v /%d, reader says %+v /%d", a, got, bits, want, readerBits)
		}
	}
}

// TestGenerated checks that the committed databases and README are what
// the generator writes now.
func TestGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the generator")
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "run", "../testdata/geo/gen", "-out", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generator: %v\n%s", err, out)
	}
	for _, f := range []string{"city.mmdb", "country.mmdb", "README.md"} {
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("../testdata/geo", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, committed) {
			t.Errorf("testdata/geo/%s differs from the generator's output: run go generate ./geo/", f)
		}
	}
}

func TestInfo(t *testing.T) {
	db, err := open(cityDB, testOverrides)
	if err != nil {
		t.Fatal(err)
	}
	i := db.Info()
	if i.Type != "GeoIP2-City" || i.BuildTime.Year() != 2026 || i.IPVersion != 6 || i.Path != cityDB {
		t.Errorf("Info = %+v, want a GeoIP2-City IPv6 database built in 2026", i)
	}
	// 45 networks with data, plus the merged pairs' halves counted once
	// each by the walk: the reader reports 127.0.20.0/23 as one network.
	if i.Networks < 40 || i.Ranges == 0 || i.LoadDuration <= 0 || i.TableBytes == 0 {
		t.Errorf("Info = %+v, want the networks, ranges, load time and size", i)
	}
	// unknown + 19 places in the table + the country-level AU + the two
	// registered-country records + 10 distinct override answers (the two
	// GB overrides, the two US/NA ones and the two NZ/OC ones share
	// theirs).
	if want := 1 + 19 + 1 + 2 + 10; i.Locations != db.NumLocations() || i.Locations != want {
		t.Errorf("Info.Locations = %d, NumLocations = %d, want %d", i.Locations, db.NumLocations(), want)
	}
	if i.Overrides != len(testOverrides) {
		t.Errorf("Info.Overrides = %d, want %d", i.Overrides, len(testOverrides))
	}
	c, err := open(countryDB, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 17 countries (the country-level AU is Sydney's AU without
	// coordinates) + CH + the continent-only record + the two
	// registered-country records + unknown.
	if ci := c.Info(); ci.Type != "GeoIP2-Country" || ci.Locations != 17+1+1+2+1 {
		t.Errorf("country Info = %+v, want GeoIP2-Country with 22 locations", ci)
	}
}

func TestNoDatabase(t *testing.T) {
	for _, db := range []*DB{nil, {}, mustOpen(t, "", nil)} {
		for _, s := range []string{"127.0.1.1", "2001:db8:1::1", "::ffff:1.2.3.4"} {
			loc, bits := db.Lookup(netip.MustParseAddr(s))
			if loc == nil || loc.Source != SourceUnknown || loc.ID != 0 || bits != 0 {
				t.Errorf("Lookup(%s) without database = %+v /%d, want unknown /0", s, loc, bits)
			}
		}
		if loc, bits := db.Lookup(netip.Addr{}); loc == nil || loc.ID != 0 || bits != 0 {
			t.Errorf("Lookup(invalid) = %+v /%d, want unknown /0", loc, bits)
		}
		if n := db.NumLocations(); n != 1 {
			t.Errorf("NumLocations = %d, want 1", n)
		}
		if i := db.Info(); i.Type != "" || i.Networks != 0 || i.Locations != 1 {
			t.Errorf("Info = %+v, want empty with one location", i)
		}
	}
}

func mustOpen(t testing.TB, path string, ovs []Override) *DB {
	t.Helper()
	db, err := open(path, ovs)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	city, err := os.ReadFile(cityDB)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A truncated tree: the metadata is intact, the search tree and data
	// section are cut short (a copy interrupted halfway, then the tail
	// appended).
	meta := bytes.LastIndex(city, []byte("\xab\xcd\xefMaxMind.com"))
	if meta < 0 {
		t.Fatal("no metadata marker in city.mmdb")
	}
	cut := append(append([]byte{}, city[:200]...), city[meta:]...)

	for _, tc := range []struct {
		name, path string
		is         error
	}{
		{"missing", filepath.Join(dir, "nope.mmdb"), fs.ErrNotExist},
		{"empty", write("empty.mmdb", nil), nil},
		{"garbage", write("garbage.mmdb", bytes.Repeat([]byte("not a database "), 100)), nil},
		{"truncated", write("truncated.mmdb", city[:len(city)/2]), nil},
		{"cut", write("cut.mmdb", cut), nil},
		{"asn", writeASN(t, dir), nil},
		{"directory", dir, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := open(tc.path, nil)
			if err == nil {
				t.Fatalf("open(%s) = %+v, want an error", tc.path, db.Info())
			}
			if db != nil {
				t.Errorf("open(%s) returned a DB with its error", tc.path)
			}
			if !strings.Contains(err.Error(), tc.path) || !strings.HasPrefix(err.Error(), "geo: ") {
				t.Errorf("error %q does not name the file %s", err, tc.path)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			t.Log(err)
		})
	}
}

// writeASN writes a valid MaxMind DB that has no locations.
func writeASN(t *testing.T, dir string) string {
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-ASN", IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Insert(mustCIDR(t, "127.0.1.0/24"), mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(64496)}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "asn.mmdb")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOverrideValidation(t *testing.T) {
	if _, err := open("", []Override{{Country: "DE"}}); err == nil {
		t.Error("Open with an invalid override prefix succeeded")
	}
	// Lower-case codes are normalised, and a host address with bits set
	// beyond its prefix is masked.
	db := mustOpen(t, "", []Override{{Prefix: netip.MustParsePrefix("10.1.2.3/16"), Country: "de", Continent: "eu"}})
	loc, bits := db.Lookup(netip.MustParseAddr("10.1.200.1"))
	if loc.Country != "DE" || loc.Continent != "EU" || loc.Source != SourceOverride || bits != 16 {
		t.Errorf("Lookup = %+v /%d, want DE EU override /16", *loc, bits)
	}
}

func TestDistance(t *testing.T) {
	const quarterMeridian = earthRadiusKm * 3.141592653589793 / 2
	for _, tc := range []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		km, tolerance          float64 // tolerance as a fraction of km
	}{
		{"same point", 50.1109, 8.6821, 50.1109, 8.6821, 0, 0},
		{"equator to pole", 0, 0, 90, 0, quarterMeridian, 1e-12},
		{"antipodes", 0, 0, 0, 180, 2 * quarterMeridian, 1e-12},
		{"across the date line", 0, 179.5, 0, -179.5, 2 * quarterMeridian / 180, 1e-9},
		// Published great-circle figures (gcmap.com): JFK–LHR 5,555 km,
		// SYD–LAX 12,051 km; Frankfurt–Ashburn about 6,550 km.
		{"JFK-LHR", 40.6398, -73.7789, 51.4775, -0.4614, 5555, 0.005},
		{"SYD-LAX", -33.9461, 151.1772, 33.9425, -118.4081, 12051, 0.005},
		{"Frankfurt-Ashburn", 50.1109, 8.6821, 39.0438, -77.4874, 6550, 0.01},
	} {
		got := Distance(tc.lat1, tc.lon1, tc.lat2, tc.lon2)
		if diff := got - tc.km; diff > tc.km*tc.tolerance+1e-9 || -diff > tc.km*tc.tolerance+1e-9 {
			t.Errorf("%s: Distance = %.3f km, want %.3f ± %.2f%%", tc.name, got, tc.km, tc.tolerance*100)
		}
		if back := Distance(tc.lat2, tc.lon2, tc.lat1, tc.lon1); back != got {
			t.Errorf("%s: Distance is not symmetric: %v vs %v", tc.name, got, back)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Distance(1, 2, 3, 4) }); n != 0 {
		t.Errorf("Distance allocates %v times", n)
	}
}

// TestLookupAllocs is the allocation budget of the hot path: none, for
// IPv4, IPv6, IPv4-mapped and aliased addresses alike.
func TestLookupAllocs(t *testing.T) {
	db := mustOpen(t, cityDB, testOverrides)
	for _, s := range []string{"127.0.1.1", "2001:db8:1::1", "::ffff:127.0.2.1", "2002:7f00:301::1", "10.1.2.3", "8.8.8.8"} {
		a := netip.MustParseAddr(s)
		if n := testing.AllocsPerRun(1000, func() { _, _ = db.Lookup(a) }); n != 0 {
			t.Errorf("Lookup(%s) allocates %v times per run", s, n)
		}
	}
}

func TestConcurrentLookups(t *testing.T) {
	db := mustOpen(t, cityDB, testOverrides)
	addrs := randomAddrs(1024)
	want := make([]*Location, len(addrs))
	for i, a := range addrs {
		want[i], _ = db.Lookup(a)
	}
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) * 2 {
		wg.Go(func() {
			for i, a := range addrs {
				if got, _ := db.Lookup(a); got != want[i] {
					t.Errorf("concurrent Lookup(%v) = %+v, want %+v", a, got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// randomAddrs is a fixed mix: half IPv4 anywhere, half IPv6 in 2000::/3.
func randomAddrs(n int) []netip.Addr {
	rnd := rand.New(rand.NewPCG(3, 4))
	out := make([]netip.Addr, n)
	for i := range out {
		if i%2 == 0 {
			v := rnd.Uint32()
			out[i] = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			continue
		}
		var b [16]byte
		hi, lo := 0x2000_0000_0000_0000|rnd.Uint64()>>3, rnd.Uint64()
		for k := range 8 {
			b[k], b[8+k] = byte(hi>>(56-8*k)), byte(lo>>(56-8*k))
		}
		out[i] = netip.AddrFrom16(b)
	}
	return out
}

func benchLookup(b *testing.B, db *DB, addrs []netip.Addr) {
	b.ReportAllocs()
	i, sum := 0, 0
	cpu0 := cputime.Now()
	for b.Loop() {
		loc, bits := db.Lookup(addrs[i%len(addrs)])
		sum += bits + int(loc.ID)
		i++
	}
	b.ReportMetric(float64(cputime.Now()-cpu0)/float64(b.N), "cpu-ns/op")
	_ = sum
}

func BenchmarkLookup(b *testing.B) {
	db := mustOpen(b, cityDB, testOverrides)
	b.Run("mixed", func(b *testing.B) { benchLookup(b, db, randomAddrs(4096)) })
	b.Run("v4-hit", func(b *testing.B) { benchLookup(b, db, []netip.Addr{netip.MustParseAddr("127.0.1.1")}) })
	b.Run("v6-hit", func(b *testing.B) { benchLookup(b, db, []netip.Addr{netip.MustParseAddr("2001:db8:1::1")}) })
}

// TestIPv4Database reads an IPv4-only database (ip_version 4): IPv4
// answers as usual, every IPv6 address unknown with scope /0.
func TestIPv4Database(t *testing.T) {
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-Country", IPVersion: 4, IncludeReservedNetworks: true, RecordSize: 28})
	if err != nil {
		t.Fatal(err)
	}
	de := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String("DE")}, "continent": mmdbtype.Map{"code": mmdbtype.String("EU")}}
	for _, n := range []string{"127.0.2.0/24", "127.0.3.0/24"} {
		if err := w.Insert(mustCIDR(t, n), de); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "v4.mmdb")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	db := mustOpen(t, p, nil)
	for _, tc := range []struct {
		addr    string
		country string
		bits    int
	}{
		{"127.0.2.1", "DE", 23}, // two neighbours with one record merge
		{"127.0.3.255", "DE", 23},
		{"127.0.4.1", "", 22},
		{"127.0.1.1", "", 23}, // 127.0.0.0/23 has no data
		{"::ffff:127.0.2.1", "DE", 23},
		{"2001:db8::1", "", 0},
		{"::1", "", 0},
	} {
		loc, bits := db.Lookup(netip.MustParseAddr(tc.addr))
		if loc.Country != tc.country || bits != tc.bits {
			t.Errorf("Lookup(%s) = %q /%d, want %q /%d", tc.addr, loc.Country, bits, tc.country, tc.bits)
		}
	}
}

package geo

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2"

	"gslbd/internal/cputime"
)

// fullDB returns the path of a full-size City database from
// GSLBD_GEOLITE2, or skips: a real database is an optional benchmark
// input (its licence keeps it out of the repository; docs/geoip.md says
// how to fetch GeoLite2-City into .cache/), and the committed test
// databases cover correctness without it.
func fullDB(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv("GSLBD_GEOLITE2")
	if p == "" {
		tb.Skip("GSLBD_GEOLITE2 not set: no full-size database to measure (optional, see docs/geoip.md)")
	}
	return p
}

// TestFullDatabase loads a real database, reports the figures of
// docs/geoip.md, and checks random addresses against the reader itself:
// the same answer, and a prefix no narrower than the reader's network
// whose first and last addresses answer the same.
func TestFullDatabase(t *testing.T) {
	path := fullDB(t)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := cputime.Now()
	db, err := open(path, nil)
	cpu := cputime.Now() - cpu0
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	info := db.Info()
	t.Logf("type %s built %s: %d networks, %d locations, %d ranges, open %v (CPU %v), heap +%.1f MiB (table estimate %.1f MiB)",
		info.Type, info.BuildTime.Format("2006-01-02"), info.Networks, info.Locations, info.Ranges,
		info.LoadDuration, cpu, float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), float64(info.TableBytes)/(1<<20))
	runtime.KeepAlive(db)

	r, err := maxminddb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rnd := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for i := range n {
		var a netip.Addr
		if i%2 == 0 {
			a = netip.AddrFrom4([4]byte{byte(rnd.Uint32()), byte(rnd.Uint32()), byte(rnd.Uint32()), byte(rnd.Uint32())})
		} else {
			var b [16]byte
			hi, lo := rnd.Uint64(), rnd.Uint64()
			hi = 0x2000_0000_0000_0000 | hi>>3 // 2000::/3, where the data is
			for k := range 8 {
				b[k], b[8+k] = byte(hi>>(56-8*k)), byte(lo>>(56-8*k))
			}
			a = netip.AddrFrom16(b)
		}
		loc, bits := db.Lookup(a)
		want, wantBits := readerAnswer(t, r, a)
		if got := answerOf(loc); !got.matches(want) {
			t.Fatalf("Lookup(%v) = %+v, reader says %+v", a, got, want)
		}
		if bits > wantBits {
			t.Fatalf("Lookup(%v) bits %d narrower than the reader's network /%d", a, bits, wantBits)
		}
		p := netip.PrefixFrom(a, bits).Masked()
		for _, e := range []netip.Addr{p.Addr(), lastAddr(p)} {
			if l, _ := db.Lookup(e); l != loc {
				t.Fatalf("Lookup(%v) = %v/%d, but %v in it answers %+v", a, loc, bits, e, *l)
			}
		}
	}
}

func BenchmarkOpenFull(b *testing.B) {
	path := fullDB(b)
	b.ReportAllocs()
	cpu0 := cputime.Now()
	for b.Loop() {
		if _, err := open(path, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cputime.Now()-cpu0)/float64(b.N)/1e9, "cpu-s/op")
}

func BenchmarkLookupFull(b *testing.B) {
	db, err := open(fullDB(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	benchLookup(b, db, randomAddrs(1<<16))
}

// BenchmarkReaderFull is the reader's own lookup, for comparison.
func BenchmarkReaderFull(b *testing.B) {
	r, err := maxminddb.Open(fullDB(b))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	addrs := randomAddrs(1 << 16)
	b.ReportAllocs()
	i := 0
	cpu0 := cputime.Now()
	for b.Loop() {
		res := r.Lookup(addrs[i&(len(addrs)-1)])
		_ = res.Offset()
		i++
	}
	b.ReportMetric(float64(cputime.Now()-cpu0)/float64(b.N), "cpu-ns/op")
}

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/miekg/dns"
)

// bigCityDB writes a GeoIP2-City database of n /24 networks (inside
// 10.0.0.0/8 and up: data only, nothing is ever sent there) with five
// thousand distinct places, so that reading and walking it takes a
// noticeable time, as a real City database does.
func bigCityDB(t testing.TB, path string, n int) {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", IPVersion: 4, RecordSize: 28, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	countries := []string{"DE", "US", "JP", "BR", "AU", "ZA", "GB", "CA", "SG", "AR", "NZ", "NG", "FR", "IN", "MX"}
	continents := map[string]string{"DE": "EU", "US": "NA", "JP": "AS", "BR": "SA", "AU": "OC", "ZA": "AF", "GB": "EU",
		"CA": "NA", "SG": "AS", "AR": "SA", "NZ": "OC", "NG": "AF", "FR": "EU", "IN": "AS", "MX": "NA"}
	recs := make([]mmdbtype.Map, 5000)
	for place := range recs {
		c := countries[place%len(countries)]
		recs[place] = mmdbtype.Map{
			"country":   mmdbtype.Map{"iso_code": mmdbtype.String(c)},
			"continent": mmdbtype.Map{"code": mmdbtype.String(continents[c])},
			"location": mmdbtype.Map{
				"latitude":  mmdbtype.Float64(float64(place%179) - 89.5),
				"longitude": mmdbtype.Float64(float64(place%359) - 179.5),
			},
		}
	}
	for i := range n {
		ip := net.IPv4(byte(10+i>>16), byte(i>>8), byte(i), 0)
		if err := w.Insert(&net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)}, recs[i%len(recs)]); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// bigNetworks is the size of the generated database.
const bigNetworks = 200_000

const reloadPools = `[web]
policy = "failover"
answers = 1
ttl = 5

[web.check]
type = "tcp"
port = %d
interval = "100ms"
timeout = "80ms"
rise = 1
fall = 1

[[web.sites]]
name = "primary"
addresses = ["127.0.0.1"]

[[web.sites]]
name = "backup"
addresses = ["127.0.0.2"]
[web.sites.check]
type = "none"
`

// TestVerdictDuringReload measures how long a verdict change takes to
// reach the answers, idle and while a reload of a large geo database is
// in progress: reloads run off the loop that publishes verdicts, so the
// two figures are alike. The reload is held between its load and its swap
// (reloadHook) while the verdict changes, so it is in progress for sure.
func TestVerdictDuringReload(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "big.mmdb")
	t0 := time.Now()
	bigCityDB(t, db, bigNetworks)
	t.Logf("generated a City database of %d networks in %v", bigNetworks, time.Since(t0).Round(time.Millisecond))

	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := backend.Addr().(*net.TCPAddr).Port
	go acceptAll(backend)

	entered := make(chan time.Time, 1)
	release := make(chan struct{})
	files := nodeFiles{"zones/test.toml": e2eZone, "pools/web.toml": fmt.Sprintf(reloadPools, port)}
	p := startInproc(t, "r1", files, fmt.Sprintf("[geo]\ncity_db = %q\n", db), nil, func(n *node) {
		n.reloadHook = func() {
			entered <- time.Now()
			<-release
		}
	})
	answer := func() string {
		m := new(dns.Msg)
		m.SetQuestion("www.gslb.test.", dns.TypeA)
		c := &dns.Client{Timeout: time.Second}
		r, _, err := c.Exchange(m, p.DNS)
		if err != nil || len(r.Answer) != 1 {
			return ""
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	// flip takes the primary down (or up) and returns how long the answer
	// took to follow.
	flip := func(down bool) time.Duration {
		t.Helper()
		want := "127.0.0.1"
		if down {
			want = "127.0.0.2"
			backend.Close()
		} else {
			if backend, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
				t.Fatalf("listen again on %d: %v", port, err)
			}
			go acceptAll(backend)
		}
		start := time.Now()
		for time.Since(start) < 20*time.Second {
			if answer() == want {
				return time.Since(start)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("answer did not become %s within 20s", want)
		return 0
	}
	eventually(t, 10*time.Second, "primary answers", func() bool { return answer() == "127.0.0.1" })

	idle := flip(true)
	flip(false)

	// Touch the database so the reload reads and walks it again instead
	// of reusing it.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(db, later, later); err != nil {
		t.Fatal(err)
	}
	hup := time.Now()
	p.hup <- syscall.SIGHUP
	var loaded time.Duration
	select {
	case at := <-entered:
		loaded = at.Sub(hup)
	case <-time.After(60 * time.Second):
		t.Fatal("the reload did not get past its load within 60s")
	}
	during := flip(true)
	close(release)
	t.Logf("verdict change to answer: %v idle, %v during a reload (the reload read the %d-network database in %v)",
		idle.Round(time.Millisecond), during.Round(time.Millisecond), bigNetworks, loaded.Round(time.Millisecond))
	// The idle figure is one probe interval plus a publish; a reload in
	// the way would add its whole duration. Generous for a busy machine.
	if limit := 3 * time.Second; during > limit {
		t.Errorf("verdict change took %v during a reload, want under %v (idle: %v)", during, limit, idle)
	}
}

func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

package dnsserver

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"gslbd/zones"
	"gslbd/zones/config"
)

// bigTXTZone has a record the loader accepts as text but no DNS message
// can carry: 70000 bytes of TXT.
var bigTXTZone = testZone + `
[records.huge]
TXT = ["` + strings.Repeat("x", 70000) + `"]
`

func loadSnap(t testing.TB, files map[string]string) (*zones.Snapshot, error) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.LoadNodeConfig(filepath.Join(dir, "gslbd.toml"))
	if err != nil {
		t.Fatalf("load node config: %v", err)
	}
	return config.Load(cfg)
}

// TestCompileFailsWithFileLine: a record that cannot be packed fails
// Compile with its file and line, and the table in service keeps
// answering.
func TestCompileFailsWithFileLine(t *testing.T) {
	s := handlerFixture(t)
	files := defaultFiles()
	files["zones/gslb.toml"] = bigTXTZone
	snap, err := loadSnap(t, files)
	if err != nil {
		t.Fatalf("the loader rejects the record itself (this test needs one only the packer rejects): %v", err)
	}
	line := strings.Count(bigTXTZone[:strings.Index(bigTXTZone, "TXT = [\""+"xxx")], "\n") + 1
	err = s.Compile(snap)
	if err == nil {
		t.Fatal("Compile accepted a 70000-byte TXT record")
	}
	if want := "gslb.toml:" + strconv.Itoa(line) + ": TXT record of huge.gslb.example.com."; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to contain %q", err, want)
	}
	if err := Check(snap); err == nil || err.Error() != s.Compile(snap).Error() {
		t.Errorf("Check: %v, want the same error as Compile", err)
	}
	// The old table still serves, and a later Publish of another view
	// does not pick up anything of the failed compile.
	pkt := pack(t, mkQuery("static.gslb.example.com.", dns.TypeA))
	resp := s.Handle(nil, pkt, benchSrc, false)
	var m dns.Msg
	if err := m.Unpack(resp); err != nil || len(m.Answer) != 2 {
		t.Fatalf("after the failed compile: %v %v", err, m.Answer)
	}
	if s.state.Load().t.snap == snap {
		t.Error("the failed snapshot's table is in service")
	}
}

// TestCompileAhead: Publish uses the table Compile built.
func TestCompileAhead(t *testing.T) {
	s := handlerFixture(t)
	snap, err := loadSnap(t, defaultFiles())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Compile(snap); err != nil {
		t.Fatal(err)
	}
	s.pubMu.Lock()
	next := s.next
	s.pubMu.Unlock()
	s.Publish(zones.NewView(snap, nil))
	if got := s.state.Load().t; got != next || got.snap != snap {
		t.Error("Publish compiled again instead of using the table compiled ahead")
	}
}

var compileErrLine = regexp.MustCompile(`^[^\s:]+\.toml(:\d+)?: \S`)

// FuzzCompile: no zone file the loader accepts makes the compile step
// panic, and whatever it rejects is reported as file:line: message.
func FuzzCompile(f *testing.F) {
	f.Add(testZone)
	f.Add(testOtherZone)
	f.Add(bigTXTZone)
	f.Add("origin = \"x.test.\"\nnameservers = [\"ns.x.test.\"]\n[soa]\nrname = \"h.x.test.\"\n[records.a]\nCNAME = \"b.x.test.\"\n[records.\"*\"]\nTXT = [\"w\"]\n")
	f.Fuzz(func(t *testing.T, zone string) {
		files := defaultFiles()
		files["zones/gslb.toml"] = zone
		snap, err := loadSnap(t, files)
		if err != nil {
			return
		}
		err = Check(snap)
		if err == nil {
			return
		}
		var joined interface{ Unwrap() []error }
		if !errors.As(err, &joined) {
			t.Fatalf("compile error is not a list: %v", err)
		}
		for _, e := range joined.Unwrap() {
			if !compileErrLine.MatchString(e.Error()) {
				t.Errorf("compile error %q is not file:line: message", e)
			}
		}
	})
}

package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// seedFiles adds every TOML file of testdata (valid files and the files of
// the golden cases) to a fuzz corpus.
func seedFiles(f *testing.F, dir string) {
	paths, _ := filepath.Glob("testdata/valid/" + dir + "/*.toml")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	cases, _ := filepath.Glob("testdata/load/*.txtar")
	for _, p := range cases {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, af := range parseArchive(string(data)).files {
			if strings.HasPrefix(af.name, dir+"/") {
				f.Add([]byte(af.data))
			}
		}
	}
}

// checkErrs asserts what every load error must be: an *Error of the file
// with a line.
func checkErrs(t *testing.T, errs []*Error) {
	for _, e := range errs {
		if e.File != "f.toml" || e.Line < 1 || e.Msg == "" {
			t.Fatalf("bad error %#v", e)
		}
	}
	if err := joinErrors(errs); (err == nil) != (len(errs) == 0) || err != nil && !errors.As(err, new(*Error)) {
		t.Fatalf("joinErrors = %v", err)
	}
}

func FuzzLoadZoneFile(f *testing.F) {
	seedFiles(f, "zones")
	f.Add([]byte("origin = \".\"\nnameservers = [\"a.\"]\n[soa]\nrname = \"b.\"\n[records.\"*\"]\nTXT = [\"\\u0000\"]\n[records.a.b.c.d]\nNS = [\"x.a.b.c.d\"]"))
	pool := &zones.Pool{Name: "web"}
	lookup := func(name string) *zones.Pool {
		if name == "web" {
			return pool
		}
		return nil
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var errs []*Error
		var warns []string
		zs := parseZoneFile("f.toml", data, time.Unix(1, 0), lookup, []string{"web"}, &errs, &warns)
		checkErrs(t, errs)
		if len(errs) > 0 || zs == nil {
			return
		}
		z := zs.zone
		apex := z.Names[z.Origin]
		if apex == nil || len(apex.RRs) == 0 || apex.RRs[0] != z.SOA {
			t.Fatalf("apex %v lacks the SOA first", apex)
		}
		for owner, n := range z.Names {
			if n.Owner != owner || !dns.IsSubDomain(z.Origin, owner) || strings.ToLower(owner) != owner {
				t.Fatalf("name %q (owner %q) in zone %s", owner, n.Owner, z.Origin)
			}
			for _, rr := range n.RRs {
				if rr.Header().Name != owner {
					t.Fatalf("record %v at %s", rr, owner)
				}
				// Every accepted record must pack: the DNS server relies on it.
				buf := make([]byte, 65535)
				if _, err := packRR(rr, buf); err != nil {
					t.Fatalf("record %v does not pack: %v", rr, err)
				}
			}
		}
	})
}

func FuzzLoadPoolFile(f *testing.F) {
	seedFiles(f, "pools")
	f.Add([]byte("[a]\nwhen_all_down = \"fallback\"\nfallback = \"a\"\n[[a.sites]]\nname = \"s\"\naddresses = [\"::1\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var errs []*Error
		srcs := parsePoolFile("f.toml", data, &errs)
		l := &loader{pools: map[string]*poolSrc{}}
		l.addPools(srcs)
		l.linkFallbacks()
		checkErrs(t, append(errs, l.errs...))
		if len(errs)+len(l.errs) > 0 {
			return
		}
		s := &zones.Snapshot{Pools: map[string]*zones.Pool{}}
		l.buildPools(s)
		for _, p := range s.PoolList {
			if len(p.Sites) == 0 || p.Answers < 1 {
				t.Fatalf("pool %s: %d sites, answers %d", p.Name, len(p.Sites), p.Answers)
			}
			for n, q := 0, p.Fallback; q != nil; q = q.Fallback {
				if n++; n > len(s.PoolList) {
					t.Fatalf("fallback cycle through %s survived", p.Name)
				}
			}
			for _, site := range p.Sites {
				if len(site.Addrs) == 0 || site.Check.Type != zones.CheckNone && site.Check.Timeout >= site.Check.Interval {
					t.Fatalf("site %s/%s: %+v", p.Name, site.Name, site)
				}
				for _, a := range site.Addrs {
					if tg := s.Targets[a.Target]; tg.Addr != a.Addr {
						t.Fatalf("target %v for %v", tg, a.Addr)
					}
				}
			}
		}
	})
}

func packRR(rr dns.RR, buf []byte) (int, error) { return dns.PackRR(rr, buf, 0, nil, false) }

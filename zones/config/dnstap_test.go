package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDnstapSection(t *testing.T) {
	for _, tc := range []struct {
		body string
		want DnstapSection
	}{
		{"", DnstapSection{Identity: "ns1", Queries: true, Responses: true}},
		{"[dnstap]\nfile = \"log/dnstap.fstrm\"\n", DnstapSection{File: "DIR/log/dnstap.fstrm", Identity: "ns1", Queries: true, Responses: true}},
		{"[dnstap]\nsocket = \"unix:tap.sock\"\nidentity = \"edge-1\"\nversion = \"v\"\nqueries = false\n",
			DnstapSection{Socket: "unix:DIR/tap.sock", Identity: "edge-1", Version: "v", Responses: true}},
		{"[dnstap]\nsocket = \"tcp:[::1]:6000\"\nresponses = false\n", DnstapSection{Socket: "tcp:[::1]:6000", Identity: "ns1", Queries: true}},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "gslbd.toml")
		if err := os.WriteFile(path, []byte("[node]\nname = \"ns1\"\n"+tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadNodeConfig(path)
		if err != nil {
			t.Fatalf("%q: %v", tc.body, err)
		}
		want := tc.want
		for _, p := range []*string{&want.File, &want.Socket} {
			if len(*p) > 0 {
				*p = filepath.FromSlash(replaceDir(*p, dir))
			}
		}
		if cfg.Dnstap != want {
			t.Errorf("%q: got %+v, want %+v", tc.body, cfg.Dnstap, want)
		}
		if cfg.Dnstap.Enabled() != (want.File != "" || want.Socket != "") {
			t.Errorf("%q: Enabled() = %v", tc.body, cfg.Dnstap.Enabled())
		}
	}
}

func replaceDir(s, dir string) string {
	if i := len("unix:"); len(s) > i && s[:i] == "unix:" && s[i:i+3] == "DIR" {
		return "unix:" + dir + s[i+3:]
	}
	if len(s) >= 3 && s[:3] == "DIR" {
		return dir + s[3:]
	}
	return s
}

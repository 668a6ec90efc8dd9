package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/load/*.txtar")

// archive is a txtar-like test case: a comment, then files introduced by
// "-- name --" lines. The file "want" holds the expected `gslbd check`
// style output and is not written to disk.
type archive struct {
	comment string
	files   []archiveFile
}

type archiveFile struct {
	name string
	data string
}

func parseArchive(data string) archive {
	var a archive
	cur := -1
	for line := range strings.Lines(data) {
		if name, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "-- "); ok && strings.HasSuffix(name, " --") {
			a.files = append(a.files, archiveFile{name: strings.TrimSuffix(name, " --")})
			cur = len(a.files) - 1
			continue
		}
		if cur < 0 {
			a.comment += line
		} else {
			a.files[cur].data += line
		}
	}
	return a
}

func (a archive) format() string {
	var b strings.Builder
	b.WriteString(a.comment)
	for _, f := range a.files {
		b.WriteString("-- " + f.name + " --\n")
		b.WriteString(f.data)
	}
	return b.String()
}

// defaultNodeConfig is written when a case brings no gslbd.toml.
const defaultNodeConfig = "[node]\nname = \"test\"\n"

// fixedMtime makes default SOA serials reproducible.
var fixedMtime = time.Unix(1764100000, 0)

// runArchive extracts a case into a temporary directory, loads it from
// there (so paths print relative, as an operator sees them) and returns
// the output `gslbd check` would print.
func runArchive(t *testing.T, a archive) (string, error) {
	t.Helper()
	dir := t.TempDir()
	hasNode := false
	for _, f := range a.files {
		if f.name == "want" {
			continue
		}
		hasNode = hasNode || f.name == "gslbd.toml"
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, fixedMtime, fixedMtime); err != nil {
			t.Fatal(err)
		}
	}
	if !hasNode {
		if err := os.WriteFile(filepath.Join(dir, "gslbd.toml"), []byte(defaultNodeConfig), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	cfg, err := LoadNodeConfig("gslbd.toml")
	if err != nil {
		return formatErr(t, err), err
	}
	s, err := Load(cfg)
	if err != nil {
		return formatErr(t, err), err
	}
	var b strings.Builder
	for _, f := range s.Files {
		b.WriteString(f.Path + ": " + f.Summary + "\n")
	}
	for _, w := range s.Warnings {
		b.WriteString("warning: " + w + "\n")
	}
	return b.String(), nil
}

// formatErr prints the joined errors one per line, checking on the way
// that each is an *Error that knows its line.
func formatErr(t *testing.T, err error) string {
	t.Helper()
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	var b strings.Builder
	for _, e := range list {
		var ze *Error
		if !errors.As(e, &ze) {
			t.Errorf("error %q is a %T, want *zones.Error", e, e)
		} else if ze.Line == 0 {
			t.Errorf("error %q has no line", e)
		}
		b.WriteString(e.Error() + "\n")
	}
	return b.String()
}

// TestLoadCases runs every testdata/load/*.txtar case and compares the
// output with its want section; -update rewrites the want sections.
func TestLoadCases(t *testing.T) {
	paths, err := filepath.Glob("testdata/load/*.txtar")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, path := range paths {
		abs, _ := filepath.Abs(path)
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			data, err := os.ReadFile(abs)
			if err != nil {
				t.Fatal(err)
			}
			a := parseArchive(string(data))
			got, loadErr := runArchive(t, a)
			i := slices.IndexFunc(a.files, func(f archiveFile) bool { return f.name == "want" })
			if *update {
				if i < 0 {
					a.files = append(a.files, archiveFile{name: "want"})
					i = len(a.files) - 1
				}
				a.files[i].data = got
				if err := os.WriteFile(abs, []byte(a.format()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if i < 0 {
				t.Fatalf("no want section; run with -update")
			}
			if want := a.files[i].data; got != want {
				t.Errorf("output differs (run go test ./zones -update to accept)\ngot:\n%s\nwant:\n%s", got, want)
			}
			// A case named ok-* must load; every other case must fail.
			if wantOK := strings.HasPrefix(filepath.Base(path), "ok-"); wantOK != (loadErr == nil) {
				t.Errorf("load error = %v, want success %v", loadErr, wantOK)
			}
		})
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	in := "comment\n-- a --\nx\n-- b/c --\ny\nz\n"
	if got := parseArchive(in).format(); got != in {
		t.Errorf("round trip = %q, want %q", got, in)
	}
}

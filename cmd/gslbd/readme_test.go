package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gslbd/zones/config"
)

var tomlBlock = regexp.MustCompile("(?s)```toml\n(.*?)```")

// TestReadmeExamples loads the TOML examples of the README the way gslbd
// does, so the documentation cannot drift from what the loader accepts:
// zone examples (they have an origin) and pool examples together as one
// configuration.
func TestReadmeExamples(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := tomlBlock.FindAllSubmatch(readme, -1)
	if len(blocks) < 2 {
		t.Fatalf("README has %d TOML examples, want at least a zone and a pool", len(blocks))
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "gslbd.toml"), "[zones]\ndir = \"zones\"\n[pools]\ndir = \"pools\"\n[admin]\nlisten = \"\"\n")
	var nzones, npools int
	for i, b := range blocks {
		body := string(b[1])
		switch {
		case strings.HasPrefix(body, "# gslbd.toml"):
			checkReadmeNodeConfig(t, body)
		case strings.Contains(body, "origin ="):
			nzones++
			writeFile(t, filepath.Join(dir, "zones", fmt.Sprintf("readme%d.toml", i)), body)
		default:
			npools++
			writeFile(t, filepath.Join(dir, "pools", fmt.Sprintf("readme%d.toml", i)), body)
		}
	}
	if nzones == 0 || npools == 0 {
		t.Fatalf("README examples: %d zones, %d pools; want both", nzones, npools)
	}
	cfg, err := config.LoadNodeConfig(filepath.Join(dir, "gslbd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(cfg); err != nil {
		t.Fatalf("README examples do not load:\n%v", err)
	}
}

var consoleBlock = regexp.MustCompile("(?s)```console\n(.*?)```")

// TestReadmeOfflineCommands runs the README's `bin/gslbd … -config …`
// commands (those that need no running node) and compares their output
// with what the README shows.
func TestReadmeOfflineCommands(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir("../..") // README commands run from the repository root
	ran := 0
	for _, b := range consoleBlock.FindAllSubmatch(readme, -1) {
		lines := strings.Split(strings.TrimRight(string(b[1]), "\n"), "\n")
		for i := 0; i < len(lines); i++ {
			cmdline, ok := strings.CutPrefix(lines[i], "$ bin/gslbd ")
			if !ok || !strings.Contains(cmdline, "-config ") {
				continue
			}
			var want []string
			for i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "$ ") {
				i++
				want = append(want, lines[i])
			}
			var stdout, stderr strings.Builder
			if code := run(strings.Fields(cmdline), &stdout, &stderr); code != exitOK {
				t.Errorf("gslbd %s: exit %d\n%s", cmdline, code, stderr.String())
				continue
			}
			got := strings.TrimRight(stdout.String(), "\n")
			if got != strings.Join(want, "\n") {
				t.Errorf("gslbd %s: README shows\n%s\n\nbut it prints\n%s", cmdline, strings.Join(want, "\n"), got)
			}
			ran++
		}
	}
	if ran == 0 {
		t.Fatal("README has no offline gslbd command to check")
	}
}

// TestReadmeDigLines serves the example as `make run` does (in-process, on
// port 0)
// and runs the README's `dig … www… +short` lines with the real dig,
// comparing the addresses with the ones the README shows.
func TestReadmeDigLines(t *testing.T) {
	dig := requireTool(t, "dig")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	example := filepath.Join(root, "example")
	for _, rel := range []string{"zones/gslb.example.com.toml", "zones/gslb.example.org.toml", "pools/pools.toml"} {
		b, err := os.ReadFile(filepath.Join("../../testdata/example", rel))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(example, rel), string(b))
	}
	db, err := os.ReadFile(geoDBPath(t))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "geo/city.mmdb"), string(db))
	cfg, err := os.ReadFile("../../testdata/example/gslbd.toml")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer(
		"127.0.0.1:5353", "127.0.0.1:0",
		"127.0.0.1:8053", "127.0.0.1:0",
		"127.0.0.1:7946", "127.0.0.1:0",
	).Replace(string(cfg))
	if conf == string(cfg) {
		t.Fatal("the example's listen addresses changed; update this test")
	}
	writeFile(t, filepath.Join(example, "gslbd.toml"), conf)
	n := &inproc{t: t, Name: "example", dir: example}
	n.Start(nil)
	_, port, _ := net.SplitHostPort(n.DNS)

	ran := 0
	for _, b := range consoleBlock.FindAllSubmatch(readme, -1) {
		lines := strings.Split(strings.TrimRight(string(b[1]), "\n"), "\n")
		for i := 0; i < len(lines); i++ {
			cmdline, ok := strings.CutPrefix(lines[i], "$ dig @127.0.0.1 -p 5353 www.")
			if !ok || !strings.Contains(cmdline, "+short") {
				continue
			}
			cmdline, _, _ = strings.Cut(cmdline, "#")
			var want []string
			for i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "$ ") {
				i++
				want = append(want, strings.TrimSpace(lines[i]))
			}
			args := append([]string{"@127.0.0.1", "-p", port, "www." + strings.Fields(cmdline)[0]}, strings.Fields(cmdline)[1:]...)
			out, err := exec.Command(dig, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			got := strings.Fields(string(out))
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("dig %s: README shows %v, the example answers %v", strings.Join(args, " "), want, got)
			}
			ran++
		}
	}
	if ran < 3 {
		t.Fatalf("checked %d README dig lines, want at least 3", ran)
	}
}

// checkReadmeNodeConfig loads a node config example of the README (one
// whose first line is "# gslbd.toml"), with the secret files it names.
func checkReadmeNodeConfig(t *testing.T, body string) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "gslbd.toml"), body)
	writeFile(t, filepath.Join(dir, "cookie.key"), "e5e973e5a6b2a43f48e7dc849e37bfcf\n")
	writeFile(t, filepath.Join(dir, "gossip.key"), "dGhpcyBpcyBub3QgYSByZWFsIGtleSBidXQgMzIgYnk=\n")
	writeFile(t, filepath.Join(dir, "admin.token"), "readme-token\n")
	if _, err := config.LoadNodeConfig(filepath.Join(dir, "gslbd.toml")); err != nil {
		t.Errorf("README node config example does not load:\n%v\n%s", err, body)
	}
}

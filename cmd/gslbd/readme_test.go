package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gslbd/zones"
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
	cfg, err := zones.LoadNodeConfig(filepath.Join(dir, "gslbd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zones.Load(cfg); err != nil {
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

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

package admin

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"gslbd/zones/config"
)

// TestOperationsDocConfig: the node config in docs/operations.md is one a
// node accepts, so the documentation cannot drift from the loader.
func TestOperationsDocConfig(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) == 0 {
		t.Fatal("docs/operations.md has no TOML example")
	}
	for i, b := range blocks {
		dir := t.TempDir()
		for _, d := range []string{"zones", "pools"} {
			if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{"gossip.key", "admin.token"} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, "gslbd.toml")
		if err := os.WriteFile(path, b[1], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := config.LoadNodeConfig(path); err != nil {
			t.Errorf("TOML example %d of docs/operations.md: %v", i+1, err)
		}
	}
}

package dnsserver

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the query path independent of the mesh and the
// probes (STYLE rule 2): dnsserver reads views, it never builds them.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %v", deps)
	}
	for _, d := range deps {
		for _, bad := range []string{"github.com/hashicorp/memberlist", "gslbd/healthmon", "gslbd/cluster", "gslbd/admin"} {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("dnsserver depends on %s", d)
			}
		}
	}
}

package dnsserver

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the query path independent of the mesh and the
// probes (STYLE rule 2): dnsserver reads views, it never builds them. Nor
// does it link what reads files: the TOML decoder and the config loader
// (zones/config), or the MaxMind reader (geo/mmdb).
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
		for _, bad := range []string{
			"github.com/hashicorp/memberlist", "gslbd/healthmon", "gslbd/cluster", "gslbd/admin",
			"github.com/BurntSushi/toml", "gslbd/zones/config",
			"github.com/oschwald/maxminddb-golang", "github.com/oschwald/geoip2-golang", "gslbd/geo/mmdb",
		} {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("dnsserver depends on %s", d)
			}
		}
	}
}

package zones

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the model and answer selection free of file
// formats: zones/config decodes the TOML files and geo/mmdb reads the
// MaxMind database, and everything that only reads snapshots (the DNS
// server, the probes, the mesh) links neither through this package.
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
			"github.com/BurntSushi/toml", "gslbd/zones/config",
			"github.com/oschwald/maxminddb-golang", "github.com/oschwald/geoip2-golang", "gslbd/geo/mmdb",
		} {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("zones depends on %s", d)
			}
		}
	}
}

package zones

// loadTree loads the node config at path and the zone and pool files it
// names with the real loader. The loader lives in zones/config, which
// imports this package, so the internal tests cannot import it; the
// external test package sets this in its init (loader_test.go).
var loadTree func(path string) (*Snapshot, error)

// SetLoadTree is how the external test package hands loadTree over.
func SetLoadTree(f func(path string) (*Snapshot, error)) { loadTree = f }

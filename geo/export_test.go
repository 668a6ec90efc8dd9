package geo

// open is mmdb.Open. geo/mmdb imports this package, so the internal tests
// cannot import it; the external test package sets this in its init
// (open_test.go).
var open func(path string, overrides []Override) (*DB, error)

// SetOpen is how the external test package hands open over.
func SetOpen(f func(path string, overrides []Override) (*DB, error)) { open = f }

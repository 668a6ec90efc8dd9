//go:build !unix

package mmdb

import (
	"io"
	"os"
)

// mapFile reads f where mmap is not available.
func mapFile(f *os.File) (buf []byte, release func(), err error) {
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, err
	}
	return b, func() {}, nil
}

//go:build unix

package mmdb

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps f read-only instead of reading it into the heap: the walk
// touches it once, and unmapping gives its pages back at once, where a
// heap copy would stay in the process (as garbage the collector frees
// later, and memory the runtime returns to the system later still)
// through the rest of a load or reload. release unmaps it; nothing built
// from the file may point into it after that (geo.Build copies what it
// keeps).
func mapFile(f *os.File) (buf []byte, release func(), err error) {
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("not a regular file")
	}
	if size <= 0 || size != int64(int(size)) {
		return nil, nil, fmt.Errorf("size %d: not a database", size)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	return b, func() { _ = syscall.Munmap(b) }, nil
}

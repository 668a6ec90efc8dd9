package mmdb

import (
	"os"
	"syscall"
)

// dropPages gives back the pages of the first n bytes of a mapping from
// mapFile: they leave the process's resident memory (the file stays in
// the page cache), and a later read maps them again.
func dropPages(b []byte, n int) {
	n &^= os.Getpagesize() - 1
	if n > 0 {
		_ = syscall.Madvise(b[:n], syscall.MADV_DONTNEED)
	}
}

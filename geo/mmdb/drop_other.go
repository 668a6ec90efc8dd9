//go:build !linux

package mmdb

// dropPages does nothing here: the mapping (or, without mmap, the heap
// copy) stays whole until it is released.
func dropPages([]byte, int) {}

package config

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// ReadFile reads a file the configuration names: it must be a regular file
// of at most limit bytes. It is opened without blocking and checked before
// it is read, so a FIFO, a socket or a device named by mistake is an
// error at once instead of a read that hangs (holding the reload lock) or
// never ends.
func ReadFile(path string, limit int64) ([]byte, os.FileInfo, error) {
	f, fi, err := OpenRegular(path, limit)
	if err != nil {
		return nil, fi, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fi, err
	}
	if int64(len(data)) > limit {
		return nil, fi, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("more than the %d bytes allowed", limit)}
	}
	return data, fi, nil
}

// OpenRegular opens path for reading if it is a regular file of at most
// limit bytes, without blocking on a FIFO; the caller closes it.
func OpenRegular(path string, limit int64) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fi, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("not a regular file (%s)", fileKind(fi.Mode()))}
	}
	if fi.Size() > limit {
		f.Close()
		return nil, fi, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%d bytes, more than the %d allowed", fi.Size(), limit)}
	}
	return f, fi, nil
}

// fileKind names what a non-regular file is.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// GroupOrOtherReadable reports whether the file at path may be read by
// users other than its owner, for the warning about keys and tokens.
func GroupOrOtherReadable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm()&0o044 != 0
}

package dnstap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	pb "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
)

// output is an open Frame Streams destination. Data frames are written
// here (a 4-byte big-endian length, then the payload), through a buffer;
// the framestream library writes the control frames: READY/ACCEPT with a
// collector, START first and STOP (FINISH) last.
type output interface {
	frame(b []byte) error
	flush() error
	// close flushes, finishes the stream and closes it.
	close() error
	// abort closes without finishing, after an error.
	abort()
	// moved reports that the file's path names another file now (or none).
	moved() bool
}

const bufSize = 64 << 10

type frameBuf struct {
	bw  *bufio.Writer
	hdr [4]byte
}

func (f *frameBuf) frame(b []byte) error {
	binary.BigEndian.PutUint32(f.hdr[:], uint32(len(b)))
	if _, err := f.bw.Write(f.hdr[:]); err != nil {
		return err
	}
	_, err := f.bw.Write(b)
	return err
}

func (f *frameBuf) flush() error { return f.bw.Flush() }

// fileOutput is a unidirectional Frame Streams file.
type fileOutput struct {
	frameBuf
	f  *os.File
	fs *framestream.Writer
}

// openFile starts a new stream at path. A non-empty file there is renamed
// aside first (PATH.20060102T150405Z), so a restart never overwrites a
// log nobody has rotated.
func openFile(path string) (*fileOutput, error) {
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		aside := path + "." + time.Now().UTC().Format("20060102T150405Z")
		for i := 1; ; i++ {
			if _, err := os.Lstat(aside); errors.Is(err, os.ErrNotExist) {
				break
			}
			aside = fmt.Sprintf("%s.%s.%d", path, time.Now().UTC().Format("20060102T150405Z"), i)
		}
		if err := os.Rename(path, aside); err != nil {
			return nil, fmt.Errorf("dnstap: move old file aside: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("dnstap: open file: %w", err)
	}
	o := &fileOutput{f: f}
	o.bw = bufio.NewWriterSize(f, bufSize)
	// The START frame goes through o.bw, before any data frame.
	o.fs, err = framestream.NewWriter(o.bw, &framestream.WriterOptions{ContentTypes: [][]byte{pb.FSContentType}})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dnstap: start file stream: %w", err)
	}
	return o, nil
}

func (o *fileOutput) close() error {
	err := o.fs.Close() // STOP, through o.bw after every data frame
	if ferr := o.bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (o *fileOutput) abort() { o.f.Close() }

func (o *fileOutput) moved() bool {
	cur, err := o.f.Stat()
	if err != nil {
		return true
	}
	now, err := os.Stat(o.f.Name())
	return err != nil || !os.SameFile(cur, now)
}

// socketOutput is a bidirectional Frame Streams connection to a collector.
type socketOutput struct {
	frameBuf
	conn net.Conn
	fs   *framestream.Writer
}

// deadlineWriter gives every write to the collector a deadline, so a
// collector that stops reading fails the writer instead of hanging it.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (d deadlineWriter) Write(b []byte) (int, error) {
	d.c.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.c.Write(b)
}

func dialSocket(network, addr string, timeout time.Duration) (*socketOutput, error) {
	conn, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("dnstap: connect: %w", err)
	}
	fs, err := framestream.NewWriter(conn, &framestream.WriterOptions{
		ContentTypes:  [][]byte{pb.FSContentType},
		Bidirectional: true,
		Timeout:       timeout,
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dnstap: handshake with collector %s: %w", addr, err)
	}
	o := &socketOutput{conn: conn, fs: fs}
	o.bw = bufio.NewWriterSize(deadlineWriter{conn, timeout}, bufSize)
	return o, nil
}

func (o *socketOutput) close() error {
	err := o.bw.Flush()
	if err == nil {
		// STOP, then the collector's FINISH (bounded by the timeout).
		if ferr := o.fs.Close(); ferr != nil && !errors.Is(ferr, io.EOF) {
			err = ferr
		}
	}
	if cerr := o.conn.Close(); err == nil {
		err = cerr
	}
	return err
}

func (o *socketOutput) abort()      { o.conn.Close() }
func (o *socketOutput) moved() bool { return false }

// open opens the configured output.
func (s *Sink) open() (output, error) {
	if s.cfg.File != "" {
		return openFile(s.cfg.File)
	}
	network, addr, _ := parseSocket(s.cfg.Socket)
	return dialSocket(network, addr, s.cfg.Timeout)
}

package dnsserver

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// haveBatch says serveUDP may read and write many datagrams per system
// call here.
const haveBatch = true

// batchInLen is the receive buffer of one datagram in a batch. A query is
// a header, one question and an OPT record, far below this; a bigger
// datagram arrives cut (MSG_TRUNC) and is dropped as junk rather than
// every reader keeping batch × 64 KiB of buffers.
const batchInLen = 4096

// batch is one UDP reader's recvmmsg/sendmmsg state. Everything is
// allocated once per reader, so the loop allocates nothing; the kernel
// reads and writes the headers, vectors and addresses in place. Replies
// go to the source address exactly as the kernel gave it (the same
// sockaddr bytes), so only Handle's netip.AddrPort is parsed.
type batch struct {
	in    []byte // n × batchInLen
	out   []byte // n × outLen
	outLn int

	rhdr  []unix.Mmsghdr
	riov  []unix.Iovec
	names []unix.RawSockaddrInet6 // big enough for IPv4 and IPv6 sources

	whdr []unix.Mmsghdr
	wiov []unix.Iovec

	// Results of the last call, read by the closures below; fields rather
	// than captured locals so the closures are built once.
	got, sent int
	errno     syscall.Errno
	recvFn    func(fd uintptr) bool
	sendFn    func(fd uintptr) bool
	pending   int // messages of whdr still to send, from sent on
}

func newBatch(n, outLen int) *batch {
	b := &batch{
		in:    make([]byte, n*batchInLen),
		out:   make([]byte, n*outLen),
		outLn: outLen,
		rhdr:  make([]unix.Mmsghdr, n),
		riov:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		whdr:  make([]unix.Mmsghdr, n),
		wiov:  make([]unix.Iovec, n),
	}
	for i := range n {
		b.riov[i].Base = &b.in[i*batchInLen]
		b.riov[i].SetLen(batchInLen)
		h := &b.rhdr[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.riov[i]
		h.SetIovlen(1)
		w := &b.whdr[i].Hdr
		w.Iov = &b.wiov[i]
		w.SetIovlen(1)
	}
	b.recvFn = b.recv
	b.sendFn = b.send
	return b
}

// recv is the RawConn.Read callback: one non-blocking recvmmsg. It returns
// false on EAGAIN so the runtime parks the goroutine in the netpoller
// until the socket is readable, and true otherwise (with got or errno
// set).
func (b *batch) recv(fd uintptr) bool {
	for i := range b.rhdr {
		b.rhdr[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		b.rhdr[i].Hdr.Flags = 0
	}
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.rhdr[0])),
		uintptr(len(b.rhdr)), unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0:
		b.got, b.errno = int(n), 0
		return true
	case unix.EAGAIN, unix.EINTR:
		return false
	default:
		b.got, b.errno = 0, e
		return true
	}
}

// send is the RawConn.Write callback: sendmmsg of whdr[sent:sent+pending].
// A partial send advances sent; a message the kernel refuses (an error on
// the first message of the call) is skipped and reported in errno so one
// bad destination never holds up the rest of the batch.
func (b *batch) send(fd uintptr) bool {
	for b.pending > 0 {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.whdr[b.sent])),
			uintptr(b.pending), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			b.sent += int(n)
			b.pending -= int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false // the send buffer is full: wait until writable
		default:
			b.errno = e
			b.sent++
			b.pending--
		}
	}
	return true
}

// sourceAddr parses the sockaddr_in or sockaddr_in6 the kernel wrote.
func sourceAddr(sa *unix.RawSockaddrInet6, namelen uint32) (netip.AddrPort, bool) {
	raw := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	port := binary.BigEndian.Uint16(raw[2:4])
	switch {
	case sa.Family == unix.AF_INET && namelen >= unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[4:8])), port), true
	case sa.Family == unix.AF_INET6 && namelen >= unix.SizeofSockaddrInet6:
		// The scope id of a link-local source is left out: the address
		// only picks the client's network, and the reply goes back to the
		// raw sockaddr, scope included.
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port), true
	}
	return netip.AddrPort{}, false
}

// serveUDPBatch answers one socket's queries a batch at a time: one
// recvmmsg takes whatever has queued up (up to the batch size), Handle
// answers each into its own slot, and one sendmmsg sends every answer.
// Under load a system call then carries many datagrams instead of one,
// and the reader parks in the netpoller only when the socket is empty.
// It returns false before reading anything if the socket cannot batch
// (no raw access, or a kernel without recvmmsg), so the caller can fall
// back to the portable loop.
func (s *Server) serveUDPBatch(c *net.UDPConn, n int) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	b := newBatch(n, max(int(s.cfg.UDPSize), maxUDPNoEDNS))
	first := true
	for {
		err := rc.Read(b.recvFn)
		if err == nil && b.errno != 0 {
			err = b.errno
		}
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return true
			}
			if first && (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL)) {
				s.log.Info("udp batching unavailable, reading one datagram at a time", "err", err)
				return false
			}
			s.log.Debug("read udp batch", "err", err)
			continue
		}
		first = false
		k := 0
		for i := range b.got {
			h := &b.rhdr[i]
			if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
				s.ctr.dropped.Add(1)
				continue
			}
			src, ok := sourceAddr(&b.names[i], h.Hdr.Namelen)
			if !ok {
				s.ctr.dropped.Add(1)
				continue
			}
			pkt := b.in[i*batchInLen : i*batchInLen+int(h.Len)]
			// The slot's capacity ends where the next begins, so Handle
			// can never write into a neighbour's answer.
			dst := b.out[i*b.outLn : i*b.outLn : (i+1)*b.outLn]
			resp := s.Handle(dst, pkt, src, false)
			if len(resp) == 0 {
				continue
			}
			w := &b.whdr[k].Hdr
			w.Name = h.Hdr.Name
			w.Namelen = h.Hdr.Namelen
			b.wiov[k].Base = &resp[0]
			b.wiov[k].SetLen(len(resp))
			k++
			s.sample(src, resp, false)
		}
		if k == 0 {
			continue
		}
		b.sent, b.pending, b.errno = 0, k, 0
		if err := rc.Write(b.sendFn); err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return true
			}
			s.log.Debug("write udp batch", "err", err)
		} else if b.errno != 0 {
			s.log.Debug("write udp batch", "err", b.errno)
		}
		b.errno = 0
	}
}

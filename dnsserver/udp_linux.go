package dnsserver

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"time"
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
	return b
}

// recv takes as many datagrams as have queued up, up to the batch size,
// waiting for the first one if none has.
//
// It first asks without blocking, through RawSyscall6: a busy server
// finds datagrams queued nearly every time, and a raw system call leaves
// the Go scheduler out of it. Only an empty queue makes the reader block
// in recvmmsg (MSG_WAITFORONE) through Syscall6, which tells the scheduler
// that the thread may sleep: its monitor then takes the P away after
// 20 µs and polls every 20 µs while that keeps happening, which cost a
// sixth of the server's CPU when every call went that way.
func (b *batch) recv(fd int) (int, syscall.Errno) {
	b.reset()
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.rhdr[0])),
		uintptr(len(b.rhdr)), unix.MSG_DONTWAIT, 0, 0)
	if e == 0 {
		return int(n), 0
	}
	if e != unix.EAGAIN {
		return 0, e
	}
	n, _, e = unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.rhdr[0])),
		uintptr(len(b.rhdr)), unix.MSG_WAITFORONE, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// reset readies the receive headers for the kernel to fill.
func (b *batch) reset() {
	for i := range b.rhdr {
		b.rhdr[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		b.rhdr[i].Hdr.Flags = 0
	}
}

// send sends whdr[:k] with as few sendmmsg calls as the kernel allows. A
// partial send continues from where it stopped; a message the kernel
// refuses (an error on the first message of a call) is skipped and its
// error returned at the end, so one bad destination never holds up the
// rest of the batch. One refused as larger than the interface's MTU is
// sent again truncated (see truncated); cut counts those.
//
// Sending is a raw system call with MSG_DONTWAIT: on loopback it runs the
// whole delivery to the receiver, often longer than the scheduler's 20 µs,
// but it never sleeps, so there is no reason to hand the P over. Only
// when the socket's send buffer is full (EAGAIN) does the rest go through
// a blocking Syscall6.
func (b *batch) send(fd, k int) (cut int, last syscall.Errno) {
	flags := uintptr(unix.MSG_DONTWAIT)
	for sent := 0; sent < k; {
		var n uintptr
		var e syscall.Errno
		if flags != 0 {
			n, _, e = unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.whdr[sent])),
				uintptr(k-sent), flags, 0, 0)
		} else {
			n, _, e = unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.whdr[sent])),
				uintptr(k-sent), 0, 0, 0)
		}
		switch e {
		case 0:
			sent += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			flags = 0 // wait for room, letting the scheduler run others meanwhile
		case unix.EMSGSIZE:
			v := &b.wiov[sent]
			if t := truncated(unsafe.Slice(v.Base, v.Len)); t != nil && uint64(len(t)) < uint64(v.Len) {
				v.SetLen(len(t))
				cut++
				continue // the same message again, cut
			}
			last = e
			sent++
		default:
			last = e
			sent++
		}
	}
	return cut, last
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
//
// The socket is taken out of Go's netpoller and read with blocking system
// calls on the reader's own thread, as gdnsd does. Under the netpoller,
// every datagram sent made the kernel run the epoll callback of the
// socket's write readiness (registered for every Go socket), and every
// empty read parked the goroutine and woke the epoll thread: together
// about a fifth of the server's CPU on loopback. A blocking recvmmsg
// sleeps on the socket itself and is woken by the packet.
//
// It returns false, with c untouched, when the socket cannot be detached;
// the caller then serves it with the portable loop.
func (s *Server) serveUDPBatch(c *net.UDPConn, n, shard int) bool {
	tap, local := s.tapFor(c.LocalAddr())
	fd, err := s.detach(c)
	if err != nil {
		s.log.Info("udp batching unavailable, reading one datagram at a time", "err", err)
		return false
	}
	defer s.closeRaw(fd)
	b := newBatch(n, max(int(s.cfg.UDPSize), maxUDPNoEDNS))
	yielded := time.Now()
	for calls := uint(0); ; calls++ {
		// The clock is read every yieldCheck batches: a batch takes
		// microseconds, and reading it for each took 0.7 % of the
		// server's CPU samples under dnsperf (0.2 % this way).
		if calls%yieldCheck == 0 {
			if now := time.Now(); now.Sub(yielded) >= yieldEvery {
				// A busy reader never waits, so it would hold its
				// scheduling slot until the runtime's monitor preempts
				// it (after 10 ms, with a signal) and, if it is in a
				// system call just then, takes its P away and polls
				// every 20 µs for a while. Yielding first keeps that
				// from happening.
				runtime.Gosched()
				yielded = now
			}
		}
		got, e := b.recv(fd)
		if s.closing.Load() {
			return true
		}
		switch e {
		case 0:
		case unix.EAGAIN, unix.EINTR: // the receive timeout: look at closing again
			continue
		default:
			s.log.Debug("read udp batch", "err", e)
			continue
		}
		var qt time.Time
		if tap != nil {
			qt = time.Now() // one arrival time for the batch
		}
		k := 0
		for i := range got {
			h := &b.rhdr[i]
			if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
				s.ctr.hot[shard].dropped.Add(1)
				continue
			}
			src, ok := sourceAddr(&b.names[i], h.Hdr.Namelen)
			if !ok {
				s.ctr.hot[shard].dropped.Add(1)
				continue
			}
			pkt := b.in[i*batchInLen : i*batchInLen+int(h.Len)]
			// The slot's capacity ends where the next begins, so Handle
			// can never write into a neighbour's answer.
			dst := b.out[i*b.outLn : i*b.outLn : (i+1)*b.outLn]
			resp := s.handle(dst, pkt, src, false, shard, nil)
			if tap != nil {
				tap.Log(pkt, resp, src, local, false, qt)
			}
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
		cut, e := b.send(fd, k)
		if cut > 0 {
			s.ctr.hot[shard].truncated.Add(uint64(cut))
		}
		if e != 0 {
			s.log.Debug("write udp batch", "err", e)
		}
	}
}

// yieldEvery is how long a busy reader runs before it yields to the
// scheduler: below the runtime's 10 ms time slice, and rare enough that
// the yields cost nothing measurable.
const yieldEvery = 4 * time.Millisecond

// yieldCheck is how many batches a reader takes between two looks at the
// clock for yieldEvery: 8 full batches of 64 (an overloaded server) take
// about 2.5 ms, inside the 6 ms between yieldEvery and the runtime's
// 10 ms time slice.
const yieldCheck = 8

// rawRecvTimeout bounds how long a blocked reader goes without looking at
// the closing flag, in case shutdown(2) did not wake it.
const rawRecvTimeout = 500 * time.Millisecond

// detach takes c's socket out of the netpoller: it duplicates the
// descriptor, closes c (which removes the socket from epoll; the socket
// itself lives on in the duplicate, bound all along) and makes the
// duplicate blocking. The descriptor is registered so stop can wake its
// reader.
func (s *Server) detach(c *net.UDPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("detach udp socket %s: %w", c.LocalAddr(), err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(sfd uintptr) { fd, derr = unix.Dup(int(sfd)) }); err != nil {
		return -1, fmt.Errorf("detach udp socket %s: %w", c.LocalAddr(), err)
	}
	if derr != nil {
		return -1, fmt.Errorf("detach udp socket %s: dup: %w", c.LocalAddr(), derr)
	}
	unix.CloseOnExec(fd)
	tv := unix.NsecToTimeval(rawRecvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("detach udp socket %s: receive timeout: %w", c.LocalAddr(), err)
	}
	c.Close()
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("detach udp socket %s: blocking mode: %w", c.LocalAddr(), err)
	}
	s.mu.Lock()
	s.raw[fd] = struct{}{}
	s.mu.Unlock()
	return fd, nil
}

// closeRaw unregisters and closes a detached socket. Under s.mu, so stop
// never shuts down a descriptor number that has been reused.
func (s *Server) closeRaw(fd int) {
	s.mu.Lock()
	delete(s.raw, fd)
	unix.Close(fd)
	s.mu.Unlock()
}

// wakeRaw makes every blocked reader of a detached socket return:
// shutdown(2) on a UDP socket wakes its sleepers. Called under s.mu.
func (s *Server) wakeRawLocked() {
	for fd := range s.raw {
		unix.Shutdown(fd, unix.SHUT_RD)
	}
}

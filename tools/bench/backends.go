package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
)

// backends are the real services the health checks of both servers probe:
// a TCP listener per VIP that accepts and closes at once, which is all a
// tcp check (gslbd) or tcp_connect monitor (gdnsd) asks. Stopping one
// closes its listener, so the next probe is refused at once, like a dead
// service behind a live host.
type backends struct {
	log *slog.Logger
	mu  sync.Mutex
	ln  map[netip.AddrPort]net.Listener
	wg  sync.WaitGroup
}

// freePort finds a TCP port free on every address in addrs (all loopback).
func freePort(addrs []netip.Addr) (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(addrs[0], 0).String())
		if err != nil {
			return 0, fmt.Errorf("find a free port on %s: %w", addrs[0], err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ok := true
		var held []net.Listener
		for _, a := range addrs[1:] {
			l, err := net.Listen("tcp", netip.AddrPortFrom(a, uint16(port)).String())
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		ln.Close()
		for _, l := range held {
			l.Close()
		}
		if ok {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free on all of %v", addrs)
}

// start listens on a:port; starting a running backend is a no-op.
func (b *backends) start(a netip.Addr, port int) error {
	ap := netip.AddrPortFrom(a, uint16(port))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ln == nil {
		b.ln = map[netip.AddrPort]net.Listener{}
	}
	if _, ok := b.ln[ap]; ok {
		return nil
	}
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		return fmt.Errorf("start backend %s: %w", ap, err)
	}
	b.ln[ap] = ln
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by stop
			}
			c.Close()
		}
	}()
	return nil
}

// stop closes the backend on a:port.
func (b *backends) stop(a netip.Addr, port int) {
	ap := netip.AddrPortFrom(a, uint16(port))
	b.mu.Lock()
	ln := b.ln[ap]
	delete(b.ln, ap)
	b.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

func (b *backends) stopAll() {
	b.mu.Lock()
	for ap, ln := range b.ln {
		ln.Close()
		delete(b.ln, ap)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func hostPort(a netip.Addr, port int) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}

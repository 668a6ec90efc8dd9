// Package testlog gives tests a slog.Logger that writes to the test's
// output, so only failing tests are noisy, and that goes quiet once the
// test has ended: components such as memberlist log from timers that can
// fire after a test's cleanups, and testing panics on output written
// after a test completed.
package testlog

import (
	"context"
	"log/slog"
	"sync"
	"testing"
)

// New returns a logger at level that writes to tb.Output() until tb ends.
func New(tb testing.TB, level slog.Level) *slog.Logger {
	g := &gate{}
	tb.Cleanup(g.close)
	return slog.New(&handler{g: g, h: slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: level})})
}

// gate is shared by a handler and everything derived from it (WithAttrs,
// WithGroup). Handle holds it for reading while it writes, so close
// waits for writes in flight and none start after it.
type gate struct {
	mu     sync.RWMutex
	closed bool
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

type handler struct {
	g *gate
	h slog.Handler
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	h.g.mu.RLock()
	defer h.g.mu.RUnlock()
	if h.g.closed {
		return nil
	}
	return h.h.Handle(ctx, r)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{g: h.g, h: h.h.WithAttrs(as)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{g: h.g, h: h.h.WithGroup(name)}
}

package dnstap

import (
	"path/filepath"
	"testing"
	"time"
)

// TestAllocs is the allocation budget: once every slot has been used, Log
// allocates nothing, and neither does the writer encoding and framing the
// messages into the file (AllocsPerRun counts every goroutine's).
func TestAllocs(t *testing.T) {
	cfg := fileConfig(filepath.Join(t.TempDir(), "dnstap.fstrm"))
	cfg.QueueSize = 64
	cfg.FlushInterval = time.Hour // a flush is a write, not an allocation; keep it out of the count's noise
	s, err := New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	runSink(t, s)
	q, r := exchange(t, "www.gslb.test.", 1)
	now := time.Now()
	for range 2 * cfg.QueueSize { // the ring is FIFO: this warms every slot's buffers
		s.Log(q, r, client4, server4, false, now)
		waitFor(t, "warm-up written", func() bool { return s.q.len() == 0 })
	}
	allocs := testing.AllocsPerRun(2000, func() {
		s.Log(q, r, client4, server4, false, now)
		for s.q.len() > cfg.QueueSize/2 { // let the writer keep up, so nothing is dropped
		}
	})
	if allocs != 0 {
		t.Errorf("%.2f allocations per logged exchange, want 0", allocs)
	}
	if d := s.met.droppedFull.Load(); d != 0 {
		t.Errorf("%d exchanges dropped while measuring", d)
	}
}

// BenchmarkLog is the query path's cost of dnstap: claiming a cell,
// copying a query and its response, publishing. The benchmark consumes
// each cell at once (without encoding it), so no Log is a drop;
// BenchmarkLogFull is the cost when the ring is full.
func BenchmarkLog(b *testing.B) {
	s, err := New(fileConfig(filepath.Join(b.TempDir(), "dnstap.fstrm")), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	q, r := exchange(b, "www.gslb.test.", 1)
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(q) + len(r)))
	for b.Loop() {
		s.Log(q, r, client4, server4, false, now)
		s.release(s.q.next())
	}
}

func BenchmarkLogFull(b *testing.B) {
	cfg := fileConfig(filepath.Join(b.TempDir(), "dnstap.fstrm"))
	cfg.QueueSize = 2
	s, err := New(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	q, r := exchange(b, "www.gslb.test.", 1)
	now := time.Now()
	s.Log(q, r, client4, server4, false, now)
	s.Log(q, r, client4, server4, false, now)
	b.ReportAllocs()
	for b.Loop() {
		s.Log(q, r, client4, server4, false, now)
	}
	if s.met.droppedFull.Load() == 0 {
		b.Fatal("nothing dropped")
	}
}

// BenchmarkEncode is the writer's cost per exchange: two dnstap messages
// encoded and framed into the file buffer.
func BenchmarkEncode(b *testing.B) {
	q, r := exchange(b, "www.gslb.test.", 1)
	var e encoder
	e.init(fileConfig(""))
	sl := &slot{q: q, r: r, client: client4, server: server4, qt: time.Now().UnixNano(), rt: time.Now().UnixNano()}
	b.ReportAllocs()
	for b.Loop() {
		e.encode(sl, true)
		e.encode(sl, false)
	}
}

// BenchmarkEndToEnd is the CPU one exchange costs in all: Log on the
// query path, then the writer's share — encoding two messages, framing
// them and writing them into the file buffer (flushed to the file when
// full) — done inline so no goroutine scheduling muddies the figure.
func BenchmarkEndToEnd(b *testing.B) {
	path := filepath.Join(b.TempDir(), "dnstap.fstrm")
	s, err := New(fileConfig(path), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	out, err := openFile(path)
	if err != nil {
		b.Fatal(err)
	}
	w := &writer{sink: s}
	w.enc.init(s.cfg)
	q, r := exchange(b, "www.gslb.test.", 1)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		s.Log(q, r, client4, server4, false, now)
		c := s.q.next()
		if err := w.write(out, &c.slot); err != nil {
			b.Fatal(err)
		}
		s.release(c)
	}
	b.StopTimer()
	if err := out.close(); err != nil {
		b.Fatal(err)
	}
}

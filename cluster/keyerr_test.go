package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log destination safe for memberlist's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWrongMeshKey: a node with another mesh key keeps trying to join.
// It logs one ERROR that says the keys differ; the node it knocks at
// drops every attempt, counts them, and logs one ERROR, not one per
// packet.
func TestWrongMeshKey(t *testing.T) {
	checkLeaks(t)
	var a, b lockedBuffer
	keyA := bytes.Repeat([]byte{1}, 32)
	keyB := bytes.Repeat([]byte{2}, 32)
	m1 := startMesh(t, Options{Name: "a", SecretKey: keyA, Logger: slog.New(slog.NewTextHandler(&a, nil))})
	startMesh(t, Options{Name: "b", SecretKey: keyB, Join: []string{m1.Addr()}, Logger: slog.New(slog.NewTextHandler(&b, nil))})
	// Start tries for 5 s (about 20 attempts), then retries in the
	// background.
	waitFor(t, 20*time.Second, "ten dropped join attempts", func() bool {
		return m1.stats.dropped[dropKey].Load() >= 10
	})
	errorsOf := func(log string) []string {
		var out []string
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
				out = append(out, l)
			}
		}
		return out
	}
	if errs := errorsOf(b.String()); len(errs) != 2 || !strings.Contains(errs[0], "cannot join the mesh") ||
		!strings.Contains(errs[0], "cluster.secret_file must hold the same key on every node") {
		t.Errorf("joining node: want one ERROR naming the mesh key (and the warning that it serves alone), got %d:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	if errs := errorsOf(a.String()); len(errs) != 1 || !strings.Contains(errs[0], "different mesh key") {
		t.Errorf("node knocked at: want one rate-limited ERROR for %d dropped attempts, got %d:\n%s", m1.stats.dropped[dropKey].Load(), len(errs), strings.Join(errs, "\n"))
	}
	if aliveCount(m1) != 1 {
		t.Errorf("a node with another key became a member")
	}
}

func TestKeyLimiter(t *testing.T) {
	var k keyLimiter
	t0 := time.Now()
	if ok, _, _ := k.note(t0, "x1"); !ok {
		t.Fatal("first error not logged")
	}
	for i := range 100 {
		if ok, _, _ := k.note(t0.Add(time.Duration(i)*100*time.Millisecond), "x"); ok {
			t.Fatalf("error %d within the minute logged", i)
		}
	}
	ok, n, last := k.note(t0.Add(keyErrEvery+time.Second), "y")
	if !ok || n != 100 || last != "x" {
		t.Errorf("after a minute: log %v, suppressed %d, last %q; want true, 100, x", ok, n, last)
	}
}

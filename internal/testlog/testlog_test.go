package testlog

import (
	"log/slog"
	"testing"
)

// TestQuietAfterEnd: a logger kept past its test's end writes nothing
// (testing would panic on it).
func TestQuietAfterEnd(t *testing.T) {
	var log *slog.Logger
	t.Run("inner", func(t *testing.T) {
		log = New(t, slog.LevelInfo).With("component", "x")
		log.Info("during the test")
	})
	log.Info("after the test") // must not panic
	log.WithGroup("g").Error("after the test")
}

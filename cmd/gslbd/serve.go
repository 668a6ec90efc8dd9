package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "gslbd.toml", "node config `file`")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gslbd serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "gslbd serve: %v\n", err)
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	n, err := newNode(*cfgPath, log, dnsThreads())
	if err != nil {
		printErrors(stderr, err)
		return exitFail
	}
	if err := n.run(ctx, hup); err != nil {
		log.Error("serve failed", "err", err)
		return exitFail
	}
	return exitOK
}

// dnsThreads returns how many UDP readers the DNS server gets per listen
// address, one per CPU the process may use (Go's default GOMAXPROCS, which
// follows the CPU affinity mask and the cgroup CPU quota), and gives the
// Go scheduler one P more than that. A reader waits for queries in a
// blocking recvmmsg on its own thread; without an idle P the runtime
// takes the waiting reader's P away after 20 µs, and its monitor thread
// then wakes every 20 µs for a while: on one CPU that cost a sixth of the
// server's CPU time (docs/performance.md). A GOMAXPROCS set in the
// environment is the operator's choice and left alone, with one reader
// per P.
func dnsThreads() int {
	n := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(n + 1)
	}
	return n
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("bad -log-format %q: want text or json", format)
}

// shutdownTimeout bounds the whole graceful shutdown; past it a watchdog
// ends the process so a stuck component cannot keep a node half-alive.
const shutdownTimeout = 10 * time.Second

var errWatchdog = errors.New("shutdown watchdog fired")

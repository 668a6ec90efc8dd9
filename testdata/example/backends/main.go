// Command backends runs the demo HTTP backends of the example: one small
// server per loopback VIP, each answering GET /healthz with 200 until told
// to fail. It lets `make run` show health checks and failover without any
// traffic leaving the machine.
//
//	curl -X POST http://127.0.10.1:8080/fail     # the VIP's checks now get 503
//	curl -X POST http://127.0.10.1:8080/recover  # and 200 again
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.10.1:8080,127.0.10.2:8080,127.0.20.1:8080,127.0.20.2:8080,127.0.30.1:8080",
		"comma-separated loopback addresses to serve")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "demo-backends")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var servers []*http.Server
	for _, addr := range strings.Split(*listen, ",") {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || !net.ParseIP(host).IsLoopback() {
			fmt.Fprintf(os.Stderr, "backends: %q is not a loopback host:port\n", addr)
			os.Exit(2)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "backends: %v\n", err)
			os.Exit(1)
		}
		srv := &http.Server{Handler: newBackend(addr, log), ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve", "addr", addr, "err", err)
			}
		}()
	}
	log.Info("demo backends up", "listen", *listen)
	<-ctx.Done()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdownCtx)
	}
}

func newBackend(addr string, log *slog.Logger) http.Handler {
	var failing atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "failing on purpose", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok from %s\n", addr)
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		failing.Store(true)
		log.Info("now failing", "addr", addr)
		fmt.Fprintf(w, "%s now answers 503\n", addr)
	})
	mux.HandleFunc("POST /recover", func(w http.ResponseWriter, r *http.Request) {
		failing.Store(false)
		log.Info("recovered", "addr", addr)
		fmt.Fprintf(w, "%s now answers 200\n", addr)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "demo backend %s (failing=%v)\n", addr, failing.Load())
	})
	return mux
}

package admin

import (
	"bytes"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

// The status page is plain HTML, CSS and JavaScript compiled into the
// binary: it must work on a node with no internet access, so nothing is
// fetched from a CDN and no web font is used.
//
//go:embed ui
var uiFiles embed.FS

// initialMarker in ui/index.html is replaced by the status JSON at request
// time, so the page renders completely from its first script run, without
// waiting for a fetch (fast on slow links, and what a --dump-dom sees).
const initialMarker = "/*INITIAL_STATUS*/null"

func (s *Server) staticHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic("admin: embedded ui directory missing: " + err.Error()) // a build error, not a runtime one
	}
	fileServer := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Assets change only with the binary; a short cache keeps an
		// upgraded node from showing a stale script for long.
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		fileServer.ServeHTTP(w, r)
	})
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	page, err := uiFiles.ReadFile("ui/index.html")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "read embedded index.html: %v", err)
		return
	}
	// json.Marshal escapes <, > and & as \u003c etc., so the status cannot
	// close the <script> element it is placed in.
	st, err := json.Marshal(s.Status())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode status: %v", err)
		return
	}
	page = bytes.Replace(page, []byte(initialMarker), st, 1)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
	w.Write(page)
}

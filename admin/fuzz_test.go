package admin

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDrainBody posts arbitrary bodies to the drain endpoint, as a client
// with the token could. Every answer is 200 for a real target or a 4xx
// with a JSON error (never a 5xx, never a panic), and nothing drains what
// the configuration does not have.
func FuzzDrainBody(f *testing.F) {
	for _, b := range []string{
		`{"pool":"web","site":"fra"}`,
		`{"pool":"web","site":"fra","address":"192.0.2.10"}`,
		`{"pool":"web","site":"fra","address":"2001:DB8:10:0::1"}`,
		`{"pool":"web","site":"iad","address":"::ffff:198.51.100.10"}`,
		`{"pool":"web"}`, `{"pool":"web","site":"fra","force":true}`,
		`{"pool":"web","site":"fra"} {}`, `[1]`, ``, `null`, `{"pool":1}`,
		`{"pool":"w\u0000eb","site":"fra"}`, `{"pool":"web","site":"fra","address":"1.2.3.4%eth0"}`,
		strings.Repeat(`{"a":`, 1000),
	} {
		f.Add(b, true)
		f.Add(b, false)
	}
	fx := newFuzzFixture(f)
	f.Fuzz(func(t *testing.T, body string, on bool) {
		method := "DELETE"
		if on {
			method = "POST"
		}
		req := httptest.NewRequest(method, "/api/v1/drain", strings.NewReader(body))
		req.Host = "127.0.0.1"
		req.Header.Set("Authorization", "Bearer fuzz-token")
		rec := httptest.NewRecorder()
		fx.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: %d %s", method, body, rec.Code, rec.Body)
		}
		var res map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			t.Fatalf("%s %q: answer is not JSON: %v\n%s", method, body, err, rec.Body)
		}
		if rec.Code != 200 {
			if msg, _ := res["error"].(string); msg == "" {
				t.Fatalf("%s %q: %d without an error message: %s", method, body, rec.Code, rec.Body)
			}
			return
		}
		var req2 DrainRequest
		if json.Unmarshal([]byte(body), &req2) != nil || req2.Pool != "web" {
			t.Fatalf("%s %q accepted, but it names no known target: %s", method, body, rec.Body)
		}
	})
}

// newFuzzFixture is the API fixture with the token the fuzz target sends
// and a log that stays quiet: a fuzzer's millions of bad bodies would
// otherwise each write a line.
func newFuzzFixture(tb testing.TB) *Server {
	f := newFixture(tb, "fuzz-token")
	f.srv.log = slog.New(slog.DiscardHandler)
	return f.srv
}

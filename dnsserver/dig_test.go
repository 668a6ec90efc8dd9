package dnsserver

import (
	"context"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// digPath finds dig. A missing dig is a failure, not a skip: these tests
// are the proof that a stock resolver tool understands our answers
// (Debian: apt-get install dnsutils).
func digPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("dig")
	if err != nil {
		t.Fatalf("dig not found (%v): install it (Debian: apt-get install dnsutils); this test does not skip", err)
	}
	return p
}

func dig(t *testing.T, addr string, args ...string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all := append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)
	out, err := exec.CommandContext(ctx, digPath(t), all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", all, err, out)
	}
	return string(out)
}

func TestDig(t *testing.T) {
	digPath(t)
	_, addr := startServer(t, Config{})

	lines := func(s string) []string {
		f := strings.Fields(s)
		slices.Sort(f)
		return f
	}
	if got := lines(dig(t, addr, "www.gslb.example.com", "A", "+short")); !slices.Equal(got, []string{"192.0.2.10", "192.0.2.11"}) {
		t.Errorf("dig +short www A: %q", got)
	}
	if got := lines(dig(t, addr, "static.gslb.example.com", "A", "+short", "+tcp")); !slices.Equal(got, []string{"192.0.2.80", "192.0.2.81"}) {
		t.Errorf("dig +short +tcp static A: %q", got)
	}
	if got := strings.TrimSpace(dig(t, addr, "geo.gslb.example.com", "A", "+short", "+subnet=10.2.3.0/24")); got != "198.51.100.40" {
		t.Errorf("dig +subnet=10.2.3.0/24 geo A: %q, want the US site", got)
	}

	out := dig(t, addr, "geo.gslb.example.com", "A", "+subnet=10.1.2.0/24", "+norec")
	for _, want := range []string{"status: NOERROR", " aa", "geo.gslb.example.com.\t25\tIN\tA\t192.0.2.40"} {
		if !strings.Contains(out, want) {
			t.Errorf("dig +subnet=10.1.2.0/24 output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`CLIENT-SUBNET: 10\.1\.2\.0/24/\d+`).MatchString(out) {
		t.Errorf("dig output lacks the echoed client subnet:\n%s", out)
	}
	if !strings.Contains(out, "udp: 1232") {
		t.Errorf("dig output lacks our EDNS buffer size 1232:\n%s", out)
	}

	out = dig(t, addr, "nope.gslb.example.com", "A")
	for _, want := range []string{"status: NXDOMAIN", "AUTHORITY: 1", "gslb.example.com.\t60\tIN\tSOA"} {
		if !strings.Contains(out, want) {
			t.Errorf("dig NXDOMAIN output lacks %q:\n%s", want, out)
		}
	}
	if out := dig(t, addr, "example.org", "A"); !strings.Contains(out, "status: REFUSED") {
		t.Errorf("dig outside our zones: want REFUSED:\n%s", out)
	}
	// Truncated over UDP, dig retries over TCP by itself and gets all 8.
	out = dig(t, addr, "big.gslb.example.com", "TXT", "+noedns", "+short")
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 8 {
		t.Errorf("dig big TXT after TC: %d lines, want 8:\n%s", n, out)
	}
}

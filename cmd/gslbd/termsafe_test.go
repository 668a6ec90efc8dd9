package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"gslbd/admin"
)

func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":                  "plain text",
		"tls: certificate for é.test": "tls: certificate for é.test",
		"\x1b]0;pwned\x07":            `\x1b]0;pwned\a`,
		"a\tb\nc\rd":                  `a\tb\nc\rd`,
		"\u202eevil":                  `\u202eevil`,
		"bad \xff utf8":               `bad \xff utf8`,
		"c1 \u009b31m":                `c1 \u009b31m`,
	} {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStatusEscapesRemoteText prints a status whose probe reason and
// member name carry terminal escapes, a bidi override and line breaks,
// as a hostile backend or mesh member could send them: none reaches the
// terminal raw, and every row stays one line.
func TestStatusEscapesRemoteText(t *testing.T) {
	st := &admin.Status{
		Node:    "ns1",
		Version: "v\x1b[2J",
		Members: []admin.Member{{Name: "ns2\x1b[31m", Address: "127.0.0.2:7946", State: "alive"}},
		Pools: []admin.PoolStatus{{Name: "web", Sites: []admin.SiteStatus{{Name: "fra", Addresses: []admin.AddressStatus{{
			Address: netip.MustParseAddr("192.0.2.10"),
			Verdict: "down",
			Votes:   map[string]string{"ns1\u202e": "down"},
			Reason:  "tls: certificate is valid for \x1b]0;owned\x07evil\r\nweb fra 192.0.2.99 up",
		}}}}}},
		Warnings: []string{"warn\x1b[1A"},
	}
	var buf bytes.Buffer
	printStatus(safeWriter{&buf}, st)
	out := buf.String()
	for _, c := range out {
		if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f || c == '\u202e' {
			t.Fatalf("raw control character %U in status output:\n%s", c, out)
		}
	}
	if strings.Contains(out, "192.0.2.99 up") && !strings.Contains(out, `\r\nweb fra 192.0.2.99 up`) {
		t.Errorf("a reason forged a table row:\n%s", out)
	}
	for _, want := range []string{`\x1b]0;owned\aevil`, `ns2\x1b[31m`, `ns1\u202e=down`, `warn\x1b[1A`} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks the escaped %q:\n%s", want, out)
		}
	}
}

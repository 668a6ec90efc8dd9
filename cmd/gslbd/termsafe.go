package main

import (
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// What a node reports can carry text from elsewhere: a health failure
// reason quotes a probed server (a certificate name, an error line), a
// member name comes from the mesh. Printed raw, control characters in it
// could move the cursor, rewrite earlier lines or retitle the terminal.
// The command line therefore escapes them: in each field every control
// and format character (tabs and newlines included, so a field cannot
// break its table), and on the way out everything but the tabs and
// newlines the tables themselves write.

// termSafe returns s with control characters, Unicode format characters
// (bidirectional overrides, zero-width joiners) and invalid UTF-8 written
// as Go escapes: "\x1b", "\u202e".
func termSafe(s string) string {
	if !needsEscape(s, false) {
		return s
	}
	var b strings.Builder
	writeEscaped(&b, s, false)
	return b.String()
}

func unsafeRune(r rune, keepLayout bool) bool {
	if keepLayout && (r == '\n' || r == '\t') {
		return false
	}
	return r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

func needsEscape(s string, keepLayout bool) bool {
	for _, r := range s {
		if unsafeRune(r, keepLayout) {
			return true
		}
	}
	return false
}

func writeEscaped(b *strings.Builder, s string, keepLayout bool) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case unsafeRune(r, keepLayout):
			q := strconv.QuoteRuneToASCII(r) // '\x1b' or '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// safeWriter escapes what termSafe does, except tabs and newlines, on
// everything written through it: a backstop for fields printed without
// termSafe.
type safeWriter struct{ w io.Writer }

func (s safeWriter) Write(p []byte) (int, error) {
	if !needsEscape(string(p), true) {
		return s.w.Write(p)
	}
	var b strings.Builder
	writeEscaped(&b, string(p), true)
	if _, err := io.WriteString(s.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// doc is one TOML file being decoded: its generic values, the places of its
// keys, and the errors found so far. Decoding into generic values and
// walking them ourselves (instead of into structs) lets us report every
// problem of a file at once, each at its key.
type doc struct {
	file string // as shown in errors
	root map[string]any
	pos  posMap
	errs *[]*Error
}

// parseDoc decodes data; on a syntax error it records it and returns nil.
func parseDoc(file string, data []byte, errs *[]*Error) *doc {
	root := map[string]any{}
	if _, err := toml.Decode(string(data), &root); err != nil {
		e := &Error{File: file, Msg: err.Error(), Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line, e.Col = pe.Position.Line, pe.Position.Col
			if e.Line < 1 {
				// The decoder leaves the line out for some lexer errors;
				// its byte offset still says where.
				e.Line, e.Col = lineCol(data, pe.Position.Start)
			}
			e.Msg = "invalid TOML: " + pe.Message
		}
		*errs = append(*errs, e)
		return nil
	}
	return &doc{file: file, root: root, pos: scanPositions(string(data)), errs: errs}
}

// errf records an error at path, prefixed with the path as written.
func (d *doc) errf(path []string, format string, args ...any) {
	p := d.pos.lookup(path)
	if p.Line == 0 {
		// A key missing from the top-level table: the file as a whole.
		p.Line = 1
	}
	msg := fmt.Sprintf(format, args...)
	if len(path) > 0 {
		msg = displayPath(path) + ": " + msg
	}
	*d.errs = append(*d.errs, &Error{File: d.file, Line: p.Line, Col: p.Col, Msg: msg})
}

// displayPath renders a path as a user would write it: web.sites[1].weight,
// records."*.foo".A.
func displayPath(path []string) string {
	var b strings.Builder
	for i, seg := range path {
		if strings.HasPrefix(seg, "[") && i > 0 {
			b.WriteString(seg)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		bare := seg != ""
		for j := 0; j < len(seg); j++ {
			if !isBareKeyChar(seg[j]) {
				bare = false
				break
			}
		}
		if bare {
			b.WriteString(seg)
		} else {
			fmt.Fprintf(&b, "%q", seg)
		}
	}
	return b.String()
}

func child(path []string, segs ...string) []string {
	return append(append(make([]string, 0, len(path)+len(segs)), path...), segs...)
}

// table is one TOML table being decoded; it remembers which keys were
// read so that done can report the rest as unknown.
type table struct {
	d    *doc
	path []string
	m    map[string]any
	used map[string]bool
}

func (d *doc) table(path []string, m map[string]any) *table {
	return &table{d: d, path: path, m: m, used: map[string]bool{}}
}

// sub returns the table at key, nil when absent or not a table (reported).
func (t *table) sub(key string) *table {
	v, ok := t.get(key)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.typeErr(key, "a table", v)
		return nil
	}
	return t.d.table(child(t.path, key), m)
}

func (t *table) has(key string) bool { _, ok := t.m[key]; return ok }

func (t *table) get(key string) (any, bool) {
	v, ok := t.m[key]
	if ok {
		t.used[key] = true
	}
	return v, ok
}

func (t *table) errf(key string, format string, args ...any) {
	if key == "" {
		t.d.errf(t.path, format, args...)
		return
	}
	t.d.errf(child(t.path, key), format, args...)
}

func (t *table) typeErr(key, want string, v any) {
	t.errf(key, "want %s, got %s", want, describe(v))
}

// done reports every key of t that was not read as unknown, with the keys
// that are allowed there.
func (t *table) done(allowed ...string) {
	var unknown []string
	for k := range t.m {
		if !t.used[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		t.errf(k, "unknown key (allowed: %s)", strings.Join(allowed, ", "))
	}
}

func (t *table) str(key string, dst *string) bool {
	v, ok := t.get(key)
	if !ok {
		return false
	}
	s, ok := v.(string)
	if !ok {
		t.typeErr(key, "a string", v)
		return false
	}
	*dst = s
	return true
}

func (t *table) boolean(key string, dst *bool) bool {
	v, ok := t.get(key)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		t.typeErr(key, "true or false", v)
		return false
	}
	*dst = b
	return true
}

// integer reads an integer in [lo, hi].
func (t *table) integer(key string, lo, hi int64, dst *int64) bool {
	v, ok := t.get(key)
	if !ok {
		return false
	}
	n, ok := v.(int64)
	if !ok {
		t.typeErr(key, "an integer", v)
		return false
	}
	if n < lo || n > hi {
		t.errf(key, "%d is out of range: want %d..%d", n, lo, hi)
		return false
	}
	*dst = n
	return true
}

func (t *table) intVal(key string, lo, hi int64, dst *int) bool {
	var n int64
	if !t.integer(key, lo, hi, &n) {
		return false
	}
	*dst = int(n)
	return true
}

func (t *table) u32(key string, lo, hi int64, dst *uint32) bool {
	var n int64
	if !t.integer(key, lo, hi, &n) {
		return false
	}
	*dst = uint32(n)
	return true
}

// float reads a number (integer or float) in [lo, hi].
func (t *table) float(key string, lo, hi float64, dst *float64) bool {
	v, ok := t.get(key)
	if !ok {
		return false
	}
	var f float64
	switch x := v.(type) {
	case int64:
		f = float64(x)
	case float64:
		f = x
	default:
		t.typeErr(key, "a number", v)
		return false
	}
	if math.IsNaN(f) || f < lo || f > hi {
		t.errf(key, "%v is out of range: want %v..%v", f, lo, hi)
		return false
	}
	*dst = f
	return true
}

// duration reads a Go duration string, > 0.
func (t *table) duration(key string, dst *time.Duration) bool {
	var s string
	if !t.str(key, &s) {
		return false
	}
	var d Duration
	if err := d.UnmarshalText([]byte(s)); err != nil {
		t.errf(key, "%v", err)
		return false
	}
	if d.Duration <= 0 {
		t.errf(key, "invalid duration %q: must be positive", s)
		return false
	}
	*dst = d.Duration
	return true
}

// strs reads an array of strings; with one it also accepts a single string.
func (t *table) strs(key string, one bool, dst *[]string) bool {
	v, ok := t.get(key)
	if !ok {
		return false
	}
	if s, ok := v.(string); ok && one {
		*dst = []string{s}
		return true
	}
	arr, ok := v.([]any)
	if !ok {
		t.typeErr(key, "an array of strings", v)
		return false
	}
	out := make([]string, 0, len(arr))
	good := true
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			t.d.errf(child(t.path, key, indexSeg(i)), "want a string, got %s", describe(e))
			good = false
			continue
		}
		out = append(out, s)
	}
	*dst = out
	return good
}

// tables reads an array of tables ([[x]] or x = [{...}]).
func (t *table) tables(key string) []*table {
	v, ok := t.get(key)
	if !ok {
		return nil
	}
	var ms []map[string]any
	switch x := v.(type) {
	case []map[string]any:
		ms = x
	case []any:
		for i, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				t.d.errf(child(t.path, key, indexSeg(i)), "want a table, got %s", describe(e))
				continue
			}
			ms = append(ms, m)
		}
	default:
		t.typeErr(key, "an array of tables ([["+displayPath(child(t.path, key))+"]])", v)
		return nil
	}
	out := make([]*table, len(ms))
	for i, m := range ms {
		out[i] = t.d.table(child(t.path, key, indexSeg(i)), m)
	}
	return out
}

// elemPath is the path of element i of the array at key.
func (t *table) elemPath(key string, i int) []string {
	return child(t.path, key, indexSeg(i))
}

// describe names a decoded TOML value's type and value for messages.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case int64:
		return fmt.Sprintf("integer %d", x)
	case float64:
		return fmt.Sprintf("float %v", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case time.Time:
		return fmt.Sprintf("date-time %v", x)
	default:
		return fmt.Sprintf("%T", v)
	}
}

// readFile reads path, recording a failure as an error of that file.
func readFile(path, display string, errs *[]*Error) ([]byte, os.FileInfo, bool) {
	fail := func(err error) ([]byte, os.FileInfo, bool) {
		*errs = append(*errs, &Error{File: display, Line: 1, Msg: fmt.Sprintf("cannot read: %v", pathReason(err)), Err: err})
		return nil, nil, false
	}
	// Configuration files are small; the cap keeps a wrong path (a log, a
	// database) from being read whole.
	const maxFile = 16 << 20
	data, fi, err := ReadFile(path, maxFile)
	if err != nil {
		return fail(err)
	}
	return data, fi, true
}

// lineCol converts a byte offset of data into a 1-based line and column.
func lineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	line = 1 + bytes.Count(data[:off], []byte("\n"))
	return line, off - (bytes.LastIndexByte(data[:off], '\n') + 1) + 1
}

package config

import (
	"strconv"
	"strings"
)

// The TOML decoder knows where every key is but does not tell (its key
// positions are private), and it reports only the first error. We decode
// into generic values to collect every error ourselves, so we need the
// places too: scanPositions walks a document that already parsed and maps
// every key path — with array-of-tables and array indices, as in
// web.sites[1].weight or records.www.A[0] — to where it was written.

// pos is a 1-based line and byte column.
type pos struct{ Line, Col int }

// posMap maps a path (segments joined by pathSep, indices as "[n]") to the
// place of its key, table header or array element. The first mention wins.
type posMap map[string]pos

const pathSep = "\x00"

func pathKey(path []string) string { return strings.Join(path, pathSep) }

func indexSeg(i int) string { return "[" + strconv.Itoa(i) + "]" }

// lookup returns the place of path, or of its nearest ancestor that has one.
func (m posMap) lookup(path []string) pos {
	for n := len(path); n > 0; n-- {
		if p, ok := m[pathKey(path[:n])]; ok {
			return p
		}
	}
	return pos{}
}

type posScanner struct {
	src  string
	i    int
	line int
	col  int // column of src[i]
	m    posMap
	aot  map[string]int // array-of-tables path → number of elements so far
}

// scanPositions maps every key path of src, a document the TOML decoder
// accepted, to its place. It never fails: on anything it does not
// understand it skips ahead, and every loop step consumes input.
func scanPositions(src string) posMap {
	s := &posScanner{src: src, line: 1, col: 1, m: posMap{}, aot: map[string]int{}}
	var table []string
	for s.i < len(s.src) {
		start := s.i
		s.skipSpaceNL()
		if s.i >= len(s.src) {
			break
		}
		switch s.src[s.i] {
		case '[':
			table = s.header()
		default:
			s.keyValue(table)
		}
		s.skipLine()
		if s.i == start {
			s.adv(1)
		}
	}
	return s.m
}

func (s *posScanner) adv(n int) {
	for ; n > 0 && s.i < len(s.src); n-- {
		if s.src[s.i] == '\n' {
			s.line++
			s.col = 1
		} else {
			s.col++
		}
		s.i++
	}
}

func (s *posScanner) peek(off int) byte {
	if s.i+off < len(s.src) {
		return s.src[s.i+off]
	}
	return 0
}

func (s *posScanner) here() pos { return pos{s.line, s.col} }

func (s *posScanner) record(path []string, p pos) {
	k := pathKey(path)
	if _, ok := s.m[k]; !ok {
		s.m[k] = p
	}
}

func (s *posScanner) skipSpace() {
	for s.i < len(s.src) && (s.src[s.i] == ' ' || s.src[s.i] == '\t') {
		s.adv(1)
	}
}

// skipSpaceNL skips blanks, newlines and comments.
func (s *posScanner) skipSpaceNL() {
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case ' ', '\t', '\r', '\n':
			s.adv(1)
		case '#':
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.adv(1)
			}
		default:
			return
		}
	}
}

// skipLine skips the rest of the current line (a trailing comment).
func (s *posScanner) skipLine() {
	for s.i < len(s.src) && s.src[s.i] != '\n' {
		s.adv(1)
	}
}

// header reads [a.b] or [[a.b]] and returns the resolved table path.
func (s *posScanner) header() []string {
	at := s.here()
	array := s.peek(1) == '['
	if array {
		s.adv(2)
	} else {
		s.adv(1)
	}
	segs, _ := s.key()
	s.skipSpace()
	if array {
		s.adv(2)
	} else {
		s.adv(1)
	}
	var res []string
	for j, seg := range segs {
		res = append(res, seg)
		k := pathKey(res)
		switch n, ok := s.aot[k]; {
		case j == len(segs)-1 && array:
			s.record(res, at)
			s.aot[k] = n + 1
			res = append(res, indexSeg(n))
		case ok && n > 0:
			res = append(res, indexSeg(n-1))
		}
		s.record(res, at)
	}
	return res
}

// key reads a dotted key and returns its segments and the place of its
// first one.
func (s *posScanner) key() ([]string, pos) {
	s.skipSpace()
	at := s.here()
	var segs []string
	for s.i < len(s.src) {
		s.skipSpace()
		start := s.i
		switch s.peek(0) {
		case '"':
			segs = append(segs, s.basicString())
		case '\'':
			segs = append(segs, s.literalString())
		default:
			for s.i < len(s.src) && isBareKeyChar(s.src[s.i]) {
				s.adv(1)
			}
			segs = append(segs, s.src[start:s.i])
		}
		s.skipSpace()
		if s.peek(0) != '.' || s.i == start {
			break
		}
		s.adv(1)
	}
	return segs, at
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// keyValue reads key = value inside table.
func (s *posScanner) keyValue(table []string) {
	segs, at := s.key()
	path := append(append([]string(nil), table...), segs...)
	for n := len(table) + 1; n <= len(path); n++ {
		s.record(path[:n], at)
	}
	s.skipSpace()
	if s.peek(0) != '=' {
		return
	}
	s.adv(1)
	s.skipSpace()
	s.value(path)
}

func (s *posScanner) value(path []string) {
	switch s.peek(0) {
	case '"':
		s.basicString()
	case '\'':
		s.literalString()
	case '[':
		s.adv(1)
		for n := 0; s.i < len(s.src); n++ {
			s.skipSpaceNL()
			if c := s.peek(0); c == ']' || c == 0 {
				break
			}
			start := s.i
			elem := append(append([]string(nil), path...), indexSeg(n))
			s.record(elem, s.here())
			s.value(elem)
			s.skipSpaceNL()
			if s.peek(0) == ',' {
				s.adv(1)
			} else if s.i == start {
				break
			}
		}
		s.adv(1) // ]
	case '{':
		s.adv(1)
		for s.i < len(s.src) {
			s.skipSpaceNL()
			if c := s.peek(0); c == '}' || c == 0 {
				break
			}
			start := s.i
			s.keyValue(path)
			s.skipSpaceNL()
			if s.peek(0) == ',' {
				s.adv(1)
			} else if s.i == start {
				break
			}
		}
		s.adv(1) // }
	default: // number, bool, date-time: up to a delimiter
		for s.i < len(s.src) {
			switch s.src[s.i] {
			case ',', ']', '}', '\n', '#':
				return
			}
			s.adv(1)
		}
	}
}

// basicString reads "..." or """...""" and returns its (best-effort
// unescaped) content.
func (s *posScanner) basicString() string {
	if strings.HasPrefix(s.src[s.i:], `"""`) {
		s.adv(3)
		for s.i < len(s.src) {
			if s.src[s.i] == '\\' {
				s.adv(2)
				continue
			}
			if strings.HasPrefix(s.src[s.i:], `"""`) {
				s.adv(3)
				for k := 0; k < 2 && s.peek(0) == '"'; k++ {
					s.adv(1)
				}
				return ""
			}
			s.adv(1)
		}
		return ""
	}
	start := s.i
	s.adv(1)
	for s.i < len(s.src) && s.src[s.i] != '"' && s.src[s.i] != '\n' {
		if s.src[s.i] == '\\' {
			s.adv(1)
		}
		s.adv(1)
	}
	s.adv(1)
	raw := s.src[start:min(s.i, len(s.src))]
	if u, err := strconv.Unquote(raw); err == nil {
		return u
	}
	return strings.Trim(raw, `"`)
}

// literalString reads '...' or ”'...”' and returns its content.
func (s *posScanner) literalString() string {
	if strings.HasPrefix(s.src[s.i:], "'''") {
		s.adv(3)
		for s.i < len(s.src) {
			if strings.HasPrefix(s.src[s.i:], "'''") {
				s.adv(3)
				for k := 0; k < 2 && s.peek(0) == '\''; k++ {
					s.adv(1)
				}
				return ""
			}
			s.adv(1)
		}
		return ""
	}
	s.adv(1)
	start := s.i
	for s.i < len(s.src) && s.src[s.i] != '\'' && s.src[s.i] != '\n' {
		s.adv(1)
	}
	v := s.src[start:s.i]
	s.adv(1)
	return v
}

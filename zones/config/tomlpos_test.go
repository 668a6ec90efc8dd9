package config

import (
	"strings"
	"testing"
)

// TestScanPositions covers the TOML forms whose places the golden cases do
// not: multi-line strings that hide brackets and keys, quoted and dotted
// keys, inline tables, nested arrays of tables and sub-tables of their
// last element.
func TestScanPositions(t *testing.T) {
	src := `# comment [not.a.table]
a = """
x = 1
[fake]
"""
b = '''it's [x]'''
"q.k".'lit' = 2
c.d.e = [1, [2, 3], { f = 4 }]
[[p.s]]
name = "one"
[[p.s]]
  name = "two"
[p.s.check]
port = 80
[[p.s.deep]]
x = 1
[t]
g = { h.i = "}", j = [ "]" ] } # trailing
k = 1979-05-27 07:32:00Z
`
	m := scanPositions(src)
	for path, want := range map[string]pos{
		"a":                                 {2, 1},
		"x":                                 {},
		"fake":                              {},
		"b":                                 {6, 1},
		"q.k\x00lit":                        {7, 1},
		"c\x00d\x00e":                       {8, 1},
		"c\x00d\x00e\x00[1]":                {8, 13},
		"c\x00d\x00e\x00[1]\x00[1]":         {8, 17},
		"c\x00d\x00e\x00[2]\x00f":           {8, 23},
		"p\x00s\x00[0]":                     {9, 1},
		"p\x00s\x00[0]\x00name":             {10, 1},
		"p\x00s\x00[1]\x00name":             {12, 3},
		"p\x00s\x00[1]\x00check\x00port":    {14, 1},
		"p\x00s\x00[1]\x00deep\x00[0]\x00x": {16, 1},
		"t\x00g\x00h\x00i":                  {18, 7},
		"t\x00g\x00j":                       {18, 18},
		"t\x00k":                            {19, 1},
	} {
		if got := m[path]; got != want {
			t.Errorf("%s: %v, want %v", displayPath(strings.Split(path, pathSep)), got, want)
		}
	}
}

package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Error is one problem found in a configuration file, with the place of the
// offending key or table so that `gslbd check` can point an editor at it.
type Error struct {
	File string
	Line int // 1-based; 0 when unknown
	Col  int // 1-based byte column; 0 when unknown
	Msg  string
	// Err is the underlying error, when there is one (a file that cannot be
	// read, a geo database that does not open).
	Err error
}

func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// joinErrors sorts errs by file order of first appearance, then line and
// column, and joins them; nil when there are none.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	order := map[string]int{}
	for _, e := range errs {
		if _, ok := order[e.File]; !ok {
			order[e.File] = len(order)
		}
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(order[a.File], order[b.File]), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	// A pool-wide check problem shows again in every site that inherits
	// it; say it once.
	errs = slices.CompactFunc(errs, func(a, b *Error) bool {
		return a.File == b.File && a.Line == b.Line && a.Col == b.Col && a.Msg == b.Msg
	})
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

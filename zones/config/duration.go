package config

import (
	"fmt"
	"time"
)

// Duration is a time.Duration that decodes from a Go duration string
// ("5s", "250ms") so the TOML decoder can report the line of a bad one.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a Go duration such as \"5s\" or \"250ms\"", text)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", text)
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

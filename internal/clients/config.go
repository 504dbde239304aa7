package clients

import "fmt"

// Defaults of Config.
const (
	DefaultPrefix4      = 24
	DefaultPrefix6      = 64
	DefaultTop          = 10
	DefaultMaxTracked   = 4096
	DefaultMaxListeners = 16
	// MaxTop is the largest Top accepted.
	MaxTop = 1000
)

// Config says how client addresses are grouped and how much is kept.
type Config struct {
	// Prefix4 and Prefix6 are the prefix lengths, in bits, that group
	// IPv4 (0-32) and IPv6 (0-128) client addresses; an IPv4 client of a
	// dual-stack listener (a v4-mapped address) is grouped as IPv4.
	Prefix4, Prefix6 int
	// Top is the number of prefixes reported per listener and state
	// (1-MaxTop).
	Top int
	// MaxTracked is the most distinct prefixes counted per listener and
	// state (≥ Top); past it the counts are approximate (see the package
	// comment).
	MaxTracked int
	// MaxListeners is the most listeners one Dump looks at (≥ 1).
	MaxListeners int
}

// DefaultConfig returns the defaults: /24, /64, top 10, 4096 prefixes
// tracked, 16 listeners.
func DefaultConfig() Config {
	return Config{Prefix4: DefaultPrefix4, Prefix6: DefaultPrefix6, Top: DefaultTop,
		MaxTracked: DefaultMaxTracked, MaxListeners: DefaultMaxListeners}
}

// Validate reports the first field out of range.
func (c Config) Validate() error {
	switch {
	case c.Prefix4 < 0 || c.Prefix4 > 32:
		return fmt.Errorf("%w: IPv4 prefix length %d is not from 0 to 32", ErrConfig, c.Prefix4)
	case c.Prefix6 < 0 || c.Prefix6 > 128:
		return fmt.Errorf("%w: IPv6 prefix length %d is not from 0 to 128", ErrConfig, c.Prefix6)
	case c.Top < 1 || c.Top > MaxTop:
		return fmt.Errorf("%w: top %d is not from 1 to %d", ErrConfig, c.Top, MaxTop)
	case c.MaxTracked < c.Top:
		return fmt.Errorf("%w: %d prefixes tracked, fewer than the top %d", ErrConfig, c.MaxTracked, c.Top)
	case c.MaxListeners < 1:
		return fmt.Errorf("%w: at most %d listeners, want at least 1", ErrConfig, c.MaxListeners)
	}
	return nil
}

package netdev

import (
	"bytes"
	"fmt"
)

// GStringLen is the size of one name in an ethtool string set
// (ETH_GSTRING_LEN): NUL-padded, and not NUL-terminated when the name
// fills it.
const GStringLen = 32

// parseStringSet splits an ETH_SS_STATS string set as ETHTOOL_GSTRINGS
// returns it, GStringLen bytes per name, into the names. A name ends at its
// first NUL or at the end of its slot; the driver chose the bytes, so they
// are kept as they are (an empty name stays empty).
func parseStringSet(b []byte) ([]string, error) {
	if len(b)%GStringLen != 0 {
		return nil, fmt.Errorf("%w: ethtool string set of %d bytes is not a whole number of %d-byte names",
			ErrDriverStats, len(b), GStringLen)
	}
	all := string(b) // one copy; the names are substrings of it
	names := make([]string, len(b)/GStringLen)
	for i := range names {
		off := i * GStringLen
		n := bytes.IndexByte(b[off:off+GStringLen], 0)
		if n < 0 {
			n = GStringLen
		}
		names[i] = all[off : off+n]
	}
	return names, nil
}

package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/stormwatch/stormwatch/collector"
)

// portListHelp is what a port list flag accepts.
const portListHelp = "ports and ranges like 6379,7000-7010"

// parsePortRanges parses "6379,7000-7010" into port ranges. Its errors name
// the bad item and what is accepted, for the caller to prefix with the
// flag's name.
func parsePortRanges(s string) ([]collector.PortRange, error) {
	var out []collector.PortRange
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("%q has an empty item (want %s)", s, portListHelp)
		}
		lo, hi, isRange := strings.Cut(part, "-")
		l, err := parsePort(lo)
		if err != nil {
			return nil, listItemError(part, isRange, err)
		}
		h := l
		if isRange {
			if h, err = parsePort(hi); err != nil {
				return nil, listItemError(part, isRange, err)
			}
			if h < l {
				return nil, fmt.Errorf("%q is not a port range: it ends below its start (want low-high, e.g. 7000-7010)", part)
			}
		}
		out = append(out, collector.PortRange{Lo: l, Hi: h})
	}
	return out, nil
}

// listItemError explains a bad item of a port list: a bad port, or a range
// with a bad end.
func listItemError(part string, isRange bool, err error) error {
	if isRange {
		return fmt.Errorf("%q is not a port range (want low-high, each 1-65535, e.g. 7000-7010)", part)
	}
	return err
}

// parsePort parses one port, 1-65535.
func parsePort(s string) (uint16, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return uint16(v), nil
}

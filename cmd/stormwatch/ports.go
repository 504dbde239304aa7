package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/stormwatch/stormwatch/collector"
)

// parsePortRanges parses "6379,7000-7010" into port ranges.
func parsePortRanges(s string) ([]collector.PortRange, error) {
	var out []collector.PortRange
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		l, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("port range %q: %w", part, err)
		}
		h := l
		if isRange {
			if h, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("port range %q: %w", part, err)
			}
			if h < l {
				return nil, fmt.Errorf("port range %q: end below start", part)
			}
		}
		out = append(out, collector.PortRange{Lo: l, Hi: h})
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return uint16(v), nil
}

package headroom

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Path is where the daemon serves the headroom.
const Path = "/api/v1/headroom"

// Request is what a query to Path asks besides the defaults.
type Request struct {
	// Options are the defaults with the query's min, port and top.
	Options Options
	// Fail is the status to answer when not ok (?fail=503); 0 answers 200
	// always.
	Fail int
}

// ParseQuery reads a query of Path over the defaults def:
//
//	min=0.3        the threshold (0..1)
//	port=6379      narrow listener queues to ports: repeatable, or a comma list
//	top=10         queues listed (0: all)
//	fail=503       answer this status (400-599) instead of 200 when not ok
//
// Unknown parameters are refused, so that a typo is not silently a
// default. Errors wrap ErrQuery and name the parameter, the bad value and
// what is accepted.
func ParseQuery(q url.Values, def Options) (Request, error) {
	req := Request{Options: def}
	bad := func(name, value, accept string) error {
		return fmt.Errorf("%w: %s: %q is not %s", ErrQuery, name, value, accept)
	}
	for name, values := range q {
		switch name {
		case "min", "top", "fail":
			if len(values) > 1 {
				return req, fmt.Errorf("%w: %s: given %d times; give it once", ErrQuery, name, len(values))
			}
		case "port":
		default:
			return req, fmt.Errorf("%w: unknown parameter %q (accepted: min, port, top, fail)", ErrQuery, name)
		}
	}
	if v := q.Get("min"); q.Has("min") {
		m, err := ParseMin(v)
		if err != nil {
			return req, bad("min", v, "a headroom between 0 and 1 (e.g. 0.3)")
		}
		req.Options.Min = m
	}
	if q.Has("port") {
		req.Options.Ports = nil
		for _, v := range q["port"] {
			for _, p := range strings.Split(v, ",") {
				n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
				if err != nil || n == 0 {
					return req, bad("port", p, "a port (1-65535)")
				}
				if !slices.Contains(req.Options.Ports, uint16(n)) {
					req.Options.Ports = append(req.Options.Ports, uint16(n))
				}
			}
		}
		slices.Sort(req.Options.Ports)
	}
	if v := q.Get("top"); q.Has("top") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return req, bad("top", v, "a whole number ≥ 0 (0: every queue)")
		}
		req.Options.Top = n
	}
	if v := q.Get("fail"); q.Has("fail") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 400 || n > 599 {
			return req, bad("fail", v, "an HTTP status from 400 to 599 (e.g. 503)")
		}
		req.Fail = n
	}
	return req, nil
}

// ParseMin parses a headroom threshold: a number from 0 to 1.
func ParseMin(s string) (float64, error) {
	m, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(m >= 0 && m <= 1) {
		return 0, fmt.Errorf("%q is not a headroom between 0 and 1 (e.g. 0.3)", s)
	}
	return m, nil
}

// URL returns the headroom URL of a stormwatch at base: base itself when
// its path names something (a proxy may serve it elsewhere), else base
// with Path. min (when ≥ 0) and ports (when any) are set in its query;
// other parameters of base are kept. base must be an http or https URL
// with a host.
func URL(base string, min float64, ports []uint16) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http:// or https:// URL with a host (e.g. http://10.0.0.7:9955)", base)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = Path
	}
	q := u.Query()
	if min >= 0 {
		q.Set("min", strconv.FormatFloat(min, 'f', -1, 64))
	}
	if len(ports) > 0 {
		q.Del("port")
		for _, p := range ports {
			q.Add("port", strconv.Itoa(int(p)))
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

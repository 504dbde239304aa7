package drain

import (
	"bytes"
	"context"
	"encoding/json"

	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// HeadroomPath is the path of the headroom endpoint, used when a
// --pace-by URL has none.
const HeadroomPath = "/api/v1/headroom"

// Defaults of HTTPReceiver.
const (
	DefaultAttempts       = 3
	DefaultAttemptTimeout = 2 * time.Second
	DefaultRetryWait      = 200 * time.Millisecond
	// maxHeadroomBody caps the answer read.
	maxHeadroomBody = 1 << 20
)

// HTTPReceiver asks a stormwatch's headroom endpoint (GET, JSON). A
// non-2xx status or an answer that is not the headroom JSON is an error
// (ErrHeadroomAnswer), as for Argo Rollouts' web provider; a failed
// question is asked again up to Attempts times in all, RetryWait apart.
type HTTPReceiver struct {
	// URL is asked as is.
	URL string
	// Client makes the requests (nil: http.DefaultClient).
	Client *http.Client
	// Attempts, AttemptTimeout and RetryWait bound one question (0: the
	// defaults).
	Attempts       int
	AttemptTimeout time.Duration
	RetryWait      time.Duration

	name string
}

// NewHTTPReceiver checks a --pace-by URL and completes it: an http or
// https URL with a host; an empty path becomes HeadroomPath; a query
// without "min" gets min=minHeadroom, so that the receiver's "ok" uses the
// drain's threshold.
func NewHTTPReceiver(raw string, minHeadroom float64) (*HTTPReceiver, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q: want an http:// or https:// URL of a stormwatch headroom endpoint (e.g. http://10.0.0.7:9955%s), or local", raw, HeadroomPath)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = HeadroomPath
	}
	q := u.Query()
	if !q.Has("min") {
		q.Set("min", strconv.FormatFloat(minHeadroom, 'f', -1, 64))
		u.RawQuery = q.Encode()
	}
	return &HTTPReceiver{URL: u.String(), name: u.Host}, nil
}

// Name is the URL's host (and port).
func (r *HTTPReceiver) Name() string {
	if r.name == "" {
		if u, err := url.Parse(r.URL); err == nil {
			r.name = u.Host
		}
	}
	return r.name
}

// Headroom implements Receiver.
func (r *HTTPReceiver) Headroom(ctx context.Context) (Headroom, error) {
	attempts := cmpOr(r.Attempts, DefaultAttempts)
	var err error
	for i := range attempts {
		if i > 0 {
			t := time.NewTimer(cmpOr(r.RetryWait, DefaultRetryWait))
			select {
			case <-ctx.Done():
				t.Stop()
				return Headroom{}, fmt.Errorf("%w (after: %w)", ctx.Err(), err)
			case <-t.C:
			}
		}
		var h Headroom
		if h, err = r.ask(ctx); err == nil {
			return h, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	if attempts > 1 {
		return Headroom{}, fmt.Errorf("%w (%d attempts)", err, attempts)
	}
	return Headroom{}, err
}

func (r *HTTPReceiver) ask(ctx context.Context) (Headroom, error) {
	ctx, cancel := context.WithTimeout(ctx, cmpOr(r.AttemptTimeout, DefaultAttemptTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil)
	if err != nil {
		return Headroom{}, err
	}
	req.Header.Set("Accept", "application/json")
	c := r.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return Headroom{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHeadroomBody+1))
	if err != nil {
		return Headroom{}, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Headroom{}, fmt.Errorf("%w: HTTP %s", ErrHeadroomAnswer, resp.Status)
	}
	if len(body) > maxHeadroomBody {
		return Headroom{}, fmt.Errorf("%w: answer larger than %d bytes", ErrHeadroomAnswer, maxHeadroomBody)
	}
	return ParseHeadroom(body)
}

// ParseHeadroom reads a /api/v1/headroom answer. It needs "ok" (a bool)
// and "headroom" (a number from 0 to 1); "limiting" (a string, or an
// object whose plain fields are shown as key=value) and "reasons" (a list
// of strings) are optional; other fields are ignored.
func ParseHeadroom(b []byte) (Headroom, error) {
	var raw struct {
		OK       *bool           `json:"ok"`
		Headroom json.RawMessage `json:"headroom"`
		Limiting json.RawMessage `json:"limiting"`
		Reasons  []string        `json:"reasons"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Headroom{}, fmt.Errorf("%w: %w", ErrHeadroomAnswer, err)
	}
	if raw.OK == nil {
		return Headroom{}, fmt.Errorf("%w: no \"ok\" field", ErrHeadroomAnswer)
	}
	if len(raw.Headroom) == 0 {
		return Headroom{}, fmt.Errorf("%w: no \"headroom\" field", ErrHeadroomAnswer)
	}
	h := Headroom{OK: *raw.OK, Reasons: slices.DeleteFunc(raw.Reasons, func(s string) bool { return strings.TrimSpace(s) == "" })}
	h.Limiting = describeJSON(raw.Limiting)
	if string(bytes.TrimSpace(raw.Headroom)) == "null" {
		// stormwatch's answer when it has no data: not ok, its reasons
		// saying why.
		h.OK, h.NoData = false, true
		return h, nil
	}
	var v float64
	if err := json.Unmarshal(raw.Headroom, &v); err != nil {
		return Headroom{}, fmt.Errorf("%w: headroom: %w", ErrHeadroomAnswer, err)
	}
	if math.IsNaN(v) || v < 0 || v > 1 {
		return Headroom{}, fmt.Errorf("%w: headroom %v outside 0..1", ErrHeadroomAnswer, v)
	}
	h.Headroom = v
	return h, nil
}

// describeJSON renders a JSON value in words: a string as itself, an
// object as its plain fields (key=value, in key order), anything else
// compacted.
func describeJSON(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s
	}
	var obj map[string]any
	if err := json.Unmarshal(v, &obj); err == nil {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			switch x := obj[k].(type) {
			case string:
				parts = append(parts, k+"="+x)
			case float64:
				parts = append(parts, k+"="+strconv.FormatFloat(x, 'g', -1, 64))
			case bool:
				parts = append(parts, k+"="+strconv.FormatBool(x))
			}
		}
		return strings.Join(parts, " ")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return ""
	}
	return buf.String()
}

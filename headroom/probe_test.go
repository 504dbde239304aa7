package headroom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseQuery(t *testing.T) {
	def := DefaultOptions()
	tests := []struct {
		query   string
		want    Request
		wantErr string
	}{
		{"", Request{Options: def}, ""},
		{"min=0.5&port=6379&port=16379,7000&top=0&fail=503", Request{Options: func() Options {
			o := def
			o.Min, o.Ports, o.Top = 0.5, []uint16{6379, 7000, 16379}, 0
			return o
		}(), Fail: 503}, ""},
		{"min=0", Request{Options: func() Options { o := def; o.Min = 0; return o }()}, ""},
		{"port=6379,6379", Request{Options: func() Options { o := def; o.Ports = []uint16{6379}; return o }()}, ""},
		{"min=1.5", Request{}, `bad headroom query: min: "1.5" is not a headroom between 0 and 1 (e.g. 0.3)`},
		{"min=NaN", Request{}, `bad headroom query: min: "NaN" is not a headroom between 0 and 1 (e.g. 0.3)`},
		{"min=0.3&min=0.4", Request{}, `bad headroom query: min: given 2 times; give it once`},
		{"port=0", Request{}, `bad headroom query: port: "0" is not a port (1-65535)`},
		{"port=6379,", Request{}, `bad headroom query: port: "" is not a port (1-65535)`},
		{"port=http", Request{}, `bad headroom query: port: "http" is not a port (1-65535)`},
		{"top=-1", Request{}, `bad headroom query: top: "-1" is not a whole number ≥ 0 (0: every queue)`},
		{"fail=200", Request{}, `bad headroom query: fail: "200" is not an HTTP status from 400 to 599 (e.g. 503)`},
		{"mín=0.3", Request{}, `bad headroom query: unknown parameter "mín" (accepted: min, port, top, fail)`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseQuery(q, def)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrQuery) {
					t.Errorf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestURL(t *testing.T) {
	tests := []struct {
		base  string
		min   float64
		ports []uint16
		want  string
	}{
		{"http://10.0.0.7:9955", -1, nil, "http://10.0.0.7:9955/api/v1/headroom"},
		{"http://10.0.0.7:9955/", 0.3, []uint16{6379, 6380}, "http://10.0.0.7:9955/api/v1/headroom?min=0.3&port=6379&port=6380"},
		{"https://proxy/stormwatch/a/headroom?top=3&port=1", 0, []uint16{6379}, "https://proxy/stormwatch/a/headroom?min=0&port=6379&top=3"},
	}
	for _, tt := range tests {
		got, err := URL(tt.base, tt.min, tt.ports)
		if err != nil || got != tt.want {
			t.Errorf("URL(%q, %v, %v) = %q, %v; want %q", tt.base, tt.min, tt.ports, got, err, tt.want)
		}
	}
	for _, bad := range []string{"10.0.0.7:9955", "ftp://x/", "http://", "http://[::1"} {
		if _, err := URL(bad, -1, nil); err == nil {
			t.Errorf("URL(%q) accepted", bad)
		}
	}
}

func TestFetch(t *testing.T) {
	report := compute(DefaultOptions(), nil, host(t0).snapshot())
	good, err := json.Marshal(report)
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]struct {
		status int
		body   string
	}{
		"/ok":        {200, string(good)},
		"/503":       {503, string(good)},
		"/404":       {404, "404 page not found"},
		"/html":      {200, "<html>login</html>"},
		"/empty":     {200, "{}"},
		"/newer":     {200, `{"schema": 2, "ok": true}`},
		"/truncated": {200, string(good[:len(good)/2])},
		"/huge":      {200, `{"schema": 1, "reasons": ["` + strings.Repeat("x", MaxAnswerSize) + `"]}`},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/json" {
			t.Errorf("Accept %q", r.Header.Get("Accept"))
		}
		a := answers[r.URL.Path]
		w.WriteHeader(a.status)
		fmt.Fprint(w, a.body)
	}))
	defer srv.Close()
	ctx := context.Background()

	got, err := Fetch(ctx, srv.Client(), srv.URL+"/ok")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(report, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for path, want := range map[string]error{
		"/503": ErrStatus, "/404": ErrStatus, "/html": ErrAnswer, "/empty": ErrAnswer,
		"/newer": ErrAnswer, "/truncated": ErrAnswer, "/huge": ErrAnswer,
	} {
		r, err := Fetch(ctx, srv.Client(), srv.URL+path)
		if !errors.Is(err, want) || r != nil {
			t.Errorf("%s: %v, %v; want an error wrapping %v", path, r, err, want)
		}
	}
	if _, err := Fetch(ctx, srv.Client(), srv.URL+"/404"); err == nil || !strings.Contains(err.Error(), "404 Not Found: 404 page not found") {
		t.Errorf("the error does not say what came back: %v", err)
	}

	// Remote is Fetch.
	p := &Remote{URL: srv.URL + "/ok", Client: srv.Client()}
	if r, err := p.Probe(ctx); err != nil || !r.OK || p.Name() != srv.URL+"/ok" {
		t.Errorf("Remote: %v %v", r, err)
	}
	// Unreachable: the client's error.
	srv.Close()
	if _, err := p.Probe(ctx); err == nil || errors.Is(err, ErrStatus) || errors.Is(err, ErrAnswer) {
		t.Errorf("unreachable: %v", err)
	}
}

// FuzzParse: whatever a server answers, Parse returns a Report or an
// error wrapping ErrAnswer, and never panics.
func FuzzParse(f *testing.F) {
	good, _ := json.Marshal(compute(DefaultOptions(), nil, host(t0).snapshot()))
	for _, seed := range []string{string(good), "{}", `{"schema":1}`, `{"schema":2}`, `{"schema":1,"headroom":"x"}`, "null", "[]", ""} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		r, err := Parse(b)
		if (r == nil) == (err == nil) {
			t.Fatalf("Parse: %v, %v", r, err)
		}
		if err != nil && !errors.Is(err, ErrAnswer) {
			t.Fatalf("error %v does not wrap ErrAnswer", err)
		}
		if r != nil && (r.Schema < 1 || r.Schema > SchemaVersion) {
			t.Fatalf("schema %d accepted", r.Schema)
		}
	})
}

// FuzzParseQuery: any query is parsed or refused with ErrQuery, and what
// is accepted is within bounds.
func FuzzParseQuery(f *testing.F) {
	for _, seed := range []string{"", "min=0.3", "port=6379,16379&port=1", "top=0&fail=503", "min=1e-3", "port=65536", "x=1", "min=-0"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > 4096 {
			return
		}
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := ParseQuery(q, DefaultOptions())
		if err != nil {
			if !errors.Is(err, ErrQuery) {
				t.Fatalf("error %v does not wrap ErrQuery", err)
			}
			return
		}
		o := req.Options
		if !(o.Min >= 0 && o.Min <= 1) || o.Top < 0 || (req.Fail != 0 && (req.Fail < 400 || req.Fail > 599)) {
			t.Fatalf("accepted out of bounds: %+v", req)
		}
		for _, p := range o.Ports {
			if p == 0 {
				t.Fatal("port 0 accepted")
			}
		}
	})
}

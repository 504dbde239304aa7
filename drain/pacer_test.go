package drain_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/drain"
)

// script is a receiver answering from a list, one answer per question
// (the last one repeated).
type script struct {
	mu      sync.Mutex
	answers []drain.Headroom
	errs    []error
	asked   int
}

func (s *script) headroom(context.Context) (drain.Headroom, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := min(s.asked, len(s.answers)-1)
	s.asked++
	var err error
	if i < len(s.errs) {
		err = s.errs[i]
	}
	return s.answers[i], err
}

func ok(h float64) drain.Headroom { return drain.Headroom{OK: true, Headroom: h} }

func full(h float64, reason string) drain.Headroom {
	return drain.Headroom{OK: false, Headroom: h, Limiting: "accept queue", Reasons: []string{reason}}
}

func TestClosedLoopWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &script{answers: []drain.Headroom{full(0.18, "accept queue 82%"), full(0.18, "accept queue 82%"), full(0.25, "accept queue 75%"), ok(0.9)}}
		p := &drain.ClosedLoop{Receivers: []drain.Receiver{drain.ReceiverFunc("10.0.0.7", r.headroom)}, MinHeadroom: 0.3}
		var reasons []string
		start := time.Now()
		adm, err := p.Admit(context.Background(), func(reason string) { reasons = append(reasons, reason) })
		if err != nil {
			t.Fatal(err)
		}
		// Three refusals, a second apart; the reason shown when it changes.
		want := []string{"receiver 10.0.0.7: accept queue 82%", "receiver 10.0.0.7: accept queue 75%"}
		if diff := cmp.Diff(want, reasons); diff != "" {
			t.Errorf("reasons (-want +got):\n%s", diff)
		}
		if got := time.Since(start); got != 3*time.Second || adm.Waited != 3*time.Second || p.Waited() != 3*time.Second {
			t.Errorf("waited %v (admission %v, total %v), want 3s", got, adm.Waited, p.Waited())
		}
		if adm.Share != 0.5 || adm.Headroom != 0.9 || !strings.Contains(adm.Note, "halved") {
			t.Errorf("admission %+v, want half a batch after waiting", adm)
		}
	})
}

// TestClosedLoopShrinksAndGrows: the share halves when the headroom falls
// between batches and doubles back while it holds.
func TestClosedLoopShrinksAndGrows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &script{answers: []drain.Headroom{ok(0.9), ok(0.7), ok(0.5), ok(0.5), ok(0.52), ok(0.51), ok(0.5)}}
		p := &drain.ClosedLoop{Receivers: []drain.Receiver{drain.ReceiverFunc("b", r.headroom)}, MinHeadroom: 0.3}
		var shares []float64
		for range 7 {
			adm, err := p.Admit(context.Background(), func(string) { t.Error("waited with headroom above the minimum") })
			if err != nil {
				t.Fatal(err)
			}
			shares = append(shares, adm.Share)
			if adm.Waited != 0 {
				t.Errorf("waited %v with the receiver ready", adm.Waited)
			}
		}
		if p.Waited() != 0 {
			t.Errorf("total wait %v with the receiver always ready", p.Waited())
		}
		if diff := cmp.Diff([]float64{1, 0.5, 0.25, 0.5, 1, 1, 1}, shares); diff != "" {
			t.Errorf("shares (-want +got):\n%s", diff)
		}
	})
}

func TestClosedLoopMinShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var answers []drain.Headroom
		for h := 1.0; h > 0.3; h -= 0.1 {
			answers = append(answers, ok(h))
		}
		r := &script{answers: answers}
		p := &drain.ClosedLoop{Receivers: []drain.Receiver{drain.ReceiverFunc("b", r.headroom)}, MinHeadroom: 0.3, MinShare: 0.2}
		var last float64
		for range len(answers) {
			adm, err := p.Admit(context.Background(), func(string) {})
			if err != nil {
				t.Fatal(err)
			}
			last = adm.Share
		}
		if last != 0.2 {
			t.Errorf("share %v after steady falls, want the floor 0.2", last)
		}
	})
}

func TestClosedLoopTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &script{answers: []drain.Headroom{full(0.1, "SYN queue 90%")}}
		p := &drain.ClosedLoop{Receivers: []drain.Receiver{drain.ReceiverFunc("c", r.headroom)}, MinHeadroom: 0.3, Timeout: 5 * time.Second}
		start := time.Now()
		_, err := p.Admit(context.Background(), func(string) {})
		if !errors.Is(err, drain.ErrPacingTimeout) || !strings.Contains(err.Error(), "SYN queue 90%") {
			t.Fatalf("err = %v, want ErrPacingTimeout with the reason", err)
		}
		if got := time.Since(start); got != 5*time.Second {
			t.Errorf("gave up after %v, want the 5s budget", got)
		}
	})
}

// TestClosedLoopCancelled: the context ending ends the wait at once.
func TestClosedLoopCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &script{answers: []drain.Headroom{full(0.1, "x")}}
		p := &drain.ClosedLoop{Receivers: []drain.Receiver{drain.ReceiverFunc("c", r.headroom)}, MinHeadroom: 0.3}
		ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
		defer cancel()
		_, err := p.Admit(ctx, func(string) {})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestJudge(t *testing.T) {
	readings := []drain.Reading{
		{Receiver: "a", Headroom: ok(0.8)},
		{Receiver: "b", Headroom: ok(0.25)},
		{Receiver: "c", Headroom: drain.Headroom{OK: false, Headroom: 0.1, Limiting: "conntrack table"}},
		{Receiver: "d", Err: errors.New("connection refused")},
	}
	ready, reason, tightest := drain.Judge(readings, 0.3)
	want := "receiver b: headroom 0.25, below --min-headroom 0.30; receiver c: headroom 0.10 (limiting: conntrack table); receiver d: connection refused"
	if ready || reason != want || tightest != 0.1 {
		t.Errorf("Judge = %v, %q, %v;\nwant false, %q, 0.1", ready, reason, tightest, want)
	}
	ready, reason, tightest = drain.Judge(readings[:1], 0.3)
	if !ready || reason != "" || tightest != 0.8 {
		t.Errorf("one good receiver: %v %q %v", ready, reason, tightest)
	}
	_, _, tightest = drain.Judge(readings[3:], 0.3)
	if !math.IsNaN(tightest) {
		t.Errorf("tightest of no answer = %v, want NaN", tightest)
	}
	// No data is not a figure of 0, and never ready.
	ready, reason, tightest = drain.Judge([]drain.Reading{{Receiver: "e", Headroom: drain.Headroom{OK: true, NoData: true}}}, 0.3)
	if ready || reason != "receiver e: no data" || !math.IsNaN(tightest) {
		t.Errorf("no data: %v %q %v, want false, \"receiver e: no data\", NaN", ready, reason, tightest)
	}
}

// headroomServer serves a scripted /api/v1/headroom.
type headroomServer struct {
	*httptest.Server
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	asked   atomic.Int64
	queries []url.Values
}

func newHeadroomServer(t *testing.T, answers ...func(w http.ResponseWriter)) *headroomServer {
	s := &headroomServer{answers: answers}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != drain.HeadroomPath {
			http.NotFound(w, r)
			return
		}
		n := int(s.asked.Add(1)) - 1
		s.mu.Lock()
		s.queries = append(s.queries, r.URL.Query())
		a := s.answers[min(n, len(s.answers)-1)]
		s.mu.Unlock()
		a(w)
	}))
	t.Cleanup(s.Close)
	return s
}

func answer(h drain.Headroom) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{ // a fake server: the client reads it
			"ok": h.OK, "headroom": h.Headroom, "reasons": h.Reasons,
			"limiting": map[string]any{"queue": "accept_queue", "entity": "listener 0.0.0.0:6380", "used": 105, "limit": 128},
			"alerts":   []string{},
		})
	}
}

func status(code int, body string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

func TestNewHTTPReceiver(t *testing.T) {
	for in, want := range map[string]string{
		"http://10.0.0.7:9955":                           "http://10.0.0.7:9955/api/v1/headroom?min=0.3",
		"http://10.0.0.7:9955/":                          "http://10.0.0.7:9955/api/v1/headroom?min=0.3",
		"https://h.example/api/v1/headroom?port=6379":    "https://h.example/api/v1/headroom?min=0.3&port=6379",
		"http://h:9955/api/v1/headroom?min=0.5&fail=503": "http://h:9955/api/v1/headroom?min=0.5&fail=503",
	} {
		r, err := drain.NewHTTPReceiver(in, 0.3)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if r.URL != want {
			t.Errorf("%q became %q, want %q", in, r.URL, want)
		}
	}
	r, _ := drain.NewHTTPReceiver("http://10.0.0.7:9955", 0.3)
	if r.Name() != "10.0.0.7:9955" {
		t.Errorf("name %q", r.Name())
	}
	for _, bad := range []string{"", "10.0.0.7:9955", "ftp://h/x", "http://", "local-ish", "http//h"} {
		if _, err := drain.NewHTTPReceiver(bad, 0.3); err == nil || !strings.Contains(err.Error(), "want an http") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}

func TestHTTPReceiver(t *testing.T) {
	ctx := context.Background()
	s := newHeadroomServer(t, answer(full(0.18, "accept queue of 0.0.0.0:6380 at 82%")))
	r, err := drain.NewHTTPReceiver(s.URL, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	h, err := r.Headroom(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := drain.Headroom{OK: false, Headroom: 0.18, Limiting: "entity=listener 0.0.0.0:6380 limit=128 queue=accept_queue used=105",
		Reasons: []string{"accept queue of 0.0.0.0:6380 at 82%"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("headroom (-want +got):\n%s", diff)
	}
	if got := s.queries[0].Get("min"); got != "0.3" {
		t.Errorf("min=%q sent, want the drain's 0.3", got)
	}

	// A non-2xx answer is an error, retried a bounded number of times.
	s = newHeadroomServer(t, status(http.StatusServiceUnavailable, `{"ok":false,"headroom":0.1}`))
	r, _ = drain.NewHTTPReceiver(s.URL, 0.3)
	r.RetryWait = time.Millisecond
	_, err = r.Headroom(ctx)
	if !errors.Is(err, drain.ErrHeadroomAnswer) || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: err = %v", err)
	}
	if n := s.asked.Load(); n != drain.DefaultAttempts {
		t.Errorf("asked %d times, want %d", n, drain.DefaultAttempts)
	}

	// A failure then an answer: the retry gets it.
	s = newHeadroomServer(t, status(http.StatusOK, "<html>"), answer(ok(0.7)))
	r, _ = drain.NewHTTPReceiver(s.URL, 0.3)
	r.RetryWait = time.Millisecond
	if h, err := r.Headroom(ctx); err != nil || h.Headroom != 0.7 {
		t.Errorf("after a retry: %+v, %v", h, err)
	}

	// Nobody listening.
	s.Close()
	_, err = r.Headroom(ctx)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("closed server: err = %v", err)
	}

	// Too slow: the attempt times out.
	slow := newHeadroomServer(t, func(w http.ResponseWriter) { time.Sleep(200 * time.Millisecond); answer(ok(1))(w) })
	r, _ = drain.NewHTTPReceiver(slow.URL, 0.3)
	r.Attempts, r.AttemptTimeout = 1, 20*time.Millisecond
	if _, err := r.Headroom(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow: err = %v", err)
	}
}

func TestParseHeadroom(t *testing.T) {
	tests := []struct {
		in      string
		want    drain.Headroom
		wantErr string
	}{
		{`{"ok":true,"headroom":0.93}`, drain.Headroom{OK: true, Headroom: 0.93}, ""},
		{`{"ok":false,"headroom":0,"limiting":"conntrack table","reasons":["conntrack table 100% full",""]}`,
			drain.Headroom{Headroom: 0, Limiting: "conntrack table", Reasons: []string{"conntrack table 100% full"}}, ""},
		{`{"ok":true,"headroom":1,"limiting":null,"schema":1,"queues":[{"x":1}]}`, drain.Headroom{OK: true, Headroom: 1}, ""},
		{`{"ok":true,"headroom":0.5,"limiting":["a","b"]}`, drain.Headroom{OK: true, Headroom: 0.5, Limiting: `["a","b"]`}, ""},
		{`{"headroom":0.5}`, drain.Headroom{}, `no "ok"`},
		{`{"ok":true}`, drain.Headroom{}, `no "headroom"`},
		// No data: not ok whatever "ok" says, and no figure.
		{`{"ok":true,"headroom":null,"reasons":["conntrack: no data"]}`, drain.Headroom{NoData: true, Reasons: []string{"conntrack: no data"}}, ""},
		{`{"ok":true,"headroom":"0.5"}`, drain.Headroom{}, "cannot unmarshal"},
		{`{"ok":true,"headroom":1.5}`, drain.Headroom{}, "outside 0..1"},
		{`{"ok":true,"headroom":-0.1}`, drain.Headroom{}, "outside 0..1"},
		{`{"ok":"yes","headroom":0.5}`, drain.Headroom{}, "cannot unmarshal"},
		{`not json`, drain.Headroom{}, "invalid character"},
		{``, drain.Headroom{}, "unexpected end"},
	}
	for _, tt := range tests {
		got, err := drain.ParseHeadroom([]byte(tt.in))
		if tt.wantErr != "" {
			if !errors.Is(err, drain.ErrHeadroomAnswer) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.in, diff)
		}
	}
}

func FuzzParseHeadroom(f *testing.F) {
	f.Add([]byte(`{"ok":true,"headroom":0.93,"limiting":{"queue":"accept_queue","used":1},"reasons":["a"]}`))
	f.Add([]byte(`{"ok":false,"headroom":0,"limiting":"x"}`))
	f.Add([]byte(`{"ok":true,"headroom":1e-300,"limiting":[1,{"a":null}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 64<<10 {
			return
		}
		h, err := drain.ParseHeadroom(b)
		if err != nil {
			if !errors.Is(err, drain.ErrHeadroomAnswer) {
				t.Fatalf("error %v does not wrap ErrHeadroomAnswer", err)
			}
			return
		}
		if math.IsNaN(h.Headroom) || h.Headroom < 0 || h.Headroom > 1 {
			t.Fatalf("headroom %v accepted", h.Headroom)
		}
		for _, r := range h.Reasons {
			if strings.TrimSpace(r) == "" {
				t.Fatalf("empty reason kept: %q", h.Reasons)
			}
		}
	})
}

// TestRunPacedByHTTP drives a drain paced by a receiver served over HTTP:
// it waits while the receiver is not OK (the progress shows why),
// resumes with a halved batch that grows back, then, with a receiver that
// never recovers, gives up after the pacing timeout.
func TestRunPacedByHTTP(t *testing.T) {
	const notOK = "accept queue of 0.0.0.0:6380 at 82%"
	s := newHeadroomServer(t,
		answer(ok(0.9)),                             // batch 1
		answer(full(0.18, notOK)),                   // batch 2 held
		answer(full(0.18, notOK)),                   //
		status(http.StatusBadGateway, "proxy down"), // an error counts as not OK
		status(http.StatusBadGateway, "proxy down"),
		status(http.StatusBadGateway, "proxy down"),
		answer(ok(0.8)), // batch 2: halved
		answer(ok(0.8)), // batch 3: grown back
	)
	r, err := drain.NewHTTPReceiver(s.URL, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	r.RetryWait = time.Millisecond
	srv := newServer(1000)
	m := &method{srv: srv}
	var ev events
	pacer := &drain.ClosedLoop{Receivers: []drain.Receiver{r}, MinHeadroom: 0.3, Poll: 10 * time.Millisecond, Timeout: time.Minute}
	sum, err := drain.Run(context.Background(), drain.Config{Source: srv, Method: m, Pacer: pacer, OnEvent: ev.record,
		Batch: drain.Batch{Count: 100}, Every: 20 * time.Millisecond, Max: 500})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{100, 50, 100, 100, 100, 50}, m.sizes()); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
	var reasons []string
	for _, e := range ev.of(drain.EventWait) {
		reasons = append(reasons, e.Reason)
	}
	host := strings.TrimPrefix(s.URL, "http://")
	want := []string{
		"receiver " + host + ": " + notOK,
		"receiver " + host + ": bad headroom answer: HTTP 502 Bad Gateway (3 attempts)",
	}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("wait reasons (-want +got):\n%s", diff)
	}
	if sum.End != drain.EndMax || sum.Closed != 500 || sum.Waited <= 0 {
		t.Errorf("summary %+v", sum)
	}

	// A receiver that never recovers: the drain gives up.
	s = newHeadroomServer(t, answer(ok(0.9)), answer(full(0.05, notOK)))
	r, _ = drain.NewHTTPReceiver(s.URL, 0.3)
	srv = newServer(1000)
	m = &method{srv: srv}
	pacer = &drain.ClosedLoop{Receivers: []drain.Receiver{r}, MinHeadroom: 0.3, Poll: 10 * time.Millisecond, Timeout: 100 * time.Millisecond}
	sum, err = drain.Run(context.Background(), drain.Config{Source: srv, Method: m, Pacer: pacer,
		Batch: drain.Batch{Count: 100}, Every: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if sum.End != drain.EndPacingTimeout || !errors.Is(sum.Err, drain.ErrPacingTimeout) || sum.Closed != 100 || srv.Len() != 900 {
		t.Errorf("summary %+v, %d left; want a pacing timeout after the first batch", sum, srv.Len())
	}
}

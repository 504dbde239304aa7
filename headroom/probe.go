package headroom

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/internal/errtext"
)

// MaxAnswerSize bounds the body Fetch reads: a Report listing every queue
// of 10,000 listeners fits.
const MaxAnswerSize = 16 << 20

// Fetch GETs the headroom answer at url (a stormwatch's Path, query
// included: see URL) with client (nil: http.DefaultClient) and parses it.
// A status other than 2xx is an error wrapping ErrStatus, a body that is
// not a Report (not JSON, no schema, a newer schema) one wrapping
// ErrAnswer, a network failure the client's error: never a Report that
// is not ok. Bound the call with ctx or the client's Timeout.
func Fetch(ctx context.Context, client *http.Client, url string) (*Report, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("GET %s: %w: %s: %s", url, ErrStatus, resp.Status, errtext.Truncate(string(bytes.TrimSpace(body)), 200))
	}
	if len(body) > MaxAnswerSize {
		return nil, fmt.Errorf("GET %s: %w: larger than %d bytes", url, ErrAnswer, MaxAnswerSize)
	}
	return Parse(body)
}

// Parse reads a Report from its JSON. Errors wrap ErrAnswer.
func Parse(body []byte) (*Report, error) {
	var r Report
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAnswer, err)
	}
	switch {
	case r.Schema == 0:
		return nil, fmt.Errorf("%w: no schema field", ErrAnswer)
	case r.Schema > SchemaVersion:
		return nil, fmt.Errorf("%w: schema %d is newer than this stormwatch reads (%d): upgrade it", ErrAnswer, r.Schema, SchemaVersion)
	}
	return &r, nil
}

// A Prober answers one host's headroom: another host's over HTTP
// (Remote), or this host's (Local).
type Prober interface {
	// Name names the host for people: the URL, or "local".
	Name() string
	// Probe returns the host's Report, or an error when it could not be
	// had (the host unreachable): an error is not "not ok".
	Probe(ctx context.Context) (*Report, error)
}

// Remote is a Prober reading a stormwatch's headroom over HTTP.
type Remote struct {
	// URL is the full headroom URL (see URL).
	URL string
	// Client makes the request (nil: http.DefaultClient).
	Client *http.Client
}

// Name returns the URL.
func (p *Remote) Name() string { return p.URL }

// Probe fetches the Report.
func (p *Remote) Probe(ctx context.Context) (*Report, error) { return Fetch(ctx, p.Client, p.URL) }

// Local is a Prober answering for this host: each Probe takes a sample
// with Sampler, judges the rules once over its History (as `stormwatch
// check` does: alerts whose condition holds count as firing) and computes
// the Report. The first Probe takes two samples Warmup apart, so that
// trends and the rules' rates have two points. Probes are serialised.
// OpenLocal makes one over the kernel; for a caller that samples on its
// own (the daemon), Compute over its History is the same without the
// extra sample.
type Local struct {
	// Sampler samples this host; its History keeps the samples trends
	// and rules read (see Retention).
	Sampler *collector.Sampler
	// Engine judges the rules (nil: no alerts).
	Engine *alerts.Engine
	// Options judge the Report.
	Options Options
	// Host names the host (default: os.Hostname).
	Host string
	// Warmup is the time between the first two samples (default
	// DefaultWarmup; negative: one sample).
	Warmup time.Duration

	mu      sync.Mutex
	sources []collector.Source // closed by Close
}

// DefaultWarmup is Local's default Warmup.
const DefaultWarmup = time.Second

// LocalConfig is what OpenLocal needs.
type LocalConfig struct {
	// Collector configures the kernel sources (Root "" is "/").
	Collector collector.Config
	// Rules are judged at each Probe (alerts.DefaultRules for the
	// built-in ones; none: no alerts).
	Rules []*alerts.Rule
	// Options judge the Reports.
	Options Options
	// Interval is about how often Probe will be called: with the rules'
	// windows it sizes the History (default 1s).
	Interval time.Duration
}

// OpenLocal opens this host's kernel sources (in the caller's network
// namespace) and returns a Local over them. Close releases them.
func OpenLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	sources, err := collector.NewSources(cfg.Collector)
	if err != nil {
		return nil, err
	}
	sc := collector.DefaultSchema()
	r := alerts.Retention(cfg.Rules, cfg.Interval)
	r.Host = max(r.Host, cfg.Interval+DefaultWarmup) // two samples, for rates
	sampler, err := collector.NewSampler(sc, sources, nil, collector.NewHistory(Retention(sc, r, cfg.Options.TrendWindow)))
	if err != nil {
		return nil, errors.Join(err, collector.CloseSources(sources))
	}
	l := &Local{Sampler: sampler, Options: cfg.Options, sources: sources}
	if len(cfg.Rules) > 0 {
		l.Engine = alerts.NewEngine(cfg.Rules, alerts.Options{})
	}
	return l, nil
}

// Close releases the kernel handles of a Local made by OpenLocal.
func (p *Local) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := collector.CloseSources(p.sources)
	p.sources = nil
	return err
}

// Name returns "local".
func (p *Local) Name() string { return "local" }

// Probe samples (twice, Warmup apart, the first time) and judges.
func (p *Local) Probe(ctx context.Context) (*Report, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Sampler == nil {
		return nil, errors.New("headroom: Local without a Sampler")
	}
	if warmup := cmp.Or(p.Warmup, DefaultWarmup); warmup > 0 && p.Sampler.History().Len() == 0 {
		p.Sampler.Sample(ctx, time.Now())
		t := time.NewTimer(warmup)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	now := time.Now()
	p.Sampler.Sample(ctx, now)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := Input{Now: now, Host: p.Host, History: p.Sampler.History()}
	if in.Host == "" {
		in.Host, _ = os.Hostname()
	}
	var ruleErr error
	if p.Engine != nil {
		findings, err := p.Engine.Check(now, in.History)
		in.Alerts, ruleErr = FromFindings(findings), err
	}
	r := Compute(in, p.Options)
	if ruleErr != nil {
		// An alert may be missing: the answer cannot be called ok.
		r.Reasons = append(r.Reasons, "no data: some rules could not be judged: "+errtext.OneLine(ruleErr, errtext.MaxErrorLen))
		r.OK, r.NoData, r.Headroom, r.Limiting = false, true, nil, nil
	}
	return r, nil
}

// Retention extends r so that a History keeps what trends over window
// read: every entity kind with a Queue item for at least window (and the
// host's samples, which hold the kinds' tables, as long).
func Retention(sc *collector.Schema, r collector.Retention, window time.Duration) collector.Retention {
	if window <= 0 {
		window = DefaultTrendWindow
	}
	kinds := make(map[string]time.Duration, len(r.Kinds)+2)
	for k, d := range r.Kinds {
		kinds[k] = d
	}
	var values map[string][]string
	if r.Values != nil {
		values = make(map[string][]string, len(r.Values)+2)
		for k, names := range r.Values {
			values[k] = slices.Clone(names)
		}
	}
	for _, it := range sc.Items() {
		if !it.Queue {
			continue
		}
		if it.Entity != "" {
			kinds[it.Entity] = max(kinds[it.Entity], window)
		}
		// The trends fit the queue's value over the window.
		if kind := cmp.Or(it.Entity, collector.HostKind); values != nil && !slices.Contains(values[kind], it.Value) {
			values[kind] = append(values[kind], it.Value)
		}
	}
	r.Kinds, r.Values = kinds, values
	r.Host = max(r.Host, window)
	return r
}

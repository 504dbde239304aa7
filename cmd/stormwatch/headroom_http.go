package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/headroom"
	"github.com/stormwatch/stormwatch/metrics"
)

// headroomAPI serves GET /api/v1/headroom from the latest sample and the
// engine's alerts: it never touches the kernel. The answer is 200 with
// the JSON whether ok or not, unless ?fail= names the status to answer
// when not ok (Flagger judges a webhook by its status). POST is served as
// GET, its body ignored: Flagger's webhooks POST their payload.
type headroomAPI struct {
	history  *collector.History // nil: no sample yet
	engine   *alerts.Engine     // nil: no alerts
	defaults headroom.Options
	host     string
}

// newHeadroomAPI returns the handler, its defaults from the daemon's
// flags: --headroom.min, and a sample stale after 3 intervals (at least
// headroom.DefaultStaleAfter).
func newHeadroomAPI(h *collector.History, engine *alerts.Engine, f *daemonFlags) *headroomAPI {
	o := headroom.DefaultOptions()
	o.Min = f.headroomMin
	o.StaleAfter = headroomStaleAfter(f.collect.interval)
	host, _ := os.Hostname()
	return &headroomAPI{history: h, engine: engine, defaults: o, host: host}
}

func headroomStaleAfter(interval time.Duration) time.Duration {
	return max(headroom.DefaultStaleAfter, 3*interval)
}

// maxWebhookBody bounds the body of a POST read before it is ignored.
const maxWebhookBody = 1 << 20

func (a *headroomAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxWebhookBody)) // a webhook's body is not read
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "ask with GET (POST is accepted for webhooks)", http.StatusMethodNotAllowed)
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	var req headroom.Request
	if err == nil {
		req, err = headroom.ParseQuery(q, a.defaults)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rep := a.report(time.Now(), req.Options)
	body, err := json.Marshal(rep)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	status := http.StatusOK
	if !rep.OK && req.Fail != 0 {
		status = req.Fail
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n')) // a client gone is nothing to tell
}

// report computes the headroom at now.
func (a *headroomAPI) report(now time.Time, o headroom.Options) *headroom.Report {
	in := headroom.Input{Now: now, Host: a.host, History: a.history}
	if a.engine != nil {
		in.Alerts = headroom.FromEngine(a.engine.Active())
	}
	return headroom.Compute(in, o)
}

// headroomGauge computes the host's headroom (every port, the daemon's
// defaults) on each sampling tick, for /metrics: a scrape then reads a
// pointer instead of ranking every queue, and the figure is the one the
// alerts of the same tick were judged with.
type headroomGauge struct {
	api    *headroomAPI
	latest atomic.Pointer[headroom.Report]
}

func newHeadroomGauge(h *collector.History, engine *alerts.Engine, f *daemonFlags) *headroomGauge {
	return &headroomGauge{api: newHeadroomAPI(h, engine, f)}
}

// update computes the headroom of the latest sample at now. A nil gauge
// does nothing.
func (g *headroomGauge) update(now time.Time) {
	if g == nil {
		return
	}
	o := g.api.defaults
	o.Top = 1 // the metric needs the limiting queue only
	g.latest.Store(g.api.report(now, o))
}

// exporter is the gauge's prometheus.Collector.
func (g *headroomGauge) exporter() *metrics.HeadroomExporter {
	return metrics.NewHeadroomExporter(g.latest.Load, g.api.defaults.StaleAfter)
}

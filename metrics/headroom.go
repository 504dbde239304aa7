package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormwatch/stormwatch/headroom"
)

var (
	headroomRatio = desc("headroom_ratio",
		"Tightest remaining share (0..1) of any queue a wave of new connections fills (conntrack table, each listener's SYN and accept queue, …); absent while data is missing.")
	headroomLimiting = desc("headroom_limiting_info",
		"Always 1: the queue that sets stormwatch_headroom_ratio (queue: checklist item, kind: entity kind, entity: which one; empty for the host's own).",
		"queue", "kind", "entity")
)

// HeadroomExporter exports a host's headroom: stormwatch_headroom_ratio
// and, naming the queue that sets it, one stormwatch_headroom_limiting_info
// series (one per host at a time: its labels name the queue kind and the
// entity, not every label of every kind, so they stay few). Both are
// absent while the Report has no headroom figure (missing data) or is
// older than its staleness bound.
type HeadroomExporter struct {
	latest     func() *headroom.Report
	staleAfter time.Duration
	now        func() time.Time
}

// NewHeadroomExporter returns an exporter over latest, which returns the
// Report computed from the latest sample (nil before the first). A Report
// whose sample is older than staleAfter is not exported.
func NewHeadroomExporter(latest func() *headroom.Report, staleAfter time.Duration) *HeadroomExporter {
	return &HeadroomExporter{latest: latest, staleAfter: staleAfter, now: time.Now}
}

// Describe sends the two descriptors.
func (e *HeadroomExporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- headroomRatio
	ch <- headroomLimiting
}

// Collect sends the headroom of the latest Report.
func (e *HeadroomExporter) Collect(ch chan<- prometheus.Metric) {
	r := e.latest()
	if r == nil || r.Headroom == nil || e.now().Sub(r.Time) > e.staleAfter {
		return
	}
	ch <- prometheus.MustNewConstMetric(headroomRatio, prometheus.GaugeValue, *r.Headroom)
	if l := r.Limiting; l != nil {
		ch <- prometheus.MustNewConstMetric(headroomLimiting, prometheus.GaugeValue, 1, l.ID, l.Kind, l.Entity)
	}
}

package metrics

import (
	"runtime"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormwatch/stormwatch/collector"
)

const namespace = "stormwatch"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

var (
	collectorSuccess  = desc("collector_success", "1 if the source read everything in the last cycle, 0 if it failed or the subsystem is absent.", "collector")
	collectorDuration = desc("collector_duration_seconds", "How long the source took in the last cycle.", "collector")
	collectorAbsent   = desc("collector_absent", "1 if the source has nothing to read on this host (no conntrack module, no Valkey server to poll): its success is 0 though nothing failed.", "collector")
	lastSample        = desc("last_sample_timestamp_seconds", "When the last sampling cycle started.")
	buildInfo         = desc("build_info", "Always 1; labels say which build is running.", "version", "revision", "goversion")
)

// BuildInfo names the running build.
type BuildInfo struct{ Version, Revision string }

// series is one exported value: its descriptor and where its label
// values come from.
type series struct {
	ref    collector.ValueRef
	desc   *prometheus.Desc
	vtype  prometheus.ValueType
	consts []string // constant label values, after the entity's labels
	attrs  []int    // attribute slots whose values follow
	nlabel int      // the entity kind's label count
}

// Exporter is a prometheus.Collector serving the latest Snapshot: every
// value a source declares with a Metric name becomes a series (labelled by
// its entity's labels), plus each source's success and duration. A scrape
// reads memory only, never the kernel.
type Exporter struct {
	latest func() *collector.Snapshot
	build  BuildInfo
	series []series
	descs  []*prometheus.Desc
}

// NewExporter returns an Exporter over latest, which returns the newest
// Snapshot of sc or nil before the first cycle.
func NewExporter(sc *collector.Schema, latest func() *collector.Snapshot, build BuildInfo) *Exporter {
	e := &Exporter{latest: latest, build: build}
	byMetric := map[string]*prometheus.Desc{}
	for _, ref := range sc.AllValues() {
		if ref.Metric == "" {
			continue
		}
		k, _ := sc.Kind(ref.Entity)
		var labels []string
		if ref.KindIndex != 0 {
			for _, l := range k.Labels {
				labels = append(labels, l.Name)
			}
		}
		s := series{ref: ref, vtype: prometheus.GaugeValue, nlabel: len(labels)}
		if ref.Kind == collector.Counter {
			s.vtype = prometheus.CounterValue
		}
		for i := 0; i+1 < len(ref.MetricLabels); i += 2 {
			labels = append(labels, ref.MetricLabels[i])
			s.consts = append(s.consts, ref.MetricLabels[i+1])
		}
		attrs := sc.Attrs(ref.Entity)
		for i := 0; i+1 < len(ref.AttrLabels); i += 2 {
			labels = append(labels, ref.AttrLabels[i])
			s.attrs = append(s.attrs, slices.Index(attrs, ref.AttrLabels[i+1]))
		}
		d, ok := byMetric[ref.Metric]
		if !ok {
			help := ref.MetricHelp
			if help == "" {
				help = ref.Help
			}
			d = desc(ref.Metric, help, labels...)
			byMetric[ref.Metric] = d
			e.descs = append(e.descs, d)
		}
		s.desc = d
		e.series = append(e.series, s)
	}
	e.descs = append(e.descs, collectorSuccess, collectorDuration, collectorAbsent, lastSample, buildInfo)
	return e
}

// Describe sends every descriptor the Exporter may emit.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range e.descs {
		ch <- d
	}
}

// Collect sends the metrics of the latest Snapshot. Values that were not
// read (NaN) are left out rather than exported as NaN.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(buildInfo, prometheus.GaugeValue, 1,
		e.build.Version, e.build.Revision, runtime.Version())
	s := e.latest()
	if s == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(lastSample, prometheus.GaugeValue, float64(s.Time.UnixNano())/1e9)
	for _, r := range s.Sources {
		if r.Target != "" {
			continue // a target's own result: its source's summary follows
		}
		ok := 0.0
		if r.Success {
			ok = 1
		}
		absent := 0.0
		if r.NoData {
			absent = 1
		}
		ch <- prometheus.MustNewConstMetric(collectorSuccess, prometheus.GaugeValue, ok, r.Name)
		ch <- prometheus.MustNewConstMetric(collectorDuration, prometheus.GaugeValue, r.Duration.Seconds(), r.Name)
		ch <- prometheus.MustNewConstMetric(collectorAbsent, prometheus.GaugeValue, absent, r.Name)
	}
	lv := make([]string, 0, 8)
	for i := range e.series {
		se := &e.series[i]
		if se.ref.KindIndex == 0 {
			v := s.Host(se.ref.Slot)
			if !collector.Present(v) {
				continue
			}
			lv = append(lv[:0], se.consts...)
			for _, a := range se.attrs {
				lv = append(lv, s.HostAttr(s.Schema().Attrs(collector.HostKind)[a]))
			}
			ch <- prometheus.MustNewConstMetric(se.desc, se.vtype, v, lv...)
			continue
		}
		t := s.Table(se.ref.KindIndex)
		for row := range t.Len() {
			v := t.Value(row, se.ref.Slot)
			if !collector.Present(v) {
				continue
			}
			lv = append(append(lv[:0], t.Labels(row)...), se.consts...)
			for _, a := range se.attrs {
				lv = append(lv, t.Attr(row, a))
			}
			ch <- prometheus.MustNewConstMetric(se.desc, se.vtype, v, lv...)
		}
	}
}

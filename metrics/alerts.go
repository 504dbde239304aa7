package metrics

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormwatch/stormwatch/alerts"
)

// AlertsExporter exports the pending and firing alerts as
// stormwatch_alerts{alertname,alertstate,severity,...}, like Prometheus's
// ALERTS series. Rules carry labels of their own, so the label names are
// the union over the alerts of the moment; an alert without one of them
// has it empty (which Prometheus reads as absent).
type AlertsExporter struct {
	active func() []alerts.Alert
}

// NewAlertsExporter returns an exporter over active, which returns the
// pending and firing alerts (alerts.Engine.Active).
func NewAlertsExporter(active func() []alerts.Alert) *AlertsExporter {
	return &AlertsExporter{active: active}
}

const alertsHelp = "Pending and firing alerts of stormwatch's rules: 1 per alert, labelled with its state, severity and labels."

// Describe sends nothing: the label names vary with the rules, so the
// exporter is unchecked.
func (e *AlertsExporter) Describe(chan<- *prometheus.Desc) {}

// Collect sends one series per pending or firing alert.
func (e *AlertsExporter) Collect(ch chan<- prometheus.Metric) {
	active := e.active()
	if len(active) == 0 {
		return
	}
	names := map[string]bool{"alertstate": true}
	for _, a := range active {
		for k := range a.Labels {
			names[k] = true
		}
	}
	labels := slices.Sorted(maps.Keys(names))
	desc := prometheus.NewDesc(namespace+"_alerts", alertsHelp, labels, nil)
	values := make([]string, len(labels))
	for _, a := range active {
		for i, k := range labels {
			if k == "alertstate" {
				values[i] = a.State.String()
			} else {
				values[i] = a.Labels[k]
			}
		}
		m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, 1, values...)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(desc, err)
			continue
		}
		ch <- m
	}
}

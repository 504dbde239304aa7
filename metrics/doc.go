// Package metrics exposes Snapshots as Prometheus metrics.
//
// Exporter is a prometheus.Collector over a function returning the latest
// Snapshot: a scrape reads memory only, never the kernel, so it costs the
// same whatever the host's socket count and cannot pile up kernel work when
// scrapes come fast. Every metric is a const metric built from precomputed
// descriptors, so the series of a listener that closed vanish on the next
// scrape. Values that were not read (NaN in the Snapshot) are left out
// rather than exported as NaN.
package metrics

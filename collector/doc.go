// Package collector samples the kernel's view of a connection storm (and
// the servers behind it) into Snapshots.
//
// Each source is one file that declares what it measures (Declaration:
// values, entity kinds, checklist items) and fills it (Source.Collect, on
// the sampling tick; TargetSource.Poll, for things that can hang, on
// goroutines of their own). The table in source.go lists the built-in
// kernel sources in the order they run. A Schema lays the declarations
// out; a Sampler runs the sources into an immutable Snapshot, records each
// source's success and duration, adds it to a History bounded by what the
// rules need (Retention) and publishes it for readers that never touch the
// kernel.
//
// A value that was not read, whose source failed, or that is older than
// its staleness bound is NaN: no data, never an old value. A subsystem the
// host does not have returns ErrNoData.
//
// Everything is read in the caller's network namespace. docs/design.md
// describes the design; the README the metrics.
package collector

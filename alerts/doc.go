// Package alerts turns the Snapshots the collector keeps in a History into
// alerts: it loads and validates alerting rules (Load: strict YAML, every
// error with its line and column), evaluates them every sample with the
// state machine of Prometheus alerting rules (Engine.Eval), ships the
// built-in connection-storm checklist (DefaultRules) and sends alerts to
// Alertmanager (Notifier).
//
// What a condition may name comes from the sources' declarations
// (Vocabulary): a rule's scope is an entity kind, evaluated once per
// entity and labelled by its labels; host values are visible in every
// scope. A condition that reads a value that was not read has no data: it
// never fires, and an alert whose data is missing keeps its state for up
// to Options.NoDataHold.
//
// The package returns errors and never logs; only the Notifier touches the
// network. Conditions cannot read the clock: time is Eval's argument. See
// docs/design.md for the functions, no-data handling and the SYN queue
// approximation, and the README for the rules file format.
package alerts

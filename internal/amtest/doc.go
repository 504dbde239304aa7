// Package amtest runs a real Alertmanager (Debian's
// prometheus-alertmanager) for tests: on a port of 127.0.0.1, without
// clustering, stopped and started again at will, in the test's own
// network namespace or in one it made.
package amtest

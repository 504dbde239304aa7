// Package deploy holds what a host needs to run stormwatch in production and
// what a fleet needs to watch it: the hardened systemd unit and its
// environment file (systemd/), Prometheus fleet rules, their unit tests and a
// scrape example (prometheus/), a Grafana dashboard (grafana/), and the Debian
// package: nfpm.yaml, the maintainer scripts (deb/), manpage.sh and the
// `make deb` recipe deb.mk. README.md is the installation guide.
//
// The package has no Go code of its own. Its tests check these files with the
// programs that consume them (systemd-analyze, promtool, prometheus) and
// check every metric name the rules and the dashboard use against what
// stormwatch exports (the /metrics golden files in metrics/testdata plus the
// few metrics registered only at run time).
//
// A test that needs a program skips, naming the Debian package that provides
// it, when the program is absent, and fails instead when the environment
// variable CI is set. Tests that build stormwatch or start processes skip
// under -short.
package deploy

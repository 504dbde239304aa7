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
// TestUnitInContainer proves the packaged unit where it runs: it boots a
// real systemd with systemd-nspawn on a cached Debian minbase root (built
// with debootstrap from the host's apt mirror, kept under the user cache
// directory and mounted under a throw-away overlay), installs the built .deb
// and runs the checks of internal/unitcheck there: start through
// Type=notify, a dynamic user with exactly CAP_NET_ADMIN, every source
// inside the sandbox (ctnetlink included), reload, the watchdog and a taken
// port. STORMWATCH_UNITCHECK_BREAK=all runs the negative runs instead: one
// drop-in per check that removes its precondition, each of which must be
// caught.
//
// A test that needs a program, root or a kernel feature skips, naming what
// is missing (the Debian package for a program), and fails instead under
// CI=true (internal/testenv). Tests that build stormwatch or start
// processes skip under -short.
package deploy

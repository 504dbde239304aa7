// Package lab holds stormwatch's end-to-end storm scenarios: tests that
// run the real daemon inside a network namespace against storms made by
// internal/stormlab (an accept queue overflowing on a stalled
// redis-server, a SYN flood with and without SYN cookies, a conntrack
// table filling up, a reconnection storm, benign churn) and check, as a
// user would, that its numbers match ss and conntrack, that the damage
// counters move when and only when they should, and that the right alert
// fires before the damage and nothing fires on benign load.
//
// The tests need root and the tools .ci/run installs (iproute2, nftables,
// conntrack, redis-server); they skip, saying why, without them, and in
// -short mode, and fail instead when the environment variable CI is set
// and a tool is missing. Each test makes its own namespace; the
// conntrack test lowers the global nf_conntrack_max and restores it.
package lab

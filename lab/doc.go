// Package lab holds stormwatch's end-to-end storm scenarios: tests that
// run the real daemon inside a network namespace against storms made by
// internal/stormlab (an accept queue overflowing on a stalled
// redis-server, a SYN flood with and without SYN cookies, a conntrack
// table filling up, a reconnection storm, benign churn) and check, as a
// user would, that its numbers match ss and conntrack, that the damage
// counters move when and only when they should, and that the right alert
// fires before the damage and nothing fires on benign load.
//
// latency_test.go times the warnings of a daemon run at its default flags,
// five runs each, from kernel timestamps: SynQueueNearFull within 1.5 s of
// the first SYN of an hping3 flood (about 10,000 SYNs a second from a
// spoofed 127.0.0.0/8 source whose SYN-ACKs nftables drops), and
// AcceptQueueNearFull at least 1 s before the first overflow of a stalled
// redis-server receiving 20 clients a second. About a minute and a half.
//
// The tests need root and the tools .ci/run installs (iproute2, nftables,
// conntrack, redis-server, hping3); they skip, saying why, without them, and in
// -short mode, and fail instead when the environment variable CI is set
// and a tool is missing. Each test makes its own namespace; the
// conntrack test lowers the global nf_conntrack_max and restores it.
package lab

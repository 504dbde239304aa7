// Package unitcheck checks the packaged systemd unit where it runs: under a
// real systemd, as PID 1 of a container. deploy's TestUnitInContainer boots
// a Debian container with systemd-nspawn, and the static program in
// ./runner, started there by a oneshot unit, installs the stormwatch .deb,
// runs the checks below, writes a [Report] (JSON) into the results
// directory bound from the host and ends the container with
// `systemctl exit N`, N the number of failed checks.
//
// The checks, in order (each names the unit settings it proves):
//
//   - [CheckStart]: `systemctl enable --now stormwatch` returns once the unit
//     is active: Type=notify, the daemon's READY=1 reached systemd.
//   - [CheckIdentity]: the daemon runs as a dynamic user (a UID systemd
//     allocates, 61184–65519) with exactly CAP_NET_ADMIN effective,
//     permitted, ambient and bounding, no new privileges and a seccomp
//     filter, read from /proc/PID/status.
//   - [CheckSources]: inside the sandbox (ProtectProc, SystemCallFilter,
//     RestrictAddressFamilies, DynamicUser) every source the container has
//     reports stormwatch_collector_success 1 and a listener the check opens
//     appears in /metrics with its backlog; then, with /proc/net/stat hidden
//     from the daemon as on a kernel without CONFIG_NF_CONNTRACK_PROCFS,
//     the conntrack statistics still succeed over ctnetlink, which is what
//     CAP_NET_ADMIN is for.
//   - [CheckReload]: `systemctl reload` makes the daemon load a changed
//     config file: the reload timestamp moves and the rule count follows
//     the file, with the same MainPID.
//   - [CheckWatchdog]: after SIGSTOP of the daemon, systemd's watchdog kills
//     it and a new process starts within WatchdogSec + RestartSec.
//   - [CheckPortTaken]: with the web port taken, `systemctl start` fails
//     (exit status 3, no READY=1) and the unit is never active while the
//     port stays taken; once the port is free, Restart=on-failure brings it
//     back.
//
// Limits the report states as notes instead of checking: on hosts whose
// cgroup v1 memory and pids controllers are read-only inside the container,
// MemoryMax and TasksMax are configured but not enforced there.
//
// [Mutations] are drop-ins that each remove one check's precondition, for
// showing that the check fails when it should (STORMWATCH_UNITCHECK_BREAK
// in the test).
package unitcheck

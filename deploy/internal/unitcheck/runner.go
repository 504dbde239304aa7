package unitcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// What the package installs and the unit uses.
const (
	// Unit is the packaged unit.
	Unit = "stormwatch.service"
	// WebPort is the daemon's default web port.
	WebPort = 9955
	// ConfigFile is the packaged config file.
	ConfigFile = "/etc/stormwatch/stormwatch.yml"
	// MutationDropIn is where the runner installs a mutation's drop-in.
	MutationDropIn = "/etc/systemd/system/stormwatch.service.d/50-mutation.conf"
)

// systemd allocates dynamic users from this range (systemd.exec(5),
// DynamicUser=).
const (
	dynamicUIDMin = 61184
	dynamicUIDMax = 65519
)

// capNetAdmin is CAP_NET_ADMIN's bit in the Cap* masks of /proc/PID/status.
const capNetAdmin = uint64(1) << unix.CAP_NET_ADMIN

// Bounds of the checks. The daemon starts in about a second; the
// allowances are for a loaded 2-core machine.
const (
	startTimeout     = 150 * time.Second // systemctl start: TimeoutStartSec (90s) and some
	startAllowance   = 15 * time.Second  // a restarted daemon's start until READY=1
	abortAllowance   = 3 * time.Second   // watchdog SIGABRT until the process is gone
	scrapeWait       = 15 * time.Second  // until a new listener or value shows in /metrics
	listenerBacklog  = 17                // the check listener's backlog: its accept queue limit
	portTakenObserve = 2                 // RestartSec periods the unit is watched with the port taken
)

// Runner runs the checks inside the container.
type Runner struct {
	Deb        string    // the stormwatch .deb to install
	DropIn     string    // a mutation's drop-in content, installed with the package ("": none)
	MetricsURL string    // the daemon's /metrics; "": http://127.0.0.1:9955/metrics
	Log        io.Writer // the runner's log: every command and its output
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// Run installs the package and runs every check.
func (r *Runner) Run(ctx context.Context) Report {
	if r.MetricsURL == "" {
		r.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", WebPort)
	}
	var rep Report
	if err := r.install(ctx); err != nil {
		for _, name := range Checks {
			rep.Checks = append(rep.Checks, Result{Name: name, Detail: "not run: " + err.Error()})
		}
		return rep
	}
	checks := map[string]func(context.Context) (string, error){
		CheckStart:     r.checkStart,
		CheckIdentity:  r.checkIdentity,
		CheckSources:   r.checkSources,
		CheckReload:    r.checkReload,
		CheckWatchdog:  r.checkWatchdog,
		CheckPortTaken: r.checkPortTaken,
	}
	for _, name := range Checks {
		r.logf("=== check %s", name)
		start := time.Now()
		detail, err := checks[name](ctx)
		res := Result{Name: name, OK: err == nil, Detail: detail, Seconds: time.Since(start).Seconds()}
		if err != nil {
			res.Detail = err.Error()
			if detail != "" {
				res.Detail += " (" + detail + ")"
			}
		}
		r.logf("=== %s ok=%v: %s", name, res.OK, res.Detail)
		rep.Checks = append(rep.Checks, res)
		if name == CheckIdentity {
			rep.Notes = append(rep.Notes, r.resourceNotes(ctx)...)
		}
	}
	return rep
}

// install installs the package and the mutation's drop-in, if any.
func (r *Runner) install(ctx context.Context) error {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := r.command(ictx, "dpkg", "-i", r.Deb); err != nil {
		return fmt.Errorf("the package does not install: %w", err)
	}
	if r.DropIn == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(MutationDropIn), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(MutationDropIn, []byte(r.DropIn), 0o644); err != nil {
		return err
	}
	r.logf("mutation drop-in %s:\n%s", MutationDropIn, indent(r.DropIn))
	_, err := r.systemctl(ctx, time.Minute, "daemon-reload")
	return err
}

// checkStart enables and starts the unit and checks it is active through
// Type=notify.
func (r *Runner) checkStart(ctx context.Context) (string, error) {
	start := time.Now()
	if _, err := r.systemctl(ctx, startTimeout, "enable", "--now", Unit); err != nil {
		return "", err
	}
	took := time.Since(start)
	p, err := r.show(ctx, "Type", "ActiveState", "SubState", "UnitFileState", "MainPID")
	if err != nil {
		return "", err
	}
	var errs []error
	if p["Type"] != "notify" {
		errs = append(errs, fmt.Errorf("unit Type=%s, want notify", p["Type"]))
	}
	if p["ActiveState"] != "active" || p["SubState"] != "running" {
		errs = append(errs, fmt.Errorf("state %s (%s) after systemctl returned, want active (running)", p["ActiveState"], p["SubState"]))
	}
	if p["UnitFileState"] != "enabled" {
		errs = append(errs, fmt.Errorf("UnitFileState=%s, want enabled", p["UnitFileState"]))
	}
	if p["MainPID"] == "0" {
		errs = append(errs, errors.New("no MainPID"))
	}
	return fmt.Sprintf("systemctl enable --now returned after %.2fs with the unit %s (%s), Type=%s, MainPID %s, %s",
		took.Seconds(), p["ActiveState"], p["SubState"], p["Type"], p["MainPID"], p["UnitFileState"]), errors.Join(errs...)
}

// checkIdentity reads the daemon's identity from /proc/PID/status.
func (r *Runner) checkIdentity(ctx context.Context) (string, error) {
	pid := r.mainPID(ctx)
	if pid == 0 {
		return "", errors.New("the unit has no MainPID")
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := parseStatus(f)
	if err != nil {
		return "", err
	}
	return describeIdentity(st), identityErr(st)
}

func describeIdentity(st procStatus) string {
	return fmt.Sprintf("uid %d gid %d, CapEff %016x CapPrm %016x CapAmb %016x CapBnd %016x, NoNewPrivs %d, Seccomp %d",
		st.UID[1], st.GID[1], st.CapEff, st.CapPrm, st.CapAmb, st.CapBnd, st.NoNewPrivs, st.Seccomp)
}

// identityErr says how st differs from a dynamic user holding exactly
// CAP_NET_ADMIN, without new privileges, under a seccomp filter.
func identityErr(st procStatus) error {
	var errs []error
	for _, ids := range []struct {
		name string
		v    [4]uint64
	}{{"uid", st.UID}, {"gid", st.GID}} {
		for _, id := range ids.v {
			if id != ids.v[0] || id < dynamicUIDMin || id > dynamicUIDMax {
				errs = append(errs, fmt.Errorf("%s %v: want one dynamic id (%d-%d)", ids.name, ids.v, dynamicUIDMin, dynamicUIDMax))
				break
			}
		}
	}
	for _, c := range []struct {
		name string
		v    uint64
	}{{"CapEff", st.CapEff}, {"CapPrm", st.CapPrm}, {"CapAmb", st.CapAmb}, {"CapBnd", st.CapBnd}} {
		if c.v != capNetAdmin {
			errs = append(errs, fmt.Errorf("%s %016x, want exactly CAP_NET_ADMIN %016x", c.name, c.v, capNetAdmin))
		}
	}
	if st.NoNewPrivs != 1 {
		errs = append(errs, fmt.Errorf("NoNewPrivs %d, want 1", st.NoNewPrivs))
	}
	if st.Seccomp != 2 {
		errs = append(errs, fmt.Errorf("seccomp mode %d, want 2 (filter)", st.Seccomp))
	}
	return errors.Join(errs...)
}

// resourceNotes says whether MemoryMax and TasksMax are enforced on the
// daemon's cgroup here.
func (r *Runner) resourceNotes(ctx context.Context) []string {
	pid := r.mainPID(ctx)
	p, err := r.show(ctx, "MemoryMax", "TasksMax", "ControlGroup")
	if err != nil || pid == 0 {
		return []string{fmt.Sprintf("MemoryMax and TasksMax not examined: %v (MainPID %d)", err, pid)}
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return []string{fmt.Sprintf("MemoryMax and TasksMax not examined: %v", err)}
	}
	return []string{
		limitNote("MemoryMax", p["MemoryMax"], "memory", "memory.max", "memory.limit_in_bytes", string(cg), p["ControlGroup"]),
		limitNote("TasksMax", p["TasksMax"], "pids", "pids.max", "pids.max", string(cg), p["ControlGroup"]),
	}
}

// limitNote says whether the limit systemd configured for setting is in
// force in the controller's file of the process's cgroup.
func limitNote(setting, configured, controller, v2File, v1File, procCgroup, unitCgroup string) string {
	for _, line := range strings.Split(strings.TrimSpace(procCgroup), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var file string
		switch {
		case slices.Contains(strings.Split(f[1], ","), controller):
			file = filepath.Join("/sys/fs/cgroup", controller, f[2], v1File)
		case f[0] == "0" && f[1] == "":
			ctrls, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", f[2], "cgroup.controllers"))
			if err != nil || !slices.Contains(strings.Fields(string(ctrls)), controller) {
				continue
			}
			file = filepath.Join("/sys/fs/cgroup", f[2], v2File)
		default:
			continue
		}
		b, err := os.ReadFile(file)
		got := strings.TrimSpace(string(b))
		if err == nil && got == configured {
			return fmt.Sprintf("%s=%s enforced: %s reads %s", setting, configured, file, got)
		}
		return fmt.Sprintf("NOT ENFORCED HERE: %s=%s is configured (systemctl show), but the daemon's %s cgroup is %q, not the unit's %q, and %s reads %q (%v): this container's %s controller is read-only (cgroup v1), so the limit is not tested here",
			setting, configured, controller, f[2], unitCgroup, file, got, err, controller)
	}
	return fmt.Sprintf("NOT ENFORCED HERE: %s=%s is configured (systemctl show), but the %s controller is not available to the daemon's cgroup in this container, so the limit is not tested here",
		setting, configured, controller)
}

// checkSources checks every source the container has succeeds, a
// listener shows, and the conntrack statistics succeed over ctnetlink
// when /proc/net/stat is hidden.
func (r *Runner) checkSources(ctx context.Context) (string, error) {
	port, closeListener, err := listenBacklog(listenerBacklog)
	if err != nil {
		return "", err
	}
	defer closeListener()
	want := []string{"sysctl", "tcpstat", "listeners"}
	_, err = os.Stat("/proc/sys/net/netfilter/nf_conntrack_max")
	haveConntrack := err == nil
	if haveConntrack {
		want = append(want, "conntrack", "conntrack_stats")
	}
	var got string
	err = poll(ctx, scrapeWait, 500*time.Millisecond, func() error {
		e, err := r.scrape(ctx)
		if err != nil {
			return err
		}
		if got, err = sourcesOK(e, want); err != nil {
			return err
		}
		v, ok := e.value("stormwatch_listener_accept_queue_limit", "addr", "127.0.0.1", "port", strconv.Itoa(port))
		if !ok || v != listenerBacklog {
			return fmt.Errorf("stormwatch_listener_accept_queue_limit{addr=127.0.0.1,port=%d} = %v (present %v), want %d", port, v, ok, listenerBacklog)
		}
		return nil
	})
	if err != nil {
		return got, err
	}
	detail := fmt.Sprintf("%s; listener 127.0.0.1:%d shown with accept queue limit %d", got, port, listenerBacklog)
	if !haveConntrack {
		return detail + "; no conntrack in this kernel: the ctnetlink fallback is not tested", nil
	}
	ct, err := r.checkCtnetlink(ctx)
	return detail + "; " + ct, err
}

// sourcesOK checks stormwatch_collector_success is 1 for every source the
// container has (stormwatch_collector_absent says which it has not) and
// that the wanted ones are there.
func sourcesOK(e exposition, want []string) (string, error) {
	absent := map[string]bool{}
	for _, s := range e["stormwatch_collector_absent"] {
		absent[s.labels["collector"]] = s.value == 1
	}
	var ok, failed []string
	for _, s := range e["stormwatch_collector_success"] {
		switch name := s.labels["collector"]; {
		case s.value == 1:
			ok = append(ok, name)
		case absent[name]:
			// Nothing to read here (no Valkey server in the container).
		default:
			failed = append(failed, name)
		}
	}
	slices.Sort(ok)
	slices.Sort(failed)
	got := fmt.Sprintf("stormwatch_collector_success 1 for %s", strings.Join(ok, ", "))
	var errs []error
	if len(failed) > 0 {
		errs = append(errs, fmt.Errorf("stormwatch_collector_success 0 for %s", strings.Join(failed, ", ")))
	}
	for _, w := range want {
		if !slices.Contains(ok, w) && !slices.Contains(failed, w) {
			errs = append(errs, fmt.Errorf("no stormwatch_collector_success for %s", w))
		}
	}
	return got, errors.Join(errs...)
}

// ctnetlinkRoot is a proc tree for --path.root without net/stat: the
// daemon then finds no /proc/net/stat/nf_conntrack, as on kernels built
// without CONFIG_NF_CONNTRACK_PROCFS, and reads the conntrack statistics
// over ctnetlink. Everything else in it leads to the real /proc: sys to
// /proc/sys, and self to "1", a link to /proc/self (prometheus/procfs
// reads self's target as a PID).
const ctnetlinkRoot = "/run/unitcheck-root"

// EnvironmentFile is the packaged unit's environment file, where an
// operator adds flags (STORMWATCH_ARGS).
const EnvironmentFile = "/etc/default/stormwatch"

// checkCtnetlink restarts the daemon with --path.root=ctnetlinkRoot, as an
// operator passes flags, and checks the conntrack statistics succeed over
// ctnetlink; then restores the environment file and restarts the daemon.
func (r *Runner) checkCtnetlink(ctx context.Context) (detail string, err error) {
	proc := filepath.Join(ctnetlinkRoot, "proc")
	if err := os.MkdirAll(filepath.Join(proc, "net"), 0o755); err != nil {
		return "", err
	}
	for link, target := range map[string]string{"sys": "/proc/sys", "self": "1", "1": "/proc/self"} {
		if err := os.Symlink(target, filepath.Join(proc, link)); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	env, err := os.ReadFile(EnvironmentFile)
	if err != nil {
		return "", err
	}
	defer func() {
		// The next checks need the daemon as packaged.
		rerr := os.WriteFile(EnvironmentFile, env, 0o644)
		if rerr == nil {
			_, rerr = r.systemctl(ctx, startTimeout, "restart", Unit)
		}
		if rerr != nil {
			err = errors.Join(err, fmt.Errorf("restoring %s: %w", EnvironmentFile, rerr))
		}
	}()
	args := "STORMWATCH_ARGS=\"--path.root=" + ctnetlinkRoot + "\"\n"
	if err := os.WriteFile(EnvironmentFile, append(env, args...), 0o644); err != nil {
		return "", err
	}
	if _, err := r.systemctl(ctx, startTimeout, "restart", Unit); err != nil {
		return "", fmt.Errorf("with --path.root=%s: %w", ctnetlinkRoot, err)
	}
	pid := r.mainPID(ctx)
	if pid == 0 {
		return "", fmt.Errorf("with --path.root=%s: the unit has no MainPID", ctnetlinkRoot)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "", err
	}
	if !strings.Contains(string(cmdline), "--path.root="+ctnetlinkRoot) {
		return "", fmt.Errorf("the daemon was not started with --path.root=%s (cmdline %q)", ctnetlinkRoot, cmdline)
	}
	var got string
	err = poll(ctx, scrapeWait, 500*time.Millisecond, func() error {
		e, err := r.scrape(ctx)
		if err != nil {
			return err
		}
		got, err = sourcesOK(e, []string{"sysctl", "tcpstat", "conntrack", "conntrack_stats"})
		if err != nil {
			return fmt.Errorf("with no /proc/net/stat/nf_conntrack (as on a kernel without CONFIG_NF_CONNTRACK_PROCFS), conntrack_stats reads ctnetlink, which needs CAP_NET_ADMIN: %w", err)
		}
		return nil
	})
	if err != nil {
		return got, err
	}
	return "with no /proc/net/stat/nf_conntrack for the daemon (--path.root), conntrack_stats succeeded over ctnetlink: " + got, nil
}

// listenBacklog opens a TCP listener on 127.0.0.1 with the given backlog
// (net.Listen always asks for somaxconn).
func listenBacklog(backlog int) (port int, closeFn func(), err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("socket: %w", err)
	}
	closeFn = func() { unix.Close(fd) }
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		closeFn()
		return 0, nil, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		closeFn()
		return 0, nil, fmt.Errorf("listen: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		closeFn()
		return 0, nil, fmt.Errorf("getsockname: %w", err)
	}
	return sa.(*unix.SockaddrInet4).Port, closeFn, nil
}

var ruleNameRE = regexp.MustCompile(`(?m)^\s*- name: (\S+)$`)

// checkReload changes the config file, reloads the unit and checks the
// daemon took up the new rules.
func (r *Runner) checkReload(ctx context.Context) (string, error) {
	pid := r.mainPID(ctx)
	if pid == 0 {
		return "", errors.New("the unit has no MainPID")
	}
	e, err := r.scrape(ctx)
	if err != nil {
		return "", err
	}
	ts0, ok1 := e.value("stormwatch_config_last_reload_success_timestamp_seconds")
	rules0, ok2 := e.value("stormwatch_rules")
	if !ok1 || !ok2 {
		return "", errors.New("no stormwatch_config_last_reload_success_timestamp_seconds or stormwatch_rules in /metrics")
	}
	// Leave out the first built-in rule's name: `stormwatch rules` with
	// the new file says how many rules remain.
	out, err := r.command(ctx, "/usr/bin/stormwatch", "rules")
	if err != nil {
		return "", err
	}
	m := ruleNameRE.FindStringSubmatch(out)
	if m == nil {
		return "", errors.New("stormwatch rules printed no rule")
	}
	cfg := fmt.Sprintf("default_rules: true\ndisabled_rules: [%s]\n", m[1])
	if err := os.WriteFile(ConfigFile, []byte(cfg), 0o644); err != nil {
		return "", err
	}
	out, err = r.command(ctx, "/usr/bin/stormwatch", "rules", "--config="+ConfigFile)
	if err != nil {
		return "", err
	}
	want := float64(len(ruleNameRE.FindAllString(out, -1)))
	if want == rules0 {
		return "", fmt.Errorf("disabling %s leaves %v rules, as before: the check cannot tell a reload", m[1], want)
	}
	if _, err := r.systemctl(ctx, time.Minute, "reload", Unit); err != nil {
		return "", err
	}
	var ts, rules, okv float64
	err = poll(ctx, scrapeWait, 250*time.Millisecond, func() error {
		e, err := r.scrape(ctx)
		if err != nil {
			return err
		}
		ts, _ = e.value("stormwatch_config_last_reload_success_timestamp_seconds")
		rules, _ = e.value("stormwatch_rules")
		okv, _ = e.value("stormwatch_config_last_reload_successful")
		if ts <= ts0 || rules != want || okv != 1 {
			return fmt.Errorf("after systemctl reload: reload timestamp %.3f (before %.3f), stormwatch_rules %v (want %v), last reload successful %v",
				ts, ts0, rules, want, okv)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if now := r.mainPID(ctx); now != pid {
		return "", fmt.Errorf("MainPID changed from %d to %d: reload restarted the daemon", pid, now)
	}
	return fmt.Sprintf("disabled_rules: [%s] + systemctl reload: reload timestamp moved %.3fs, stormwatch_rules %v -> %v, same MainPID %d",
		m[1], ts-ts0, rules0, rules, pid), nil
}

// checkWatchdog stops the daemon with SIGSTOP and waits for the watchdog
// to restart it.
func (r *Runner) checkWatchdog(ctx context.Context) (string, error) {
	p, err := r.show(ctx, "MainPID", "WatchdogUSec", "RestartUSec", "NRestarts", "ActiveState")
	if err != nil {
		return "", err
	}
	pid, _ := strconv.Atoi(p["MainPID"])
	if pid == 0 || p["ActiveState"] != "active" {
		return "", fmt.Errorf("the unit is %s with MainPID %d, want active", p["ActiveState"], pid)
	}
	wd, err := parseUSec(p["WatchdogUSec"])
	if err != nil {
		return "", err
	}
	restart, err := parseUSec(p["RestartUSec"])
	if err != nil {
		return "", err
	}
	n0, _ := strconv.Atoi(p["NRestarts"])
	// The bound for a new process to start: the watchdog fires at most
	// WatchdogSec after the last ping (before the SIGSTOP), then the
	// daemon is killed and restarted RestartSec later.
	startBound := wd + restart + abortAllowance
	if wd <= 0 {
		// No watchdog: wait as long as the shipped unit's would take.
		startBound = 30*time.Second + restart + abortAllowance
	}
	stopped, wall := monotonic(), time.Now()
	r.logf("SIGSTOP to MainPID %d", pid)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return "", err
	}
	var q map[string]string
	err = poll(ctx, startBound+startAllowance, 250*time.Millisecond, func() error {
		q, err = r.show(ctx, "MainPID", "ActiveState", "SubState", "NRestarts", "ExecMainStartTimestampMonotonic")
		if err != nil {
			return err
		}
		if q["MainPID"] == p["MainPID"] || q["MainPID"] == "0" || q["ActiveState"] != "active" {
			return fmt.Errorf("%s after SIGSTOP: MainPID %s, %s (%s), NRestarts %s (WatchdogUSec=%s)",
				time.Since(wall).Round(time.Millisecond), q["MainPID"], q["ActiveState"], q["SubState"], q["NRestarts"], p["WatchdogUSec"])
		}
		return nil
	})
	active := time.Since(wall)
	if err != nil {
		// Not restarted: let the old process go on for the next check.
		if cerr := syscall.Kill(pid, syscall.SIGCONT); cerr != nil {
			err = errors.Join(err, fmt.Errorf("SIGCONT: %w", cerr))
		}
		return "", err
	}
	startedUS, _ := strconv.ParseInt(q["ExecMainStartTimestampMonotonic"], 10, 64)
	started := time.Duration(startedUS)*time.Microsecond - stopped
	n1, _ := strconv.Atoi(q["NRestarts"])
	journal := r.journal(ctx, wall)
	var errs []error
	if started > startBound {
		errs = append(errs, fmt.Errorf("the new process started %.1fs after SIGSTOP, want at most WatchdogSec %s + RestartSec %s + %s",
			started.Seconds(), p["WatchdogUSec"], p["RestartUSec"], abortAllowance))
	}
	if !strings.Contains(journal, "Watchdog timeout") {
		errs = append(errs, errors.New("the journal has no watchdog timeout since the SIGSTOP"))
	}
	if n1 != n0+1 {
		errs = append(errs, fmt.Errorf("NRestarts %d -> %d, want one restart", n0, n1))
	}
	return fmt.Sprintf("SIGSTOP of MainPID %d: watchdog timeout in the journal, new MainPID %s started %.1fs later (bound WatchdogSec %s + RestartSec %s + %s) and active after %.1fs, NRestarts %d -> %d",
		pid, q["MainPID"], started.Seconds(), p["WatchdogUSec"], p["RestartUSec"], abortAllowance, active.Seconds(), n0, n1), errors.Join(errs...)
}

// checkPortTaken takes the web port and starts the unit: the start must
// fail, and the unit must never be active until the port is free.
func (r *Runner) checkPortTaken(ctx context.Context) (string, error) {
	if _, err := r.systemctl(ctx, time.Minute, "stop", Unit); err != nil {
		return "", err
	}
	// Where the daemon listens by default: every address, both families.
	holder, err := net.Listen("tcp", fmt.Sprintf(":%d", WebPort))
	if err != nil {
		return "", fmt.Errorf("taking port %d: %w", WebPort, err)
	}
	defer holder.Close()
	p, err := r.show(ctx, "RestartUSec", "NRestarts")
	if err != nil {
		return "", err
	}
	restart, err := parseUSec(p["RestartUSec"])
	if err != nil {
		return "", err
	}
	n0, _ := strconv.Atoi(p["NRestarts"])
	since := time.Now()
	if _, err := r.systemctl(ctx, startTimeout, "start", Unit); err == nil {
		return "", fmt.Errorf("systemctl start succeeded with port %d taken: the unit reported ready without its listener", WebPort)
	}
	q, err := r.show(ctx, "ActiveState", "SubState", "ExecMainStatus", "Result")
	if err != nil {
		return "", err
	}
	var errs []error
	if q["ExecMainStatus"] != "3" {
		errs = append(errs, fmt.Errorf("ExecMainStatus=%s, want 3 (could not run)", q["ExecMainStatus"]))
	}
	// Watched for a few RestartSec periods: Restart=on-failure keeps
	// trying, and no attempt may reach active.
	observe := time.Duration(portTakenObserve)*restart + 2*time.Second
	deadline := time.Now().Add(observe)
	states := map[string]bool{}
	for time.Now().Before(deadline) {
		s, err := r.show(ctx, "ActiveState", "SubState")
		if err != nil {
			return "", err
		}
		states[s["ActiveState"]+" ("+s["SubState"]+")"] = true
		if s["ActiveState"] == "active" {
			errs = append(errs, fmt.Errorf("the unit became active with port %d taken", WebPort))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s, err := r.show(ctx, "NRestarts")
	if err != nil {
		return "", err
	}
	n1, _ := strconv.Atoi(s["NRestarts"])
	journal := r.journal(ctx, since)
	if !strings.Contains(journal, "cannot listen") || !strings.Contains(journal, "address already in use") {
		errs = append(errs, errors.New(`the journal has no "cannot listen ... address already in use"`))
	}
	seen := slices.Sorted(func(yield func(string) bool) {
		for k := range states {
			if !yield(k) {
				return
			}
		}
	})
	detail := fmt.Sprintf("port %d taken: systemctl start failed, %s, ExecMainStatus %s; in %.0fs never active (seen %s), %d automatic restarts, each failing",
		WebPort, q["Result"], q["ExecMainStatus"], observe.Seconds(), strings.Join(seen, ", "), n1-n0)
	holder.Close()
	freed := time.Now()
	err = poll(ctx, restart+startAllowance, 250*time.Millisecond, func() error {
		s, err := r.show(ctx, "ActiveState")
		if err != nil {
			return err
		}
		if s["ActiveState"] != "active" {
			return fmt.Errorf("port freed %.1fs ago and the unit is %s, want active again (Restart=on-failure)", time.Since(freed).Seconds(), s["ActiveState"])
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	} else {
		detail += fmt.Sprintf("; active again %.1fs after the port was freed", time.Since(freed).Seconds())
	}
	return detail, errors.Join(errs...)
}

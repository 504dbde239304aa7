//go:build linux

package stormlab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a server the lab runs inside the namespace: redis-server,
// the stormwatch daemon, node_exporter.
type Process struct {
	Name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error // set before done closes
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it,
// capped so that a chatty process cannot fill memory.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const maxLog = 1 << 20

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() < maxLog {
		b.buf.Write(p[:min(len(p), maxLog-b.buf.Len())])
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs a program inside the namespace in the background. The lab
// stops it (SIGCONT, SIGTERM, then SIGKILL) at Close if it still runs.
func (l *Lab) Start(name string, args ...string) (*Process, error) {
	// "ip netns exec" execs the program, so the process is the server
	// itself and signals reach it.
	cmd := l.NS.Command(context.Background(), name, args...)
	p := &Process{Name: name, cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	l.Defer(func() error { p.Stop(5 * time.Second); return nil })
	l.Logf("started %s (pid %d)", strings.Join(append([]string{name}, args...), " "), cmd.Process.Pid)
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Log returns what the process printed.
func (p *Process) Log() string { return p.log.String() }

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the process: SIGCONT (in case it is stopped) and SIGTERM, then
// SIGKILL after grace. It returns the process's exit error.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Exited() {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	return p.err
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Process) Kill() {
	if !p.Exited() {
		p.cmd.Process.Kill()
	}
	<-p.done
}

// Usage is a process's resource use from /proc/<pid>.
type Usage struct {
	CPU time.Duration // user + system time so far
	RSS int64         // resident set size, bytes
	HWM int64         // peak resident set size, bytes
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// Usage reads the process's CPU time and memory.
func (p *Process) Usage() (Usage, error) {
	var u Usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return u, err
	}
	// Fields after the parenthesised command: state is field 3, utime 14,
	// stime 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, errors.New("unexpected /proc/pid/stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return u, errors.New("short /proc/pid/stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.CPU = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return u, err
	}
	for line := range strings.Lines(string(status)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			u.RSS = kb << 10
		case "VmHWM:":
			u.HWM = kb << 10
		}
	}
	return u, nil
}

// HTTPGet fetches http://addr/path from inside the namespace, with a
// fresh connection (HTTP/1.0, as a Prometheus scrape of a new target).
func (l *Lab) HTTPGet(addr, path string) (status int, body []byte, err error) {
	err = l.NS.Do(func() error {
		status, body, err = httpGet(addr, path)
		return err
	})
	return status, body, err
}

// httpGet fetches http://addr/path in the caller's namespace.
func httpGet(addr, path string) (int, []byte, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, body, err
}

// Redis is a redis-server (Valkey-compatible) run by the lab.
type Redis struct {
	*Process
	Port    int
	Backlog int
}

// Addr is the server's address.
func (r *Redis) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.Port) }

// StartRedis runs redis-server inside the namespace on 127.0.0.1:port with
// the given tcp-backlog, no persistence, and waits until it answers PING.
func (l *Lab) StartRedis(ctx context.Context, port, backlog int) (*Redis, error) {
	return l.StartRedisArgs(ctx, port, backlog)
}

// StartRedisArgs is StartRedis with more arguments for redis-server
// (later ones win: "--maxclients", "50000").
func (l *Lab) StartRedisArgs(ctx context.Context, port, backlog int, extra ...string) (*Redis, error) {
	dir, err := os.MkdirTemp(l.Dir, "redis-")
	if err != nil {
		return nil, err
	}
	p, err := l.Start("redis-server", append([]string{
		"--port", strconv.Itoa(port),
		"--tcp-backlog", strconv.Itoa(backlog),
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--dir", dir,
		"--maxclients", "10000",
		"--loglevel", "warning",
	}, extra...)...)
	if err != nil {
		return nil, err
	}
	r := &Redis{Process: p, Port: port, Backlog: backlog}
	if err := l.waitPing(ctx, r); err != nil {
		r.Kill()
		return nil, err
	}
	return r, nil
}

// waitPing waits until r answers PING, for up to 10 seconds.
func (l *Lab) waitPing(ctx context.Context, r *Redis) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := l.NS.Do(func() error {
			conn, err := net.DialTimeout("tcp", r.Addr(), time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			return ping(conn, time.Second)
		})
		if err == nil {
			return nil
		}
		if r.Exited() {
			return fmt.Errorf("redis-server exited: %w\n%s", exitCause(r.err), r.Log())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("redis-server on %s did not answer PING: %w\n%s", r.Addr(), err, r.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Daemon is a stormwatch daemon run by the lab.
type Daemon struct {
	*Process
	Addr string
	lab  *Lab
}

// DaemonAddr is where the lab's stormwatch listens inside the namespace.
const DaemonAddr = "127.0.0.1:9955"

// StartStormwatch runs the stormwatch binary bin inside the namespace,
// listening on DaemonAddr, with extra args, and waits until /metrics
// answers.
func (l *Lab) StartStormwatch(ctx context.Context, bin string, args ...string) (*Daemon, error) {
	p, err := l.Start(bin, append([]string{"--web.listen-address=" + DaemonAddr}, args...)...)
	if err != nil {
		return nil, err
	}
	d := &Daemon{Process: p, Addr: DaemonAddr, lab: l}
	if err := l.waitHTTP(ctx, p, d.Addr, "/metrics"); err != nil {
		return nil, err
	}
	return d, nil
}

// waitHTTP waits until GET path answers 200, for up to 15 seconds.
func (l *Lab) waitHTTP(ctx context.Context, p *Process, addr, path string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, _, err := l.HTTPGet(addr, path)
		if err == nil && status == http.StatusOK {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited: %w\n%s", p.Name, exitCause(p.err), p.Log())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err == nil {
				err = fmt.Errorf("HTTP status %d", status)
			}
			return fmt.Errorf("%s did not serve %s on %s: %w\n%s", p.Name, path, addr, err, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exitCause is why a process that exited did: its wait error, or a clean
// exit, which a server the lab started should not make either.
func exitCause(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

// Scrape fetches and parses the daemon's /metrics.
func (d *Daemon) Scrape() (Exposition, error) {
	status, body, err := d.lab.HTTPGet(d.Addr, "/metrics")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: status %d", status)
	}
	return ParseExposition(body)
}

// Get fetches a path of the daemon's web server.
func (d *Daemon) Get(path string) (int, []byte, error) { return d.lab.HTTPGet(d.Addr, path) }

// Alert is an alert as the daemon's /api/v1/alerts lists it.
type Alert struct {
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt time.Time         `json:"activeAt"`
	// FiredAt is when it fired: the start of the sample whose evaluation
	// fired it. Zero while pending.
	FiredAt time.Time `json:"firedAt"`
}

// Alerts fetches the daemon's pending and firing alerts.
func (d *Daemon) Alerts() ([]Alert, error) {
	status, body, err := d.Get("/api/v1/alerts")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/alerts: status %d", status)
	}
	var resp struct {
		Data struct {
			Alerts []Alert `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("/api/v1/alerts: %w", err)
	}
	return resp.Data.Alerts, nil
}

// FindAlert returns the first alert named name in state whose labels
// include labels.
func FindAlert(alerts []Alert, name, state string, labels map[string]string) (Alert, bool) {
	for _, a := range alerts {
		if a.Labels["alertname"] != name || a.State != state {
			continue
		}
		ok := true
		for k, v := range labels {
			ok = ok && a.Labels[k] == v
		}
		if ok {
			return a, true
		}
	}
	return Alert{}, false
}

// NodeExporterAddr is where the lab's node_exporter listens inside the
// namespace.
const NodeExporterAddr = "127.0.0.1:9100"

// NodeExporterBinary returns the node_exporter program on PATH: Debian's
// prometheus-node-exporter, or upstream's node_exporter.
func NodeExporterBinary() (string, error) {
	for _, name := range []string{"prometheus-node-exporter", "node_exporter"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("neither prometheus-node-exporter nor node_exporter is on PATH")
}

// StartNodeExporter runs node_exporter inside the namespace with only its
// tcpstat collector, on NodeExporterAddr.
func (l *Lab) StartNodeExporter(ctx context.Context) (*Process, error) {
	bin, err := NodeExporterBinary()
	if err != nil {
		return nil, err
	}
	p, err := l.Start(bin, "--collector.disable-defaults", "--collector.tcpstat",
		"--web.listen-address="+NodeExporterAddr, "--log.level=warn")
	if err != nil {
		return nil, err
	}
	if err := l.waitHTTP(ctx, p, NodeExporterAddr, "/metrics"); err != nil {
		return nil, err
	}
	return p, nil
}

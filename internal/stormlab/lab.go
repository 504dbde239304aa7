//go:build linux

package stormlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure a Lab.
type Options struct {
	// WorkerExe is the program started as a worker; it must call
	// RunWorkerIfRequested first thing. Empty: this process's own
	// executable.
	WorkerExe string
	// Logf, when set, receives a line for each step the lab takes.
	Logf func(format string, args ...any)
	// MaxSocketsPerWorker caps the sockets Populate gives one worker
	// (0: as many as its descriptor limit allows).
	MaxSocketsPerWorker int
}

// Lab drives storms inside one network namespace. It owns what it starts
// (workers, servers, daemons, nft tables, sysctl changes) and undoes it all
// in Close, last first.
type Lab struct {
	NS  Namespace
	Dir string // a temporary directory, removed by Close

	opts Options

	mu       sync.Mutex
	cleanups []func() error
	workers  int
	closed   bool
}

// New returns a Lab working in ns. Close it when done (t.Cleanup in tests).
func New(ns Namespace, opts Options) (*Lab, error) {
	if opts.WorkerExe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		opts.WorkerExe = exe
	}
	dir, err := os.MkdirTemp("", "stormlab-")
	if err != nil {
		return nil, err
	}
	l := &Lab{NS: ns, Dir: dir, opts: opts}
	l.Defer(func() error { return os.RemoveAll(dir) })
	return l, nil
}

// Logf logs one line through Options.Logf.
func (l *Lab) Logf(format string, args ...any) {
	if l.opts.Logf != nil {
		l.opts.Logf(format, args...)
	}
}

// Defer registers fn to run at Close, before everything registered earlier.
func (l *Lab) Defer(fn func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, fn)
}

// Close undoes everything the lab did, last first, and returns every error.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	fns := l.cleanups
	l.cleanups = nil
	l.mu.Unlock()
	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		if err := fns[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Exec runs a program inside the namespace and returns its output.
func (l *Lab) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runCmd(l.NS.Command(ctx, name, args...))
}

// sysctlPath is name's file under /proc/sys.
func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// Sysctl sets a per-namespace sysctl inside the namespace. The namespace
// takes its settings with it when deleted, so nothing is restored.
func (l *Lab) Sysctl(name, value string) error {
	err := l.NS.Do(func() error {
		// net.* sysctls resolve to the namespace of the thread that opens
		// them.
		return os.WriteFile(sysctlPath(name), []byte(value), 0)
	})
	if err != nil {
		return fmt.Errorf("sysctl %s=%s in %s: %w", name, value, l.NS.Name(), err)
	}
	l.Logf("sysctl %s=%s (namespace %s)", name, value, l.NS.Name())
	return nil
}

// ReadSysctl reads a sysctl as the namespace sees it.
func (l *Lab) ReadSysctl(name string) (string, error) {
	var v []byte
	err := l.NS.Do(func() error {
		var err error
		v, err = os.ReadFile(sysctlPath(name))
		return err
	})
	return strings.TrimSpace(string(v)), err
}

// SetGlobalSysctl sets a sysctl of the host (one no namespace has its own
// copy of, such as net.netfilter.nf_conntrack_max) and returns a function
// that restores the old value. Call the restore function however the
// caller ends (t.Cleanup, Lab.Defer, a deferred call).
func SetGlobalSysctl(name string, value string) (restore func() error, err error) {
	path := sysctlPath(name)
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return nil, fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			if werr := os.WriteFile(path, old, 0); werr != nil {
				err = fmt.Errorf("restore sysctl %s=%s: %w", name, strings.TrimSpace(string(old)), werr)
			}
		})
		return err
	}, nil
}

// ReadGlobalSysctl reads a sysctl in the caller's (host) namespace.
func ReadGlobalSysctl(name string) (int64, error) {
	b, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
}

// NFT loads an nftables table named table with the given body (chains and
// rules, nft syntax) into the namespace, and deletes it at Close.
func (l *Lab) NFT(ctx context.Context, table, body string) error {
	f := filepath.Join(l.Dir, table+".nft")
	script := fmt.Sprintf("table inet %s {\n%s\n}\n", table, body)
	if err := os.WriteFile(f, []byte(script), 0o600); err != nil {
		return err
	}
	if _, err := l.Exec(ctx, "nft", "-f", f); err != nil {
		return fmt.Errorf("nft: %w", err)
	}
	l.Logf("nft table inet %s loaded", table)
	l.Defer(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := l.Exec(ctx, "nft", "delete", "table", "inet", table)
		return err
	})
	return nil
}

// DropFinalACK makes handshakes to port stay half-open: the client's final
// ACK (flags exactly ACK) is dropped on input, so the listener keeps a
// SYN_RECV request socket per handshake.
func (l *Lab) DropFinalACK(ctx context.Context, port int) error {
	return l.NFT(ctx, fmt.Sprintf("stormlab_halfopen_%d", port), fmt.Sprintf(
		"chain input { type filter hook input priority 0; tcp dport %d tcp flags & (syn|ack|fin|rst) == ack drop; }", port))
}

// Worker is a lab worker process: a re-executed copy of the lab's binary
// running inside the namespace that holds sockets and runs clients there.
type Worker struct {
	Index    int
	Capacity int // sockets it may hold

	mu   sync.Mutex
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	done chan error
}

// StartWorker starts a worker inside the namespace. Each worker of a Lab
// gets its own index and so its own block of source addresses.
func (l *Lab) StartWorker(ctx context.Context) (*Worker, error) {
	l.mu.Lock()
	index := l.workers
	l.workers++
	l.mu.Unlock()

	cmd := l.NS.Command(context.WithoutCancel(ctx), l.opts.WorkerExe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", workerEnv, index))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &Worker{Index: index, cmd: cmd, in: in, out: bufio.NewScanner(out), done: make(chan error, 1)}
	w.out.Buffer(make([]byte, 64<<10), 4<<20)
	go func() { w.done <- cmd.Wait() }()
	l.Defer(w.stop)
	var resp response
	if err := w.call(ctx, request{Op: "hello"}, &resp); err != nil {
		return nil, fmt.Errorf("worker %d: %w", index, err)
	}
	w.Capacity = resp.Capacity
	if m := l.opts.MaxSocketsPerWorker; m > 0 {
		w.Capacity = min(w.Capacity, m)
	}
	return w, nil
}

// stop closes the worker's input, which makes it close its sockets and
// exit, and kills it if it does not. How the worker exited is not
// reported: a worker ends by its input closing or by being killed.
func (w *Worker) stop() error {
	w.in.Close()
	var exit error
	select {
	case exit = <-w.done:
	case <-time.After(10 * time.Second):
		w.cmd.Process.Kill()
		exit = <-w.done
	}
	_ = exit
	return nil
}

// call sends one request and reads its response. A cancelled ctx kills
// the worker: its state is unknown after an abandoned request.
func (w *Worker) call(ctx context.Context, req request, resp *response) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { w.cmd.Process.Kill() })
	defer stop()
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("%s: %w", req.Op, err)
	}
	if !w.out.Scan() {
		if err := ctx.Err(); err != nil {
			return err
		}
		cause := w.out.Err()
		if cause == nil {
			cause = io.EOF
		}
		return fmt.Errorf("%s: worker exited: %w", req.Op, cause)
	}
	if err := json.Unmarshal(w.out.Bytes(), resp); err != nil {
		return fmt.Errorf("%s: %w", req.Op, err)
	}
	if resp.Err != "" {
		return fmt.Errorf("%s: %s", req.Op, resp.Err)
	}
	return nil
}

// Listen opens a listening socket at addr ("127.0.0.1:0" picks a port)
// with the given backlog, which the worker holds and never accepts on,
// and returns its port.
func (w *Worker) Listen(ctx context.Context, addr string, backlog int) (int, error) {
	var resp response
	err := w.call(ctx, request{Op: "listen", Addr: addr, Backlog: backlog}, &resp)
	return resp.Port, err
}

// Connect opens n connections to addr from the worker's source addresses,
// paced at rate per second (0: at once), and waits up to wait for their
// handshakes. The worker holds them until Close.
func (w *Worker) Connect(ctx context.Context, addr string, n int, rate float64, wait time.Duration) (ConnectResult, error) {
	var resp response
	err := w.call(ctx, request{Op: "connect", Addr: addr, N: n, Rate: rate, WaitMs: int(wait / time.Millisecond)}, &resp)
	if resp.Connect == nil {
		return ConnectResult{}, err
	}
	return *resp.Connect, err
}

// CloseSockets closes every socket and client the worker holds.
func (w *Worker) CloseSockets(ctx context.Context) error {
	return w.call(ctx, request{Op: "close"}, &response{})
}

// StartClients starts a pool of reconnecting clients in the worker.
func (w *Worker) StartClients(ctx context.Context, cfg ClientsConfig) error {
	return w.call(ctx, request{Op: "clients", Clients: &cfg}, &response{})
}

// ClientsStatus reports the worker's client pool, counting connections
// made at or after since.
func (w *Worker) ClientsStatus(ctx context.Context, since time.Time) (ClientsStatus, error) {
	var resp response
	if err := w.call(ctx, request{Op: "clients_status", Since: since.UnixNano()}, &resp); err != nil {
		return ClientsStatus{}, err
	}
	return *resp.Clients, nil
}

// StartChurn starts short connections (connect, PING, close) to addr at
// rate per second for d, in the background.
func (w *Worker) StartChurn(ctx context.Context, addr string, rate float64, d time.Duration) error {
	return w.call(ctx, request{Op: "churn", Addr: addr, Rate: rate, DurationMs: int(d / time.Millisecond)}, &response{})
}

// WaitChurn waits for the churn run to end and returns its counts.
func (w *Worker) WaitChurn(ctx context.Context) (ChurnResult, error) {
	var resp response
	if err := w.call(ctx, request{Op: "churn_wait"}, &resp); err != nil {
		return ChurnResult{}, err
	}
	return *resp.Churn, nil
}

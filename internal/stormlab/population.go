//go:build linux

package stormlab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// PopulationSpec is a known socket population.
type PopulationSpec struct {
	// Established connections wait, never accepted, in the accept queues
	// of BusyListeners listeners with big backlogs: each puts two sockets
	// in the kernel's established hash (client and server end) and costs
	// one descriptor (the client's; an unaccepted connection has none on
	// the server side). They come from many 127.x.y.z source addresses.
	Established   int
	BusyListeners int
	// IdleListeners listen with empty queues on 127.0.0.1, DualStack
	// more on [::] taking both families, as Valkey's default bind
	// ("* -::*") opens one beside its IPv4 listener: with one, a SYN_RECV
	// dump per address family walks the socket table twice.
	IdleListeners int
	DualStack     int
	// HalfOpen handshakes stay in SYN_RECV on one more listener, whose
	// clients' final ACKs are dropped.
	HalfOpen int
}

// Sockets is the number of TCP sockets the population puts in the
// namespace: both ends of each connection, each half-open handshake's
// request socket and client, and the listeners.
func (p PopulationSpec) Sockets() int {
	return 2*p.Established + 2*p.HalfOpen + p.BusyListeners + p.IdleListeners + p.DualStack + 1
}

// PopulationFor returns a population of about sockets TCP sockets: 8 busy
// and 50 idle listeners and one idle dual-stack one, 1% (at most 1000)
// half-open handshakes, and established connections for the rest.
func PopulationFor(sockets int) PopulationSpec {
	p := PopulationSpec{BusyListeners: 8, IdleListeners: 50, DualStack: 1, HalfOpen: min(1000, sockets/100)}
	p.Established = max(0, (sockets-p.BusyListeners-p.IdleListeners-p.DualStack-1-2*p.HalfOpen)/2)
	return p
}

// Population is a populated namespace.
type Population struct {
	Spec         PopulationSpec
	BusyPorts    []int
	IdlePorts    []int // the idle listeners, dual-stack ones last
	HalfOpenPort int
	Workers      int // worker processes holding the sockets
	// Sockets is the namespace's TCP socket count as "ss -Htan" shows it
	// (request sockets included).
	Sockets int
	// Took is how long populating took.
	Took time.Duration
}

// Populate fills the namespace with spec's sockets, spread over as many
// worker processes as the descriptor limit needs, and waits until sock_diag
// shows all of them.
func (l *Lab) Populate(ctx context.Context, spec PopulationSpec) (*Population, error) {
	start := time.Now()
	if spec.BusyListeners < 1 && spec.Established > 0 {
		spec.BusyListeners = 1
	}
	perBusy := 0
	if spec.Established > 0 {
		perBusy = (spec.Established + spec.BusyListeners - 1) / spec.BusyListeners
	}
	somaxconn := max(4096, perBusy+64, spec.HalfOpen+64)
	for _, kv := range [][2]string{
		{"net.core.somaxconn", strconv.Itoa(somaxconn)},
		{"net.ipv4.tcp_max_syn_backlog", strconv.Itoa(max(8192, 2*spec.HalfOpen))},
		{"net.ipv4.ip_local_port_range", "1024 65535"},
		// Keep half-open handshakes for the length of a benchmark (the
		// default, 5, drops them after about a minute).
		{"net.ipv4.tcp_synack_retries", "12"},
	} {
		if err := l.Sysctl(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}

	pop := &Population{Spec: spec}
	lw, err := l.StartWorker(ctx)
	if err != nil {
		return nil, err
	}
	pop.Workers = 1
	for range spec.BusyListeners {
		p, err := lw.Listen(ctx, "127.0.0.1:0", perBusy+64)
		if err != nil {
			return nil, err
		}
		pop.BusyPorts = append(pop.BusyPorts, p)
	}
	for range spec.IdleListeners {
		p, err := lw.Listen(ctx, "127.0.0.1:0", 128)
		if err != nil {
			return nil, err
		}
		pop.IdlePorts = append(pop.IdlePorts, p)
	}
	for range spec.DualStack {
		p, err := lw.Listen(ctx, "[::]:0", 128)
		if err != nil {
			return nil, err
		}
		pop.IdlePorts = append(pop.IdlePorts, p)
	}
	if spec.HalfOpen > 0 {
		if pop.HalfOpenPort, err = lw.Listen(ctx, "127.0.0.1:0", spec.HalfOpen+64); err != nil {
			return nil, err
		}
		if err := l.DropFinalACK(ctx, pop.HalfOpenPort); err != nil {
			return nil, err
		}
	}

	// Plan each worker's connects: fill one worker to its capacity, then
	// the next.
	type job struct {
		port, n int
	}
	var jobs []job
	for i, p := range pop.BusyPorts {
		n := spec.Established / spec.BusyListeners
		if i < spec.Established%spec.BusyListeners {
			n++
		}
		jobs = append(jobs, job{p, n})
	}
	if spec.HalfOpen > 0 {
		jobs = append(jobs, job{pop.HalfOpenPort, spec.HalfOpen})
	}
	var plans [][]job
	var workers []*Worker
	room := 0
	for _, j := range jobs {
		for j.n > 0 {
			if room == 0 {
				w, err := l.StartWorker(ctx)
				if err != nil {
					return nil, err
				}
				if w.Capacity < 100 {
					return nil, fmt.Errorf("a worker may hold only %d sockets (RLIMIT_NOFILE)", w.Capacity)
				}
				plans = append(plans, nil)
				workers = append(workers, w)
				room = w.Capacity
			}
			n := min(j.n, room)
			plans[len(plans)-1] = append(plans[len(plans)-1], job{j.port, n})
			j.n -= n
			room -= n
		}
	}
	pop.Workers += len(workers)

	errs := make(chan error, len(plans))
	for i, plan := range plans {
		w := workers[i]
		go func() {
			for _, j := range plan {
				res, err := w.Connect(ctx, fmt.Sprintf("127.0.0.1:%d", j.port), j.n, 0, 0)
				if err == nil && res.Failed > 0 {
					err = fmt.Errorf("worker %d: %d of %d connects to port %d failed: %s", w.Index, res.Failed, j.n, j.port, res.FirstErr)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range plans {
		if err := <-errs; err != nil {
			return nil, err
		}
	}

	// Wait until the kernel shows the whole population.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ls, err := l.Listeners(ctx)
		if err != nil {
			return nil, err
		}
		var queued, half int
		for _, ln := range ls {
			switch int(ln.Port) {
			case pop.HalfOpenPort:
				half += int(ln.SynRecv)
			default:
				queued += int(ln.AcceptQueue)
			}
		}
		if queued == spec.Established && half == spec.HalfOpen {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("population did not settle: %d of %d connections queued, %d of %d half-open", queued, spec.Established, half, spec.HalfOpen)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, err := l.Exec(ctx, "ss", "-Htan")
	if err != nil {
		return nil, err
	}
	pop.Sockets = strings.Count(string(out), "\n")
	pop.Took = time.Since(start)
	l.Logf("population: %d sockets (%d established connections, %d half-open, %d listeners) in %d workers, %v",
		pop.Sockets, spec.Established, spec.HalfOpen, spec.BusyListeners+spec.IdleListeners+spec.DualStack+1, pop.Workers, pop.Took.Round(time.Millisecond))
	return pop, nil
}

// NoFileLimit returns this process's hard RLIMIT_NOFILE: the most sockets
// one worker can hold.
func NoFileLimit() (uint64, error) {
	var lim unix.Rlimit
	err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	return lim.Max, err
}

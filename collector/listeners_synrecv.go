package collector

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormwatch/stormwatch/internal/sockdiag"
)

// The SYN_RECV dump of the listeners source: it walks every TCP socket of
// the host, so it runs on a goroutine of its own (synRecvDumper), locked
// to an OS thread whose CPU time is the dump's cost, under a deadline of
// its own. A cycle waits for a dump it asked for until the cycle's own
// deadline; a dump still running then is delivered by a later cycle, so
// the LISTEN dump and the counters keep their interval whatever the
// SYN_RECV dump costs.

// synRecvTimeout bounds one SYN_RECV dump. A dump still running after it
// is abandoned and its counts are no data: on a host so short of CPU that
// walking the socket table takes seconds, counts that old would describe a
// queue that has moved on; and the dump's interval cadence (5 s by
// default) would soon ask for the next one anyway.
const synRecvTimeout = 2 * time.Second

// errSynRecvTimeout: a SYN_RECV dump ran out of time.
var errSynRecvTimeout = errors.New("SYN_RECV dump abandoned at its deadline")

// synRecvJob is one SYN_RECV dump: what the cycle asks for, and what the
// dumper found. One job exists per source; it passes between the cycle and
// the dumper goroutine, and whoever holds it owns it (and its connection).
type synRecvJob struct {
	// Asked by the cycle.
	conn     sockdiag.Conn
	legacy   bool    // try the one-walk TCPDIAG_GETSOCK request
	families [2]bool // which families a per-family fallback dumps
	timeout  time.Duration
	asked    time.Time // the cycle time that asked for it
	reason   string
	attempt  int // 1 for a fresh dump, more when restarted after ENOBUFS

	// Found by the dumper.
	counts     map[listenerKey]uint32 // request sockets by local address and port
	cost       time.Duration          // CPU time of the dumping thread
	retries    uint64                 // restarts after NLM_F_DUMP_INTR
	refused    bool                   // the kernel refused the legacy request
	v6Disabled bool                   // the kernel has no AF_INET6 inet_diag
	err        error                  // nil, or why the dump failed
}

// add counts one SYN_RECV request socket (inode 0: a full socket in
// SYN_RECV is not a handshake waiting in a SYN queue).
func (j *synRecvJob) add(m sockdiag.Msg) {
	if m.State != sockdiag.TCPSynRecv || m.Inode != 0 {
		return
	}
	j.counts[listenerKey{addr: m.Src.Unmap(), port: m.SrcPort}]++
}

// run dumps, restarting a dump the kernel flagged inconsistent up to
// sockdiag.MaxDumpAttempts times in all, on the job's connection.
func (j *synRecvJob) run(ctx context.Context) {
	j.retries, j.refused, j.v6Disabled, j.err = 0, false, false, nil
	for attempt := 1; ; attempt++ {
		clear(j.counts)
		interrupted, err := j.dumpOnce(ctx)
		switch {
		case err != nil:
			j.err = err
			return
		case !interrupted:
			return
		}
		j.retries++
		if attempt == sockdiag.MaxDumpAttempts {
			j.err = fmt.Errorf("gave up after %d attempts: %w", attempt, sockdiag.ErrDumpInterrupted)
			return
		}
	}
}

// dumpOnce runs one legacy dump of both families or, when the kernel
// refuses it (or refused it before), one dump per family that needs it.
func (j *synRecvJob) dumpOnce(ctx context.Context) (interrupted bool, err error) {
	if j.legacy {
		res, err := sockdiag.DumpInet(ctx, j.conn, sockdiag.TCPFSynRecv, j.add)
		if err == nil || !sockdiag.LegacyRefused(err) {
			return res.Interrupted, err
		}
		// The refusal is the whole answer: the connection is clean.
		j.legacy, j.refused = false, true
		clear(j.counts)
	}
	for i, fam := range inetFamilies {
		if !j.families[i] {
			continue
		}
		res, err := sockdiag.Dump(ctx, j.conn, fam, sockdiag.TCPFSynRecv, j.add)
		if err != nil {
			if sockdiag.Unsupported(err) {
				if fam == unix.AF_INET6 {
					j.v6Disabled = true // no IPv6: nothing to dump
					continue
				}
				return false, fmt.Errorf("%w: %w", ErrNoData, err)
			}
			return false, err
		}
		interrupted = interrupted || res.Interrupted
	}
	return interrupted, nil
}

// costFunc runs a SYN_RECV dump and returns what it cost: by default the
// CPU time of the OS thread that ran it, which the dump's kernel walk is
// charged to. Tests inject a fixed cost.
type costFunc func(run func()) time.Duration

// threadCPUCost returns the CPU time the calling thread spent in run. The
// caller must be locked to its OS thread. Without a thread CPU clock it
// falls back to wall time.
func threadCPUCost(run func()) time.Duration {
	t0, err0 := threadCPUTime()
	start := time.Now()
	run()
	t1, err1 := threadCPUTime()
	if err0 != nil || err1 != nil || t1 < t0 {
		return time.Since(start)
	}
	return t1 - t0
}

// threadCPUTime reads CLOCK_THREAD_CPUTIME_ID: the calling thread's user
// and system time, in nanoseconds.
func threadCPUTime() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}

// synRecvDumper runs the jobs it is given, one at a time, on a goroutine
// locked to its OS thread.
type synRecvDumper struct {
	jobs   chan *synRecvJob // to the dumper; at most one job exists
	done   chan *synRecvJob // back to the cycle
	stop   context.CancelFunc
	exited chan struct{}
}

func startSynRecvDumper(cost costFunc) *synRecvDumper {
	ctx, stop := context.WithCancel(context.Background())
	d := &synRecvDumper{
		jobs:   make(chan *synRecvJob, 1),
		done:   make(chan *synRecvJob, 1),
		stop:   stop,
		exited: make(chan struct{}),
	}
	go func() {
		defer close(d.exited)
		// One thread for every dump, so that the thread CPU clock read
		// around a dump counts that dump. Unlocked at the end, so the
		// thread lives on: a locked goroutine that exits takes its thread
		// with it, and a child process started from that thread (its
		// parent as far as PR_SET_PDEATHSIG goes) would be killed.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for j := range d.jobs {
			jctx, cancel := context.WithTimeout(ctx, j.timeout)
			j.cost = cost(func() { j.run(jctx) })
			if j.err != nil && errors.Is(jctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
				j.err = fmt.Errorf("%w after %s: %w", errSynRecvTimeout, j.timeout, j.err)
			}
			cancel()
			d.done <- j
		}
	}()
	return d
}

// close stops the dumper, abandoning a dump under way, and returns the job
// when it was out (nil otherwise) so its connection can be closed.
func (d *synRecvDumper) close(out bool) *synRecvJob {
	d.stop()
	var j *synRecvJob
	if out {
		j = <-d.done
	}
	close(d.jobs)
	<-d.exited
	return j
}

// mapRequests adds the request sockets of counts to the listeners they
// were addressed to, as the kernel picks the listener
// (sockdiag.Listeners.Lookup); what maps to no kept listener is counted in
// l.unmatched.
func (l *listenerSource) mapRequests(counts map[listenerKey]uint32) {
	for i := range l.cur {
		l.cur[i].SynRecv = 0
	}
	l.unmatched = 0
	for k, n := range counts {
		if i, ok := l.lst.Lookup(k.addr, k.port); ok {
			l.cur[i].SynRecv += n
		} else {
			l.unmatched += int(n)
		}
	}
}

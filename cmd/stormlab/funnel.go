//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stormwatch/stormwatch/internal/stormlab"
)

// drainLines runs `stormwatch drain args...` inside the lab's namespace
// and returns its JSON lines and how long it ran.
func drainLines(ctx context.Context, lab *stormlab.Lab, bin string, args ...string) ([]map[string]any, time.Duration, error) {
	cmd := lab.NS.Command(ctx, bin, append([]string{"drain", "--format", "json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var lines []map[string]any
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	if err != nil {
		return lines, took, fmt.Errorf("stormwatch drain %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return lines, took, nil
}

func lineOf(lines []map[string]any, event string) map[string]any {
	for _, l := range lines {
		if l["event"] == event {
			return l
		}
	}
	return nil
}

// cmdFunnel compares moving a pool of clients from an old redis-server to
// a new one all at once (the old one killed), with the timed Funnel, and,
// when the new server stops for a while mid-move, with the timed Funnel
// and with the closed loop (--pace-by a stormwatch daemon watching the
// new server).
func cmdFunnel(ctx context.Context, e *env, args []string) error {
	var bin string
	fs := e.flags("funnel", &bin)
	clients := fs.Int("clients", 2000, "clients on the old server")
	backlog := fs.Int("backlog", 128, "tcp-backlog of both servers (somaxconn is set to it too)")
	batch := fs.String("batch", "100", "drain --batch")
	every := fs.Duration("every", time.Second, "drain --every")
	method := fs.String("method", "valkey", "drain --method (destroy or valkey)")
	clientTimeout := fs.Duration("client-timeout", time.Second, "each client's connect-and-PING timeout; it retries at once after it")
	stall := fs.Duration("stall", 3*time.Second, "how long the new server stops (SIGSTOP) in the stalled rows (0: no such rows)")
	stallAt := fs.Duration("stall-at", 5500*time.Millisecond, "when, after the drain starts, the new server stops")
	if err := parse(fs, args); err != nil {
		return err
	}
	if bin == "" {
		return usageError{errors.New("no stormwatch binary: give --stormwatch")}
	}
	type way struct {
		name         string
		drain, paced bool
		stalled      bool
	}
	funnel := fmt.Sprintf("drain --method %s --batch %s --every %v", *method, *batch, *every)
	ways := []way{
		{name: "no drain (old server killed)"},
		{name: "Funnel: " + funnel, drain: true},
	}
	if *stall > 0 {
		ways = append(ways,
			way{name: fmt.Sprintf("Funnel, new server stopped %v mid-drain", *stall), drain: true, stalled: true},
			way{name: fmt.Sprintf("closed loop: --pace-by its stormwatch, new server stopped %v mid-drain", *stall), drain: true, paced: true, stalled: true})
	}
	type row struct {
		way
		res    stormlab.FunnelResult
		took   time.Duration
		waited float64
	}
	var rows []row
	for _, w := range ways {
		r, err := funnelRow(ctx, e, bin, w.drain, w.paced, w.stalled, funnelOptions{clients: *clients, backlog: *backlog, batch: *batch, every: *every,
			method: *method, clientTimeout: *clientTimeout, stall: *stall, stallAt: *stallAt})
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		rows = append(rows, row{w, r.res, r.took, r.waited})
	}
	e.printf("%d clients move from an old to a new redis-server (tcp-backlog %d, somaxconn %d; clients retry at once, %v connect-and-PING timeout); the new server's view:\n\n",
		*clients, *backlog, *backlog, *clientTimeout)
	e.printf("| how | peak accept queue | ListenOverflows | peak new conns/s | time until all clients are back | drain waited |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		waited := "-"
		if r.drain {
			waited = fmt.Sprintf("%.1fs", r.waited)
		}
		e.printf("| %s | %d/%d | %.0f | %.0f | %v | %s |\n", r.name, r.res.PeakQueue, r.res.Limit, r.res.Overflows, r.res.PeakRate,
			r.res.AllBack.Round(10*time.Millisecond), waited)
	}
	return nil
}

type funnelOptions struct {
	clients, backlog int
	batch, method    string
	every            time.Duration
	clientTimeout    time.Duration
	stall, stallAt   time.Duration
}

type funnelResult struct {
	res    stormlab.FunnelResult
	took   time.Duration
	waited float64
}

// funnelRow runs one way of moving the clients in a lab of its own.
func funnelRow(ctx context.Context, e *env, bin string, drain, paced, stalled bool, o funnelOptions) (funnelResult, error) {
	var out funnelResult
	lab, err := e.newLab(ctx)
	if err != nil {
		return out, err
	}
	defer lab.Close()
	s := &stormlab.Funnel{Lab: lab, Clients: o.clients, Backlog: o.backlog, Somaxconn: o.backlog, DialTimeout: o.clientTimeout}
	if err := s.Setup(ctx); err != nil {
		return out, err
	}
	args := []string{"--port", fmt.Sprint(s.OldPort), "--method", o.method, "--batch", o.batch, "--every", o.every.String()}
	if paced {
		// A daemon watching the new server, without its own connection to
		// each server (the servers' clients are the pool's).
		conf := filepath.Join(lab.Dir, "stormwatch.yml")
		if err := os.WriteFile(conf, []byte("valkey:\n  discover: false\n"), 0o644); err != nil {
			return out, err
		}
		d, err := daemon(ctx, lab, bin, "--config="+conf)
		if err != nil {
			return out, err
		}
		args = append(args, "--pace-by", fmt.Sprintf("http://%s/api/v1/headroom?port=%d", d.Addr, s.NewPort))
	}
	move := s.KillOld
	if drain {
		move = func(ctx context.Context) error {
			done := make(chan error, 1)
			go func() {
				lines, took, err := drainLines(ctx, lab, bin, args...)
				out.took = took
				if d := lineOf(lines, "done"); d != nil {
					out.waited, _ = d["waited_seconds"].(float64)
				}
				done <- err
			}()
			if stalled {
				select {
				case err := <-done:
					return fmt.Errorf("the drain ended before the stall: %w", err)
				case <-time.After(o.stallAt):
				}
				if err := s.StallNew(ctx, o.stall); err != nil {
					return err
				}
			}
			return <-done
		}
	}
	out.res, err = s.Move(ctx, move, 5*time.Minute)
	return out, err
}

// cmdDestroyRate measures how fast `stormwatch drain` closes many
// accepted connections in one batch: --method destroy against Go servers
// or a redis-server, --method valkey against a redis-server.
func cmdDestroyRate(ctx context.Context, e *env, args []string) error {
	var bin string
	fs := e.flags("destroy-rate", &bin)
	conns := fs.Int("conns", 50000, "accepted connections to close in one batch")
	method := fs.String("method", "destroy", "drain --method: destroy or valkey")
	server := fs.String("server", "go", "who accepts them: go (lab workers) or redis (one redis-server; --method valkey needs it)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if bin == "" {
		return usageError{errors.New("no stormwatch binary: give --stormwatch")}
	}
	switch {
	case *method != "destroy" && *method != "valkey":
		return usageError{fmt.Errorf("--method %q: want destroy or valkey", *method)}
	case *server != "go" && *server != "redis":
		return usageError{fmt.Errorf("--server %q: want go or redis", *server)}
	case *method == "valkey" && *server != "redis":
		return usageError{errors.New("--method valkey closes a redis-server's clients: give --server redis")}
	}
	lab, err := e.newLab(ctx)
	if err != nil {
		return err
	}
	defer lab.Close()
	var port int
	if *server == "redis" {
		r, err := lab.RedisConnections(ctx, stormlab.OldRedisPort, *conns)
		if err != nil {
			return err
		}
		port = r.Port
	} else if port, err = lab.ServeConnections(ctx, *conns); err != nil {
		return err
	}
	lines, took, err := drainLines(ctx, lab, bin, "--port", fmt.Sprint(port), "--batch", "100%", "--method", *method)
	if err != nil {
		return err
	}
	start, b, done := lineOf(lines, "start"), lineOf(lines, "batch"), lineOf(lines, "done")
	if b == nil || done == nil {
		return fmt.Errorf("no batch or summary line from stormwatch drain: %v", lines)
	}
	closed, batchTook := b["closed"].(float64), b["took_seconds"].(float64)
	e.printf("stormwatch drain --port %d --batch 100%% --method %s: %v connections accepted by %s, one batch\n", port, *method, *conns, map[string]string{"go": "Go servers", "redis": "a redis-server"}[*server])
	e.printf("  closed %.0f (gone %v, skipped %v, unknown %v, failed %v) in %.3fs: %.0f connections closed per second\n",
		closed, b["gone"], b["skipped"], b["unknown"], b["failed"], batchTook, closed/batchTook)
	e.printf("  listing and checks before the batch %.3fs; whole command %v; end %v\n", start["elapsed_seconds"], took.Round(time.Millisecond), done["end"])
	return nil
}

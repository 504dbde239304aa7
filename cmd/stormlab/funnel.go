//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
// a new one all at once (the old one killed) and with the Funnel.
func cmdFunnel(ctx context.Context, e *env, args []string) error {
	var bin string
	fs := e.flags("funnel", &bin)
	clients := fs.Int("clients", 2000, "clients on the old server")
	backlog := fs.Int("backlog", 128, "tcp-backlog of both servers (somaxconn is set to it too)")
	batch := fs.String("batch", "100", "drain --batch")
	every := fs.Duration("every", time.Second, "drain --every")
	if err := parse(fs, args); err != nil {
		return err
	}
	if bin == "" {
		return usageError{errors.New("no stormwatch binary: give --stormwatch")}
	}
	type row struct {
		name string
		res  stormlab.FunnelResult
		took time.Duration
	}
	var rows []row
	for _, way := range []string{"no drain (old server killed)", "Funnel: drain --batch " + *batch + " --every " + every.String()} {
		lab, err := e.newLab(ctx)
		if err != nil {
			return err
		}
		s := &stormlab.Funnel{Lab: lab, Clients: *clients, Backlog: *backlog, Somaxconn: *backlog}
		if err := s.Setup(ctx); err != nil {
			lab.Close()
			return err
		}
		var took time.Duration
		move := s.KillOld
		if strings.HasPrefix(way, "Funnel") {
			move = func(ctx context.Context) error {
				var err error
				_, took, err = drainLines(ctx, lab, bin, "--port", fmt.Sprint(s.OldPort), "--batch", *batch, "--every", every.String())
				return err
			}
		}
		res, err := s.Move(ctx, move, 5*time.Minute)
		lab.Close()
		if err != nil {
			return err
		}
		rows = append(rows, row{way, res, took})
	}
	e.printf("%d clients move from an old to a new redis-server (tcp-backlog %d, somaxconn %d); the new server's view:\n\n", *clients, *backlog, *backlog)
	e.printf("| how | peak accept queue | ListenOverflows | peak new conns/s | time until all clients are back |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		e.printf("| %s | %d/%d | %.0f | %.0f | %v |\n", r.name, r.res.PeakQueue, r.res.Limit, r.res.Overflows, r.res.PeakRate, r.res.AllBack.Round(10*time.Millisecond))
	}
	return nil
}

// cmdDestroyRate measures how fast `stormwatch drain --method destroy`
// closes many accepted connections in one batch.
func cmdDestroyRate(ctx context.Context, e *env, args []string) error {
	var bin string
	fs := e.flags("destroy-rate", &bin)
	conns := fs.Int("conns", 50000, "accepted connections to close in one batch")
	if err := parse(fs, args); err != nil {
		return err
	}
	if bin == "" {
		return usageError{errors.New("no stormwatch binary: give --stormwatch")}
	}
	lab, err := e.newLab(ctx)
	if err != nil {
		return err
	}
	defer lab.Close()
	port, err := lab.ServeConnections(ctx, *conns)
	if err != nil {
		return err
	}
	lines, took, err := drainLines(ctx, lab, bin, "--port", fmt.Sprint(port), "--batch", "100%")
	if err != nil {
		return err
	}
	start, b, done := lineOf(lines, "start"), lineOf(lines, "batch"), lineOf(lines, "done")
	if b == nil || done == nil {
		return fmt.Errorf("no batch or summary line from stormwatch drain: %v", lines)
	}
	closed, batchTook := b["closed"].(float64), b["took_seconds"].(float64)
	e.printf("stormwatch drain --port %d --batch 100%% --method destroy: %v connections accepted, one batch\n", port, *conns)
	e.printf("  closed %.0f (gone %v, unknown %v, failed %v) in %.3fs: %.0f sockets destroyed per second\n",
		closed, b["gone"], b["unknown"], b["failed"], batchTook, closed/batchTook)
	e.printf("  listing and checks before the batch %.3fs; whole command %v; end %v\n", start["elapsed_seconds"], took.Round(time.Millisecond), done["end"])
	return nil
}

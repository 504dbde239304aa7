//go:build linux

package stormlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stormwatch/stormwatch/collector"
)

// ProbeSample is what a Probe read at one instant inside the namespace.
type ProbeSample struct {
	Time time.Time
	// Listeners on the probed ports, from stormwatch's listeners source
	// (LISTEN dump; SYN_RECV counts as of its own cadence).
	Listeners []collector.Listener
	// TCP counters of the namespace.
	TCP TCPCounters
	// ConntrackEntries is nf_conntrack_count, NaN without conntrack.
	ConntrackEntries float64
}

// Listener returns the sample's listener on port, if any.
func (s *ProbeSample) Listener(port int) (collector.Listener, bool) {
	for _, l := range s.Listeners {
		if int(l.Port) == port {
			return l, true
		}
	}
	return collector.Listener{}, false
}

// Probe samples the accept queues and TCP counters of a namespace at a
// fine interval, from one OS thread that stays inside it, with
// stormwatch's own listeners source.
type Probe struct {
	stop chan struct{}
	done chan error

	mu      sync.Mutex
	samples []ProbeSample
}

// maxProbeSamples bounds a probe's memory: 10 minutes at 10 ms.
const maxProbeSamples = 60000

// ProbeOptions configure a Probe.
type ProbeOptions struct {
	// Interval is the time between samples.
	Interval time.Duration
	// Ports are the listeners sampled (all when empty).
	Ports []int
	// SynRecvEvery dumps the SYN_RECV sockets at every sample (cheap in
	// a small namespace), so that the first half-open handshake of a
	// flood is seen within Interval; otherwise they are counted every
	// second.
	SynRecvEvery bool
}

// StartProbe starts sampling every interval the listeners on ports (all
// listeners when empty) and the namespace's counters, until Stop.
func (l *Lab) StartProbe(interval time.Duration, ports ...int) (*Probe, error) {
	return l.StartProbeWith(ProbeOptions{Interval: interval, Ports: ports})
}

// StartProbeWith starts a probe configured by opts.
func (l *Lab) StartProbeWith(opts ProbeOptions) (*Probe, error) {
	interval := opts.Interval
	var include []collector.PortRange
	for _, p := range opts.Ports {
		include = append(include, collector.PortRange{Lo: uint16(p), Hi: uint16(p)})
	}
	synRecvInterval := time.Second
	if opts.SynRecvEvery {
		synRecvInterval = 0
	}
	p := &Probe{stop: make(chan struct{}), done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		p.done <- l.NS.Do(func() error {
			// Dialled here, the sock_diag socket lives in the namespace.
			sources, err := collector.NewSources(collector.Config{Listeners: collector.ListenerConfig{
				Include:         include,
				SynRecvInterval: synRecvInterval,
			}})
			if err != nil {
				ready <- err
				return err
			}
			defer collector.CloseSources(sources)
			src, err := listenersOnly(sources, "sysctl", "tcpstat")
			if err != nil {
				ready <- err
				return err
			}
			first := true
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				s, err := probeOnce(src)
				if err != nil {
					if first {
						ready <- err
					}
					return err
				}
				p.mu.Lock()
				if len(p.samples) < maxProbeSamples {
					p.samples = append(p.samples, s)
				}
				p.mu.Unlock()
				if first {
					ready <- nil
					first = false
				}
				select {
				case <-p.stop:
					return nil
				case <-t.C:
				}
			}
		})
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	l.Defer(func() error { p.Stop(); return nil })
	return p, nil
}

// listenersOnly returns a Sampler running only the listeners source of
// sources, and the sources named in with (their values feed it: tcpstat's
// counters drive the SYN_RECV cadence).
func listenersOnly(sources []collector.Source, with ...string) (*collector.Sampler, error) {
	var run []collector.Source
	found := false
	for _, s := range sources {
		switch name := s.Declaration().Name; {
		case name == "listeners":
			run, found = append(run, s), true
		case slices.Contains(with, name):
			run = append(run, s)
		}
	}
	if !found {
		return nil, errors.New("collector has no listeners source")
	}
	return collector.NewSampler(collector.DefaultSchema(), run, nil, collector.NewHistory(collector.Retention{}))
}

// probeOnce takes one sample on the calling thread (inside the namespace).
func probeOnce(src *collector.Sampler) (ProbeSample, error) {
	now := time.Now()
	tcp, err := readCounters()
	if err != nil {
		return ProbeSample{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap := src.Sample(ctx, now)
	if r, _ := snap.Source("listeners"); r.Err != nil {
		return ProbeSample{}, r.Err
	}
	ct := collector.NaN
	if b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count"); err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); err == nil {
			ct = v
		}
	}
	return ProbeSample{Time: now, Listeners: collector.Listeners(snap), TCP: tcp, ConntrackEntries: ct}, nil
}

// Latest returns the newest sample.
func (p *Probe) Latest() ProbeSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.samples[len(p.samples)-1]
}

// Samples returns a copy of the samples so far.
func (p *Probe) Samples() []ProbeSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ProbeSample(nil), p.samples...)
}

// Stop ends sampling and returns every sample, oldest first.
func (p *Probe) Stop() ([]ProbeSample, error) {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	err := <-p.done
	p.done <- err // for a second Stop
	return p.Samples(), err
}

// QueueStats summarises a listener's accept queue and the namespace's new
// connections over a run of samples.
type QueueStats struct {
	// PeakQueue is the longest accept queue seen, PeakFill its share of
	// the limit.
	PeakQueue uint32
	Limit     uint32
	// PeakRate is the most new connections (Tcp PassiveOpens: handshakes
	// completed into an accept queue) in any window of RateWindow, per
	// second.
	PeakRate   float64
	RateWindow time.Duration
	// Overflows is the rise of TcpExt ListenOverflows.
	Overflows float64
	// FirstOverflow is the first sample at which ListenOverflows had
	// risen, zero if it never did.
	FirstOverflow time.Time
}

// Summarise computes QueueStats of port over samples.
func Summarise(samples []ProbeSample, port int, window time.Duration) QueueStats {
	st := QueueStats{RateWindow: window}
	if len(samples) == 0 {
		return st
	}
	base := samples[0].TCP.ListenOverflows
	j := 0
	for i, s := range samples {
		if l, ok := s.Listener(port); ok {
			if l.AcceptQueue > st.PeakQueue {
				st.PeakQueue = l.AcceptQueue
			}
			st.Limit = l.AcceptLimit
		}
		if d := s.TCP.ListenOverflows - base; d > 0 && st.FirstOverflow.IsZero() {
			st.FirstOverflow = s.Time
		}
		st.Overflows = s.TCP.ListenOverflows - base
		for j < i && s.Time.Sub(samples[j].Time) > window {
			j++
		}
		if span := s.Time.Sub(samples[j].Time); span >= window/2 && span > 0 {
			st.PeakRate = max(st.PeakRate, (s.TCP.PassiveOpens-samples[j].TCP.PassiveOpens)/span.Seconds())
		}
	}
	return st
}

// FirstHalfOpen returns when samples first showed a half-open handshake
// on port: at is the first sample with one, before the sample just before
// it (zero if none), so the first SYN arrived in (before, at]. at is zero
// if no sample showed one. The samples must count SYN_RECV at every
// sample (ProbeOptions.SynRecvEvery).
func FirstHalfOpen(samples []ProbeSample, port int) (before, at time.Time) {
	for i, s := range samples {
		if l, ok := s.Listener(port); ok && l.SynRecv > 0 {
			if i > 0 {
				before = samples[i-1].Time
			}
			return before, s.Time
		}
	}
	return time.Time{}, time.Time{}
}

// FirstOverflow returns when samples first showed TcpExt ListenOverflows
// risen above the first sample's: at is the first sample showing it,
// before the sample just before it, so the first overflow happened in
// (before, at]. Both are zero if none did.
func FirstOverflow(samples []ProbeSample) (before, at time.Time) {
	if len(samples) == 0 {
		return time.Time{}, time.Time{}
	}
	base := samples[0].TCP.ListenOverflows
	for i, s := range samples {
		if s.TCP.ListenOverflows > base {
			return samples[max(i-1, 0)].Time, s.Time
		}
	}
	return time.Time{}, time.Time{}
}

package diagnose_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/diagnose"
	"github.com/stormwatch/stormwatch/internal/golden"
	"github.com/stormwatch/stormwatch/internal/netdev"
	"github.com/stormwatch/stormwatch/internal/netdev/netdevtest"
)

// TestNICSection checks an AWS host over a two-second window through the
// real nic and softnet sources (recorded ENA statistics, a fixture
// softnet_stat): the NIC section comes first, as packets meet the NIC
// before anything else; an allowance exceeded and an interface dropping
// get lines of their own there, with their advice; the conntrack
// allowance left is shown for the device that reports it.
func TestNICSection(t *testing.T) {
	ena := netdevtest.MustLoad("ena-2.8.1")
	k := &netdevtest.Kernel{
		Dump: []netdev.Link{
			{Name: "lo", Index: 1, Loopback: true, HasCounters: true},
			{Name: "ens5", Index: 2, HasCounters: true, Counters: netdev.Counters{RxPackets: 1e6}},
			{Name: "docker0", Index: 3, Kind: "bridge", HasCounters: true},
		},
		Stats: map[string]netdevtest.Recording{"ens5": ena},
	}
	all, err := collector.NewSources(collector.Config{Root: filepath.Join("..", "testdata", "linux-6.18"), NIC: collector.NICConfig{Kernel: k}})
	if err != nil {
		t.Fatal(err)
	}
	defer collector.CloseSources(all)
	var sources []collector.Source
	for _, s := range all {
		if s.Declaration().Name != "listeners" { // no kernel here
			sources = append(sources, s)
		}
	}
	rules := alerts.DefaultRules()
	sampler, err := collector.NewSampler(collector.DefaultSchema(), sources, nil, collector.NewHistory(alerts.Retention(rules, time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	first := sampler.Sample(context.Background(), t0)
	// Two seconds on: 300 packets of new flows dropped over the conntrack
	// allowance, 40 received packets dropped.
	k.Set(func(k *netdevtest.Kernel) {
		k.Stats["ens5"] = ena.With("conntrack_allowance_exceeded", 4410+300)
		k.Dump[1].Counters.RxDropped = 40
	})
	last := sampler.Sample(context.Background(), t0.Add(2*time.Second))
	findings, err := alerts.NewEngine(rules, alerts.Options{}).Check(last.Time, sampler.History())
	if err != nil {
		t.Fatal(err)
	}
	r := diagnose.Build(diagnose.Input{Host: "valkey-1", First: first, Last: last, Findings: findings})
	if len(r.Sections) == 0 || r.Sections[0].Name != "nic" || r.Sections[0].Title != "NIC" {
		t.Fatalf("sections %+v, want NIC first", r.Sections)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text, diagnose.TextOptions{}); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "nic.txt", text.Bytes())
	if r.ExitCode != 2 {
		t.Errorf("exit code %d, want 2 (new flows dropped)", r.ExitCode)
	}
}

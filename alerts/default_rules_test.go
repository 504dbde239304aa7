package alerts

import (
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stormwatch/stormwatch/collector"
)

// stormStart is when the simulated storm begins, after 15 calm minutes.
const stormStart = 900

// host fills a Snapshot of a Valkey host at second sec: calm until
// stormStart, then a reconnect storm that fills the accept queue, the SYN
// queue and the conntrack table at known times.
func host(sec int) *collector.Snapshot { return hostAt(float64(sec)) }

// hostAt is host at any time, in seconds from t0.
func hostAt(sec float64) *collector.Snapshot {
	fx := &fixture{vals: map[string]float64{}}
	func(s *fixture) {
		d := max(sec-stormStart, 0)
		s.Sysctl("net.core.somaxconn", 4096)
		s.Sysctl("net.ipv4.tcp_max_syn_backlog", 4096)
		s.Sysctl("net.ipv4.tcp_syncookies", 1)
		s.Set("conntrack_entries", math.Min(20000+5000*d, 262144))
		s.Set("conntrack_limit", 262144)
		s.Set("conntrack_drop", 0)
		s.Set("conntrack_early_drop", 0)
		s.Set("conntrack_insert_failed", 0)
		s.Set("passive_opens", 100*sec+4900*d)
		s.Set("established", 500)
		// The accept queue of 6379 (limit 511) grows 40/s: full at
		// 912.8s, so overflows are counted from 913s.
		queue := math.Min(40*d, 512)
		s.Set("listen_overflows", 1000*max(sec-912, 0))
		// Its SYN queue grows 30/s: over the limit at 917s, answered with
		// cookies from then on.
		synRecv := math.Min(30*d, 520)
		s.Set("syncookies_sent", 500*max(sec-916, 0))
		s.Set("syn_queue_cookies", 500*max(sec-916, 0))
		s.Set("syn_queue_drops", 0)
		s.SynRecv = synRan
		s.Listeners = []collector.Listener{
			listener("0.0.0.0", 22, 0, 128, 0),
			listener("0.0.0.0", 6379, uint32(queue), 511, uint32(synRecv)),
		}
	}(fx)
	return fx.build(t0.Add(time.Duration(sec * float64(time.Second))))
}

// overflows says when each queue overflows in the storm above.
var overflows = map[string]int{
	"accept queue": 913,
	"SYN queue":    917,
	"conntrack":    949, // 20000 + 5000·d reaches 262144 at d = 48.4
}

// TestDefaultRulesStorm runs the built-in rules through a storm and checks
// when each alert fires: every early warning before its queue overflows.
func TestDefaultRulesStorm(t *testing.T) {
	e := NewEngine(DefaultRules(), Options{})
	h := history()
	fired := map[string]int{}
	for sec := range stormStart + 60 {
		h.Add(host(sec))
		trs, err := e.Eval(at(sec), h)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range trs {
			if tr.To != StateFiring {
				continue
			}
			id := tr.Alert.Name() + "/" + tr.Alert.Labels["severity"]
			if p := tr.Alert.Labels["port"]; p != "" {
				id += "/" + p
			}
			if _, seen := fired[id]; !seen {
				fired[id] = sec
			}
		}
	}
	want := map[string]int{
		"ConnectionRateSurge/warning": 902,
		// Its "for" went from 2 s to 1 s (see the rule): one second of
		// lead back.
		"AcceptQueueFullSoon/warning/6379":     907,
		"ConntrackFullSoon/warning":            913,
		"AcceptQueueNearFull/warning/6379":     911,
		"AcceptQueueOverflowing/critical/6379": 913,
		"ListenOverflows/warning":              913,
		// No "for" any more (see the rule): it fires on the first sample
		// that finds the queue 80% full (30·14 = 420 of 511).
		"SynQueueNearFull/warning/6379":   914,
		"SynCookiesSent/warning":          917,
		"ConntrackTableNearFull/warning":  943,
		"ConntrackTableNearFull/critical": 946,
	}
	if diff := cmp.Diff(want, fired); diff != "" {
		t.Errorf("first firing second (-want +got):\n%s", diff)
	}
	early := map[string]string{
		"ConnectionRateSurge/warning":      "accept queue",
		"AcceptQueueFullSoon/warning/6379": "accept queue",
		"AcceptQueueNearFull/warning/6379": "accept queue",
		"SynQueueNearFull/warning/6379":    "SYN queue",
		"ConntrackFullSoon/warning":        "conntrack",
		"ConntrackTableNearFull/warning":   "conntrack",
		"ConntrackTableNearFull/critical":  "conntrack",
	}
	for id, queue := range early {
		if sec, ok := fired[id]; !ok || sec >= overflows[queue] {
			t.Errorf("%s fired at %ds, want before the %s overflows at %ds", id, sec, queue, overflows[queue])
		}
	}
}

// TestDefaultRulesStormFineSampling runs the same storm sampled as the
// daemon samples it: every second while calm, every 250 ms (storm mode)
// from the storm's start. Rules' "for" and windows are in seconds, so the
// same alerts fire, none later than at one sample a second, and every
// early warning before its queue overflows.
func TestDefaultRulesStormFineSampling(t *testing.T) {
	firstFiring := func(step func(sec int) []float64) map[string]float64 {
		e := NewEngine(DefaultRules(), Options{})
		h := history()
		fired := map[string]float64{}
		for sec := range stormStart + 60 {
			for _, at := range step(sec) {
				h.Add(hostAt(at))
				trs, err := e.Eval(t0.Add(time.Duration(at*float64(time.Second))), h)
				if err != nil {
					t.Fatal(err)
				}
				for _, tr := range trs {
					id := tr.Alert.Name() + "/" + tr.Alert.Labels["severity"]
					if p := tr.Alert.Labels["port"]; p != "" {
						id += "/" + p
					}
					if _, seen := fired[id]; tr.To == StateFiring && !seen {
						fired[id] = at
					}
				}
			}
		}
		return fired
	}
	coarse := firstFiring(func(sec int) []float64 { return []float64{float64(sec)} })
	fine := firstFiring(func(sec int) []float64 {
		if sec < stormStart {
			return []float64{float64(sec)}
		}
		s := float64(sec)
		return []float64{s, s + 0.25, s + 0.5, s + 0.75}
	})
	if diff := cmp.Diff(slices.Sorted(maps.Keys(coarse)), slices.Sorted(maps.Keys(fine))); diff != "" {
		t.Errorf("alerts fired at 1 Hz and at 4 Hz differ (-1 Hz +4 Hz):\n%s", diff)
	}
	// Earlier is fine: a fit over the window weighs the storm's denser
	// samples more (ConntrackFullSoon comes about 2 s sooner).
	for id, c := range coarse {
		if f, ok := fine[id]; ok && f > c {
			t.Errorf("%s fired at %.2fs sampled at 4 Hz, %.0fs at 1 Hz: want no later", id, f, c)
		}
	}
	for id, queue := range map[string]string{
		"ConnectionRateSurge/warning":      "accept queue",
		"AcceptQueueFullSoon/warning/6379": "accept queue",
		"AcceptQueueNearFull/warning/6379": "accept queue",
		"SynQueueNearFull/warning/6379":    "SYN queue",
		"ConntrackFullSoon/warning":        "conntrack",
		"ConntrackTableNearFull/warning":   "conntrack",
	} {
		if at, ok := fine[id]; !ok || at >= float64(overflows[queue]) {
			t.Errorf("%s fired at %.2fs at 4 Hz, want before the %s overflows at %ds", id, at, queue, overflows[queue])
		}
	}
	t.Logf("first firing at 4 Hz: %v", fine)
}

// TestDefaultRulesCalmHost checks that a healthy, busy host raises
// nothing, and neither does a host where nothing could be read.
func TestDefaultRulesCalmHost(t *testing.T) {
	e := NewEngine(DefaultRules(), Options{})
	h := history()
	for sec := range stormStart {
		h.Add(host(sec))
		trs, err := e.Eval(at(sec), h)
		if err != nil {
			t.Fatal(err)
		}
		if len(trs) > 0 {
			t.Fatalf("t=%d: %v", sec, trs)
		}
	}

	e = NewEngine(DefaultRules(), Options{})
	h = history()
	for sec := range 10 {
		h.Add(snap(sec, func(s *fixture) {
			s.Listeners = []collector.Listener{listener("0.0.0.0", 6379, 0, 511, 0)}
		}))
		if trs, err := e.Eval(at(sec), h); err != nil || len(trs) > 0 {
			t.Fatalf("t=%d: nothing read, yet %v %v", sec, trs, err)
		}
	}
}

// TestDefaultRulesConfig checks the rules about the host's settings.
func TestDefaultRulesConfig(t *testing.T) {
	h := history()
	h.Add(snap(0, func(s *fixture) {
		s.Sysctl("net.core.somaxconn", 128)
		s.Sysctl("net.ipv4.tcp_max_syn_backlog", 512)
		s.Sysctl("net.ipv4.tcp_syncookies", 0)
		s.SynRecv = synRan
		ls := []collector.Listener{
			listener("0.0.0.0", 6379, 0, 128, 320), // capped by somaxconn
			listener("::", 6380, 0, 1024, 0),       // limit from a larger somaxconn earlier
			listener("::", 6381, 0, 256, 0),        // two sockets of 128 each
		}
		ls[2].Sockets = 2
		s.Listeners = ls
	}))
	findings, err := NewEngine(DefaultRules(), Options{}).Check(at(0), h)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range findings {
		if f.Status == CheckAlert {
			got = append(got, f.Rule.Name+" "+f.Labels["port"]+" "+f.Annotations["summary"])
		}
	}
	want := []string{
		"SynQueueNearFull 6379 SYN queue of 0.0.0.0:6379 250.0% full (320 half-open of about 128)",
		"SyncookiesDisabled  SYN cookies are disabled (net.ipv4.tcp_syncookies=0)",
		"BacklogCappedBySomaxconn 6379 0.0.0.0:6379 accept queue limited to net.core.somaxconn=128",
		"BacklogCappedBySomaxconn 6381 :::6381 accept queue limited to net.core.somaxconn=128",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestAcceptQueueStalled: a queue that holds the same connections below
// its limit is a server that accepts nothing; a busy queue, a growing one
// and a full one are judged by the other rules.
func TestAcceptQueueStalled(t *testing.T) {
	var stalled []*Rule
	for _, r := range DefaultRules() {
		if r.Name == "AcceptQueueStalled" {
			stalled = append(stalled, r)
		}
	}
	tests := []struct {
		name      string
		queue     func(sec int) uint32
		wantFired int // the second it fires, -1 never
	}{
		{"stopped with 5 waiting", func(sec int) uint32 { return uint32(min(sec, 5)) }, 13},
		{"busy and served", func(sec int) uint32 { return []uint32{0, 2, 0, 1, 3, 0, 0, 1}[sec%8] }, -1},
		{"served but never empty", func(sec int) uint32 { return 1 + uint32(sec%3) }, -1},
		{"filling in a storm", func(sec int) uint32 { return uint32(4 * sec) }, -1},
		{"full and overflowing", func(sec int) uint32 { return min(uint32(40*sec), 129) }, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEngine(stalled, Options{})
			h := history()
			fired := -1
			for sec := range 60 {
				h.Add(snap(sec, func(s *fixture) {
					s.Listeners = []collector.Listener{listener("0.0.0.0", 6379, tt.queue(sec), 128, 0)}
				}))
				trs, err := e.Eval(at(sec), h)
				if err != nil {
					t.Fatal(err)
				}
				for _, tr := range trs {
					if tr.To == StateFiring && fired < 0 {
						fired = sec
					}
				}
			}
			if fired != tt.wantFired {
				t.Errorf("fired at %d, want %d", fired, tt.wantFired)
			}
		})
	}
}

// TestRetentionKeepsWhatRulesRead runs the built-in rules through the
// storm twice: over a History keeping everything, and over one keeping
// what Retention says (each kind for its rules' longest window, and of
// older Snapshots only the series the windows read). Every transition,
// value and annotation must be the same.
func TestRetentionKeepsWhatRulesRead(t *testing.T) {
	rules := DefaultRules()
	whole, kept := NewEngine(rules, Options{}), NewEngine(rules, Options{})
	hw, hk := history(), collector.NewHistory(Retention(rules, time.Second))
	n := 0
	for sec := range stormStart + 60 {
		s := host(sec)
		hw.Add(s)
		hk.Add(s)
		want, err := whole.Eval(at(sec), hw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := kept.Eval(at(sec), hk)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
			t.Fatalf("second %d: transitions (-whole history +retained):\n%s", sec, diff)
		}
		n += len(got)
	}
	if n == 0 {
		t.Fatal("no transitions: the storm raised nothing")
	}
	if hk.Len() >= hw.Len() {
		t.Errorf("retained History holds %d Snapshots, the whole one %d", hk.Len(), hw.Len())
	}
}

// TestDefaultRulesStanding: the built-in rules that read settings only
// (their alerts last as long as the configuration, and do not hold storm
// mode) are the configuration warnings, and no rule that watches traffic.
func TestDefaultRulesStanding(t *testing.T) {
	rules, err := Load(DefaultRulesYAML())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		if r.Standing() && !slices.Contains(got, r.Name) {
			got = append(got, r.Name)
		}
	}
	slices.Sort(got)
	want := []string{"BacklogCappedBySomaxconn", "SyncookiesDisabled", "ValkeyBacklogCapped"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("standing rules (-want +got):\n%s", diff)
	}
}

// TestActiveMeasuring: a standing alert is active but not measuring.
func TestActiveMeasuring(t *testing.T) {
	rules, err := Load([]byte(`rules:
  - name: Unhardened
    condition: syncookies == 0
  - name: Busy
    condition: established > 100
`))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(rules, Options{})
	h := history()
	t0 := time.Unix(1000, 0)
	h.Add(collector.NewBuilder(collector.DefaultSchema(), t0).Set("syncookies", 0).Set("established", 500).Snapshot())
	if _, err := e.Eval(t0, h); err != nil {
		t.Fatal(err)
	}
	if got := len(e.Active()); got != 2 {
		t.Fatalf("%d alerts active, want 2", got)
	}
	if diff := cmp.Diff([]string{"Busy"}, e.ActiveMeasuring()); diff != "" {
		t.Errorf("ActiveMeasuring (-want +got):\n%s", diff)
	}
}

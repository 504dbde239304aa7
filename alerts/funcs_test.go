package alerts

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stormwatch/stormwatch/collector"
)

// valueAt evaluates expression v as the value of an always-true rule of
// the given scope at second sec, for every instance.
func valueAt(t *testing.T, scope Scope, v string, h *collector.History, sec int) []float64 {
	t.Helper()
	rules := mustLoad(t, "rules: [{name: V, scope: "+string(scope)+", condition: 'true', value: '"+v+"'}]")
	findings, err := NewEngine(rules, Options{}).Check(at(sec), h)
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, f := range findings {
		if f.Status != CheckAlert {
			t.Fatalf("%s: status %s", v, f.Status)
		}
		out = append(out, f.Value)
	}
	return out
}

func TestIncreaseRateAcrossReset(t *testing.T) {
	// The counter restarts from zero between 120 and 5.
	values := []float64{100, 110, 120, 5, 15}
	h := counterHistory(len(values), func(i int) float64 { return values[i] })
	for _, c := range []struct {
		expr string
		want float64
	}{
		{`increase("passive_opens", "4s")`, 10 + 10 + 5 + 10},
		{`rate("passive_opens", "4s")`, 35.0 / 4},
		{`increase("passive_opens", "2s")`, 5 + 10},
		{`increase("passive_opens", "1h")`, 35},
		{`max_over_time("passive_opens", "4s")`, 120},
	} {
		got := valueAt(t, ScopeHost, c.expr, h, 4)
		if diff := cmp.Diff([]float64{c.want}, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.expr, diff)
		}
	}
}

func TestIncreaseTooFewPoints(t *testing.T) {
	h := counterHistory(1, func(int) float64 { return 7 })
	rules := mustLoad(t, `rules: [{name: R, condition: 'increase("passive_opens", "10s") >= 0'}]`)
	got, err := NewEngine(rules, Options{}).Check(at(0), h)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Status != CheckNoData {
		t.Errorf("one point: status %s, want no data", got[0].Status)
	}
}

func TestTimeToLimit(t *testing.T) {
	inf := math.Inf(1)
	for _, c := range []struct {
		name   string
		values []float64
		limit  float64
		want   float64
	}{
		// 1000 + 100/s: 4000 at t=30, 10000 sixty seconds later.
		{"linear", ramp(31, 1000, 100), 10000, 60},
		{"flat", ramp(31, 5000, 0), 10000, inf},
		{"falling", ramp(31, 9000, -10), 10000, inf},
		{"one point", []float64{9000}, 10000, inf},
		{"at limit", ramp(31, 9000, 100), 10000, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &series{}
			for i, v := range c.values {
				s.add(float64(i-len(c.values)+1), v)
			}
			if diff := cmp.Diff(c.want, s.timeToLimit(c.limit)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func ramp(n int, start, step float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = start + step*float64(i)
	}
	return out
}

// TestTimeToLimitCondition runs time_to_limit through a rule, on a host
// series and on one listener's series while its place in the Snapshots
// moves and it is sometimes absent.
func TestTimeToLimitCondition(t *testing.T) {
	h := history()
	for i := range 31 {
		h.Add(snap(i, func(s *fixture) {
			s.Set("conntrack_entries", 1000+100*float64(i))
			s.Set("conntrack_limit", 10000)
			if i%2 == 0 { // a listener comes and goes before ours
				s.Listeners = append(s.Listeners, listener("0.0.0.0", 22, 0, 128, 0))
			}
			if i%5 != 3 { // ours is missing now and then
				s.Listeners = append(s.Listeners, listener("::", 6379, uint32(10*i), 400, 0))
			}
			s.Listeners = append(s.Listeners, listener("0.0.0.0", 6380, 0, 128, 0))
		}))
	}
	if diff := cmp.Diff([]float64{60}, valueAt(t, ScopeHost, `time_to_limit("conntrack_entries", conntrack_limit, "30s")`, h, 30)); diff != "" {
		t.Errorf("host (-want +got):\n%s", diff)
	}
	// 6379 holds 300 of 400 and grows 10/s: 10s to go. 22 and 6380 are
	// flat. (Listeners come in label order: 0.0.0.0:22, 0.0.0.0:6380,
	// [::]:6379.)
	got := valueAt(t, ScopeListener, `time_to_limit("accept_queue", accept_queue_limit, "10s")`, h, 30)
	if diff := cmp.Diff([]float64{math.Inf(1), math.Inf(1), 10}, got); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
}

// surgeRule is the built-in connection-rate rule alone.
func surgeRule(t *testing.T) []*Rule {
	for _, r := range DefaultRules() {
		if r.Name == "ConnectionRateSurge" {
			return []*Rule{r}
		}
	}
	t.Fatal("no ConnectionRateSurge rule")
	return nil
}

// opens returns a History of passive opens growing at rate(i) per second
// for n seconds.
func opens(n int, rate func(i int) float64) *collector.History {
	h := history()
	total := 1e6
	for i := range n {
		if i > 0 {
			total += rate(i)
		}
		h.Add(snap(i, func(s *fixture) { s.Set("passive_opens", total) }))
	}
	return h
}

func TestConnectionRateSurge(t *testing.T) {
	for _, c := range []struct {
		name string
		rate func(i int) float64
		n    int
		want CheckStatus
	}{
		{"steady 200/s then 5000/s", func(i int) float64 { return ifElse(i > 600, 5000, 200) }, 611, CheckAlert},
		{"steady 200/s", func(int) float64 { return 200 }, 611, CheckOK},
		{"quiet, then 50/s", func(i int) float64 { return ifElse(i > 600, 50, 0) }, 611, CheckOK},
		{"quiet, then 400/s", func(i int) float64 { return ifElse(i > 600, 400, 0) }, 611, CheckOK},
		{"quiet, then 5000/s", func(i int) float64 { return ifElse(i > 600, 5000, 0) }, 611, CheckAlert},
		// 70 bursty seconds of 1000/s and 0/s, then 3000/s: the median of
		// the baseline is 500/s at most, threshold 5000/s.
		{"bursty host, 3000/s", func(i int) float64 { return ifElse(i > 600, 3000, float64(i%2)*1000) }, 611, CheckOK},
		// Not enough history for a baseline yet: no data, not a storm.
		{"warming up", func(i int) float64 { return 5000 }, 60, CheckNoData},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := opens(c.n, c.rate)
			got, err := NewEngine(surgeRule(t), Options{}).Check(at(c.n-1), h)
			if err != nil {
				t.Fatal(err)
			}
			if got[0].Status != c.want {
				t.Errorf("status %s, want %s (value %g)", got[0].Status, c.want, got[0].Value)
			}
		})
	}
}

// TestConnectionRateSurgeFires runs the surge through the Engine: it fires
// within seconds of the surge starting.
func TestConnectionRateSurgeFires(t *testing.T) {
	e := NewEngine(surgeRule(t), Options{})
	h := history()
	total := 0.0
	fired := -1
	for i := range 620 {
		if i > 600 {
			total += 5000
		} else if i > 0 {
			total += 200
		}
		h.Add(snap(i, func(s *fixture) { s.Set("passive_opens", total) }))
		got, err := e.Eval(at(i), h)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > 0 && got[0].To == StateFiring && fired < 0 {
			fired = i
		}
	}
	if fired < 601 || fired > 605 {
		t.Errorf("fired at %ds, want within 5s of the surge at 601s", fired)
	}
}

func ifElse(c bool, a, b float64) float64 {
	if c {
		return a
	}
	return b
}

func TestMedianRate(t *testing.T) {
	s := &series{}
	for i, v := range []float64{0, 10, 20, 30, 1030, 1040, 1050, 1060, 1070, 1080, 1090, 5} {
		s.add(float64(i), v)
	}
	got, _ := s.medianRate(nil)
	// Rates: 10 10 10 1000 10 10 10 10 10 10 5 (reset): median 10.
	if diff := cmp.Diff(10.0, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	short := &series{}
	short.add(0, 1)
	short.add(1, 2)
	if got, _ := short.medianRate(nil); !math.IsNaN(got) {
		t.Errorf("two points: %g, want NaN", got)
	}
	// 9 s of intervals are not a baseline; 10 s are.
	nine := &series{}
	for i := range 10 {
		nine.add(float64(i), float64(5*i))
	}
	if got, _ := nine.medianRate(nil); !math.IsNaN(got) {
		t.Errorf("9 s of intervals: %g, want NaN", got)
	}
	nine.add(10, 50)
	if got, _ := nine.medianRate(nil); got != 5 {
		t.Errorf("10 s of intervals: %g, want 5", got)
	}
}

// TestMedianRateSampling: 11 calm minutes at 5/s sampled every second,
// then a 3-minute storm at 500/s sampled every 250 ms (storm mode): the
// storm has four times the points but a fifth of the time, and the
// baseline stays the calm rate.
func TestMedianRateSampling(t *testing.T) {
	s := &series{}
	v := 0.0
	for i := 0; i <= 660; i++ {
		s.add(float64(i), v)
		v += 5
	}
	v -= 5
	for i := 1; i <= 720; i++ {
		v += 500 * 0.25
		s.add(660+float64(i)*0.25, v)
	}
	if got, _ := s.medianRate(nil); got != 5 {
		t.Errorf("baseline after a finely sampled storm: %g, want 5", got)
	}
	// Equal intervals: the plain median, the mean of the middle two for an
	// even count.
	even := &series{}
	for i, x := range []float64{0, 1, 3, 6, 10, 15, 21, 28, 36, 45, 55} {
		even.add(float64(i), x)
	}
	// Rates 1..10: median (5+6)/2.
	if got, _ := even.medianRate(nil); got != 5.5 {
		t.Errorf("rates 1..10: median %g, want 5.5", got)
	}
}

func TestTemplateFuncs(t *testing.T) {
	type row struct {
		In                              any
		Pct, Humanize, HumanizeDuration string
	}
	var got []row
	for _, in := range []any{0.834, 1234567.0, 0.0123, 95, math.Inf(1), 0.0} {
		p, _ := pct(in)
		h, _ := humanize(in)
		d, _ := humanizeDuration(in)
		got = append(got, row{in, p, h, d})
	}
	want := []row{
		{0.834, "83.4%", "834m", "0.834s"},
		{1234567.0, "123456700.0%", "1.235M", "342h56m7s"},
		{0.0123, "1.2%", "12.3m", "0.0123s"},
		{95, "9500.0%", "95", "1m35s"},
		{math.Inf(1), "+Inf%", "+Inf", "never"},
		{0.0, "0.0%", "0", "0s"},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

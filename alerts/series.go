package alerts

import (
	"cmp"
	"math"
	"slices"
)

// A series is the points of one variable over a window, oldest first, with
// NaN values left out. Times are seconds relative to the evaluation time
// (zero or negative), which keeps the least-squares sums well conditioned.
type series struct {
	t, v []float64
}

func (s *series) reset() { s.t, s.v = s.t[:0], s.v[:0] }

func (s *series) add(t, v float64) {
	if math.IsNaN(v) {
		return
	}
	s.t = append(s.t, t)
	s.v = append(s.v, v)
}

// CounterDelta is how much a counter rose from a to b. A drop means the
// counter restarted from zero (the daemon or a module reloaded, a
// namespace was recreated), so b itself is the rise since the restart.
// It is the one place stormwatch turns two readings of a counter into a
// rise.
func CounterDelta(a, b float64) float64 {
	if b < a {
		return b
	}
	return b - a
}

// increase returns how much a counter rose over the series and the
// seconds the series spans, or NaN with fewer than two points. Unlike
// Prometheus it does not extrapolate to the window's edges: at 1 Hz the
// window is covered to within a second.
func (s *series) increase() (inc, span float64) {
	if len(s.v) < 2 {
		return math.NaN(), 0
	}
	for i := 1; i < len(s.v); i++ {
		inc += CounterDelta(s.v[i-1], s.v[i])
	}
	return inc, s.t[len(s.t)-1] - s.t[0]
}

// rate returns the per-second rise of a counter over the series.
func (s *series) rate() float64 {
	inc, span := s.increase()
	if math.IsNaN(inc) || span <= 0 {
		return math.NaN()
	}
	return inc / span
}

// max returns the highest value of the series, NaN when empty.
func (s *series) max() float64 {
	if len(s.v) == 0 {
		return math.NaN()
	}
	return slices.Max(s.v)
}

// min returns the lowest value of the series, NaN when empty.
func (s *series) min() float64 {
	if len(s.v) == 0 {
		return math.NaN()
	}
	return slices.Min(s.v)
}

// timeToLimit returns the seconds until a least-squares line fitted
// through the series reaches limit, counted from time 0 (the evaluation
// time), like PromQL's predict_linear solved for the time. It is 0 when
// the latest point or the fitted line is already at the limit, and +Inf
// when the line is flat or falling or there are fewer than two points.
func (s *series) timeToLimit(limit float64) float64 {
	return TimeToLimit(s.t, s.v, limit)
}

// LinearFit fits a least-squares line through the points (t[i], v[i])
// and returns its slope (per unit of t) and its value at t = 0. ok is
// false with fewer than two points or when every t is the same. The
// points must carry no NaN; t relative to a recent time (seconds before
// now, say) keeps the sums well conditioned.
func LinearFit(t, v []float64) (slope, at0 float64, ok bool) {
	n := len(v)
	if n < 2 || len(t) != n {
		return 0, 0, false
	}
	var mt, mv float64
	for i := range n {
		mt += t[i]
		mv += v[i]
	}
	mt /= float64(n)
	mv /= float64(n)
	var cov, vart float64
	for i := range n {
		dt := t[i] - mt
		cov += dt * (v[i] - mv)
		vart += dt * dt
	}
	if vart == 0 {
		return 0, 0, false
	}
	slope = cov / vart
	return slope, mv - slope*mt, true
}

// TimeToLimit is the rule function time_to_limit over the points (t[i],
// v[i]), oldest first, t in seconds relative to now (zero or negative),
// no NaN: the seconds until the least-squares line reaches limit. It is
// 0 when the latest point or the line is already at the limit, +Inf when
// the line is flat or falling or there are fewer than two points, NaN
// when limit is NaN.
func TimeToLimit(t, v []float64, limit float64) float64 {
	n := len(v)
	if math.IsNaN(limit) {
		return math.NaN()
	}
	if n > 0 && v[n-1] >= limit {
		return 0
	}
	slope, now, ok := LinearFit(t, v)
	if !ok || !(slope > 0) {
		return math.Inf(1)
	}
	if now >= limit {
		return 0
	}
	return (limit - now) / slope
}

// minBaselineSpan is how many seconds of intervals a baseline needs
// before it is trusted (ten at the default 1 s); with less,
// baseline_rate is no data.
const minBaselineSpan = 10.0

// rateSpan is the rate of one interval and the interval's length.
type rateSpan struct{ rate, dt float64 }

// medianRate returns the median of the per-second rates of a counter
// between consecutive points, each weighted by its interval's length: the
// host's typical rate, which a burst covering less than half of the time
// does not move, however finely it was sampled (storm mode samples four
// times as often: counted per point, a 3-minute storm would outweigh 11
// calm minutes). buf is scratch space; the result is NaN with less than
// minBaselineSpan seconds of intervals.
func (s *series) medianRate(buf []rateSpan) (float64, []rateSpan) {
	buf = buf[:0]
	total := 0.0
	for i := 1; i < len(s.v); i++ {
		dt := s.t[i] - s.t[i-1]
		if dt <= 0 {
			continue
		}
		buf = append(buf, rateSpan{CounterDelta(s.v[i-1], s.v[i]) / dt, dt})
		total += dt
	}
	const eps = 1e-9
	if total < minBaselineSpan-eps {
		return math.NaN(), buf
	}
	slices.SortFunc(buf, func(a, b rateSpan) int { return cmp.Compare(a.rate, b.rate) })
	half, acc := total/2, 0.0
	for i, r := range buf {
		acc += r.dt
		switch {
		case acc > half+eps:
			return r.rate, buf
		case acc >= half-eps && i+1 < len(buf):
			// Exactly half below: between this rate and the next, as the
			// plain median of an even count.
			return (r.rate + buf[i+1].rate) / 2, buf
		}
	}
	return buf[len(buf)-1].rate, buf
}

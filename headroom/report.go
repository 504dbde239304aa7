package headroom

import (
	"math"
	"time"

	"github.com/stormwatch/stormwatch/alerts"
)

// SchemaVersion is the version of the Report's JSON layout. Fields are
// only added within a version; a change that breaks a reader bumps it.
const SchemaVersion = 1

// Defaults of Options.
const (
	// DefaultMin is the headroom below which a host is not ok: with 30%
	// left, a queue is 70% full — a batch of new connections still lands,
	// and the built-in AcceptQueueNearFull rule (at 80%) has not fired yet.
	DefaultMin = 0.3
	// DefaultTop is how many queues a Report lists besides the tightest of
	// each kind.
	DefaultTop = 10
	// DefaultStaleAfter is how old the latest sample may be before the
	// answer is no data.
	DefaultStaleAfter = 5 * time.Second
	// DefaultTrendWindow is how far back a queue's trend looks.
	DefaultTrendWindow = 10 * time.Second
)

// Options say how a Report judges and what it lists.
type Options struct {
	// Min is the headroom (0..1) below which the host is not ok. 0 makes
	// only missing data and critical alerts count.
	Min float64
	// Ports, when set, narrow the queues of entities that have a port (a
	// listener; an entity joined to a listener, such as a Valkey target)
	// to those ports; queues of the host (conntrack) and of entities
	// without a port always count. A port that no entity has makes the
	// host not ok: nothing listens there. Alerts labelled with another
	// port are left out.
	Ports []uint16
	// Top is how many queues the Report lists, tightest first; the
	// tightest of every kind and the host's queues are listed too. 0
	// lists every queue.
	Top int
	// StaleAfter is how old the latest sample may be (default
	// DefaultStaleAfter).
	StaleAfter time.Duration
	// TrendWindow is how far back trends look (default
	// DefaultTrendWindow).
	TrendWindow time.Duration
}

// DefaultOptions returns the defaults: Min DefaultMin, Top DefaultTop,
// every port.
func DefaultOptions() Options {
	return Options{Min: DefaultMin, Top: DefaultTop, StaleAfter: DefaultStaleAfter, TrendWindow: DefaultTrendWindow}
}

func (o Options) withDefaults() Options {
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	if o.TrendWindow <= 0 {
		o.TrendWindow = DefaultTrendWindow
	}
	if math.IsNaN(o.Min) {
		o.Min = DefaultMin
	}
	return o
}

// Report is a host's headroom: the answer of GET /api/v1/headroom and of
// `stormwatch headroom --format json`.
type Report struct {
	// Schema is the version of the layout (SchemaVersion).
	Schema int `json:"schema"`
	// Host is the host's name.
	Host string `json:"host,omitempty"`
	// Time is when the sample judged was taken; absent before the first.
	Time time.Time `json:"time,omitzero"`
	// AgeSeconds is how old that sample was when judged.
	AgeSeconds *float64 `json:"age_seconds"`
	// OK is true when the headroom is at least Min, no critical alert
	// fires and nothing the answer depends on is missing.
	OK bool `json:"ok"`
	// NoData is true when something the answer depends on is missing: no
	// sample, a stale one, a source that failed, a port asked for that
	// nothing listens on. OK is then false and Headroom and Limiting null.
	NoData bool `json:"no_data"`
	// Headroom is the tightest remaining share (0..1) of any queue:
	// Limiting's. null when no queue has a figure, or with NoData.
	Headroom *float64 `json:"headroom"`
	// Min is the threshold OK was judged against.
	Min float64 `json:"min"`
	// Ports is the port filter asked for (none: every port).
	Ports []uint16 `json:"ports,omitempty"`
	// Limiting is the queue that sets Headroom; null when none does.
	Limiting *Queue `json:"limiting"`
	// Queues are the tightest queues, tightest first (see Options.Top),
	// then the host's queues that have no figure.
	Queues []Queue `json:"queues"`
	// QueuesTotal is how many queues were judged (the port filter
	// applied), listed or not.
	QueuesTotal int `json:"queues_total"`
	// Alerts are the pending and firing alerts (the port filter applied).
	Alerts []Alert `json:"alerts"`
	// Reasons say, in words, why OK is false; empty when it is true.
	Reasons []string `json:"reasons"`
}

// Queue is one queue of one entity: the conntrack table, the accept queue
// of 0.0.0.0:6379.
type Queue struct {
	// ID is the checklist item's id ("accept_queue"); with Kind and Labels
	// it identifies the queue.
	ID string `json:"id"`
	// What names the queue ("accept queue").
	What string `json:"what"`
	// Kind is the entity kind ("listener"; "host" for the host's own).
	Kind string `json:"kind"`
	// Labels identify the entity (addr and port of a listener).
	Labels map[string]string `json:"labels,omitempty"`
	// Entity is the entity's display name ("0.0.0.0:6379"); absent for
	// the host's queues.
	Entity string `json:"entity,omitempty"`
	// Name is What and Entity: "accept queue 0.0.0.0:6379".
	Name string `json:"name"`
	// Unit names what Used and Limit count.
	Unit string `json:"unit,omitempty"`
	// Used, Limit and Free (Limit-Used, at least 0) are the queue's
	// figures; null where not read or not applicable (no limit).
	Used  *float64 `json:"used"`
	Limit *float64 `json:"limit"`
	Free  *float64 `json:"free"`
	// UsedRatio is the used share: the item's declared ratio (the accept
	// queue's fullest socket) or Used/Limit. It may exceed 1 (an accept
	// queue is full at limit+1).
	UsedRatio *float64 `json:"used_ratio"`
	// Headroom is 1-UsedRatio, clamped to 0..1; null without a figure.
	Headroom *float64 `json:"headroom"`
	// Trend is how Used moved over the recent samples; null with fewer
	// than two.
	Trend *Trend `json:"trend"`
	// Note says why a figure is missing ("no limit").
	Note string `json:"note,omitempty"`
}

// Trend is a least-squares line through a queue's recent samples.
type Trend struct {
	// WindowSeconds is the time the points span; Points how many there
	// are.
	WindowSeconds float64 `json:"window_seconds"`
	Points        int     `json:"points"`
	// PerSecond is the slope: how much Used grows a second (negative:
	// draining).
	PerSecond float64 `json:"per_second"`
	// SecondsToFull is when the line reaches Limit (0: there already);
	// null when it is flat or falling, or there is no limit.
	SecondsToFull *float64 `json:"seconds_to_full"`
}

// Alert is a pending or firing alert, as the report shows it.
type Alert struct {
	// Name is the alertname.
	Name string `json:"alertname"`
	// State is "pending" or "firing" (for the local form, which judges
	// the rules once as `stormwatch check` does, "firing" whenever the
	// condition holds).
	State string `json:"state"`
	// Severity is the rule's severity (info, warning, critical).
	Severity string `json:"severity"`
	// Labels are the alert's other labels (the listener's addr and port,
	// the rule's own).
	Labels map[string]string `json:"labels,omitempty"`
	// Summary is the rendered summary.
	Summary string `json:"summary,omitempty"`
	// ActiveAt is when the condition started holding (absent for the
	// local form).
	ActiveAt time.Time `json:"active_at,omitzero"`
}

// FromEngine converts the Engine's pending and firing alerts
// (alerts.Engine.Active) for Input.Alerts.
func FromEngine(active []alerts.Alert) []Alert {
	out := make([]Alert, 0, len(active))
	for _, a := range active {
		if a.State != alerts.StatePending && a.State != alerts.StateFiring {
			continue
		}
		out = append(out, alert(a.Labels, a.State.String(), a.Annotations["summary"], a.ActiveAt))
	}
	return out
}

// FromFindings converts the findings of alerts.Engine.Check whose
// condition holds into firing alerts, for the local form.
func FromFindings(findings []alerts.Finding) []Alert {
	var out []Alert
	for _, f := range findings {
		if f.Status != alerts.CheckAlert {
			continue
		}
		out = append(out, alert(f.Labels, alerts.StateFiring.String(), f.Annotations["summary"], time.Time{}))
	}
	return out
}

func alert(labels map[string]string, state, summary string, activeAt time.Time) Alert {
	a := Alert{Name: labels["alertname"], State: state, Severity: labels["severity"], Summary: summary, ActiveAt: activeAt}
	for k, v := range labels {
		if k == "alertname" || k == "severity" {
			continue
		}
		if a.Labels == nil {
			a.Labels = make(map[string]string, len(labels))
		}
		a.Labels[k] = v
	}
	return a
}

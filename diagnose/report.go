package diagnose

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/stormwatch/stormwatch/alerts"
	"github.com/stormwatch/stormwatch/collector"
)

// Status is the verdict on one item, or on the whole host.
type Status int

// Statuses, from best to worst. Unknown ranks last among items (it says
// nothing about the host), but makes the report Unknown only when nothing
// at all could be read.
const (
	OK Status = iota
	Warning
	Critical
	Unknown
)

var statusNames = [...]string{"OK", "WARN", "CRIT", "UNKNOWN"}

// String returns OK, WARN, CRIT or UNKNOWN.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the status's name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ExitCode is the monitoring-plugin exit code of a report's status.
func (s Status) ExitCode() int { return int(s) }

// Report is the checklist of one `stormwatch check` run.
type Report struct {
	// Schema is the version of the JSON layout.
	Schema int `json:"schema"`
	// Host is the host's name.
	Host string `json:"host"`
	// Time is when the last sample was taken.
	Time time.Time `json:"time"`
	// WindowSeconds is the time between the two samples; 0 for an
	// instant check, which leaves counter items out.
	WindowSeconds float64 `json:"window_seconds"`
	// Status is the worst item status (Unknown only when nothing could be
	// read); ExitCode is its exit code.
	Status   Status `json:"status"`
	ExitCode int    `json:"exit_code"`
	// Sections are the checklist, in the order a connection travels.
	Sections []Section `json:"sections"`
	// Sources says how each source fared in the last sample.
	Sources []Source `json:"sources"`
}

// Section is one stage of a connection's path.
type Section struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	Items []Item `json:"items"`
}

// Item is one line of the checklist.
type Item struct {
	// ID is stable across runs (e.g. "accept_queue"); with Labels it
	// identifies the item.
	ID string `json:"id"`
	// What is the line's text.
	What string `json:"what"`
	// Labels are the listener's addr and port, for listener items.
	Labels map[string]string `json:"labels,omitempty"`
	// Status is the worst severity of the rules that alert on the item;
	// Unknown when its data could not be read.
	Status Status `json:"status"`
	// Value is the current value, Limit its limit and UsedRatio
	// Value/Limit, each absent when not applicable.
	Value     *float64 `json:"value,omitempty"`
	Limit     *float64 `json:"limit,omitempty"`
	UsedRatio *float64 `json:"used_ratio,omitempty"`
	// RatePerSecond is a counter's rate over the window.
	RatePerSecond *float64 `json:"rate_per_second,omitempty"`
	// Unit names what Value counts.
	Unit string `json:"unit,omitempty"`
	// Alerts are the rules whose condition holds for the item.
	Alerts []Alert `json:"alerts,omitempty"`
	// Advice are the distinct advice lines of those rules.
	Advice []string `json:"advice,omitempty"`
	// Reason says why the item is Unknown.
	Reason string `json:"reason,omitempty"`
	// NotJudged names the item's rules that had too little data to judge
	// (a rule over minutes of history, or counters in an instant check).
	NotJudged []string `json:"not_judged,omitempty"`
}

// Alert is a rule whose condition holds, as judged once.
type Alert struct {
	Name     string  `json:"alertname"`
	Severity string  `json:"severity"`
	Value    float64 `json:"value"`
	Summary  string  `json:"summary,omitempty"`
	Advice   string  `json:"advice,omitempty"`
}

// Source is a source's result in the last sample.
type Source struct {
	Name    string `json:"name"`
	Success bool   `json:"success"`
	NoData  bool   `json:"no_data"`
	Error   string `json:"error,omitempty"`
}

// Input is what Build judges.
type Input struct {
	// Host is the host's name.
	Host string
	// First and Last are the two samples, Window apart; First is nil for
	// an instant check.
	First, Last *collector.Snapshot
	// Findings are the rules judged on the samples (alerts.Engine.Check).
	Findings []alerts.Finding
}

// ruleItems maps each built-in rule to the item it judges. Rules not named
// here (a user's own) get items of their own in the "other" section.
var ruleItems = map[string]string{
	"ConntrackTableNearFull":   "conntrack_table",
	"ConntrackFullSoon":        "conntrack_table",
	"ConntrackDropping":        "conntrack_drops",
	"ConntrackInsertFailing":   "conntrack_drops",
	"SynQueueNearFull":         "syn_queue",
	"SynCookiesSent":           "syn_overflows",
	"SynDropped":               "syn_overflows",
	"AcceptQueueNearFull":      "accept_queue",
	"AcceptQueueFullSoon":      "accept_queue",
	"AcceptQueueOverflowing":   "accept_queue",
	"BacklogCappedBySomaxconn": "accept_queue",
	"ListenOverflows":          "accept_overflows",
	"ConnectionRateSurge":      "connection_rate",
	"SyncookiesDisabled":       "sysctl_syncookies",
}

// Build turns samples and findings into the checklist.
func Build(in Input) *Report {
	s := in.Last
	r := &Report{Schema: 1, Host: in.Host, Time: s.Time}
	window := 0.0
	if in.First != nil {
		window = s.Time.Sub(in.First.Time).Seconds()
	}
	r.WindowSeconds = window
	for _, src := range s.Sources {
		e := ""
		if src.Err != nil {
			e = src.Err.Error()
		}
		r.Sources = append(r.Sources, Source{Name: src.Name, Success: src.Success, NoData: src.NoData, Error: e})
	}
	b := &builder{in: in, s: s, window: window, used: map[int]bool{}}

	conntrack := Section{Name: "conntrack", Title: "Conntrack"}
	if res, _ := s.Source("conntrack"); res.NoData {
		conntrack.Items = append(conntrack.Items, Item{ID: "conntrack_table", What: "conntrack table", Status: OK,
			Reason: "conntrack is not loaded: no flow is tracked"})
	} else {
		conntrack.Items = append(conntrack.Items, b.item(Item{ID: "conntrack_table", What: "conntrack table", Unit: "entries"},
			nil, s.Conntrack.Entries, s.Conntrack.Limit, "conntrack"))
		if window > 0 {
			conntrack.Items = append(conntrack.Items, b.rateItem(Item{ID: "conntrack_drops", What: "conntrack drops", Unit: "flows/s"},
				func(x *collector.Snapshot) float64 {
					return x.Conntrack.Drop + x.Conntrack.EarlyDrop + x.Conntrack.InsertFailed
				}, "conntrack_stats"))
		}
	}

	// Listeners, busiest first.
	listeners := slices.Clone(s.Listeners)
	slices.SortStableFunc(listeners, func(a, b collector.Listener) int {
		return cmp.Or(cmp.Compare(fill(b), fill(a)), cmp.Compare(b.SynRecv, a.SynRecv))
	})

	syn := Section{Name: "syn_queue", Title: "SYN queue"}
	if window > 0 {
		syn.Items = append(syn.Items, b.rateItem(Item{ID: "syn_overflows", What: "SYN cookies + drops", Unit: "SYNs/s"},
			func(x *collector.Snapshot) float64 {
				// Older kernels lack TCPReqQFullDrop; neither read is no data.
				c, d := x.TCP.SyncookiesSent, x.TCP.TCPReqQFullDrop
				if !collector.Present(c) && !collector.Present(d) {
					return math.NaN()
				}
				return nanToZero(c) + nanToZero(d)
			}, "tcpstat"))
	}
	for _, l := range listeners {
		labels := listenerLabels(l)
		if l.SynRecv == 0 && !b.alerting("syn_queue", labels) {
			continue // a quiet listener's SYN queue says nothing
		}
		syn.Items = append(syn.Items, b.item(Item{ID: "syn_queue", What: "SYN queue " + hostPort(labels), Unit: "half-open"},
			labels, float64(l.SynRecv), alerts.SynQueueLimit(s, &l), "listeners"))
	}

	accept := Section{Name: "accept_queue", Title: "Accept queue"}
	if window > 0 {
		accept.Items = append(accept.Items, b.rateItem(Item{ID: "accept_overflows", What: "accept queue overflows", Unit: "drops/s"},
			func(x *collector.Snapshot) float64 { return x.TCP.ListenOverflows }, "tcpstat"))
	}
	if res, _ := s.Source("listeners"); !res.Success {
		accept.Items = append(accept.Items, b.item(Item{ID: "accept_queue", What: "listeners"}, nil, math.NaN(), math.NaN(), "listeners"))
	}
	for _, l := range listeners {
		labels := listenerLabels(l)
		accept.Items = append(accept.Items, b.item(Item{ID: "accept_queue", What: "accept queue " + hostPort(labels), Unit: "connections"},
			labels, float64(l.AcceptQueue), float64(l.AcceptLimit), "listeners"))
	}

	rate := Section{Name: "connection_rate", Title: "Connection rate"}
	if window > 0 {
		rate.Items = append(rate.Items, b.rateItem(Item{ID: "connection_rate", What: "new connections (passive opens)", Unit: "connections/s"},
			func(x *collector.Snapshot) float64 { return x.TCP.PassiveOpens }, "tcpstat"))
	}

	sizing := Section{Name: "sysctl", Title: "Sysctl sizing"}
	for _, sc := range []struct{ id, name string }{
		{"sysctl_somaxconn", "net.core.somaxconn"},
		{"sysctl_max_syn_backlog", "net.ipv4.tcp_max_syn_backlog"},
		{"sysctl_syncookies", "net.ipv4.tcp_syncookies"},
		{"sysctl_abort_on_overflow", "net.ipv4.tcp_abort_on_overflow"},
	} {
		v := math.NaN()
		if x, ok := s.Sysctl(sc.name); ok {
			v = float64(x)
		}
		sizing.Items = append(sizing.Items, b.item(Item{ID: sc.id, What: sc.name}, nil, v, math.NaN(), "sysctl"))
	}

	other := Section{Name: "other", Title: "Other rules"}
	for i, f := range in.Findings {
		if f.Status != alerts.CheckAlert || b.used[i] {
			continue
		}
		it := Item{ID: "rule", What: f.Rule.Name}
		if f.Labels["port"] != "" {
			it.Labels = map[string]string{"addr": f.Labels["addr"], "port": f.Labels["port"]}
			it.What += " " + hostPort(it.Labels)
		}
		b.attach(&it, f)
		other.Items = append(other.Items, it)
	}

	for _, sec := range []Section{conntrack, syn, accept, rate, sizing, other} {
		if len(sec.Items) > 0 {
			r.Sections = append(r.Sections, sec)
		}
	}
	r.Status = r.verdict()
	r.ExitCode = r.Status.ExitCode()
	return r
}

// coreSources are what the checklist cannot do without: the queues per
// listener and the overflow counters. When one of them fails, an otherwise
// clean report is Unknown, not OK.
var coreSources = []string{"listeners", "tcpstat"}

// verdict is the worst item status. With nothing worse than OK it is
// Unknown when a core source failed (a check that could not see the queues
// cannot call the host healthy); items Unknown for want of a lesser source
// (conntrack stats without CAP_NET_ADMIN) leave it OK.
func (r *Report) verdict() Status {
	worst := OK
	for _, sec := range r.Sections {
		for _, it := range sec.Items {
			if it.Status != Unknown && it.Status > worst {
				worst = it.Status
			}
		}
	}
	if worst != OK {
		return worst
	}
	for _, s := range r.Sources {
		if slices.Contains(coreSources, s.Name) && !s.Success && !s.NoData {
			return Unknown
		}
	}
	return OK
}

type builder struct {
	in     Input
	s      *collector.Snapshot
	window float64
	used   map[int]bool // findings attached to an item
}

// item fills it with value and limit, attaches the findings of its rules
// and marks it Unknown, with the source's error, when value was not read.
func (b *builder) item(it Item, labels map[string]string, value, limit float64, source string) Item {
	it.Labels = labels
	if collector.Present(value) {
		it.Value = ptr(value)
		if collector.Present(limit) {
			it.Limit = ptr(limit)
			if limit > 0 {
				it.UsedRatio = ptr(value / limit)
			}
		}
	} else {
		it.Status, it.Reason = Unknown, b.reason(source)
	}
	b.judge(&it)
	return it
}

// rateItem is an item whose value is the rate of a counter over the window.
func (b *builder) rateItem(it Item, counter func(*collector.Snapshot) float64, source string) Item {
	a, z := counter(b.in.First), counter(b.s)
	if collector.Present(a) && collector.Present(z) && b.window > 0 {
		d := z - a
		if d < 0 { // the counter restarted
			d = z
		}
		it.RatePerSecond = ptr(d / b.window)
	} else {
		it.Status, it.Reason = Unknown, b.reason(source)
	}
	b.judge(&it)
	return it
}

// alerting reports whether a rule of item id alerts for labels.
func (b *builder) alerting(id string, labels map[string]string) bool {
	for _, f := range b.in.Findings {
		if f.Status == alerts.CheckAlert && ruleItems[f.Rule.Name] == id && sameListener(f.Labels, labels) {
			return true
		}
	}
	return false
}

// judge attaches the findings of the item's rules: those that alert, and
// the names of those that could not be judged.
func (b *builder) judge(it *Item) {
	for i, f := range b.in.Findings {
		if ruleItems[f.Rule.Name] != it.ID || !sameListener(f.Labels, it.Labels) {
			continue
		}
		switch f.Status {
		case alerts.CheckAlert:
			b.used[i] = true
			b.attach(it, f)
		case alerts.CheckNoData:
			if it.Status != Unknown && !slices.Contains(it.NotJudged, f.Rule.Name) {
				it.NotJudged = append(it.NotJudged, f.Rule.Name)
			}
		}
	}
}

func (b *builder) attach(it *Item, f alerts.Finding) {
	a := Alert{Name: f.Rule.Name, Severity: string(f.Rule.Severity), Value: f.Value,
		Summary: f.Annotations["summary"], Advice: f.Annotations["advice"]}
	if math.IsNaN(a.Value) || math.IsInf(a.Value, 0) {
		a.Value = 0
	}
	it.Alerts = append(it.Alerts, a)
	if a.Advice != "" && !slices.Contains(it.Advice, a.Advice) {
		it.Advice = append(it.Advice, a.Advice)
	}
	st := Warning // info and warning: worth a look
	if f.Rule.Severity == alerts.SeverityCritical {
		st = Critical
	}
	if it.Status == Unknown || st > it.Status {
		it.Status = st
	}
}

// reason explains why a source's data is missing.
func (b *builder) reason(source string) string {
	res, ok := b.s.Source(source)
	switch {
	case !ok:
		return source + " did not run"
	case res.NoData:
		return source + ": not present on this host"
	case errors.Is(res.Err, collector.ErrPermission) && source == "conntrack_stats":
		return "conntrack stats need CAP_NET_ADMIN (this kernel has no /proc/net/stat/nf_conntrack): run as root"
	case res.Err != nil:
		return res.Err.Error()
	}
	return "not provided by this kernel"
}

func sameListener(a, b map[string]string) bool {
	return a["addr"] == b["addr"] && a["port"] == b["port"]
}

func listenerLabels(l collector.Listener) map[string]string {
	addr, port := l.LabelValues()
	return map[string]string{"addr": addr, "port": port}
}

func hostPort(labels map[string]string) string {
	return net.JoinHostPort(labels["addr"], labels["port"])
}

func fill(l collector.Listener) float64 {
	if l.AcceptLimit == 0 {
		return 0
	}
	return float64(l.AcceptQueue) / float64(l.AcceptLimit)
}

func nanToZero(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

func ptr(v float64) *float64 { return &v }

// String is a one-line summary: "CRIT: 2 critical, 1 warning".
func (r *Report) String() string {
	var crit, warn, unknown int
	for _, sec := range r.Sections {
		for _, it := range sec.Items {
			switch it.Status {
			case Critical:
				crit++
			case Warning:
				warn++
			case Unknown:
				unknown++
			}
		}
	}
	return fmt.Sprintf("%s: %d critical, %d warning, %d unknown", r.Status, crit, warn, unknown)
}

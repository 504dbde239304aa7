// Package alerts turns the Snapshots the collector keeps in a History into
// alerts: it loads and validates alerting rules, evaluates them every
// sample with the state machine of Prometheus alerting rules, ships the
// built-in connection-storm checklist, and sends alerts to Alertmanager.
//
// # Rules
//
// Rules are YAML data (Load, LoadFile; DefaultRules for the built-in ones):
//
//	rules:
//	  - name: AcceptQueueNearFull  # the alertname; required
//	    scope: listener            # host (default) | listener
//	    condition: accept_queue_fill >= 0.8
//	    value: accept_queue_fill   # optional: the alert's value
//	    for: 2s                    # pending this long before firing; 0 fires at once
//	    keep_firing_for: 30s       # keep firing this long after the condition stops
//	    severity: warning          # info | warning (default) | critical
//	    labels: {team: cache}
//	    summary: "accept queue of {{ .addr }}:{{ .port }} at {{ .value | pct }}"
//	    description: "what to change"
//	    advice: "raise net.core.somaxconn"  # one line naming the knob (stormwatch check)
//
// Loading is strict: the file is decoded into yaml.v3 Nodes and walked,
// refusing unknown and repeated fields as yaml.v3's KnownFields does but
// with their columns; the defaults are filled in first, then everything
// is validated. Every problem is reported, each with its line and column,
// as Errors (YAML syntax errors carry only the line yaml.v3 gives, that of
// the enclosing block). A file that does not load changes nothing: on
// reload, keep the old rules.
// Conditions are compiled once, at load, with github.com/expr-lang/expr and
// type-checked against the scope's vocabulary to a bool; templates are
// parsed and run once on sample values, which catches misspelt names.
//
// A rule is identified by its name and labels, severity included, as in
// Prometheus: two rules may share a name if their severities or labels
// differ (the built-in ConntrackTableNearFull has a warning and a critical
// rule, for Alertmanager inhibition), but not both.
//
// Durations (for, keep_firing_for, windows) use Prometheus's syntax: 30s,
// 5m, 1h30m, 1d.
//
// # Vocabulary
//
// A condition reads the latest Snapshot's values by name (Variables lists
// them with their units): conntrack_entries, conntrack_limit, the conntrack
// counters (conntrack_drop, conntrack_early_drop, conntrack_insert_failed,
// …), the TCP counters (listen_overflows, listen_drops, syncookies_sent,
// syn_queue_drops for TcpExt TCPReqQFullDrop, syn_queue_cookies for
// TCPReqQFullDoCookies, passive_opens, …), established, the sysctls
// somaxconn, tcp_max_syn_backlog, syncookies, tcp_abort_on_overflow and
// tcp_synack_retries, listeners, and syn_recv (host scope: the total of
// all listeners, also syn_recv_total). Listener scope adds the listener's
// own accept_queue, accept_queue_limit, accept_queue_fill (the fullest
// socket's queue/limit, 1 = full), syn_recv, syn_queue_limit, sockets,
// port (int) and addr (string).
//
// Functions read a named series over a window given as a quoted literal
// duration (checked at load, so the History's needed depth is known:
// Lookback):
//
//	increase("listen_overflows", "10s")   how much a counter rose
//	rate("passive_opens", "10s")          increase per second
//	max_over_time("accept_queue_fill", "10s")
//	time_to_limit("conntrack_entries", conntrack_limit, "30s")
//	baseline_rate("passive_opens", "15m", "1m")
//	sysctl("net.core.somaxconn")          any sysctl the Snapshot holds
//
// In listener scope a listener variable's series is that listener's own
// values, matched by address and port across Snapshots; host variables
// are the host's. A drop in a counter means it restarted from zero, as in
// Prometheus; unlike Prometheus, increase and rate do not extrapolate to
// the window's edges (at 1 Hz the points cover the window to a second),
// and rate divides by the time the points span. time_to_limit fits a
// least-squares line through the window (as predict_linear) and returns
// the seconds until it reaches limit: 0 when already there, +Inf when the
// line is flat or falling or there are fewer than two points.
// baseline_rate is the median of the per-interval rates between window and
// exclude ago: the host's typical rate, which neither the last exclude nor
// a burst shorter than half the window moves; it is no data until the
// History holds ten intervals of it. SYN_RECV counts are not dumped every
// sample, so syn_recv series only take the Snapshots whose dump ran.
//
// Each function's result is computed once per evaluation and shared: a
// host series used by a listener rule costs the same for one listener or
// five hundred.
//
// # No data
//
// A value that was not read is NaN in the Snapshot. A condition that reads
// such a value, or calls a function that has no data (too few points, a
// sysctl not read), has no data for that evaluation: it is false, never an
// alert, whatever its operators (so "syncookies != 1" does not fire when
// the sysctl could not be read). Write independent signals as separate
// rules. A latest Snapshot older than Options.StaleAfter is no data for
// every rule.
//
// # SYN queue limit
//
// syn_queue_limit approximates the kernel's tcp_conn_request: a listener's
// SYN queue counts as full once its half-open count exceeds the listener's
// accept queue limit (sk_max_ack_backlog = min(backlog, somaxconn)), after
// which SYNs get cookies (tcp_syncookies=1) or are dropped (=0). With
// syncookies off the kernel also drops SYNs from unproven peers once a
// socket's queue holds three quarters of tcp_max_syn_backlog, so the limit
// is the smaller of the two (times the sockets of a SO_REUSEPORT group).
// tcp_syncookies=2 sends cookies always and never queues. The off-by-one
// of the kernel's comparison and the spread of a reuseport group over its
// sockets are not modelled.
//
// # State
//
// Engine.Eval(now, history) follows Prometheus's AlertingRule.Eval: a
// condition that starts holding makes a pending alert; it fires once it has
// held for the rule's For (at once with For 0); when it stops holding a
// pending alert is forgotten and a firing one keeps firing for
// KeepFiringFor, then is resolved. Resolved alerts are kept for
// Options.ResolvedRetention so notifiers can report the resolution, and
// a condition holding again starts a new alert. Time is an argument: Eval
// reads no clock, and sees only the Snapshots taken at or before now.
// Engine.SetRules keeps the alerts of rules whose name and labels persist.
// A listener rule yields one alert per listener, labelled addr and port;
// annotations are rendered at every evaluation where the condition holds.
//
// Engine.Active lists pending and firing alerts for the
// stormwatch_alerts metric and /api/v1/alerts; Engine.Alerts adds resolved
// ones for Notifier.Send; Engine.Check judges every rule once, ignoring
// For, for one-shot diagnostics.
//
// # Notifier
//
// Notifier posts to Alertmanager's v2 API: a firing alert when it fires and
// every ResendDelay after, with an endsAt four resend delays ahead; a
// resolved one with endsAt at its resolution. Send chooses and queues
// without blocking; a bounded queue drops its oldest alerts (counted in
// Stats) if Alertmanager cannot keep up; Run posts from its own goroutine,
// each POST under a timeout.
//
// # Limits
//
// The package returns errors and never logs; the engine does not touch the
// network (only the Notifier does). Conditions cannot read the clock
// (expr's now() is disabled). Annotation templates cannot define
// sub-templates and may range only over a field, so that rendering stays
// bounded; rendered annotations are capped at 4 KiB. YAML merge keys (<<)
// are not supported in rules files. Listener matching across Snapshots
// relies on Snapshot.Listeners being sorted by port then address.
package alerts

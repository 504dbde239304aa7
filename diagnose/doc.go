// Package diagnose turns two samples and the rules' one-shot judgement of
// them into the checklist `stormwatch check` prints.
//
// It collects nothing and judges nothing itself: the samples come from the
// collector's sources and every verdict from the rules (alerts.Engine.Check,
// which ignores `for`), so the checklist and the daemon never disagree.
// Build lays the findings out in the order a connection travels —
// conntrack, SYN queue, accept queue (one line per listener, busiest
// first), connection rate, sysctl sizing — and attaches each rule to the
// item it is about; rules it does not know (a user's own) get lines of
// their own. An item whose data could not be read is UNKNOWN, with the
// reason; the report is UNKNOWN only when no source read anything.
//
// A listener not OK can be given who connects to it (Report.SetClients,
// from internal/clients: the client prefixes of its half-open and
// established connections), which check reads on demand after judging;
// ListenersNotOK names the listeners to read, the worst first.
//
// WriteText renders it for a person (colour and symbols only when asked),
// WriteJSON for scripts, with a versioned schema (Report.Schema).
package diagnose

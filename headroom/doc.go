// Package headroom answers the question a deploy gate asks before it moves
// the next batch of clients: how much more can this host absorb right now?
//
// A host's headroom is the tightest remaining share, 1 - used/limit, of
// any queue a wave of new connections fills. Which queues those are is not
// listed here: every checklist item a source declares with Queue set
// (collector.Item) counts, once per entity — today the conntrack table and
// each listener's SYN and accept queue; a source that declares another
// (Valkey maxclients, the NIC's conntrack allowance) is counted with no
// change here. An item's used share is its declared Ratio value when it
// has one (the accept queue's fullest socket), else Value/Limit. A queue
// whose limit is no data (an unlimited conntrack table) has no headroom
// figure: it neither limits nor counts as full.
//
// Compute turns the latest Snapshot, the recent History (for each listed
// queue's trend: a least-squares slope over the last seconds and the time
// to full at that slope, the same fit as the rule function time_to_limit)
// and the alerts into a Report: ok, headroom, the limiting queue, per
// queue figures, the alerts and, when not ok, the reasons in words. ok is
// false whenever the answer cannot be trusted: no sample, a sample older
// than Options.StaleAfter, a core source (or a queue's source) that
// failed, a queue whose figures are missing, no queue with a figure at
// all, a port asked for that nothing listens on — missing data is never
// ok (Report.NoData, and no headroom figure either, so that a gate reading
// the figure alone cannot pass). It is also false when the headroom is
// below Options.Min or a critical alert fires; warnings and pending
// alerts are listed but do not count.
//
// Fetch reads a Report from another host's GET /api/v1/headroom (a
// non-2xx answer or a body that is not a Report is an error, never "not
// ok"; URL builds the address); Local answers for this host from a
// Sampler and the rules (OpenLocal opens the kernel sources). Remote and
// Local are Probers, which is what a caller pacing itself by several
// hosts (the drain command's --pace-by) holds. WriteText renders a Report
// for people.
//
// The JSON layout is versioned (Report.Schema, SchemaVersion): fields are
// only added within a version.
package headroom

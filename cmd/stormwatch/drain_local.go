package main

import (
	"context"
	"time"

	"github.com/stormwatch/stormwatch/collector"
	"github.com/stormwatch/stormwatch/drain"
	"github.com/stormwatch/stormwatch/headroom"
)

// openLocalHeadroom opens this host's headroom for --pace-by local: the
// kernel sources of the drain's own network namespace, judged with the
// rules of --config (the built-in ones without it) against
// --min-headroom, as `stormwatch headroom` does without --url. Each
// question samples the kernel once; the first takes two samples a second
// apart (so the first batch waits that second). The returned function
// closes the sources.
func openLocalHeadroom(f *drainFlags) (drain.Receiver, func() error, error) {
	conf, err := f.config()
	if err != nil {
		return nil, nil, err
	}
	o := headroom.DefaultOptions()
	o.Min = f.minHeadroom
	local, err := headroom.OpenLocal(headroom.LocalConfig{Collector: collector.Config{}, Rules: conf.rules, Options: o, Interval: time.Second})
	if err != nil {
		return nil, nil, err
	}
	r := drain.ReceiverFunc("local", func(ctx context.Context) (drain.Headroom, error) {
		rep, err := local.Probe(ctx)
		if err != nil {
			return drain.Headroom{}, err
		}
		return headroomOf(rep), nil
	})
	return r, local.Close, nil
}

// headroomOf is what the drain's pacing reads of a Report. A Report
// without a figure (no data) is not ok with headroom 0, its reasons
// saying why.
func headroomOf(r *headroom.Report) drain.Headroom {
	h := drain.Headroom{OK: r.OK, Reasons: r.Reasons}
	if r.Headroom != nil {
		h.Headroom = *r.Headroom
	} else {
		h.OK, h.NoData = false, true
	}
	if r.Limiting != nil {
		h.Limiting = r.Limiting.Name
	}
	return h
}

package collector

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stormwatch/stormwatch/procfs"
)

var softnetNames = []string{"softnet_processed", "softnet_dropped", "softnet_times_squeezed", "netdev_max_backlog", "netdev_budget"}

func TestSoftnetSource(t *testing.T) {
	tests := []struct {
		tree string
		want map[string]float64
	}{
		// 15 columns, 2 CPUs.
		{"linux-6.18", map[string]float64{
			"softnet_processed": 0x22fbb + 0x1c22c, "softnet_dropped": 0, "softnet_times_squeezed": 1,
			"netdev_max_backlog": 1000, "netdev_budget": 300,
		}},
		// 9 columns, with backlog drops and squeezes.
		{"linux-2.6.32", map[string]float64{
			"softnet_processed": 0x8f3c21a7 + 0x7d2e9b10, "softnet_dropped": 0x1b2c4 + 0x9e5d, "softnet_times_squeezed": 0x3a71 + 0x29c2,
			"netdev_max_backlog": 1000, "netdev_budget": 300,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			snap := sampleOnce(t, time.Unix(1, 0), &softnetSource{fs: fixtureFS(t, tt.tree)})
			if r, _ := snap.Source("softnet"); !r.Success {
				t.Fatalf("softnet: %+v", r)
			}
			if diff := cmp.Diff(tt.want, values(snap, softnetNames...)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	// Nothing there: the subsystem is absent, not failing.
	snap := sampleOnce(t, time.Unix(1, 0), &softnetSource{fs: fixtureFS(t, "empty")})
	if r, _ := snap.Source("softnet"); !r.NoData {
		t.Errorf("empty tree: %+v, want no data", r)
	}
}

// softnetTree is a root whose softnet_stat and sysctls a test rewrites
// between cycles.
type softnetTree struct {
	t    testing.TB
	root string
}

func newSoftnetTree(t testing.TB) *softnetTree {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"proc/net", "proc/sys/net/core"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &softnetTree{t: t, root: root}
}

func (tr *softnetTree) fs() procfs.FS {
	fs, err := procfs.NewFS(tr.root)
	if err != nil {
		tr.t.Fatal(err)
	}
	return fs
}

func (tr *softnetTree) write(rel, content string) {
	tr.t.Helper()
	if err := os.WriteFile(filepath.Join(tr.root, "proc", rel), []byte(content), 0o644); err != nil {
		tr.t.Fatal(err)
	}
}

// rows writes softnet_stat in the 6.18 layout (15 columns), one row per
// CPU of processed, dropped and time_squeeze.
func (tr *softnetTree) rows(cpus ...[3]uint32) {
	var b strings.Builder
	for i, c := range cpus {
		fmt.Fprintf(&b, "%08x %08x %08x 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 %08x 00000000 00000000\n",
			c[0], c[1], c[2], i)
	}
	tr.write("net/softnet_stat", b.String())
}

// TestSoftnetSourceSequence follows the backlog counters over cycles: the
// per-CPU 32-bit counters wrap, the totals keep growing by the change.
func TestSoftnetSourceSequence(t *testing.T) {
	tr := newSoftnetTree(t)
	tr.write("sys/net/core/netdev_max_backlog", "1000\n")
	tr.write("sys/net/core/netdev_budget", "300\n")
	src := &softnetSource{fs: tr.fs()}
	const near = math.MaxUint32 - 9
	steps := []struct {
		cpus              [][3]uint32
		dropped, squeezed float64
	}{
		{[][3]uint32{{100, 0, 2}, {200, near, 0}}, near, 2},
		{[][3]uint32{{150, 40, 2}, {260, near + 5, 1}}, near + 45, 3},
		// CPU 1's dropped wraps: +5 to 2^32, then 20.
		{[][3]uint32{{150, 40, 2}, {260, 20, 1}}, near + 45 + 25, 3},
	}
	for i, st := range steps {
		tr.rows(st.cpus...)
		snap := sampleOnce(t, time.Unix(int64(i), 0), src)
		got := values(snap, "softnet_dropped", "softnet_times_squeezed", "netdev_max_backlog")
		want := map[string]float64{"softnet_dropped": st.dropped, "softnet_times_squeezed": st.squeezed, "netdev_max_backlog": 1000}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("step %d (-want +got):\n%s", i, diff)
		}
	}
}

// TestSoftnetSourcePartial: a sysctl missing (the backlog sysctls exist in
// the initial network namespace only: a container's own has none) is no
// data, not a failure; what was read is kept.
func TestSoftnetSourcePartial(t *testing.T) {
	tr := newSoftnetTree(t)
	tr.rows([3]uint32{1, 2, 3})
	tr.write("sys/net/core/netdev_max_backlog", "2048\n")
	snap := sampleOnce(t, time.Unix(1, 0), &softnetSource{fs: tr.fs()})
	r, _ := snap.Source("softnet")
	if !r.Success {
		t.Errorf("missing netdev_budget: %+v, want success", r)
	}
	want := map[string]float64{"softnet_processed": 1, "softnet_dropped": 2, "softnet_times_squeezed": 3, "netdev_max_backlog": 2048, "netdev_budget": math.NaN()}
	if diff := cmp.Diff(want, values(snap, softnetNames...), cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	tr.write("net/softnet_stat", "00000001 00000002\n")
	snap = sampleOnce(t, time.Unix(2, 0), &softnetSource{fs: tr.fs()})
	if r, _ := snap.Source("softnet"); r.Success || !strings.Contains(fmt.Sprint(r.Err), "softnet_stat") {
		t.Errorf("unparsable softnet_stat: %+v", r)
	}
	if v := snap.Get("softnet_dropped"); !math.IsNaN(v) {
		t.Errorf("unparsable softnet_stat: dropped %v, want no data", v)
	}
}

package collector

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stormwatch/stormwatch/procfs"
)

// procTree writes a /proc of processes holding sockets under a fresh root.
type procTree struct {
	t    *testing.T
	root string
}

func newProcTree(t *testing.T) *procTree {
	p := &procTree{t: t, root: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(p.root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// process writes pid's stat (comm, state) and its socket descriptors.
func (p *procTree) process(pid int, comm string, state byte, inodes ...uint32) {
	p.t.Helper()
	dir := filepath.Join(p.root, "proc", strconv.Itoa(pid))
	if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
		p.t.Fatal(err)
	}
	stat := strconv.Itoa(pid) + " (" + comm + ") " + string(state) + " 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 1 1\n"
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		p.t.Fatal(err)
	}
	for i, ino := range inodes {
		link := filepath.Join(dir, "fd", strconv.Itoa(3+i))
		if err := os.Symlink("socket:["+strconv.FormatUint(uint64(ino), 10)+"]", link); err != nil && !os.IsExist(err) {
			p.t.Fatal(err)
		}
	}
}

func (p *procTree) exit(pid int) {
	if err := os.RemoveAll(filepath.Join(p.root, "proc", strconv.Itoa(pid))); err != nil {
		p.t.Fatal(err)
	}
}

func (p *procTree) fs() procfs.FS {
	fs, err := procfs.NewFS(p.root)
	if err != nil {
		p.t.Fatal(err)
	}
	return fs
}

// describeOwner says what c knows of ino's owner: comm/pid/state, or
// why it does not know.
func describeOwner(c *ownerCache, ino uint32) string {
	p, reason := c.lookup(ino)
	if reason != "" {
		return reason
	}
	return p.Comm + "/" + strconv.Itoa(p.PID) + "/" + p.State.String()
}

// TestOwnerCacheScans: the owners are found by one scan, and scanned for
// again only when something calls for it: a new listener (at most every
// 5 s), an owner gone (noticed within the 30 s recheck), and every 10
// minutes; a busy owner's state is read again every cycle.
func TestOwnerCacheScans(t *testing.T) {
	tree := newProcTree(t)
	tree.process(100, "redis-server", 'S', 111)
	tree.process(200, "prefork-parent", 'S', 222)
	c := newOwnerCache(tree.fs())
	t0 := time.Unix(1000, 0)
	inodes := []uint32{111, 222}
	owner := func(ino uint32) string { return describeOwner(c, ino) }
	none := map[int]bool{} // no listener busy: what the source passes then
	scans := 0
	last := time.Time{}
	step := func(at time.Duration, busy map[int]bool, ins ...uint32) {
		t.Helper()
		c.update(t0.Add(at), ins, busy)
		if c.lastScan != last {
			scans++
			last = c.lastScan
		}
	}

	step(0, none, inodes...)
	if got := owner(111); got != "redis-server/100/sleeping" || scans != 1 {
		t.Fatalf("first update: 111 %q after %d scans", got, scans)
	}
	// Stopped: a busy owner's state is read again at once, without a scan.
	tree.process(100, "redis-server", 'T')
	step(time.Second, map[int]bool{100: true}, inodes...)
	if got := owner(111); got != "redis-server/100/stopped" || scans != 1 {
		t.Errorf("busy owner stopped: %q after %d scans, want stopped after 1", got, scans)
	}
	// The recheck finds every owner alive: no scan.
	step(31*time.Second, none, inodes...)
	if scans != 1 {
		t.Errorf("recheck with every owner alive scanned (%d scans)", scans)
	}
	// The parent exits and its child keeps the socket: the recheck
	// notices, and a scan finds the child.
	tree.exit(200)
	tree.process(201, "prefork-child", 'S', 222)
	step(45*time.Second, none, inodes...)
	if scans != 1 {
		t.Errorf("an owner gone was noticed before the recheck was due (%d scans)", scans)
	}
	step(62*time.Second, none, inodes...)
	if got := owner(222); got != "prefork-child/201/sleeping" || scans != 2 {
		t.Errorf("after the owner exited: 222 %q after %d scans, want prefork-child after 2", got, scans)
	}
	// A new listener: scanned for, but not within 5 s of the last scan.
	tree.process(100, "redis-server", 'S', 111, 333)
	step(64*time.Second, none, 111, 222, 333)
	if got := owner(333); got != "not looked up yet" || scans != 2 {
		t.Errorf("new listener 2 s after a scan: %q after %d scans", got, scans)
	}
	step(68*time.Second, none, 111, 222, 333)
	if got := owner(333); got != "redis-server/100/sleeping" || scans != 3 {
		t.Errorf("new listener 6 s after a scan: %q after %d scans", got, scans)
	}
	// Nothing changes for 10 minutes: rechecks only, then the backstop.
	for at := 100 * time.Second; at < 68*time.Second+ownerRescanInterval; at += 30 * time.Second {
		step(at, none, 111, 222, 333)
	}
	if scans != 3 {
		t.Errorf("%d scans over 10 quiet minutes, want none", scans-3)
	}
	step(68*time.Second+ownerRescanInterval, none, 111, 222, 333)
	if scans != 4 {
		t.Errorf("no scan after %s", ownerRescanInterval)
	}
}

// TestOwnerCacheBusyOwnerGone: a busy owner that exits is not reported
// as it was (stopped): its socket's owner is unknown until a scan, which
// comes at once when the last is 5 s old or more.
func TestOwnerCacheBusyOwnerGone(t *testing.T) {
	tree := newProcTree(t)
	tree.process(100, "redis-server", 'T', 111)
	c := newOwnerCache(tree.fs())
	t0 := time.Unix(1000, 0)
	busy := map[int]bool{100: true}
	owner := func(ino uint32) string { return describeOwner(c, ino) }
	c.update(t0, []uint32{111}, busy)
	if got := owner(111); got != "redis-server/100/stopped" {
		t.Fatalf("first update: 111 %q", got)
	}
	tree.exit(100)
	c.update(t0.Add(2*time.Second), []uint32{111}, busy)
	if got := owner(111); got != errOwnerGone.Error() || c.lastScan != t0 {
		t.Errorf("busy owner exited 2 s after a scan: 111 %q, last scan %v; want %q and no scan", got, c.lastScan, errOwnerGone)
	}
	tree.process(300, "valkey-server", 'S', 111) // the socket passed on
	c.update(t0.Add(3*time.Second), []uint32{111}, busy)
	if got := owner(111); got != errOwnerGone.Error() || c.lastScan != t0 {
		t.Errorf("3 s after a scan: 111 %q, last scan %v; want still unknown, no scan", got, c.lastScan)
	}
	c.update(t0.Add(5*time.Second), []uint32{111}, map[int]bool{})
	if got := owner(111); got != "valkey-server/300/sleeping" {
		t.Errorf("5 s after a scan: 111 %q, want found again by a scan", got)
	}
}

// TestOwnerCacheNotFound: a listener whose owner no scan found is looked
// for again at every recheck.
func TestOwnerCacheNotFound(t *testing.T) {
	tree := newProcTree(t)
	tree.process(100, "redis-server", 'S', 111)
	c := newOwnerCache(tree.fs())
	t0 := time.Unix(1000, 0)
	c.update(t0, []uint32{111, 999}, nil)
	if _, reason := c.lookup(999); reason == "" {
		t.Fatal("an inode nobody holds has an owner")
	}
	tree.process(300, "late", 'S', 999)
	c.update(t0.Add(31*time.Second), []uint32{111, 999}, nil)
	if p, reason := c.lookup(999); reason != "" || p.PID != 300 {
		t.Errorf("owner of 999 after the recheck: %+v %q, want pid 300", p, reason)
	}
}

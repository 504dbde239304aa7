package collector

import (
	"errors"
	"strconv"
	"time"

	"github.com/stormwatch/stormwatch/procfs"
)

// Owners of listening sockets: which process holds a listener, and in what
// state it is (a stopped server accepts nothing). Read from /proc with no
// privilege beyond seeing the processes: under systemd's
// ProtectProc=invisible, or as another user, they cannot be seen, and the
// listener's owner_error attribute says why instead.

const (
	// ownerRescanInterval is how often every owner is looked up again.
	ownerRescanInterval = 30 * time.Second
	// ownerMinRescan is the least time between two scans for listeners
	// not seen before: a scan reads every process's file descriptors.
	ownerMinRescan = 5 * time.Second
)

// Attributes of a listener's owner.
const (
	attrProcess    = "process"
	attrPID        = "pid"
	attrState      = "state"
	attrOwnerError = "owner_error"
)

// ownerCache finds and remembers the processes holding listening sockets.
type ownerCache struct {
	fs       procfs.FS
	lastScan time.Time
	byInode  map[uint32]owner
	// hidden says why some owners cannot be seen ("" when all can).
	hidden string
	// scanErr is the last scan's failure to list processes at all.
	scanErr error
}

// owner is what a scan found for one socket.
type owner struct {
	proc procfs.Process
	err  error // why it is unknown
}

func newOwnerCache(fs procfs.FS) *ownerCache {
	return &ownerCache{fs: fs, byInode: map[uint32]owner{}}
}

// update looks up the owners of inodes at now: all of them every
// ownerRescanInterval, and those not seen before at most every
// ownerMinRescan. busy lists the pids whose state is read again now (the
// owners of listeners with a queue): cheap, one stat file each.
func (c *ownerCache) update(now time.Time, inodes []uint32, busy map[int]bool) {
	due := c.lastScan.IsZero() || now.Sub(c.lastScan) >= ownerRescanInterval || now.Before(c.lastScan)
	if !due && now.Sub(c.lastScan) >= ownerMinRescan {
		for _, ino := range inodes {
			if _, ok := c.byInode[ino]; !ok && ino != 0 {
				due = true
				break
			}
		}
	}
	if due {
		c.scan(now, inodes)
		return
	}
	for ino, o := range c.byInode {
		if o.err == nil && busy[o.proc.PID] {
			if p, err := c.fs.ProcessStat(o.proc.PID); err == nil && p.Comm == o.proc.Comm {
				o.proc.State = p.State
				c.byInode[ino] = o
			}
		}
	}
}

func (c *ownerCache) scan(now time.Time, inodes []uint32) {
	c.lastScan = now
	res, err := c.fs.SocketOwners(inodes, procfs.OwnerLimits{})
	c.scanErr = err
	c.hidden = res.HiddenReason()
	clear(c.byInode)
	if err != nil {
		return
	}
	for _, ino := range inodes {
		if ino == 0 {
			continue
		}
		p, err := res.Owner(ino)
		c.byInode[ino] = owner{proc: p, err: err}
	}
}

// lookup returns what is known of the owner of inode: the process, or the
// reason it is unknown.
func (c *ownerCache) lookup(ino uint32) (procfs.Process, string) {
	if c.scanErr != nil {
		return procfs.Process{}, c.scanErr.Error()
	}
	o, ok := c.byInode[ino]
	switch {
	case ino == 0:
		return procfs.Process{}, "no socket inode"
	case !ok:
		return procfs.Process{}, "not looked up yet"
	case o.err == nil:
		return o.proc, ""
	case errors.Is(o.err, procfs.ErrOwnerHidden):
		return procfs.Process{}, "cannot see the owning process: " + c.hidden
	}
	return procfs.Process{}, o.err.Error()
}

// setOwner writes the owner of a listener row into tw.
func setOwner(tw *TableWriter, row int, p procfs.Process, reason string) {
	if reason != "" {
		tw.SetAttr(row, attrOwnerError, reason)
		return
	}
	tw.SetAttr(row, attrProcess, p.Comm)
	tw.SetAttr(row, attrPID, strconv.Itoa(p.PID))
	tw.SetAttr(row, attrState, p.State.String())
	tw.Set(row, lsnOwnerKnown, 1)
	stopped := 0.0
	if p.State == procfs.StateStopped || p.State == procfs.StateTracingStop {
		stopped = 1
	}
	tw.Set(row, lsnOwnerStopped, stopped)
}

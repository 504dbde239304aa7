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

// A scan reads the file descriptors of every process until it has found
// every listener's (hundreds of thousands on a busy host: half a second
// of CPU), so it runs only when something calls for it: a listener not
// seen before (at most every ownerMinRescan), an owner whose process is
// gone or renamed, an owner that could not be found (every
// ownerRecheckInterval), and as a backstop every ownerRescanInterval (a
// socket handed to another process that lives on). Between scans the
// owners' processes are checked, one stat file per process.
const (
	ownerRescanInterval  = 10 * time.Minute
	ownerRecheckInterval = 30 * time.Second
	ownerMinRescan       = 5 * time.Second
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
	fs        procfs.FS
	lastScan  time.Time
	lastCheck time.Time
	byInode   map[uint32]owner
	// hidden says why some owners cannot be seen ("" when all can).
	hidden string
	// scanErr is the last scan's failure to list processes at all.
	scanErr error
	// read is refresh's scratch: each process's stat as read this time.
	read map[int]procfs.Process
}

// errOwnerGone: the process a scan found owning the socket has exited or
// runs another program since.
var errOwnerGone = errors.New("the owning process exited or changed since the last look; looking again")

// owner is what a scan found for one socket.
type owner struct {
	proc procfs.Process
	err  error // why it is unknown
}

func newOwnerCache(fs procfs.FS) *ownerCache {
	return &ownerCache{fs: fs, byInode: map[uint32]owner{}}
}

// update looks up the owners of inodes at now (see ownerRescanInterval
// for when it scans). busy lists the pids whose state is read again now
// (the owners of listeners with a queue); every owner's is, every
// ownerRecheckInterval.
func (c *ownerCache) update(now time.Time, inodes []uint32, busy map[int]bool) {
	due := c.lastScan.IsZero() || now.Sub(c.lastScan) >= ownerRescanInterval || now.Before(c.lastScan)
	if !due && now.Sub(c.lastScan) >= ownerMinRescan {
		for _, ino := range inodes {
			if o, ok := c.byInode[ino]; (!ok || errors.Is(o.err, errOwnerGone)) && ino != 0 {
				due = true
				break
			}
		}
	}
	recheck := now.Sub(c.lastCheck) >= ownerRecheckInterval || now.Before(c.lastCheck)
	if !due && recheck {
		c.lastCheck = now
		due = !c.refresh(nil) || c.unresolved()
	}
	if due {
		c.scan(now, inodes)
		return
	}
	if !c.refresh(busy) && now.Sub(c.lastScan) >= ownerMinRescan {
		c.scan(now, inodes)
	}
}

// refresh reads the state of the owners' processes (those in pids, or all
// when pids is nil), once per process. It reports false when one is gone
// or runs another program: its sockets' owners are unknown (errOwnerGone,
// never the old process) until a scan looks them up again.
func (c *ownerCache) refresh(pids map[int]bool) bool {
	ok := true
	if c.read == nil {
		c.read = map[int]procfs.Process{}
	}
	read := c.read
	clear(read)
	for ino, o := range c.byInode {
		pid := o.proc.PID
		if o.err != nil || (pids != nil && !pids[pid]) {
			continue
		}
		p, seen := read[pid]
		if !seen {
			q, err := c.fs.ProcessStat(pid)
			if err != nil || q.Comm != o.proc.Comm {
				q, ok = procfs.Process{}, false
			}
			read[pid], p = q, q
		}
		if p.PID != 0 {
			o.proc.State = p.State
		} else {
			o = owner{err: errOwnerGone}
		}
		c.byInode[ino] = o
	}
	return ok
}

// unresolved reports whether some listener's owner was not found by a
// scan that could see the processes (a hidden owner stays hidden).
func (c *ownerCache) unresolved() bool {
	if c.scanErr != nil {
		return true
	}
	for _, o := range c.byInode {
		if o.err != nil && !errors.Is(o.err, procfs.ErrOwnerHidden) {
			return true
		}
	}
	return false
}

func (c *ownerCache) scan(now time.Time, inodes []uint32) {
	c.lastScan, c.lastCheck = now, now
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

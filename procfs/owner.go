package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Limits of a SocketOwners scan when OwnerLimits leaves them 0.
const (
	DefaultMaxProcesses = 65536
	DefaultMaxFDs       = 1 << 20
)

// ProcState is the state letter of /proc/<pid>/stat (see proc(5)).
type ProcState byte

// The process states a current kernel reports.
const (
	StateRunning      ProcState = 'R'
	StateSleeping     ProcState = 'S'
	StateDiskSleep    ProcState = 'D' // uninterruptible sleep, usually I/O
	StateStopped      ProcState = 'T' // SIGSTOP or a job-control stop
	StateTracingStop  ProcState = 't'
	StateZombie       ProcState = 'Z'
	StateDead         ProcState = 'X'
	StateIdle         ProcState = 'I' // an idle kernel thread
	StateParked       ProcState = 'P'
	StateWakeKill     ProcState = 'K'
	StateWaking       ProcState = 'W'
	StateDeadOldStyle ProcState = 'x'
)

// String names the state as a person would say it.
func (s ProcState) String() string {
	switch s {
	case StateRunning:
		return "running"
	case StateSleeping:
		return "sleeping"
	case StateDiskSleep:
		return "uninterruptible sleep"
	case StateStopped:
		return "stopped"
	case StateTracingStop:
		return "tracing stop"
	case StateZombie:
		return "zombie"
	case StateDead, StateDeadOldStyle:
		return "dead"
	case StateIdle:
		return "idle"
	case StateParked:
		return "parked"
	case StateWakeKill:
		return "wakekill"
	case StateWaking:
		return "waking"
	}
	return fmt.Sprintf("unknown state %q", byte(s))
}

// Process is a process as /proc/<pid>/stat describes it.
type Process struct {
	// PID is the process id, in the pid namespace of the proc mount.
	PID int
	// Comm is the kernel's name of the process (its executable's base
	// name, at most 15 bytes; "redis-server", "valkey-server").
	Comm string
	// State is the process's state when it was read.
	State ProcState
}

// OwnerLimits bounds a SocketOwners scan. 0 means the default.
type OwnerLimits struct {
	// MaxProcesses caps the /proc/<pid> directories looked into.
	MaxProcesses int
	// MaxFDs caps the file descriptors read, over all processes.
	MaxFDs int
}

// SocketOwners is the result of a scan for the processes holding sockets.
type SocketOwners struct {
	// Owners maps each socket inode found to the first process (lowest
	// pid) that holds it.
	Owners map[uint32]Process
	// Processes and FDs count the processes looked into and the file
	// descriptors read.
	Processes, FDs int
	// Hidden counts processes whose file descriptors could not be read
	// (EACCES/EPERM: another user's process, without CAP_SYS_PTRACE).
	Hidden int
	// HidePID is the hidepid option of the proc mount ("invisible",
	// "noaccess", "ptraceable" or a number), "" when /proc shows every
	// process. Under hidepid=invisible (systemd's ProtectProc=invisible)
	// other users' processes are not even listed.
	HidePID string
	// Truncated is true when a limit stopped the scan before every inode
	// was found.
	Truncated bool
}

// Owner returns the process holding the socket with inode, or an error
// wrapping ErrOwnerHidden (the scan could not see every process: the
// reason says why), ErrOwnerNotFound (every process was seen, none holds
// it) or ErrScanLimit.
func (o SocketOwners) Owner(inode uint32) (Process, error) {
	if p, ok := o.Owners[inode]; ok {
		return p, nil
	}
	if reason := o.HiddenReason(); reason != "" {
		return Process{}, fmt.Errorf("socket inode %d: %w: %s", inode, ErrOwnerHidden, reason)
	}
	if o.Truncated {
		return Process{}, fmt.Errorf("socket inode %d: %w after %d processes, %d file descriptors", inode, ErrScanLimit, o.Processes, o.FDs)
	}
	return Process{}, fmt.Errorf("socket inode %d: %w", inode, ErrOwnerNotFound)
}

// HiddenReason says why the scan could not see every process, "" when it
// could.
func (o SocketOwners) HiddenReason() string {
	var why []string
	if o.HidePID != "" && o.HidePID != "0" && o.HidePID != "off" {
		why = append(why, fmt.Sprintf("/proc is mounted with hidepid=%s (as under systemd's ProtectProc=): other users' processes are hidden", o.HidePID))
	}
	if o.Hidden > 0 {
		why = append(why, fmt.Sprintf("the file descriptors of %d processes are not readable (permission denied: they belong to another user and this process lacks CAP_SYS_PTRACE)", o.Hidden))
	}
	return strings.Join(why, "; ")
}

// SocketOwners finds the processes holding the sockets with the given
// inodes (as sock_diag reports them) by reading the /proc/<pid>/fd links
// ("socket:[INODE]"), then each owner's /proc/<pid>/stat. It stops as soon
// as every inode is found or a limit is reached, and reads each directory
// and link into reused buffers (no allocation per file descriptor).
// Processes it may not look into are counted, not errors: the only error
// is failing to list /proc itself.
func (fs FS) SocketOwners(inodes []uint32, lim OwnerLimits) (SocketOwners, error) {
	if lim.MaxProcesses <= 0 {
		lim.MaxProcesses = DefaultMaxProcesses
	}
	if lim.MaxFDs <= 0 {
		lim.MaxFDs = DefaultMaxFDs
	}
	res := SocketOwners{Owners: make(map[uint32]Process, len(inodes))}
	want := make(map[uint32]bool, len(inodes))
	for _, ino := range inodes {
		if ino != 0 {
			want[ino] = true
		}
	}
	if b, err := readFile(fs.Path("self", "mountinfo")); err == nil {
		res.HidePID, _ = parseHidePID(bytes.NewReader(b), fs.proc)
	}
	if len(want) == 0 {
		return res, nil
	}

	dir, err := os.Open(fs.proc)
	if err != nil {
		return res, fmt.Errorf("list processes: %w", err)
	}
	defer dir.Close()
	found := make(map[uint32]int, len(want)) // inode → pid
	s := fdScanner{want: want, found: found}
	var pids []int
	for len(found) < len(want) && !res.Truncated {
		names, err := dir.Readdirnames(256)
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, fmt.Errorf("list processes: %w", err)
		}
		// /proc lists pids in ascending order; a batch is sorted so that
		// any tree (a fixture) gives the lowest pid first too.
		pids = pids[:0]
		for _, name := range names {
			if pid, err := strconv.Atoi(name); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
		slices.Sort(pids)
		for _, pid := range pids {
			if res.Processes >= lim.MaxProcesses {
				res.Truncated = true
				break
			}
			res.Processes++
			switch err := s.scan(fs.Path(strconv.Itoa(pid), "fd"), pid, lim.MaxFDs-res.FDs, &res.FDs); {
			case err == nil:
			case errors.Is(err, errLimit):
				res.Truncated = true
			case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
				res.Hidden++
			default:
				// ENOENT/ESRCH: the process exited while we looked.
			}
			if len(found) == len(want) || res.Truncated {
				break
			}
		}
	}
	if len(found) == len(want) {
		res.Truncated = false
	}
	for ino, pid := range found {
		p, err := fs.ProcessStat(pid)
		if err != nil {
			continue // exited since: its socket's owner is unknown again
		}
		res.Owners[ino] = p
	}
	return res, nil
}

// errLimit stops a scan at OwnerLimits.MaxFDs.
var errLimit = errors.New("file descriptor limit")

// fdScanner reads fd directories with reused buffers.
type fdScanner struct {
	want  map[uint32]bool
	found map[uint32]int
	dents [8192]byte
	link  [64]byte
}

// scan reads the links of the fd directory path for process pid, at most
// budget of them, adding each to *fds, and records the wanted socket
// inodes it finds.
func (s *fdScanner) scan(path string, pid, budget int, fds *int) error {
	dfd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	for {
		n, err := unix.Getdents(dfd, s.dents[:])
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		for off := 0; off < n; {
			// struct linux_dirent64: ino u64, off i64, reclen u16, type
			// u8, name NUL-terminated.
			if off+19 > n {
				break
			}
			reclen := int(*(*uint16)(unsafe.Pointer(&s.dents[off+16])))
			if reclen == 0 || off+reclen > n {
				break
			}
			name := s.dents[off+19 : off+reclen]
			off += reclen
			if name[0] == '.' {
				continue
			}
			if budget <= 0 {
				return errLimit
			}
			budget--
			*fds++
			ln, err := readlinkat(dfd, &name[0], s.link[:])
			if err != nil {
				continue // closed meanwhile
			}
			ino, ok := socketInode(s.link[:ln])
			if ok && s.want[ino] {
				if _, dup := s.found[ino]; !dup {
					s.found[ino] = pid
					if len(s.found) == len(s.want) {
						return nil
					}
				}
			}
		}
	}
}

// readlinkat reads the link name (NUL-terminated, in place) relative to
// dirfd into buf without converting the name to a Go string.
func readlinkat(dirfd int, name *byte, buf []byte) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(name)),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// socketInode parses a "socket:[INODE]" fd link.
func socketInode(link []byte) (uint32, bool) {
	const prefix = "socket:["
	if len(link) < len(prefix)+2 || string(link[:len(prefix)]) != prefix || link[len(link)-1] != ']' {
		return 0, false
	}
	var v uint64
	for _, c := range link[len(prefix) : len(link)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
		if v > 1<<32-1 {
			return 0, false
		}
	}
	return uint32(v), true
}

// ProcessStat reads /proc/<pid>/stat.
func (fs FS) ProcessStat(pid int) (Process, error) {
	path := fs.Path(strconv.Itoa(pid), "stat")
	b, err := readFile(path)
	if err != nil {
		return Process{}, err
	}
	p, err := parseProcessStat(b)
	if err != nil {
		return Process{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// parseProcessStat parses the start of /proc/<pid>/stat: "PID (COMM) S
// ...". COMM may hold spaces and parentheses: it ends at the last ')'.
func parseProcessStat(b []byte) (Process, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open || end+3 > len(b) || b[end+1] != ' ' {
		return Process{}, fmt.Errorf("%w: process stat: no \"PID (COMM) STATE\" start", ErrFileParse)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil || pid <= 0 {
		return Process{}, fmt.Errorf("%w: process stat: pid %q is not a positive number", ErrFileParse, clipBytes(b[:open]))
	}
	state := b[end+2]
	if state < 'A' || state > 'z' || (end+3 < len(b) && b[end+3] != ' ' && b[end+3] != '\n') {
		return Process{}, fmt.Errorf("%w: process stat: state %q is not one letter", ErrFileParse, clipBytes(b[end+2:min(len(b), end+6)]))
	}
	return Process{PID: pid, Comm: string(b[open+1 : end]), State: ProcState(state)}, nil
}

func clipBytes(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "…"
	}
	return string(b)
}

// parseHidePID returns the hidepid option of the proc mount at mountPoint
// in a /proc/self/mountinfo text ("" if it has none or is not listed).
func parseHidePID(r io.Reader, mountPoint string) (string, error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxFileSize))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	hide := ""
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || g[0] != "proc" || unescapeMount(f[4]) != mountPoint {
			continue
		}
		hide = "" // the last mount on a point is the visible one
		for _, opt := range strings.Split(g[2], ",") {
			if v, ok := strings.CutPrefix(opt, "hidepid="); ok {
				hide = v
			}
		}
	}
	return hide, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

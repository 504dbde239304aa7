package procfs

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSocketOwnersFixture(t *testing.T) {
	fs := fixture(t, "owners")
	got, err := fs.SocketOwners([]uint32{53211, 53212, 8888, 1111, 424242, 0}, OwnerLimits{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]Process{
		1111:  {PID: 1, Comm: "systemd", State: StateSleeping},
		53211: {PID: 412, Comm: "redis-server", State: StateStopped}, // 977 holds it too: the lowest pid wins
		53212: {PID: 412, Comm: "redis-server", State: StateStopped},
		8888:  {PID: 977, Comm: "my (weird) prog", State: StateDiskSleep},
	}
	if diff := cmp.Diff(want, got.Owners); diff != "" {
		t.Errorf("Owners (-want +got):\n%s", diff)
	}
	// 424242 is held by nobody: every process was read.
	if got.Processes != 5 || got.Hidden != 0 || got.Truncated {
		t.Errorf("Processes %d Hidden %d Truncated %v; want 5, 0, false", got.Processes, got.Hidden, got.Truncated)
	}
	if _, err := got.Owner(424242); !errors.Is(err, ErrOwnerNotFound) {
		t.Errorf("Owner(424242) = %v, want ErrOwnerNotFound", err)
	}
	if p, err := got.Owner(53212); err != nil || p.State.String() != "stopped" {
		t.Errorf("Owner(53212) = %+v, %v", p, err)
	}

	// Once every inode is found the scan stops: 1111 is in pid 1.
	got, err = fs.SocketOwners([]uint32{1111}, OwnerLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Processes != 1 || got.FDs < 1 || got.FDs > 3 {
		t.Errorf("scan for pid 1's socket read %d processes, %d fds; want 1 and at most its 3", got.Processes, got.FDs)
	}

	// Limits stop it early and say so.
	got, err = fs.SocketOwners([]uint32{8888}, OwnerLimits{MaxProcesses: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := got.Owner(8888); !got.Truncated || !errors.Is(err, ErrScanLimit) {
		t.Errorf("MaxProcesses 2: truncated %v, Owner = %v", got.Truncated, err)
	}
	got, err = fs.SocketOwners([]uint32{8888}, OwnerLimits{MaxFDs: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Truncated || got.FDs != 4 {
		t.Errorf("MaxFDs 4: truncated %v after %d fds", got.Truncated, got.FDs)
	}

	// No inodes: nothing read.
	if got, err := fs.SocketOwners(nil, OwnerLimits{}); err != nil || got.Processes != 0 {
		t.Errorf("no inodes: %+v %v", got, err)
	}
	if _, err := (FS{proc: "/nonexistent/proc"}).SocketOwners([]uint32{1}, OwnerLimits{}); err == nil {
		t.Error("a root without proc/: no error")
	}
}

func TestOwnerHidden(t *testing.T) {
	o := SocketOwners{Hidden: 3, HidePID: "invisible"}
	_, err := o.Owner(7)
	if !errors.Is(err, ErrOwnerHidden) {
		t.Fatalf("Owner = %v, want ErrOwnerHidden", err)
	}
	for _, want := range []string{"hidepid=invisible", "ProtectProc", "3 processes", "permission denied"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if (SocketOwners{HidePID: "0"}).HiddenReason() != "" {
		t.Error("hidepid=0 hides nothing")
	}
}

func TestParseHidePID(t *testing.T) {
	b, err := readFile("../testdata/owners/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ mount, want string }{
		{"/proc", "invisible"}, // the last mount on /proc is the one seen
		{"/sys", ""},
		{"/elsewhere", ""},
	} {
		got, err := parseHidePID(strings.NewReader(string(b)), tt.mount)
		if err != nil || got != tt.want {
			t.Errorf("parseHidePID(%s) = %q, %v; want %q", tt.mount, got, err, tt.want)
		}
	}
	in := `30 1 0:5 / /run/my\040proc rw - proc proc rw,hidepid=2` + "\n"
	if got, _ := parseHidePID(strings.NewReader(in), "/run/my proc"); got != "2" {
		t.Errorf("escaped mount point: %q", got)
	}
}

func TestParseProcessStat(t *testing.T) {
	tests := []struct {
		in   string
		want Process
		err  string
	}{
		{"412 (redis-server) S 1 412", Process{412, "redis-server", StateSleeping}, ""},
		{"7 ((sd-pam)) S 1", Process{7, "(sd-pam)", StateSleeping}, ""},
		{"9 (a) b) c) t 1 2\n", Process{9, "a) b) c", StateTracingStop}, ""},
		{"10 () Z\n", Process{10, "", StateZombie}, ""},
		{"", Process{}, "no \"PID (COMM) STATE\" start"},
		{"12 (x)", Process{}, "no \"PID (COMM) STATE\" start"},
		{"x (y) S", Process{}, `pid "x " is not a positive number`},
		{"13 (y) SS 1", Process{}, `state "SS 1" is not one letter`},
		{"14 (y) 5 1", Process{}, `state "5 1" is not one letter`},
	}
	for _, tt := range tests {
		got, err := parseProcessStat([]byte(tt.in))
		if tt.err != "" {
			if !errors.Is(err, ErrFileParse) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseProcessStat(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseProcessStat(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for s, want := range map[ProcState]string{'R': "running", 'D': "uninterruptible sleep", 'T': "stopped", 'Z': "zombie", '?': `unknown state '?'`} {
		if s.String() != want {
			t.Errorf("ProcState(%q) = %q, want %q", byte(s), s.String(), want)
		}
	}
}

func FuzzParseProcessStat(f *testing.F) {
	f.Add([]byte("412 (redis-server) S 1 412 412 0 -1 4194560\n"))
	f.Add([]byte("977 (my (weird) prog) D 1\n"))
	f.Add([]byte("1 ()) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return // over the size cap: larger inputs only slow the fuzzer
		}
		p, err := parseProcessStat(b)
		if err != nil {
			if !errors.Is(err, ErrFileParse) {
				t.Fatalf("error %v does not wrap ErrFileParse", err)
			}
			return
		}
		if p.PID <= 0 {
			t.Errorf("pid %d", p.PID)
		}
		if !strings.Contains(string(b), "("+p.Comm+")") {
			t.Errorf("comm %q not found in parentheses in %q", p.Comm, b)
		}
	})
}

func FuzzSocketInode(f *testing.F) {
	f.Add([]byte("socket:[53211]"))
	f.Add([]byte("socket:[4294967296]"))
	f.Add([]byte("pipe:[1]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ino, ok := socketInode(b)
		if ok && string(b) != "socket:["+strconv.FormatUint(uint64(ino), 10)+"]" && !strings.HasPrefix(string(b), "socket:[0") {
			t.Errorf("socketInode(%q) = %d", b, ino)
		}
	})
}

// BenchmarkSocketOwners scans this host's whole /proc for an inode no
// process holds (the worst case: every process and descriptor read).
func BenchmarkSocketOwners(b *testing.B) {
	fs, err := NewFS("/")
	if err != nil {
		b.Fatal(err)
	}
	var res SocketOwners
	b.ReportAllocs()
	for b.Loop() {
		if res, err = fs.SocketOwners([]uint32{1<<32 - 1}, OwnerLimits{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(res.Processes), "procs")
	b.ReportMetric(float64(res.FDs), "fds")
}

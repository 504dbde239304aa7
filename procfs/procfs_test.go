package procfs

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func fixture(t testing.TB, name string) FS {
	t.Helper()
	fs, err := NewFS(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

var nanEqual = cmpopts.EquateNaNs()

func TestSysctl(t *testing.T) {
	tests := []struct {
		tree, name string
		want       []int64
		wantErr    error
	}{
		{"linux-6.18", "net.core.somaxconn", []int64{4096}, nil},
		{"linux-6.18", "net.ipv4.tcp_max_syn_backlog", []int64{2048}, nil},
		{"linux-6.18", "net.ipv4.tcp_syncookies", []int64{1}, nil},
		{"linux-6.18", "net.ipv4.ip_local_port_range", []int64{32768, 60999}, nil},
		{"linux-6.18", "net.netfilter.nf_conntrack_max", []int64{262144}, nil},
		{"linux-2.6.32", "net.core.somaxconn", []int64{128}, nil},
		{"linux-2.6.32", "net.netfilter.nf_conntrack_count", []int64{62882}, nil},
		{"no-conntrack", "net.netfilter.nf_conntrack_max", nil, os.ErrNotExist},
		{"linux-6.18", "net/../../etc", nil, ErrFileParse},
		{"linux-6.18", "", nil, ErrFileParse},
	}
	for _, tt := range tests {
		t.Run(tt.tree+"/"+tt.name, func(t *testing.T) {
			got, err := fixture(t, tt.tree).Sysctl(tt.name)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Sysctl(%q) error = %v, want %v", tt.name, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Sysctl(%q) (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestParseSysctlErrors(t *testing.T) {
	for _, in := range []string{"", "  \n", "abc", "12 x", "99999999999999999999"} {
		if _, err := parseSysctlBytes([]byte(in), nil); !errors.Is(err, ErrFileParse) {
			t.Errorf("parseSysctlBytes(%q) error = %v, want ErrFileParse", in, err)
		}
	}
}

func TestNetstat(t *testing.T) {
	tests := []struct {
		tree                      string
		overflows, passive, estab float64
		reqQFull                  bool
	}{
		{"linux-6.18", 0, 2, 0, true},
		// The older layout has no TCPReqQFull* fields.
		{"linux-2.6.32", 52311, 88412300, 10231, false},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			got, err := fixture(t, tt.tree).Netstat()
			if err != nil {
				t.Fatal(err)
			}
			if got.TcpExt == nil || got.Tcp == nil {
				t.Fatalf("Netstat = %+v, want both parts", got)
			}
			if v := got.TcpExt.ListenOverflows; v == nil || *v != tt.overflows {
				t.Errorf("ListenOverflows = %v, want %v", v, tt.overflows)
			}
			if v := got.Tcp.PassiveOpens; v == nil || *v != tt.passive {
				t.Errorf("PassiveOpens = %v, want %v", v, tt.passive)
			}
			if v := got.Tcp.CurrEstab; v == nil || *v != tt.estab {
				t.Errorf("CurrEstab = %v, want %v", v, tt.estab)
			}
			if (got.TcpExt.TCPReqQFullDrop != nil) != tt.reqQFull {
				t.Errorf("TCPReqQFullDrop = %v, want present %v", got.TcpExt.TCPReqQFullDrop, tt.reqQFull)
			}
		})
	}
}

func TestNetstatMissing(t *testing.T) {
	got, err := fixture(t, "empty").Netstat()
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error = %v, want os.ErrNotExist", err)
	}
	if got.TcpExt != nil || got.Tcp != nil {
		t.Errorf("missing files gave values: %+v", got)
	}
}

// FuzzNetstat feeds /proc/net/netstat and /proc/net/snmp contents through
// the reader (prometheus/procfs's parsers, as the daemon calls them): any
// input gives values or an error, never a panic or a hang.
func FuzzNetstat(f *testing.F) {
	for _, tree := range []string{"linux-6.18", "linux-2.6.32"} {
		net := filepath.Join("..", "testdata", tree, "proc", "self", "net")
		ns, err1 := os.ReadFile(filepath.Join(net, "netstat"))
		sn, err2 := os.ReadFile(filepath.Join(net, "snmp"))
		if err1 != nil || err2 != nil {
			f.Fatal(err1, err2)
		}
		f.Add(ns, sn)
	}
	f.Add([]byte("TcpExt: A\nTcpExt: x\n"), []byte("Tcp: B C\nTcp: 1\n"))
	root := f.TempDir()
	dir := filepath.Join(root, "proc", "1", "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("1", filepath.Join(root, "proc", "self")); err != nil {
		f.Fatal(err)
	}
	fs, err := NewFS(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, netstat, snmp []byte) {
		if len(netstat)+len(snmp) > 64<<10 {
			return // far larger than the kernel's files
		}
		if err := os.WriteFile(filepath.Join(dir, "netstat"), netstat, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "snmp"), snmp, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := fs.Netstat()
		if err == nil && (got.TcpExt == nil || got.Tcp == nil) {
			t.Fatalf("no error but a part missing: %+v", got)
		}
	})
}

// sums returns every counter of st summed over its CPUs.
func sums(st ConntrackStat) [NumCTCounters]float64 {
	var out [NumCTCounters]float64
	for c := range out {
		out[c] = st.Sum(c)
	}
	return out
}

func TestConntrackStat(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		tree    string
		entries float64
		cpus    int
		want    [NumCTCounters]float64 // by CT* index
		wantErr error
	}{
		{tree: "linux-6.18", cpus: 2},
		// The 2.6.32 layout has searched/delete_list and no
		// search_restart, clashres or chaintoolong.
		{tree: "linux-2.6.32", entries: 0xf5a2, cpus: 2, want: [NumCTCounters]float64{
			CTFound: 0x12a4b1 + 0x13b5c2, CTInvalid: 0xc1 + 0xd2, CTInsert: 0x3fa112 + 0x40b223,
			CTInsertFailed: 3 + 1, CTDrop: 0x11 + 0x4, CTEarlyDrop: 0, CTICMPError: 0,
			CTSearchRestart: nan, CTClashResolve: nan, CTChainTooLong: nan,
		}},
		{tree: "no-conntrack", wantErr: os.ErrNotExist},
		{tree: "no-conntrack-procfs", wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			got, err := fixture(t, tt.tree).ConntrackStat()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Entries != tt.entries || len(got.CPUs) != tt.cpus {
				t.Errorf("entries %v, %d CPUs; want %v, %d", got.Entries, len(got.CPUs), tt.entries, tt.cpus)
			}
			if diff := cmp.Diff(tt.want, sums(got), nanEqual); diff != "" {
				t.Errorf("sums (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseConntrackStatErrors(t *testing.T) {
	tests := map[string]string{
		"empty":        "",
		"blank header": "\n",
		"no rows":      "entries drop\n",
		"short row":    "entries drop\n00000001\n",
		"not hex":      "entries drop\n00000001 zz\n",
		"overflow":     "entries drop\n00000001 11111111111111111111\n",
		"over 32 bits": "entries drop\n00000001 100000000\n",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := parseConntrackStat(bytes.NewReader([]byte(in))); !errors.Is(err, ErrFileParse) {
				t.Errorf("error = %v, want ErrFileParse", err)
			}
		})
	}
}

func TestReadFileCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, make([]byte, maxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readFile(path); !errors.Is(err, ErrFileTooLarge) {
		t.Errorf("error = %v, want ErrFileTooLarge", err)
	}
}

func FuzzParseConntrackStat(f *testing.F) {
	for _, tree := range []string{"linux-6.18/proc/1", "linux-2.6.32/proc/4242"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", tree, "net", "stat", "nf_conntrack"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("entries drop\n1 2\n3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return // over the fuzz size cap: larger inputs only slow the fuzzer
		}
		st, err := parseConntrackStat(bytes.NewReader(b))
		if err == nil && len(st.CPUs) == 0 {
			t.Errorf("no error but no CPU rows for %q", b)
		}
	})
}

func FuzzParseSysctl(f *testing.F) {
	for _, s := range []string{"4096\n", "32768\t60999\n", "-1", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return // over the fuzz size cap: larger inputs only slow the fuzzer
		}
		v, err := parseSysctlBytes(b, nil)
		if err == nil && len(v) == 0 {
			t.Errorf("no error but no values for %q", b)
		}
		// The same as splitting at ASCII white space and strconv.
		var want []int64
		wantOK := true
		for _, f := range strings.FieldsFunc(string(b), func(r rune) bool { return r < 0x80 && isSpace(byte(r)) }) {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				wantOK = false
				break
			}
			want = append(want, n)
		}
		wantOK = wantOK && len(want) > 0
		if (err == nil) != wantOK || (err == nil && !slices.Equal(v, want)) {
			t.Errorf("parseSysctlBytes(%q) = %v, %v; strconv says %v (ok %v)", b, v, err, want, wantOK)
		}
	})
}

// TestSysctlReader: a SysctlReader reads what Sysctl reads, errors
// included, and reads again with few allocations.
func TestSysctlReader(t *testing.T) {
	for _, tree := range []string{"linux-6.18", "linux-2.6.32", "no-conntrack"} {
		fs := fixture(t, tree)
		r := fs.NewSysctlReader()
		for _, name := range []string{"net.core.somaxconn", "net.ipv4.ip_local_port_range", "net.netfilter.nf_conntrack_max", "net.ipv4.tcp_syncookies", "net/../../etc"} {
			for range 2 { // the second time from the cached path
				want, wantErr := fs.Sysctl(name)
				got, err := r.Read(name)
				if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
					t.Errorf("%s %s: error %v, Sysctl says %v", tree, name, err, wantErr)
				}
				if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("%s %s (-Sysctl +Read):\n%s", tree, name, diff)
				}
			}
		}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := r.Read("net.ipv4.ip_local_port_range"); err != nil {
				t.Fatal(err)
			}
		})
		// An os.File and its finalizer; Sysctl takes a dozen.
		if allocs > 4 {
			t.Errorf("%s: %v allocations per Read, want at most 4", tree, allocs)
		}
	}
}

package unitcheck

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readStatus(t *testing.T, name string) procStatus {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := parseStatus(f)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// The fixtures are /proc/self/status of cat run by root, and by setpriv as
// a dynamic-range uid holding only CAP_NET_ADMIN (no seccomp filter).
func TestIdentity(t *testing.T) {
	st := readStatus(t, "status-dynamic-netadmin")
	want := "uid 63736 gid 63736, CapEff 0000000000001000 CapPrm 0000000000001000 CapAmb 0000000000001000 CapBnd 0000000000001000, NoNewPrivs 1, Seccomp 0"
	if diff := cmp.Diff(want, describeIdentity(st)); diff != "" {
		t.Errorf("describeIdentity (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("seccomp mode 0, want 2 (filter)", errText(identityErr(st))); diff != "" {
		t.Errorf("identityErr (-want +got):\n%s", diff)
	}
	st.Seccomp = 2
	if err := identityErr(st); err != nil {
		t.Errorf("identityErr of the daemon's identity = %v", err)
	}

	root := readStatus(t, "status-root")
	got := errText(identityErr(root))
	for _, w := range []string{
		"uid [0 0 0 0]: want one dynamic id (61184-65519)",
		"CapEff 000001fffeffffff, want exactly CAP_NET_ADMIN 0000000000001000",
		"CapAmb 0000000000000000, want exactly CAP_NET_ADMIN",
		"NoNewPrivs 0, want 1",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("identityErr of root lacks %q:\n%s", w, got)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestParseStatusIncomplete(t *testing.T) {
	if _, err := parseStatus(strings.NewReader("Name:\tcat\nUid:\t1\t1\t1\t1\n")); err == nil {
		t.Error("parseStatus accepted a status without Gid and Cap lines")
	}
	if _, err := parseStatus(strings.NewReader("Uid:\t1 2\n")); err == nil {
		t.Error("parseStatus accepted a Uid line with two ids")
	}
}

func TestParseUSec(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30s": 30 * time.Second, "5s": 5 * time.Second, "1min 30s": 90 * time.Second,
		"100ms": 100 * time.Millisecond, "1.500s": 1500 * time.Millisecond, "0": 0, "infinity": -1,
	} {
		got, err := parseUSec(in)
		if err != nil || got != want {
			t.Errorf("parseUSec(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"s", "5 parsecs", "5x"} {
		if _, err := parseUSec(bad); err == nil {
			t.Errorf("parseUSec(%q) accepted", bad)
		}
	}
}

const scrape = `# TYPE stormwatch_collector_success gauge
stormwatch_collector_success{collector="sysctl"} 1
stormwatch_collector_success{collector="tcpstat"} 1
stormwatch_collector_success{collector="listeners"} 0
stormwatch_collector_success{collector="valkey"} 0
# TYPE stormwatch_collector_absent gauge
stormwatch_collector_absent{collector="listeners"} 0
stormwatch_collector_absent{collector="valkey"} 1
# TYPE stormwatch_listener_accept_queue_limit gauge
stormwatch_listener_accept_queue_limit{addr="127.0.0.1",port="4000"} 17
stormwatch_listener_accept_queue_limit{addr="::",port="4000"} 4096
`

func TestSourcesOK(t *testing.T) {
	e, err := parseExposition(strings.NewReader(scrape))
	if err != nil {
		t.Fatal(err)
	}
	got, err := sourcesOK(e, []string{"sysctl", "tcpstat", "listeners", "conntrack"})
	if diff := cmp.Diff("stormwatch_collector_success 1 for sysctl, tcpstat", got); diff != "" {
		t.Errorf("sourcesOK (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("stormwatch_collector_success 0 for listeners\nno stormwatch_collector_success for conntrack", errText(err)); diff != "" {
		t.Errorf("sourcesOK error (-want +got):\n%s", diff)
	}
	if v, ok := e.value("stormwatch_listener_accept_queue_limit", "addr", "127.0.0.1", "port", "4000"); !ok || v != 17 {
		t.Errorf("value(127.0.0.1:4000) = %v, %v; want 17", v, ok)
	}
	if _, ok := e.value("stormwatch_listener_accept_queue_limit", "port", "4000"); ok {
		t.Error("value matched two series")
	}
}

func TestLimitNote(t *testing.T) {
	// The daemon's cgroups in the container on a cgroup v1 host: the
	// memory controller's view is the container's root.
	cg := "9:name=systemd:/system.slice/stormwatch.service\n4:memory:/\n0::/system.slice/stormwatch.service\n"
	got := limitNote("MemoryMax", "134217728", "memory", "memory.max", "memory.limit_in_bytes", cg, "/system.slice/stormwatch.service")
	if !strings.HasPrefix(got, "NOT ENFORCED HERE: MemoryMax=134217728 is configured") {
		t.Errorf("limitNote = %q", got)
	}
}

func TestMutations(t *testing.T) {
	for _, m := range Mutations {
		if !strings.HasPrefix(m.DropIn, "[Service]\n") || m.Why == "" || len(m.Breaks) == 0 {
			t.Errorf("mutation %s is incomplete: %+v", m.Name, m)
		}
		for _, b := range m.Breaks {
			found := false
			for _, c := range Checks {
				found = found || c == b
			}
			if !found {
				t.Errorf("mutation %s breaks %q, which is not a check", m.Name, b)
			}
		}
	}
	// Every check has a mutation that must break it.
	for _, c := range Checks {
		found := false
		for _, m := range Mutations {
			for _, b := range m.Breaks {
				found = found || b == c
			}
		}
		if !found {
			t.Errorf("no mutation breaks check %s", c)
		}
	}
}

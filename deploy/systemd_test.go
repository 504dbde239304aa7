package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stormwatch/stormwatch/internal/testbin"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

const (
	unitPath    = "systemd/stormwatch.service"
	defaultPath = "systemd/stormwatch.default"
	// maxExposure is the highest `systemd-analyze security` exposure level
	// accepted for the unit (0 is best, 10 worst).
	maxExposure = 1.5
)

// unitFile is a parsed systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, ";"):
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: continuation lines are not supported here", path, n)
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestUnitDirectives pins the settings stormwatch depends on, including the
// ones that would raise the security score but break it.
func TestUnitDirectives(t *testing.T) {
	svc := parseUnit(t, unitPath)["Service"]
	want := map[string]string{
		"Type":                    "notify",
		"WatchdogSec":             "30s",
		"ExecStart":               "/usr/bin/stormwatch run --config=/etc/stormwatch/stormwatch.yml $STORMWATCH_ARGS",
		"EnvironmentFile":         "-/etc/default/stormwatch",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"DynamicUser":             "yes",
		"AmbientCapabilities":     "CAP_NET_ADMIN",
		"CapabilityBoundingSet":   "CAP_NET_ADMIN",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectKernelTunables":   "yes",
		"ProtectProc":             "invisible",
		"ProcSubset":              "all",
		"RestrictAddressFamilies": "AF_UNIX AF_NETLINK AF_INET AF_INET6",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"UMask":                   "0077",
		"MemoryMax":               "128M",
		"Environment":             "GOMEMLIMIT=96MiB",
	}
	for k, v := range want {
		got := svc[k]
		if len(got) != 1 || got[0] != v {
			t.Errorf("[Service] %s = %q, want exactly %q", k, got, v)
		}
	}
	if got, want := svc["SystemCallFilter"], []string{"@system-service", "~@privileged @resources"}; !slices.Equal(got, want) {
		t.Errorf("[Service] SystemCallFilter = %q, want %q", got, want)
	}
	// Each would blind or break the daemon; see the comments in the unit.
	for _, k := range []string{"PrivateNetwork", "PrivateUsers", "IPAddressDeny", "User", "Group"} {
		if v, ok := svc[k]; ok {
			t.Errorf("[Service] %s = %q must not be set", k, v)
		}
	}
}

// TestUnitSecurity measures the unit with `systemd-analyze security`.
func TestUnitSecurity(t *testing.T) {
	analyze := testenv.Tool(t, "systemd-analyze")
	cmd := exec.Command(analyze, "security", "--offline=true",
		"--threshold="+strconv.Itoa(int(maxExposure*10)), unitPath)
	out, err := cmd.CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for stormwatch\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in its output (%v):\n%s", err, out)
	}
	exposure, perr := strconv.ParseFloat(string(m[1]), 64)
	if perr != nil {
		t.Fatal(perr)
	}
	t.Logf("exposure level %.1f (at most %.1f accepted)", exposure, maxExposure)
	if err != nil || exposure > maxExposure {
		t.Errorf("systemd-analyze security: exposure %.1f, want ≤ %.1f (%v):\n%s", exposure, maxExposure, err, out)
	}
}

// TestUnitVerify runs `systemd-analyze verify` on a copy of the unit whose
// ExecStart names a freshly built binary (verify checks the executable
// exists), with the man page manpage.sh generates on MANPATH (verify checks
// Documentation=man:stormwatch(1)).
func TestUnitVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds stormwatch: not in -short")
	}
	analyze := testenv.Tool(t, "systemd-analyze")
	bin := testbin.Stormwatch(t)
	dir := t.TempDir()

	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	const execStart = "\nExecStart=/usr/bin/stormwatch "
	if !strings.Contains(string(unit), execStart) {
		t.Fatalf("%s has no %q line", unitPath, strings.TrimSpace(execStart))
	}
	copied := strings.Replace(string(unit), execStart, "\nExecStart="+bin+" ", 1)
	copyPath := filepath.Join(dir, "stormwatch.service")
	if err := os.WriteFile(copyPath, []byte(copied), 0o644); err != nil {
		t.Fatal(err)
	}

	args := []string{"verify"}
	env := os.Environ()
	if _, err := exec.LookPath("man"); err == nil || testenv.CI() {
		testenv.Tool(t, "man") // under CI, man-db is installed
		manDir := filepath.Join(dir, "man")
		if err := os.MkdirAll(filepath.Join(manDir, "man1"), 0o755); err != nil {
			t.Fatal(err)
		}
		page, err := exec.Command("sh", "manpage.sh", bin, "test").Output()
		if err != nil {
			t.Fatalf("manpage.sh: %v", err)
		}
		if err := os.WriteFile(filepath.Join(manDir, "man1", "stormwatch.1"), page, 0o644); err != nil {
			t.Fatal(err)
		}
		env = append(env, "MANPATH="+manDir)
	} else {
		t.Log("man not installed (package man-db): Documentation= not checked (CI checks it)")
		args = append(args, "--man=no")
	}
	cmd := exec.Command(analyze, append(args, copyPath)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// verify also loads the units this one depends on; only its own
	// complaints count.
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "stormwatch") {
			t.Errorf("systemd-analyze verify: %s", line)
		} else if line != "" {
			t.Logf("systemd-analyze verify (other unit): %s", line)
		}
	}
}

// TestDefaultFile checks the environment file holds only comments and
// STORMWATCH_ARGS, empty.
func TestDefaultFile(t *testing.T) {
	b, err := os.ReadFile(defaultPath)
	if err != nil {
		t.Fatal(err)
	}
	var vars []string
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !regexp.MustCompile(`^[A-Z_]+="[^"]*"$`).MatchString(line) {
			t.Errorf("%s:%d: want NAME=\"value\", got %q", defaultPath, n+1, line)
		}
		vars = append(vars, line)
	}
	if !slices.Equal(vars, []string{`STORMWATCH_ARGS=""`}) {
		t.Errorf("%s sets %q, want only STORMWATCH_ARGS=\"\"", defaultPath, vars)
	}
}

package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/deploy/internal/unitcheck"
	"github.com/stormwatch/stormwatch/internal/testenv"
)

// The container's root file system: Debian minbase plus what a booted
// systemd and the unit need (/bin/kill of ExecReload is in procps).
var rootfsPackages = []string{"systemd", "systemd-sysv", "dbus", "procps"}

// Environment of TestUnitInContainer.
const (
	// envDeb names a built stormwatch .deb to test (.ci/run passes the one
	// it built); without it the test runs `make deb`.
	envDeb = "STORMWATCH_TEST_DEB"
	// envBreak runs the negative runs instead: "all", or mutation names
	// separated by commas (see unitcheck.Mutations).
	envBreak = "STORMWATCH_UNITCHECK_BREAK"
	// envCache overrides where the container root file system is cached
	// (default: stormwatch/nspawn in the user cache directory, or in
	// /var/cache without HOME).
	envCache = "STORMWATCH_NSPAWN_CACHE"
	// envSuite and envMirror override the Debian suite and mirror
	// debootstrap uses (default: the host's, from /etc/os-release and
	// apt's sources).
	envSuite  = "STORMWATCH_DEBIAN_SUITE"
	envMirror = "STORMWATCH_DEBIAN_MIRROR"
)

// containerTimeout bounds one container run: boot, the checks (about a
// minute, most of it the watchdog's 30s) and shutdown.
const containerTimeout = 8 * time.Minute

// TestUnitInContainer boots a real systemd in a systemd-nspawn container
// (a cached Debian minbase root, mounted with a throw-away overlay; the
// host's own root and /tmp are never visible to it), installs the built
// .deb there and runs the unitcheck checks on the packaged unit: started
// through Type=notify, a dynamic user with exactly CAP_NET_ADMIN, every
// source working inside the sandbox (ctnetlink included), reload, the
// watchdog restarting a stopped daemon, and a taken port failing the start.
// The runner's verdict comes back as nspawn's exit status (systemctl exit
// N inside) and its report through a bound results directory.
//
// With STORMWATCH_UNITCHECK_BREAK set it runs the negative runs instead:
// each mutation removes one check's precondition with a drop-in, and the
// test passes when exactly that breakage is caught.
func TestUnitInContainer(t *testing.T) {
	testenv.Kernel(t)
	testenv.Root(t, "booting systemd in a container (systemd-nspawn)")
	nspawn := testenv.Tool(t, "systemd-nspawn")
	muts := mutationsFromEnv(t)
	cache := cacheDir(t)
	root := containerRoot(t, cache)
	deb := debPackage(t)
	runner := buildRunner(t)

	if len(muts) == 0 {
		rep, code, out := bootContainer(t, nspawn, cache, root, deb, runner, "")
		checkVerdict(t, rep, code, out)
		for _, c := range rep.Checks {
			t.Run(c.Name, func(t *testing.T) {
				if !c.OK {
					t.Errorf("%s: %s", c.Name, c.Detail)
					return
				}
				t.Logf("%s (%.1fs): %s", c.Name, c.Seconds, c.Detail)
			})
		}
		if diff := cmp.Diff(unitcheck.Checks, checkNames(rep)); diff != "" {
			t.Errorf("checks run (-want +got):\n%s", diff)
		}
		for _, n := range rep.Notes {
			t.Log(n)
		}
		return
	}
	for _, m := range muts {
		t.Run(m.Name, func(t *testing.T) {
			t.Logf("mutation %s: %s\n%s", m.Name, m.Why, m.DropIn)
			rep, code, out := bootContainer(t, nspawn, cache, root, deb, runner, m.DropIn)
			checkVerdict(t, rep, code, out)
			// A check that never ran cannot have failed as it must.
			for _, name := range m.Breaks {
				if !slices.Contains(checkNames(rep), name) {
					t.Errorf("check %s did not run with %s (ran: %v)", name, m.Name, checkNames(rep))
				}
			}
			for _, c := range rep.Checks {
				switch {
				case slices.Contains(m.Breaks, c.Name) && c.OK:
					t.Errorf("check %s passed with %s: %s", c.Name, m.Name, c.Detail)
				case slices.Contains(m.Breaks, c.Name):
					t.Logf("check %s FAILED, as it must: %s", c.Name, c.Detail)
				default:
					t.Logf("check %s ok=%v: %s", c.Name, c.OK, c.Detail)
				}
			}
		})
	}
}

func checkNames(rep unitcheck.Report) []string {
	var names []string
	for _, c := range rep.Checks {
		names = append(names, c.Name)
	}
	return names
}

// checkVerdict checks the container's exit status is the runner's verdict:
// the number of failed checks in its report.
func checkVerdict(t *testing.T, rep unitcheck.Report, code int, out string) {
	t.Helper()
	if code != rep.Failed() {
		t.Errorf("systemd-nspawn exited %d, want %d (the failed checks of the report, through systemctl exit):\n%s",
			code, rep.Failed(), tail(out, 40))
	}
}

// mutationsFromEnv returns the mutations STORMWATCH_UNITCHECK_BREAK names.
func mutationsFromEnv(t *testing.T) []unitcheck.Mutation {
	t.Helper()
	v := os.Getenv(envBreak)
	switch v {
	case "":
		return nil
	case "all":
		return unitcheck.Mutations
	}
	var muts []unitcheck.Mutation
	for _, name := range strings.Split(v, ",") {
		m, ok := unitcheck.MutationByName(strings.TrimSpace(name))
		if !ok {
			var names []string
			for _, m := range unitcheck.Mutations {
				names = append(names, m.Name)
			}
			t.Fatalf("%s=%q: no mutation %q; want all or some of %s", envBreak, v, name, strings.Join(names, ", "))
		}
		muts = append(muts, m)
	}
	return muts
}

// cacheDir returns the directory holding the cached container roots and
// the containers' work directories, and locks it for the test: one
// container run (or root build) at a time.
func cacheDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(envCache)
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = "/var/cache" // no HOME: root's system cache
		}
		dir = filepath.Join(base, "stormwatch", "nspawn")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", lock.Name(), err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Logf("waited %s for another container run to end (%s)", waited.Round(time.Second), lock.Name())
	}
	t.Cleanup(func() { lock.Close() }) // closing drops the lock
	return dir
}

// containerRoot returns a Debian minbase root file system with
// rootfsPackages, from the cache or built with debootstrap. A root is
// stored under a name derived from the suite, mirror, architecture and
// package list, and renamed into place only once complete, so a cached
// one is whole. Containers mount it read-only under a volatile overlay
// (nspawn --volatile=overlay): runs never change it.
func containerRoot(t *testing.T, cache string) string {
	t.Helper()
	suite, mirror := debianSource(t)
	arch := debianArch(t)
	spec := fmt.Sprintf("debootstrap --variant=minbase --include=%s %s %s (%s)",
		strings.Join(rootfsPackages, ","), suite, mirror, arch)
	sum := sha256.Sum256([]byte(spec))
	dir := filepath.Join(cache, fmt.Sprintf("debian-%s-%s-%s", suite, arch, hex.EncodeToString(sum[:6])))
	marker := filepath.Join(dir, ".stormwatch-rootfs")
	if b, err := os.ReadFile(marker); err == nil && string(b) == spec {
		t.Logf("container root: %s (cached: %s)", dir, spec)
		return dir
	}
	// Not there, or not whole: (re)build. Leftovers of a killed build go.
	stale, _ := filepath.Glob(dir + ".tmp-*")
	for _, s := range append(stale, dir) {
		if err := os.RemoveAll(s); err != nil {
			t.Fatal(err)
		}
	}
	debootstrap := testenv.Tool(t, "debootstrap")
	tmp := fmt.Sprintf("%s.tmp-%d", dir, os.Getpid())
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, debootstrap, "--variant=minbase",
		"--include="+strings.Join(rootfsPackages, ","), "--arch="+arch, suite, tmp, mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		testenv.Require(t, "a container root from "+spec,
			fmt.Errorf("%w\n%s", err, tail(string(out), 30)))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".stormwatch-rootfs"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("container root built in %s: %s (%s)", time.Since(start).Round(time.Second), dir, spec)
	return dir
}

// debianArch returns the host's Debian architecture.
func debianArch(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(testenv.Tool(t, "dpkg"), "--print-architecture").Output()
	if err != nil {
		t.Fatalf("dpkg --print-architecture: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// debianSource returns the suite and mirror for debootstrap: the host's
// release (/etc/os-release) from the mirror apt uses for it, unless the
// environment overrides them.
func debianSource(t *testing.T) (suite, mirror string) {
	t.Helper()
	suite, mirror = os.Getenv(envSuite), os.Getenv(envMirror)
	if suite == "" {
		osRelease, _ := os.ReadFile("/etc/os-release")
		suite = osReleaseField(string(osRelease), "VERSION_CODENAME")
		if suite == "" {
			testenv.Require(t, "a Debian suite for the container root",
				fmt.Errorf("/etc/os-release has no VERSION_CODENAME; set %s", envSuite))
		}
	}
	if mirror == "" {
		var err error
		if mirror, err = aptMirror("/etc/apt", suite); err != nil {
			testenv.Require(t, "a Debian mirror for the container root", fmt.Errorf("%w; set %s", err, envMirror))
		}
	}
	return suite, mirror
}

func osReleaseField(s, key string) string {
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}

// aptMirror returns the URI of the first apt source under etcApt
// (sources.list, sources.list.d/*.list and *.sources) that serves suite's
// main component as binary packages.
func aptMirror(etcApt, suite string) (string, error) {
	files := []string{filepath.Join(etcApt, "sources.list")}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", pat))
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var uri string
		if strings.HasSuffix(f, ".sources") {
			uri = deb822Mirror(b, suite)
		} else {
			uri = oneLineMirror(b, suite)
		}
		if uri != "" {
			return uri, nil
		}
	}
	return "", fmt.Errorf("no apt source under %s serves %s main", etcApt, suite)
}

// oneLineMirror reads "deb [options] URI suite component..." lines.
func oneLineMirror(b []byte, suite string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], "[") { // [options]
			end := slices.IndexFunc(f, func(s string) bool { return strings.HasSuffix(s, "]") })
			if end < 0 {
				continue
			}
			f = slices.Delete(f, 1, end+1)
		}
		if len(f) >= 4 && f[0] == "deb" && f[2] == suite && slices.Contains(f[3:], "main") {
			return f[1]
		}
	}
	return ""
}

// deb822Mirror reads deb822 stanzas (Types, URIs, Suites, Components).
func deb822Mirror(b []byte, suite string) string {
	for _, stanza := range strings.Split(string(b), "\n\n") {
		fields := map[string][]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.Fields(v)
			}
		}
		if enabled := fields["enabled"]; len(enabled) == 1 && enabled[0] == "no" {
			continue
		}
		if slices.Contains(fields["types"], "deb") && slices.Contains(fields["suites"], suite) &&
			slices.Contains(fields["components"], "main") && len(fields["uris"]) > 0 {
			return fields["uris"][0]
		}
	}
	return ""
}

// debPackage returns the .deb to test: STORMWATCH_TEST_DEB, or one built
// with `make deb` for the test.
func debPackage(t *testing.T) string {
	t.Helper()
	if deb := os.Getenv(envDeb); deb != "" {
		if _, err := os.Stat(deb); err != nil {
			t.Fatalf("%s: %v", envDeb, err)
		}
		return deb
	}
	mk := testenv.Tool(t, "make")
	dir := t.TempDir()
	start := time.Now()
	cmd := exec.Command(mk, "deb", "DEB_BUILD="+filepath.Join(dir, "build"), "DEB_DIST="+filepath.Join(dir, "dist"))
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, tail(string(out), 30))
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "dist", "stormwatch_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %q, want one stormwatch_*.deb", debs)
	}
	t.Logf("make deb: %s in %s", filepath.Base(debs[0]), time.Since(start).Round(time.Second))
	return debs[0]
}

// buildRunner builds the unitcheck runner, static, to run in the container.
func buildRunner(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "runner")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/stormwatch/stormwatch/deploy/internal/unitcheck/runner")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the unitcheck runner: %v\n%s", err, out)
	}
	return bin
}

// runnerUnit is the oneshot unit that runs the checks in the container.
// The runner ends the container with systemctl exit N; if it crashes or
// hangs, FailureAction ends it with unitcheck.ExitRunnerFailed.
const runnerUnit = `[Unit]
Description=stormwatch unit checks (deploy TestUnitInContainer)
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/unitcheck/runner -deb=/unitcheck/stormwatch.deb -dropin=/unitcheck/mutation.conf -results=/results
TimeoutStartSec=7min
FailureAction=exit
FailureActionExitStatus=%d
`

// bootContainer boots the container with the runner unit and returns the
// report, nspawn's exit status and its output.
func bootContainer(t *testing.T, nspawn, cache, root, deb, runner, dropIn string) (unitcheck.Report, int, string) {
	t.Helper()
	// The work directory is under the cache, not the host's /tmp: only it
	// is bound into the container.
	work, err := os.MkdirTemp(cache, "run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	in, results := filepath.Join(work, "in"), filepath.Join(work, "results")
	for _, d := range []string{in, results} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"runner": runner, "stormwatch.deb": deb}
	for name, src := range files {
		if err := copyFile(src, filepath.Join(in, name)); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(in, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stormwatch-unitcheck.service", fmt.Sprintf(runnerUnit, unitcheck.ExitRunnerFailed))
	if dropIn != "" {
		write("mutation.conf", dropIn)
	}

	var rnd [4]byte
	rand.Read(rnd[:])
	machine := "stormwatch-unitcheck-" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, nspawn,
		"--quiet", "--keep-unit", "--register=no", "--private-network",
		"--volatile=overlay", "--machine="+machine, "--directory="+root,
		"--bind-ro="+in+":/unitcheck",
		"--bind="+results+":/results",
		"--bind-ro="+filepath.Join(in, "stormwatch-unitcheck.service")+":/etc/systemd/system/stormwatch-unitcheck.service",
		"--boot", "systemd.wants=stormwatch-unitcheck.service")
	// On timeout nspawn gets SIGTERM, which powers the container off.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	os.Remove(filepath.Join("/run/systemd/nspawn/propagate", machine))
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.Exited():
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("systemd-nspawn: %v after %s:\n%s\n%s", err, took.Round(time.Second), tail(out.String(), 40), fileTail(filepath.Join(results, unitcheck.LogFile), 60))
	}
	t.Logf("container %s booted, ran the checks and exited %d in %.1fs", machine, code, took.Seconds())

	b, err := os.ReadFile(filepath.Join(results, unitcheck.ReportFile))
	if err != nil {
		t.Fatalf("no report from the container (nspawn exit %d): %v\n%s\nrunner log:\n%s", code, err, tail(out.String(), 40), fileTail(filepath.Join(results, unitcheck.LogFile), 60))
	}
	var rep unitcheck.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runner log:\n%s", fileTail(filepath.Join(results, unitcheck.LogFile), 200))
			t.Logf("journal of %s:\n%s", unitcheck.Unit, fileTail(filepath.Join(results, unitcheck.JournalFile), 80))
		}
	})
	return rep, code, out.String()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm()|0o444)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), n)
}

// TestAptMirror checks the mirror is found in both apt source formats.
func TestAptMirror(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Debian 12's default, deb822.
	write("sources.list.d/debian.sources", `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`)
	write("sources.list.d/other.list", "deb [arch=amd64 signed-by=/k.gpg] https://example.invalid/apt trixie main\n")
	for _, tt := range []struct{ suite, want string }{
		{"bookworm", "http://deb.debian.org/debian"},
		{"bookworm-security", "http://deb.debian.org/debian-security"},
		{"trixie", "https://example.invalid/apt"},
		{"sid", ""},
	} {
		got, err := aptMirror(dir, tt.suite)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("aptMirror(%s) = %q, %v; want %q", tt.suite, got, err, tt.want)
		}
	}
	write("sources.list", "# comment\ndeb-src http://a.invalid/debian bookworm main\ndeb http://b.invalid/debian bookworm contrib main\n")
	if got, _ := aptMirror(dir, "bookworm"); got != "http://b.invalid/debian" {
		t.Errorf("aptMirror with sources.list = %q, want its deb line first", got)
	}
}

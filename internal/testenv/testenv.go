package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// OptionalMarker is in the message of every skip [Optional] makes. The CI
// report accepts skipped tests whose output carries it.
const OptionalMarker = "[optional skip]"

// Packages maps the programs the tests run to the Debian package that
// ships them; .ci/run installs each of these packages.
var Packages = map[string]string{
	"conntrack":                "conntrack",
	"debootstrap":              "debootstrap",
	"dpkg":                     "dpkg",
	"ethtool":                  "ethtool",
	"hping3":                   "hping3",
	"ip":                       "iproute2",
	"lexgrog":                  "man-db",
	"make":                     "make",
	"man":                      "man-db",
	"nft":                      "nftables",
	"prometheus":               "prometheus",
	"prometheus-alertmanager":  "prometheus-alertmanager",
	"prometheus-node-exporter": "prometheus-node-exporter",
	"promtool":                 "prometheus",
	"redis-benchmark":          "redis-tools",
	"redis-cli":                "redis-tools",
	"redis-server":             "redis-server",
	"setpriv":                  "util-linux",
	"shellcheck":               "shellcheck",
	"dash":                     "dash",
	"ss":                       "iproute2",
	"sysctl":                   "procps",
	"systemd-analyze":          "systemd",
	"systemd-nspawn":           "systemd-container",
	"unshare":                  "util-linux",
}

// CI reports whether the tests run under CI: the CI environment variable
// holds a true value ("true", "1", …).
func CI() bool {
	ok, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ok
}

// Require stops t when err is not nil: what, a thing t's real part needs
// (say what it is and why the test needs it), is not available, and err
// says why. Outside CI it skips t; under CI it fails t. It returns when err
// is nil.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if CI() {
		t.Fatalf("testenv: CI=true and the test cannot run its real part: %s is not available: %v", what, err)
	}
	t.Skipf("testenv: %s is not available: %v", what, err)
}

// Tool returns the path of program name on PATH. When it is not there, t
// stops as [Require] says, naming the Debian package that ships it.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		pkg, ok := Packages[name]
		if !ok {
			pkg = "see .ci/run"
		}
		Require(t, fmt.Sprintf("%s (Debian package %s)", name, pkg), err)
	}
	return path
}

// Root stops t as [Require] says unless the test runs as root; why says
// what needs root.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Require(t, "root", fmt.Errorf("running as uid %d; %s needs root", os.Geteuid(), why))
	}
}

// Kernel skips t in -short mode, under CI too: t is a kernel test (it
// creates namespaces, firewall rules, containers, or starts daemons), and
// -short asks for the unit tests only.
func Kernel(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("testenv: kernel test, skipped in -short mode")
	}
}

// Optional skips t for a reason that is not a gap in what CI tests: the
// test runs only on request. why says how to request it.
func Optional(t testing.TB, why string) {
	t.Helper()
	t.Skipf("testenv: %s %s", OptionalMarker, why)
}

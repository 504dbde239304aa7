// Package testenv decides what a test does when the machine lacks what its
// real part needs: a program, root, a kernel feature, a network namespace.
//
// Outside CI the test skips and says what is missing and which Debian
// package brings it. Under CI (the CI environment variable set to a true
// value, as the CI runner sets CI=true) the same test fails: .ci/run
// installs everything the tests use, so a skip there would be a kernel or
// tool path that silently went untested.
//
//	func TestDrop(t *testing.T) {
//		testenv.Kernel(t)                  // skips in -short mode
//		nft := testenv.Tool(t, "nft")      // skip here, fail under CI
//		_, err := os.Stat("/proc/net/stat/nf_conntrack")
//		testenv.Require(t, "/proc/net/stat/nf_conntrack (CONFIG_NF_CONNTRACK_PROCFS)", err)
//	}
//
// A skip that is not a gap (a test that runs only on request, such as one
// rewriting fixtures behind a flag) uses [Optional]: its message carries
// [OptionalMarker], which .ci/run's report accepts; every other skipped
// test fails a CI run.
//
// -short is a choice the caller makes, so [Kernel] skips in -short mode
// even under CI.
package testenv

// Package netnstest gives a test its own Linux network namespace.
//
// A test that needs real sockets, firewall rules or sysctls without touching
// the host calls [New], which creates a fresh named namespace
// ("stormwatch-" and a random suffix) with its loopback interface up, and
// deletes it when the test ends:
//
//	func TestSomething(t *testing.T) {
//		ns := netnstest.New(t) // needs root and ip(8); skips in -short
//		err := ns.Do(func() error {
//			// Runs on an OS thread inside the namespace: sockets and
//			// netlink connections opened here live there.
//			return nil
//		})
//		out, err := ns.Exec(ctx, "ss", "-Hltn") // a command run inside it
//	}
//
// # Design
//
// The namespace is made with "ip netns add", so it is a bind mount under
// /run/netns that other tools (ip, nft, ss through "ip netns exec") can name.
// [NS.Do] runs its function on a new goroutine locked to its OS thread, which
// enters the namespace with setns(2) and leaves it afterwards. If the thread
// cannot be moved back to its original namespace it is never unlocked, so the
// Go runtime terminates it when the goroutine exits instead of handing a
// thread in the wrong namespace to other goroutines. A process started with
// os/exec from inside Do inherits the namespace too.
//
// Sockets opened inside the namespace keep it alive after "ip netns del"
// until they are closed; register their Close with t.Cleanup after calling
// New so that they are closed first (cleanups run last-in first-out).
//
// # Limits
//
// Linux only. Needs root (CAP_SYS_ADMIN to create and enter namespaces) and
// ip(8). [Require] and [New] skip the test in -short mode; when root, ip(8)
// or the permission to create namespaces (an unprivileged container) is
// missing they skip it with the reason, or fail it under CI
// (package testenv).
// Do's function must not call t.FailNow, t.Fatal or t.Skip: it runs on
// another goroutine. Return an error instead.
package netnstest

package valkey

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stormwatch/stormwatch/procfs"
)

type fakeOwners map[uint32]procfs.Process

func (f fakeOwners) Owner(ino uint32) (procfs.Process, error) {
	if ino >= 900 {
		return procfs.Process{}, fmt.Errorf("socket inode %d: %w: hidepid=invisible", ino, procfs.ErrOwnerHidden)
	}
	if p, ok := f[ino]; ok {
		return p, nil
	}
	return procfs.Process{}, fmt.Errorf("socket inode %d: %w", ino, procfs.ErrOwnerNotFound)
}

func TestDiscover(t *testing.T) {
	a := netip.MustParseAddr
	redis := procfs.Process{PID: 100, Comm: "redis-server", State: procfs.StateSleeping}
	valkey := procfs.Process{PID: 200, Comm: "valkey-server", State: procfs.StateStopped}
	wild := procfs.Process{PID: 300, Comm: "valkey-server", State: procfs.StateSleeping}
	v6 := procfs.Process{PID: 400, Comm: "redis-server", State: procfs.StateSleeping}
	far := procfs.Process{PID: 500, Comm: "redis-server", State: procfs.StateSleeping}
	sshd := procfs.Process{PID: 1, Comm: "sshd", State: procfs.StateSleeping}
	owners := fakeOwners{
		1: redis, 2: redis, 3: redis, 4: redis,
		5: valkey, 6: valkey,
		7: wild,
		8: v6,
		9: far, 10: far,
		11: sshd,
	}
	listeners := []Listener{
		{a("10.0.0.5"), 6379, 1}, {a("::1"), 6379, 2}, {a("127.0.0.1"), 6379, 3}, {a("127.0.0.1"), 16379, 4}, // with a cluster bus
		{a("0.0.0.0"), 6380, 5}, {a("::"), 6380, 6},
		{a("::"), 6381, 7},
		{a("::1"), 6382, 8},
		{a("192.168.1.9"), 6383, 9}, {a("10.1.1.1"), 6383, 10},
		{a("0.0.0.0"), 22, 11},
		{a("127.0.0.1"), 7000, 12}, // nobody holds it
	}
	got, err := Discover(listeners, owners)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{Address: "10.1.1.1:6383", Port: 6383, Process: far, Listeners: []Listener{{a("10.1.1.1"), 6383, 10}, {a("192.168.1.9"), 6383, 9}}},
		{Address: "127.0.0.1:6379", Port: 6379, Process: redis, Listeners: []Listener{
			{a("10.0.0.5"), 6379, 1}, {a("127.0.0.1"), 6379, 3}, {a("::1"), 6379, 2}, {a("127.0.0.1"), 16379, 4}}},
		{Address: "127.0.0.1:6380", Port: 6380, Process: valkey, Listeners: []Listener{{a("0.0.0.0"), 6380, 5}, {a("::"), 6380, 6}}},
		{Address: "[::1]:6381", Port: 6381, Process: wild, Listeners: []Listener{{a("::"), 6381, 7}}},
		{Address: "[::1]:6382", Port: 6382, Process: v6, Listeners: []Listener{{a("::1"), 6382, 8}}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("Discover (-want +got):\n%s", diff)
	}

	// Owners that cannot be seen: the rest is still found, and the error
	// says so.
	got, err = Discover(append(listeners, Listener{a("127.0.0.1"), 6390, 901}, Listener{a("127.0.0.1"), 6391, 902}), owners)
	if !errors.Is(err, procfs.ErrOwnerHidden) || len(got) != 5 {
		t.Errorf("with hidden owners: %d targets, %v", len(got), err)
	}
	if err != nil && err.Error()[:24] != "2 listener(s) skipped: s" {
		t.Errorf("error %q does not count the skipped listeners", err)
	}
}

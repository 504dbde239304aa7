package valkey

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseClientList(t *testing.T) {
	got, err := ParseClientList(readFixture(t, "client-list-redis-7.0.15.txt"), 333)
	if err != nil {
		t.Fatal(err)
	}
	want := []ClientInfo{
		{ID: 330, Addr: "127.0.0.1:47644", LAddr: "127.0.0.1:16399", FD: 7, Age: 2 * time.Second, Idle: 2 * time.Second, Flags: "S", Cmd: "psync", Replica: true},
		{ID: 331, Addr: "127.0.0.1:47650", LAddr: "127.0.0.1:16399", FD: 8, Flags: "N", Cmd: "command|docs"},
		{ID: 332, Addr: "127.0.0.1:47658", LAddr: "127.0.0.1:16399", FD: 9, Flags: "b", Cmd: "blpop"},
		{ID: 333, Addr: "127.0.0.1:47672", LAddr: "127.0.0.1:16399", FD: 11, Flags: "N", Cmd: "client|list", Self: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseClientList (-want +got):\n%s", diff)
	}
}

// valkey8Line is a CLIENT LIST line in Valkey 8.0.1's format
// (catClientInfoString in src/networking.c): a replica's view of its
// primary (flags=M), with the fields Redis 7.0 lacks (watch, lib-name,
// lib-ver, tot-net-in, tot-net-out, tot-cmds).
const valkey8Line = "id=4 addr=10.0.0.5:6379 laddr=10.0.0.6:51012 fd=12 name=primary-link age=3600 idle=1 flags=M db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=20474 argv-mem=0 multi-mem=0 rbs=1024 rbp=1024 obl=0 oll=0 omem=0 tot-mem=22400 events=r cmd=ping user=default redir=-1 resp=2 lib-name= lib-ver= tot-net-in=123 tot-net-out=456 tot-cmds=7\n"

func TestParseClientListValkey8(t *testing.T) {
	got, err := ParseClientList(valkey8Line, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []ClientInfo{{ID: 4, Addr: "10.0.0.5:6379", LAddr: "10.0.0.6:51012", FD: 12, Name: "primary-link",
		Age: time.Hour, Idle: time.Second, Flags: "M", Cmd: "ping", Primary: true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseClientListErrors(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"no id":      {"addr=127.0.0.1:1 fd=3\n", "line 1 has no id"},
		"bad id":     {"id=x addr=127.0.0.1:1\n", `field id: "x" is not a number`},
		"not a pair": {"id=1 garbage\n", `"garbage" is not field=value`},
		"bad fd":     {"id=1 fd=seven\n", `field fd: "seven" is not a number`},
		"bad age":    {"id=1\nid=2 age=-5\n", `line 2: field age: "-5" is not a number`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseClientList(tt.in, 0)
			if !errors.Is(err, ErrParse) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want ErrParse saying %q", err, tt.want)
			}
		})
	}
	if got, err := ParseClientList("", 0); err != nil || len(got) != 0 {
		t.Errorf("empty list = %v, %v", got, err)
	}
}

func FuzzParseClientList(f *testing.F) {
	f.Add(readFixture(f, "client-list-redis-7.0.15.txt"), int64(333))
	f.Add(valkey8Line, int64(4))
	f.Add("id=1  flags=SM age=99999999999999\r\n", int64(0))
	f.Fuzz(func(t *testing.T, text string, self int64) {
		if len(text) > 1<<16 {
			return // over the size cap: larger inputs only slow the fuzzer
		}
		list, err := ParseClientList(text, self)
		if err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("error %v does not wrap ErrParse", err)
			}
			return
		}
		if len(list) > strings.Count(text, "id=") {
			t.Errorf("%d clients from %d id= fields", len(list), strings.Count(text, "id="))
		}
		for _, c := range list {
			if c.Self && c.ID != self {
				t.Errorf("client %d marked self, self is %d", c.ID, self)
			}
			if c.Age < 0 || c.Idle < 0 {
				t.Errorf("negative age/idle: %+v", c)
			}
			if c.Replica != strings.Contains(c.Flags, "S") || c.Primary != strings.Contains(c.Flags, "M") {
				t.Errorf("flags %q: replica %v primary %v", c.Flags, c.Replica, c.Primary)
			}
		}
	})
}

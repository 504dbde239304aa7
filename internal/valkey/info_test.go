package valkey

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func i64(v int64) Optional[int64]   { return some(v) }
func str(v string) Optional[string] { return some(v) }

func TestParseInfo(t *testing.T) {
	tests := []struct {
		file string
		want Info
		name string
		ver  string
	}{
		{
			// Redis 7.0 lacks server_name, valkey_version, eventloop_cycles
			// and the buffer-limit disconnection counters: absent.
			file: "info-redis-7.0.15.txt",
			want: Info{
				RedisVersion:             str("7.0.15"),
				ProcessID:                i64(19258),
				TCPPort:                  i64(16399),
				UptimeSeconds:            i64(333),
				ConnectedClients:         i64(2),
				MaxClients:               i64(10000),
				BlockedClients:           i64(0),
				TotalConnectionsReceived: i64(323),
				RejectedConnections:      i64(5),
				EvictedClients:           i64(0),
			},
			name: "redis", ver: "7.0.15",
		},
		{
			file: "info-valkey-8.0.1.txt",
			want: Info{
				RedisVersion:                          str("7.2.4"),
				ValkeyVersion:                         str("8.0.1"),
				ServerName:                            str("valkey"),
				ProcessID:                             i64(48213),
				TCPPort:                               i64(6379),
				UptimeSeconds:                         i64(86523),
				ConnectedClients:                      i64(9950),
				MaxClients:                            i64(10000),
				BlockedClients:                        i64(3),
				TotalConnectionsReceived:              i64(184233),
				RejectedConnections:                   i64(1207),
				EvictedClients:                        i64(4),
				ClientQueryBufferLimitDisconnections:  i64(2),
				ClientOutputBufferLimitDisconnections: i64(1),
				EventloopCycles:                       i64(345677812),
			},
			name: "valkey", ver: "8.0.1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			text := readFixture(t, tt.file)
			if !strings.Contains(text, "\r\n") {
				t.Fatalf("%s has no CRLF line ends: not in the server's format", tt.file)
			}
			got, err := ParseInfo(text)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseInfo (-want +got):\n%s", diff)
			}
			if got.Name() != tt.name || got.Version() != tt.ver {
				t.Errorf("Name, Version = %q, %q; want %q, %q", got.Name(), got.Version(), tt.name, tt.ver)
			}
			// LF-only text (as redis-cli prints it) parses the same.
			lf, err := ParseInfo(strings.ReplaceAll(text, "\r\n", "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, lf); diff != "" {
				t.Errorf("LF text (-CRLF +LF):\n%s", diff)
			}
		})
	}
}

func TestParseInfoErrors(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"empty":       {"", "no field:value line"},
		"only header": {"# Server\r\n\r\n", "no field:value line"},
		"not a field": {"# Server\r\nredis_version:7.0.15\r\nHTTP/1.1 400 Bad Request\r\n", `line 3: "HTTP/1.1 400 Bad Request" is not field:value`},
		"bad integer": {"connected_clients:many\r\n", `connected_clients: "many" is not an integer`},
		"overflow":    {"rejected_connections:99999999999999999999\r\n", `rejected_connections: "99999999999999999999" is not an integer`},
		"float":       {"maxclients:1.5\r\n", `maxclients: "1.5" is not an integer`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseInfo(tt.in)
			if !errors.Is(err, ErrParse) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseInfo error = %v, want ErrParse saying %q", err, tt.want)
			}
		})
	}
}

func TestOptional(t *testing.T) {
	var absent Optional[int64]
	if v, ok := absent.Get(); ok || v != 0 || absent.String() != "absent" {
		t.Errorf("absent = %v %v %q", v, ok, absent.String())
	}
	if v, ok := i64(7).Get(); !ok || v != 7 || i64(7).String() != "7" {
		t.Errorf("some(7) = %v %v", v, ok)
	}
}

func FuzzParseInfo(f *testing.F) {
	for _, name := range []string{"info-redis-7.0.15.txt", "info-valkey-8.0.1.txt"} {
		f.Add(readFixture(f, name))
	}
	f.Add("connected_clients:-1\r\nmaxclients:\r\n")
	f.Add("#\n:\n")
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 1<<16 {
			return // over the size cap: larger inputs only slow the fuzzer
		}
		info, err := ParseInfo(text)
		if err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("error %v does not wrap ErrParse", err)
			}
			return
		}
		// A field is present only if its name is in the text.
		if info.ConnectedClients.Valid && !strings.Contains(text, "connected_clients:") {
			t.Errorf("connected_clients present but not in the text")
		}
		if info.EventloopCycles.Valid && !strings.Contains(text, "eventloop_cycles:") {
			t.Errorf("eventloop_cycles present but not in the text")
		}
		// Parsing is insensitive to one CR before each LF.
		if strings.Contains(text, "\r\r") {
			return
		}
		again, err := ParseInfo(strings.ReplaceAll(text, "\r\n", "\n"))
		if err != nil {
			t.Fatalf("LF form of a valid text failed: %v", err)
		}
		if again != info {
			t.Errorf("LF form parsed differently:\n%+v\n%+v", info, again)
		}
	})
}

package valkey

import (
	"fmt"
	"strconv"
	"strings"
)

// Optional is a value a server may not report: an older server lacks a
// field (Redis 7.0 has no eventloop_cycles, no
// max-new-connections-per-cycle). Valid is false when the field was absent;
// Value is then the zero value and means nothing.
type Optional[T any] struct {
	Value T
	Valid bool
}

// Get returns the value and whether the server reported it.
func (o Optional[T]) Get() (T, bool) { return o.Value, o.Valid }

// String returns the value, or "absent".
func (o Optional[T]) String() string {
	if !o.Valid {
		return "absent"
	}
	return fmt.Sprint(o.Value)
}

func some[T any](v T) Optional[T] { return Optional[T]{Value: v, Valid: true} }

// Info is what INFO server, clients and stats say about a connection
// storm. Counters are cumulative since the server started (they restart
// at 0 when it restarts: compare ProcessID or Uptime).
type Info struct {
	// RedisVersion is redis_version. Valkey reports the Redis version it is
	// compatible with here (7.2.4 for every Valkey 8).
	RedisVersion Optional[string]
	// ValkeyVersion is valkey_version (Valkey only).
	ValkeyVersion Optional[string]
	// ServerName is server_name ("valkey"; absent on Redis).
	ServerName Optional[string]
	// ProcessID is process_id: the server's pid in its own pid namespace.
	ProcessID Optional[int64]
	// TCPPort is tcp_port, the port the server listens on (its TLS port
	// when it listens on TLS only).
	TCPPort Optional[int64]
	// UptimeSeconds is uptime_in_seconds.
	UptimeSeconds Optional[int64]

	// ConnectedClients is connected_clients (replicas not counted).
	ConnectedClients Optional[int64]
	// MaxClients is maxclients: above it a new connection is accepted and
	// then refused.
	MaxClients Optional[int64]
	// BlockedClients is blocked_clients (BLPOP and friends).
	BlockedClients Optional[int64]

	// TotalConnectionsReceived is total_connections_received: connections
	// accepted (its rate is the server's accept pace).
	TotalConnectionsReceived Optional[int64]
	// RejectedConnections is rejected_connections: connections refused
	// because of maxclients.
	RejectedConnections Optional[int64]
	// EvictedClients is evicted_clients (maxmemory-clients; Redis ≥ 7.0).
	EvictedClients Optional[int64]
	// ClientQueryBufferLimitDisconnections is
	// client_query_buffer_limit_disconnections (Redis ≥ 7.2, Valkey).
	ClientQueryBufferLimitDisconnections Optional[int64]
	// ClientOutputBufferLimitDisconnections is
	// client_output_buffer_limit_disconnections (Redis ≥ 7.2, Valkey).
	ClientOutputBufferLimitDisconnections Optional[int64]
	// EventloopCycles is eventloop_cycles: event-loop iterations (Redis ≥
	// 7.2, Valkey). Each iteration accepts at most
	// max-new-connections-per-cycle new connections.
	EventloopCycles Optional[int64]
}

// Name returns the server's kind: server_name when the server reports it
// ("valkey"), else "redis" when it reports redis_version, else "".
func (i Info) Name() string {
	if i.ServerName.Valid && i.ServerName.Value != "" {
		return i.ServerName.Value
	}
	if i.RedisVersion.Valid {
		return "redis"
	}
	return ""
}

// Version returns valkey_version when present, else redis_version, else "".
func (i Info) Version() string {
	if i.ValkeyVersion.Valid {
		return i.ValkeyVersion.Value
	}
	return i.RedisVersion.Value
}

// infoInts maps an INFO integer field to its place in Info.
var infoInts = map[string]func(*Info) *Optional[int64]{
	"process_id":                 func(i *Info) *Optional[int64] { return &i.ProcessID },
	"tcp_port":                   func(i *Info) *Optional[int64] { return &i.TCPPort },
	"uptime_in_seconds":          func(i *Info) *Optional[int64] { return &i.UptimeSeconds },
	"connected_clients":          func(i *Info) *Optional[int64] { return &i.ConnectedClients },
	"maxclients":                 func(i *Info) *Optional[int64] { return &i.MaxClients },
	"blocked_clients":            func(i *Info) *Optional[int64] { return &i.BlockedClients },
	"total_connections_received": func(i *Info) *Optional[int64] { return &i.TotalConnectionsReceived },
	"rejected_connections":       func(i *Info) *Optional[int64] { return &i.RejectedConnections },
	"evicted_clients":            func(i *Info) *Optional[int64] { return &i.EvictedClients },
	"client_query_buffer_limit_disconnections":  func(i *Info) *Optional[int64] { return &i.ClientQueryBufferLimitDisconnections },
	"client_output_buffer_limit_disconnections": func(i *Info) *Optional[int64] { return &i.ClientOutputBufferLimitDisconnections },
	"eventloop_cycles":                          func(i *Info) *Optional[int64] { return &i.EventloopCycles },
}

// infoStrings maps an INFO text field to its place in Info.
var infoStrings = map[string]func(*Info) *Optional[string]{
	"redis_version":  func(i *Info) *Optional[string] { return &i.RedisVersion },
	"valkey_version": func(i *Info) *Optional[string] { return &i.ValkeyVersion },
	"server_name":    func(i *Info) *Optional[string] { return &i.ServerName },
}

// ParseInfo parses the text of an INFO reply: "# Section" headers, blank
// lines and "field:value" lines, separated by CRLF (LF alone is accepted).
// Fields it does not know are skipped; a field it knows with a value that
// is not an integer, a line that is neither header nor field, or a text
// with no field at all is an error wrapping ErrParse. A field that the text
// lacks stays absent (Valid false).
func ParseInfo(text string) (Info, error) {
	var info Info
	fields := 0
	for n := 1; text != ""; n++ {
		var line string
		line, text, _ = strings.Cut(text, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return Info{}, fmt.Errorf("%w: INFO line %d: %q is not field:value", ErrParse, n, clip(line))
		}
		fields++
		if f, ok := infoInts[key]; ok {
			v, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return Info{}, fmt.Errorf("%w: INFO field %s: %q is not an integer", ErrParse, key, clip(val))
			}
			*f(&info) = some(v)
		} else if f, ok := infoStrings[key]; ok {
			*f(&info) = some(val)
		}
	}
	if fields == 0 {
		return Info{}, fmt.Errorf("%w: INFO reply has no field:value line", ErrParse)
	}
	return info, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

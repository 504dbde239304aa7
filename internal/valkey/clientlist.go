package valkey

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ClientInfo is one connection as CLIENT LIST shows it.
type ClientInfo struct {
	// ID is the server's connection id (CLIENT KILL ID takes it).
	ID int64
	// Addr is the peer's address (host:port, or a Unix socket path).
	Addr string
	// LAddr is the server-side address the client connected to.
	LAddr string
	// FD is the server's file descriptor for the connection, -1 for a
	// connection without a socket (a replica's fake client).
	FD int64
	// Age is how long the connection has been open, Idle how long since
	// its last command (both at one-second resolution).
	Age, Idle time.Duration
	// Flags are CLIENT LIST's flag letters ("N" for none).
	Flags string
	// Name is the name the client set (CLIENT SETNAME), "" if none.
	Name string
	// Cmd is the last command it ran ("client|list").
	Cmd string
	// Replica is true for a replica's link to this server (flag S), Primary
	// for this server's link to its primary (flag M). Kill neither when
	// draining clients.
	Replica, Primary bool
	// Self is true for the connection the Client itself holds.
	Self bool
}

// ParseClientList parses the text of a CLIENT LIST reply: one line per
// connection of space-separated field=value pairs. Fields it does not know
// are skipped. A line without a valid id, or with a known number field
// that is not a number, is an error wrapping ErrParse. self is the
// caller's own connection id (CLIENT ID), 0 when unknown.
func ParseClientList(text string, self int64) ([]ClientInfo, error) {
	out := make([]ClientInfo, 0, strings.Count(text, "\n")+1)
	for n := 1; text != ""; n++ {
		var line string
		line, text, _ = strings.Cut(text, "\n")
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		c := ClientInfo{FD: -1}
		hasID := false
		for line != "" {
			var kv string
			kv, line, _ = strings.Cut(line, " ")
			if kv == "" {
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("%w: CLIENT LIST line %d: %q is not field=value", ErrParse, n, clip(kv))
			}
			var err error
			switch k {
			case "id":
				c.ID, err = strconv.ParseInt(v, 10, 64)
				hasID = err == nil
			case "addr":
				c.Addr = v
			case "laddr":
				c.LAddr = v
			case "fd":
				c.FD, err = strconv.ParseInt(v, 10, 64)
			case "age":
				c.Age, err = seconds(v)
			case "idle":
				c.Idle, err = seconds(v)
			case "flags":
				c.Flags = v
				c.Replica = strings.ContainsRune(v, 'S')
				c.Primary = strings.ContainsRune(v, 'M')
			case "name":
				c.Name = v
			case "cmd":
				c.Cmd = v
			}
			if err != nil {
				return nil, fmt.Errorf("%w: CLIENT LIST line %d: field %s: %q is not a number", ErrParse, n, k, clip(v))
			}
		}
		if !hasID {
			return nil, fmt.Errorf("%w: CLIENT LIST line %d has no id", ErrParse, n)
		}
		c.Self = self != 0 && c.ID == self
		out = append(out, c)
	}
	return out, nil
}

// seconds parses a non-negative count of seconds.
func seconds(v string) (time.Duration, error) {
	s, err := strconv.ParseInt(v, 10, 64)
	if err != nil || s < 0 || s > int64(time.Duration(1<<62)/time.Second) {
		return 0, fmt.Errorf("not a number of seconds")
	}
	return time.Duration(s) * time.Second, nil
}

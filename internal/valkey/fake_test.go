package valkey

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeServer listens on 127.0.0.1 and hands every accepted connection to
// serve. It counts the connections accepted and closes everything when
// the test ends.
type fakeServer struct {
	ln      net.Listener
	accepts atomic.Int64
	mu      sync.Mutex
	conns   []net.Conn
}

func newFakeServer(t testing.TB, serve func(net.Conn)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveListener(t, ln, serve)
}

// serveListener serves ln as newFakeServer does.
func serveListener(t testing.TB, ln net.Listener, serve func(net.Conn)) *fakeServer {
	s := &fakeServer{ln: ln}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			wg.Go(func() { serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

// refusedAddr returns a loopback address where nothing listens.
func refusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// hang reads and never answers.
func hang(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

// garbage answers anything with an HTTP error, as a web server would.
func garbage(c net.Conn) {
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		return
	}
	_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	c.Close()
}

// full is a server at maxclients: it refuses with an error and closes.
func full(c net.Conn) {
	_, _ = io.WriteString(c, "-ERR max number of clients reached\r\n")
	c.Close()
}

// readCommand reads one RESP command (an array of bulk strings).
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, fmt.Errorf("not an array: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return nil, err
	}
	args := make([]string, n)
	for i := range args {
		if line, err = r.ReadString('\n'); err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(line[1:]))
		if err != nil {
			return nil, err
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		args[i] = string(b[:size])
	}
	return args, nil
}

// respServer answers each command with reply(args), a raw RESP reply.
func respServer(reply func(args []string) string) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			args, err := readCommand(r)
			if err != nil {
				c.Close()
				return
			}
			if _, err := io.WriteString(c, reply(args)); err != nil {
				return
			}
		}
	}
}

// unknownEverything answers every command the way Redis 5 answers one it
// does not know: echoing its first arguments, password included.
func unknownEverything(args []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-ERR unknown command `%s`, with args beginning with: ", args[0])
	for _, a := range args[1:] {
		fmt.Fprintf(&b, "`%s`, ", a)
	}
	b.WriteString("\r\n")
	return b.String()
}

//go:build linux

package stormlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Namespace is a named network namespace the lab works in. Tests pass the
// one internal/netnstest made for them; the stormlab command makes its own
// with NewNetns.
type Namespace interface {
	// Name is the namespace's name as "ip netns" knows it.
	Name() string
	// Do runs fn on an OS thread inside the namespace.
	Do(fn func() error) error
	// Command returns a command that runs inside the namespace.
	Command(ctx context.Context, name string, args ...string) *exec.Cmd
}

// NetnsPrefix starts the name of every namespace NewNetns makes, so that
// leftovers of a killed run are easy to find ("ip netns list").
const NetnsPrefix = "stormlab-"

// Netns is a network namespace made by NewNetns and deleted by Close.
type Netns struct {
	name string
	mu   sync.RWMutex
	fd   int // open /run/netns/<name>, -1 once closed
}

// NewNetns creates a fresh named network namespace with its loopback
// interface up. It needs root and ip(8).
func NewNetns(ctx context.Context) (*Netns, error) {
	var rnd [4]byte
	rand.Read(rnd[:])
	n := &Netns{name: NetnsPrefix + hex.EncodeToString(rnd[:]), fd: -1}
	if _, err := runCmd(exec.CommandContext(ctx, "ip", "netns", "add", n.name)); err != nil {
		return nil, err
	}
	fd, err := unix.Open(filepath.Join("/run/netns", n.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("open namespace %s: %w", n.name, err)
	}
	n.fd = fd
	if _, err := runCmd(exec.CommandContext(ctx, "ip", "-n", n.name, "link", "set", "lo", "up")); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Name returns the namespace's name.
func (n *Netns) Name() string { return n.name }

// Command returns a command run inside the namespace by "ip netns exec".
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// Do runs fn on an OS thread that entered the namespace and moves the
// thread back afterwards; a thread that cannot be moved back is never
// reused.
func (n *Netns) Do(fn func() error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.fd < 0 {
		return fmt.Errorf("namespace %s is closed", n.name)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter %s: %w", n.name, err)
			return
		}
		var ferr error
		defer func() {
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				ferr = errors.Join(ferr, fmt.Errorf("leave %s: %w", n.name, err))
			} else {
				runtime.UnlockOSThread()
			}
			done <- ferr
		}()
		ferr = fn()
	}()
	return <-done
}

// Close deletes the namespace. Sockets still open inside keep it alive
// until they are closed.
func (n *Netns) Close() error {
	n.mu.Lock()
	if n.fd >= 0 {
		unix.Close(n.fd)
		n.fd = -1
	}
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := runCmd(exec.CommandContext(ctx, "ip", "netns", "del", n.name))
	return err
}

// runCmd runs cmd and returns its standard output; the error carries its
// standard error.
func runCmd(cmd *exec.Cmd) ([]byte, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

//go:build !linux

package netdev

import (
	"errors"
	"runtime"
)

// OpenKernel fails: network interfaces are read on Linux only.
func OpenKernel(bool) (Kernel, error) {
	return nil, errors.New("netdev: network interfaces are read on Linux only, this is " + runtime.GOOS)
}

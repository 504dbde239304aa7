package sockdiag

import (
	"errors"
	"fmt"
	"os"
)

// Errors of SOCK_DESTROY (the dump's errors are declared in sockdiag.go).
var (
	// ErrNoCapNetAdmin: the kernel refused a SOCK_DESTROY (EPERM or
	// EACCES) because the caller lacks CAP_NET_ADMIN in the socket's
	// network namespace. It wraps os.ErrPermission.
	ErrNoCapNetAdmin = fmt.Errorf("closing a socket with SOCK_DESTROY needs CAP_NET_ADMIN: %w", os.ErrPermission)

	// ErrDestroyUnsupported: the kernel has no SOCK_DESTROY for TCP
	// (EOPNOTSUPP: built without CONFIG_INET_DIAG_DESTROY). It matches
	// os.ErrNotExist, as a missing kernel feature.
	ErrDestroyUnsupported error = notExist("this kernel cannot close sockets over sock_diag (SOCK_DESTROY needs a kernel built with CONFIG_INET_DIAG_DESTROY=y)")

	// ErrGone: no socket had that exact identity any more (ENOENT), or
	// its address and ports now belong to another socket (ESTALE: the
	// cookie did not match). Nothing was closed.
	ErrGone = errors.New("socket no longer exists")

	// ErrAckLost: the netlink receive buffer overran and the kernel's
	// answer to a request was dropped, so whether that socket was closed
	// is unknown.
	ErrAckLost = errors.New("SOCK_DESTROY answer lost to a netlink receive buffer overrun")
)

// notExist is an error that matches os.ErrNotExist without its words.
type notExist string

func (e notExist) Error() string        { return string(e) }
func (e notExist) Is(target error) bool { return target == os.ErrNotExist }

package drain

import (
	"errors"
	"os"
)

var (
	// ErrNoListener: nothing listens on the port (and address) asked for.
	// It matches os.ErrNotExist.
	ErrNoListener error = notExist("no listener")

	// ErrPacingTimeout: the receivers kept refusing batches for longer
	// than the pacing budget (ClosedLoop.Timeout).
	ErrPacingTimeout = errors.New("the receivers refused batches beyond the pacing timeout")

	// ErrHeadroomAnswer: a receiver's headroom endpoint gave a non-2xx
	// status or an answer that is not the headroom JSON.
	ErrHeadroomAnswer = errors.New("bad headroom answer")

	// ErrBadBatch: a batch size that is neither a count nor a share.
	ErrBadBatch = errors.New("bad batch size")

	// ErrWrongServer: the server the Valkey method reached is not the one
	// behind the drained listener.
	ErrWrongServer = errors.New("not the server behind the drained listener")

	// ErrOrder: an Orderer returned a skip count outside its connections.
	ErrOrder = errors.New("bad order from the method")
)

// notExist is an error that matches os.ErrNotExist without its words.
type notExist string

func (e notExist) Error() string        { return string(e) }
func (e notExist) Is(target error) bool { return target == os.ErrNotExist }

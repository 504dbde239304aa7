package procfs

import "errors"

// ErrFileParse is wrapped by every error about a file's content.
var ErrFileParse = errors.New("cannot parse")

// ErrFileTooLarge is wrapped when a file exceeds the read cap.
var ErrFileTooLarge = errors.New("file too large")

// ErrOwnerHidden is wrapped when a socket's owner was not found and the
// scan could not see every process (hidepid, another user's process).
var ErrOwnerHidden = errors.New("cannot see the owning process")

// ErrOwnerNotFound is wrapped when every process was seen and none holds
// the socket (it was closed, or belongs to another pid namespace).
var ErrOwnerNotFound = errors.New("no process holds the socket")

// ErrScanLimit is wrapped when a scan stopped at its limit first.
var ErrScanLimit = errors.New("scan stopped at its limit")

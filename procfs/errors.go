package procfs

import "errors"

// ErrFileParse is wrapped by every error about a file's content.
var ErrFileParse = errors.New("cannot parse")

// ErrFileTooLarge is wrapped when a file exceeds the read cap.
var ErrFileTooLarge = errors.New("file too large")

package main

import "github.com/stormwatch/stormwatch/internal/errtext"

// oneLine renders err for a log attribute: one line (the problems of a
// config or rules file joined with "; ", the first ten and "… and N more"),
// at most errtext.MaxLineLen bytes. A logfmt line then never holds a
// literal "\n", nor a 50 MB value:
//
//	logger.Error("reload failed: keeping the running rules", "file", path, "err", oneLine(err))
func oneLine(err error) string { return errtext.OneLine(err, errtext.MaxLineLen) }

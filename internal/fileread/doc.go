// Package fileread reads the files a person points the daemon at — the
// config file, rules files matched by a glob — so that no such file can
// hang it or blow its memory.
//
// Read accepts regular files only (a symbolic link to one is fine). It
// stats the path first, so a FIFO, a device, a socket or a directory is
// refused before it is opened (opening a tape device can rewind it;
// opening a FIFO for reading waits for a writer). It then opens with
// O_NONBLOCK|O_NOCTTY and checks the opened file again with fstat, so a
// file swapped for a FIFO between the two steps is refused too and never
// read. A file whose size is over the caller's limit fails on its size,
// without being read; a file that reports a false size (procfs) is read
// through a limit of max+1 bytes, so it fails after max+1 bytes at most.
//
// The whole read is bounded by a timeout (DefaultTimeout): a file on a hung
// network or FUSE file system makes Read return an error naming the path
// instead of blocking the caller (a reload) forever. The goroutine stuck in
// the kernel is left behind until the kernel returns, and closes the file
// then: each such call leaks one goroutine and one file descriptor for as
// long as the file system hangs.
//
// Errors name the path and say what was wrong, and match the sentinels of
// errors.go (and fs.ErrNotExist, fs.ErrPermission for the kernel's own).
package fileread

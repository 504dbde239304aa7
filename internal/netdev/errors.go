package netdev

import "errors"

// ErrNoDriverStats is returned by Kernel.DriverStats when the device's
// driver has no ethtool statistics or refuses the request (EOPNOTSUPP):
// loopback, most virtual devices. Read reports such a device with its
// standard counters only; it is not a failure.
var ErrNoDriverStats = errors.New("no driver statistics")

// ErrNoDevice is returned by Kernel.DriverStats when the interface vanished
// between the link dump and the ethtool request (ENODEV). Read reports the
// device without driver statistics; it is not a failure.
var ErrNoDevice = errors.New("no such device")

// ErrStatsChanged is returned by Kernel.DriverStats when the driver's set
// of statistics changed between the requests that read it (a queue count
// changed). Read asks once more before giving up for this cycle.
var ErrStatsChanged = errors.New("driver statistics changed while read")

// ErrDriverStats is wrapped by every failure to read a device's driver
// statistics (other than the cases above). Read still returns every
// device, with its standard counters, when this is the only error.
var ErrDriverStats = errors.New("reading driver statistics")

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("netdev reader closed")

// ErrBadOption is wrapped by Open's errors about its Options.
var ErrBadOption = errors.New("invalid option")

package collector

import (
	"errors"
	"fmt"
	"os"
)

// ErrNoData is returned by a source whose subsystem is absent from the host
// (for example no conntrack module loaded). It wraps os.ErrNotExist. The
// sampler records it as NoData, not as a failure.
var ErrNoData = fmt.Errorf("subsystem absent: %w", os.ErrNotExist)

// ErrPermission is returned when a source lacks the privilege it needs
// (for example ctnetlink without CAP_NET_ADMIN). It wraps os.ErrPermission.
var ErrPermission = fmt.Errorf("not permitted: %w", os.ErrPermission)

// IsNoData reports whether err means the subsystem is absent.
func IsNoData(err error) bool { return errors.Is(err, ErrNoData) }

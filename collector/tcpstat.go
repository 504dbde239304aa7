package collector

import (
	"context"

	"github.com/stormwatch/stormwatch/procfs"
)

// tcpstatSource reads the TcpExt and Tcp counters.
type tcpstatSource struct{ fs procfs.FS }

func (s *tcpstatSource) Name() string { return "tcpstat" }

func (s *tcpstatSource) Collect(_ context.Context, snap *Snapshot) error {
	t, err := s.fs.TCPStats()
	snap.TCP = TCPCounters(t)
	return err
}

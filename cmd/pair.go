package cmd

import (
	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// maxPairWait bounds --pair-wait: every record that may have a peer on
// this host waits that long at most before it is printed.
const maxPairWait = 10e9

// paired receives what the pairing stage lets out: a record alone, or the
// two ends of a connection on this host. A writer that draws pairs gets
// them in one call; the others get each record, its peer's owner in it.
func (s *session) paired(c, peer *timeline.Connection) {
	if peer == nil {
		s.connection(c)
		return
	}
	pw, ok := s.out.(output.PairWriter)
	if !ok {
		s.connection(c)
		s.connection(peer)
		return
	}
	if s.limit > 0 && s.emitted >= s.limit {
		return
	}
	// With --only-anomalies a pair is drawn when either end is anomalous:
	// the other end's view is what explains it.
	if s.onlyAnomalies && !c.Anomalous() && !peer.Anomalous() {
		return
	}
	local, remote := c, peer
	if peer.Role == timeline.RoleClient && c.Role != timeline.RoleClient {
		local, remote = peer, c // the client's end on the left
	}
	s.emitted += 2
	pw.ConnectionPair(local, remote)
	if s.limit > 0 && s.emitted >= s.limit {
		s.stop()
	}
}

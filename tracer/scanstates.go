package tracer

import (
	"sync"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// scanStates counts the sockets of the last complete scan by state, as ss
// shows them: a timewait socket by its substate (TIME_WAIT, or FIN_WAIT2 for
// an orphan), a request socket (NEW_SYN_RECV) as SYN_RECV.
type scanStates struct {
	mu     sync.Mutex
	counts map[timeline.State]int // nil until a scan completes
}

func sockState(s *timeline.Socket) timeline.State {
	switch s.State {
	case timeline.StateTimeWait:
		if s.Substate != timeline.StateUnknown {
			return s.Substate
		}
	case timeline.StateNewSynRecv:
		return timeline.StateSynRecv
	}
	return s.State
}

// counting wraps a scan callback so that it also counts by state into
// counts.
func counting(counts map[timeline.State]int, fn func(*timeline.Socket)) func(*timeline.Socket) {
	return func(s *timeline.Socket) {
		counts[sockState(s)]++
		fn(s)
	}
}

func (st *scanStates) set(counts map[timeline.State]int) {
	st.mu.Lock()
	st.counts = counts
	st.mu.Unlock()
}

// LastScanStates returns the number of sockets in each state found by the
// last complete Scan (nil before the first). The map is the caller's.
func (t *Tracer) LastScanStates() map[timeline.State]int {
	t.scanStates.mu.Lock()
	defer t.scanStates.mu.Unlock()
	if t.scanStates.counts == nil {
		return nil
	}
	out := make(map[timeline.State]int, len(t.scanStates.counts))
	for s, n := range t.scanStates.counts {
		out[s] = n
	}
	return out
}

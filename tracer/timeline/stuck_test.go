package timeline

import (
	"maps"
	"testing"
)

// Stuck counts the watched connections past StuckAfter by state, and the
// orphaned FIN_WAIT2 sockets as of the last scan.
func TestStuck(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StuckAfter = 1000 * ms
	cfg.ScansNetNS = func(ns uint32) bool { return ns == 1 }
	c := New(cfg, func(*Connection) {})
	dead := func(e *Event) { e.SockDead = true }
	for _, e := range []Event{
		// A server left in CLOSE_WAIT at 100 ms.
		serverSide(state(0, 1, StateListen, StateSynRecv)),
		serverSide(state(0, 1, StateSynRecv, StateEstablished)),
		serverSide(with(state(100, 1, StateEstablished, StateCloseWait), func(e *Event) { e.SockDone = true })),
		// A client retrying its SYN from 500 ms.
		state(500, 2, StateClose, StateSynSent),
		// An orphaned FIN_WAIT2 from 3 ms.
		state(0, 3, StateClose, StateSynSent),
		state(1, 3, StateSynSent, StateEstablished),
		state(2, 3, StateEstablished, StateFinWait1),
		with(state(3, 3, StateFinWait1, StateFinWait2), dead),
		with(state(3, 3, StateFinWait2, StateClose), dead),
	} {
		c.Add(&e)
	}
	want := func(tms int64, closeWait, finWait2, synSent int) {
		t.Helper()
		got := c.Stuck(baseTime + tms*ms)
		exp := map[State]int{StateCloseWait: closeWait, StateFinWait2: finWait2, StateSynSent: synSent, StateSynRecv: 0}
		if !maps.Equal(got, exp) {
			t.Errorf("at %d ms: %v, want %v", tms, got, exp)
		}
	}
	c.Advance(baseTime + 100*ms) // the orphan's record out: followed by scans
	want(900, 0, 0, 0)
	want(1100, 1, 1, 0)
	want(1500, 1, 1, 1)
	// The orphan got its FIN (TIME_WAIT now): no longer held.
	c.BeginScan()
	c.ScanSocket(&Socket{Cookie: 3, State: StateTimeWait, Substate: StateTimeWait, NetNS: 1})
	c.EndScan(baseTime + 1500*ms)
	want(1500, 1, 0, 1)

	cfg.StuckAfter = 0
	c = New(cfg, func(*Connection) {})
	e := state(0, 2, StateClose, StateSynSent)
	c.Add(&e)
	want(1e6, 0, 0, 0)
}

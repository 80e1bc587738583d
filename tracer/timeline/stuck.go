package timeline

// Stuck counts, by state, the connections held in a watched state
// (CLOSE_WAIT, FIN_WAIT2, SYN_SENT, SYN_RECV) for StuckAfter or longer at
// now: those an alert was raised for, or is due for, and still there. The
// orphaned FIN_WAIT2 sockets followed by scans count as FIN_WAIT2, as of the
// last scan. With StuckAfter 0 nothing is watched and every count is 0.
//
// It walks the watch list and the orphans, so its cost grows with the
// connections in those states: call it now and then (metrics), not per event.
func (c *Correlator) Stuck(now int64) map[State]int {
	stuck := map[State]int{StateCloseWait: 0, StateFinWait2: 0, StateSynSent: 0, StateSynRecv: 0}
	if c.cfg.StuckAfter <= 0 {
		return stuck
	}
	for conn := c.watch.head; conn != nil; conn = conn.wnext {
		if now-conn.stateSince >= c.cfg.StuckAfter {
			stuck[conn.LastState()]++
		}
	}
	for _, o := range c.orphans {
		// A followed TIME_WAIT is no trouble; an orphan whose FIN came
		// (TIME_WAIT now) is not held any more.
		if !o.timeWait && o.substate != StateTimeWait && now-o.alert.Since >= c.cfg.StuckAfter {
			stuck[StateFinWait2]++
		}
	}
	return stuck
}

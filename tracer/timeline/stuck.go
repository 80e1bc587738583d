// Stuck states: connections held in CLOSE_WAIT, FIN_WAIT2, SYN_SENT or
// SYN_RECV are on the watch list, and alerted on every StuckAfter.

package timeline

// watchState puts the connection on the watch list if it entered a state
// it should not stay in, and takes it off otherwise.
func (c *Correlator) watchState(conn *Connection, s State, t int64) {
	c.watch.remove(conn)
	conn.stateSince = t
	if c.cfg.StuckAfter <= 0 || watchable(s) == 0 {
		return
	}
	conn.nextAlert = t + c.cfg.StuckAfter
	c.watch.pushBack(conn)
}

func (c *Correlator) raise(conn *Connection, now int64) {
	s := conn.LastState()
	a := Alert{Time: now, Kind: watchable(s), Cookie: conn.Cookie, LAddr: conn.LAddr, RAddr: conn.RAddr,
		LPort: conn.LPort, RPort: conn.RPort, NetNS: conn.NetNS, PID: conn.PID, Comm: conn.Comm, Cgroup: conn.Cgroup, State: s,
		Since: conn.stateSince, SinceUnknown: conn.sinceUnknown}
	switch s {
	case StateSynSent:
		a.Retries = conn.SynRetries
	case StateSynRecv:
		a.Retries = conn.SynAckRetries
	}
	c.stats.Alerts++
	c.alert(&a)
}

// watchable states are those a connection must leave on its own; staying
// there longer than StuckAfter raises an alert.
func watchable(s State) AlertKind {
	switch s {
	case StateCloseWait:
		return AlertCloseWait
	case StateFinWait2:
		return AlertFinWait2
	case StateSynSent:
		return AlertSynSent
	case StateSynRecv:
		return AlertSynRecv
	}
	return 0
}

// watchList is the intrusive list of watched live connections, in the
// order of their next alert time: connections join it at the tail as they
// enter a watched state (so in time order), and move back to the tail
// once alerted.
type watchList struct{ head, tail *Connection }

func (l *watchList) pushBack(c *Connection) {
	c.wprev, c.wnext = l.tail, nil
	if l.tail != nil {
		l.tail.wnext = c
	} else {
		l.head = c
	}
	l.tail = c
	c.watched = true
}

func (l *watchList) remove(c *Connection) {
	if !c.watched {
		return
	}
	if c.wprev != nil {
		c.wprev.wnext = c.wnext
	} else {
		l.head = c.wnext
	}
	if c.wnext != nil {
		c.wnext.wprev = c.wprev
	} else {
		l.tail = c.wprev
	}
	c.wprev, c.wnext, c.watched = nil, nil, false
}

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

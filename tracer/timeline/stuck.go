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
		LPort: conn.LPort, RPort: conn.RPort, NetNS: conn.NetNS, PID: conn.PID, Comm: conn.Comm, State: s,
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

// Orphaned FIN_WAIT2 sockets (and, with FollowTimeWait, TIME_WAIT ones):
// after its record is out, a connection this host closed first lives on as a
// timewait socket that no tracepoint reports. Scans follow it until the
// kernel drops it or the peer's FIN arrives, alerting if it stays too long.

package timeline

func (c *Correlator) orphanEnded(o *orphan, now int64, how string) {
	a := o.alert
	a.Kind, a.Time, a.Ended = AlertFinWait2OrphanEnded, now, how
	c.stats.Alerts++
	c.alert(&a)
}

// Orphans is the number of timewait sockets (orphaned FIN_WAIT2, or
// TIME_WAIT with FollowTimeWait) followed by scans; while there are any,
// the caller should scan regularly.
func (c *Correlator) Orphans() int { return len(c.orphans) }

// follow keeps what scans need to follow an orphaned FIN_WAIT2, or a
// TIME_WAIT socket, after its record is out. TIME_WAIT sockets get half of
// the table at most: orphans are the ones that may be trouble.
func (c *Correlator) follow(conn *Connection, timeWait bool) {
	limit := maxOrphans
	if timeWait {
		limit /= 2
	}
	if len(c.orphans) >= limit || !c.scans(conn.NetNS) {
		if !timeWait {
			c.stats.OrphansUnwatched++
		}
		return
	}
	state := StateFinWait2
	if timeWait {
		state = StateTimeWait
	}
	c.orphans[conn.Cookie] = &orphan{
		timeWait: timeWait,
		alert: Alert{Kind: AlertFinWait2Orphan, Cookie: conn.Cookie, LAddr: conn.LAddr, RAddr: conn.RAddr,
			LPort: conn.LPort, RPort: conn.RPort, NetNS: conn.NetNS, PID: conn.PID, Comm: conn.Comm,
			Cgroup: conn.Cgroup, State: state, Since: conn.closedAt},
		nextAlert: conn.closedAt + c.cfg.StuckAfter,
		seen:      c.scanGen + 1, // not gone before the next scan had a chance to see it
	}
}

// orphan is a connection whose record was emitted when the kernel handed it
// to a timewait socket in FIN_WAIT2 (or, with Config.FollowTimeWait, in
// TIME_WAIT). Only socket scans can see what becomes of it: the peer's FIN
// (then TIME_WAIT), the kernel dropping it, the end of TIME_WAIT.
type orphan struct {
	timeWait  bool  // followed in TIME_WAIT, for its end only
	alert     Alert // the identity, reused for its alerts
	nextAlert int64
	alerted   bool
	seen      uint64 // scan generation that last saw it
	substate  State
}

// maxOrphans bounds the orphaned FIN_WAIT2 sockets followed by scans.
const maxOrphans = 65536

// checkOrphans, at the end of a scan: orphans it did not see were dropped
// by the kernel, those now in TIME_WAIT got their FIN, the others may be due
// an alert.
func (c *Correlator) checkOrphans(now int64) {
	for cookie, o := range c.orphans {
		switch {
		case o.seen != c.scanGen && o.timeWait:
			a := o.alert
			a.Kind, a.Time = AlertTimeWaitEnded, now
			c.alert(&a) // a notice, not counted as an alert
		case o.seen != c.scanGen:
			// Gone. Worth a word only if it was alerted on: one that goes
			// sooner got its FIN and its TIME_WAIT was reused (tcp_tw_reuse)
			// or cut short between two scans, as under connection churn.
			if o.alerted {
				c.orphanEnded(o, now, "dropped")
			}
		case o.timeWait:
			continue
		case o.substate == StateTimeWait:
			if o.alerted {
				c.orphanEnded(o, now, "fin_received")
			}
			if c.cfg.FollowTimeWait {
				// Its FIN came between two scans: TIME_WAIT since then.
				o.timeWait = true
				o.alert.State, o.alert.Since = StateTimeWait, now
				continue
			}
		default:
			if c.cfg.StuckAfter > 0 && now >= o.nextAlert {
				o.alerted = true
				o.nextAlert = now + c.cfg.StuckAfter
				a := o.alert
				a.Time = now
				c.stats.Alerts++
				c.alert(&a)
			}
			continue
		}
		delete(c.orphans, cookie)
	}
}

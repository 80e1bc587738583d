// The end of a record: its outcome decided, counted, emitted, recycled.

package timeline

import (
	"syscall"
)

// finish decides the outcome, emits the record and recycles it.
func (c *Correlator) finish(conn *Connection) {
	conn.Outcome = outcome(conn)
	if conn.Outcome != OutcomeClosed {
		conn.ClosedBy = ClosedByNone
	} else if conn.ClosedBy == ClosedByNone {
		conn.ClosedBy = ClosedByLocal // a listener, closed by its owner
	}
	conn.sys = c.sys[conn.NetNS]
	conn.dataBytes()
	conn.Reason = reason(conn)
	c.stats.Connections++
	c.stats.ByOutcome[conn.Outcome]++
	c.stats.ByReason[conn.Reason]++
	if isFailure(conn.Outcome) {
		ep := Endpoint{Addr: conn.RAddr, Port: conn.RPort}
		if conn.Role == RoleServer {
			ep.Port = 0 // a client's ephemeral port says nothing: count per address
		}
		if _, ok := c.stats.failures[ep]; ok || len(c.stats.failures) < maxFailureEndpoints {
			c.stats.failures[ep]++
		}
	}
	switch {
	case conn.Reason == ReasonClosedLocalOrphan:
		c.follow(conn, false)
	case c.cfg.FollowTimeWait && conn.LastState() == StateTimeWait:
		c.follow(conn, true)
	}
	c.emit(conn)
	c.drop(conn)
}

// drop unlinks a record and recycles it.
func (c *Correlator) drop(conn *Connection) {
	if conn.closed {
		c.closing.remove(conn)
	} else {
		c.open.remove(conn)
	}
	c.watch.remove(conn)
	delete(c.live, conn.Cookie)
	conn.reset()
	// Keep a few records for reuse; after a burst the rest go to the GC.
	if len(c.free) < maxFree {
		c.free = append(c.free, conn)
	}
}

// maxFree bounds the recycled records kept for reuse.
const maxFree = 4096

func outcome(conn *Connection) Outcome {
	if !conn.closed {
		return OutcomeOpen
	}
	from := conn.closeFrom
	errno := syscall.Errno(conn.Errno)
	switch from {
	case StateListen:
		return OutcomeClosed
	case StateSynSent:
		switch {
		case conn.RSTReceived || errno == syscall.ECONNREFUSED:
			return OutcomeRefused
		case errno == syscall.ETIMEDOUT:
			return OutcomeTimeout
		case conn.rstSentLive:
			return OutcomeResetLocal
		}
		return OutcomeAborted
	case StateSynRecv:
		switch {
		case conn.RSTReceived:
			return OutcomeResetByPeer
		case errno == syscall.ETIMEDOUT:
			return OutcomeTimeout
		case conn.rstSentLive:
			return OutcomeResetLocal
		}
		return OutcomeAborted
	}
	switch {
	case conn.RSTReceived:
		return OutcomeResetByPeer
	case errno == syscall.ETIMEDOUT:
		return OutcomeTimeout
	case conn.rstSentLive:
		return OutcomeResetLocal
	}
	return OutcomeClosed
}

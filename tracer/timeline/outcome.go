// The end of a record: its outcome decided, counted, emitted, recycled.

package timeline

import (
	"syscall"
)

// finish decides the outcome, emits the record and recycles it.
func (c *Correlator) finish(conn *Connection) {
	if len(c.notes)+len(c.flowNotes) > 0 {
		c.joinNotes(conn)
	}
	conn.dropsTraced = c.cfg.DropsTraced
	conn.kernelAbort()
	conn.Outcome = outcome(conn)
	if conn.Outcome != OutcomeClosed {
		conn.ClosedBy = ClosedByNone
	} else if conn.ClosedBy == ClosedByNone {
		conn.ClosedBy = ClosedByLocal // a listener, closed by its owner
	}
	conn.sys = c.sys[conn.NetNS]
	conn.dataBytes()
	conn.Reason = reason(conn)
	if len(c.listeners) > 0 {
		c.listenerFullFor(conn)
	}
	if conn.NeverAccepted {
		conn.PID, conn.Comm = 0, ""
	}
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
	if conn.NeverAccepted {
		return OutcomeResetLocal
	}
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

// kernelAbort: data that arrives after close() makes the kernel reset the
// connection itself (tcp_rcv_state_process: tcp_reset() fires
// tcp_receive_reset, then the RST goes out with TCP_ABORT_ON_DATA). No RST
// came from the peer: the kernel's own reason wins over that event.
func (conn *Connection) kernelAbort() {
	if !conn.rstSentLive || conn.RSTReason != "TCP_ABORT_ON_DATA" || !conn.RSTReceived {
		return
	}
	conn.RSTReceived = false
	steps := conn.Steps[:0]
	for _, s := range conn.Steps {
		if s.Kind != StepRSTReceived {
			steps = append(steps, s)
		}
	}
	conn.Steps = steps
}

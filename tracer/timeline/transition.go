// State transitions: what each kernel transition does to a record, and
// how X -> CLOSE tells a timewait handoff from a reset or a timeout.

package timeline

func (c *Correlator) transition(conn *Connection, e *Event) {
	step := Step{Time: e.Time, Kind: StepState, From: e.OldState, To: e.NewState}
	if e.BytesAcked != 0 || e.BytesReceived != 0 || e.SRTT != 0 {
		conn.BytesSent, conn.BytesReceived = e.BytesAcked, e.BytesReceived
		conn.SRTT, conn.SegsRetrans = e.SRTT, e.TotalRetrans
	}
	if e.Info.Known {
		conn.learnSeq(e)
	}
	if e.SockSynRetries != 0 || e.UserTimeout != 0 {
		// Read with the figures, which a socket closed in SYN_SENT lacks.
		conn.SockSynRetries, conn.UserTimeout = e.SockSynRetries, e.UserTimeout
	}
	switch e.NewState {
	case StateEstablished:
		if e.OldState == StateSynSent || e.OldState == StateSynRecv {
			// The first RTT sample: SYN to SYN+ACK for a client, SYN+ACK
			// to ACK for an accepted socket.
			conn.HandshakeRTT = e.SRTT
		}
		if conn.Role == RoleClient && e.OldState == StateSynSent && !conn.Partial {
			conn.Handshake = e.Time - conn.Start
			c.stats.Handshakes.Add(conn.Handshake)
		}
	case StateFinWait1, StateFinWait2:
		if conn.ClosedBy == ClosedByNone {
			conn.ClosedBy = ClosedByLocal
		}
	case StateCloseWait, StateLastAck:
		if conn.ClosedBy == ClosedByNone {
			conn.ClosedBy = ClosedByPeer
		}
	case StateClosing:
		conn.ClosedBy = ClosedByBoth
	case StateListen:
		c.listening[portKey{conn.NetNS, conn.LPort}]++
		c.listenStarted(conn)
	case StateClose:
		c.closed(conn, e, &step)
	}
	c.addState(conn, step.To)
	c.addStep(conn, step)
	conn.sinceUnknown = false
	if !conn.closed {
		c.watchState(conn, e.NewState, e.Time)
	}
}

// closed handles X -> CLOSE: it decides whether the connection really went to
// a timewait socket, and parks the record for CloseGrace.
func (c *Correlator) closed(conn *Connection, e *Event, step *Step) {
	if e.Errno != 0 {
		conn.Errno = e.Errno
	}
	if e.OldState == StateListen {
		k := portKey{conn.NetNS, conn.LPort}
		if c.listening[k]--; c.listening[k] <= 0 {
			delete(c.listening, k)
		}
		c.listenStopped(conn)
	}
	conn.closedDead = e.SockDead
	// Reset with its listener, never accept()ed: the owner it inherited
	// from the listener never had it.
	conn.NeverAccepted = e.NoFile && conn.Role == RoleServer
	// tcp_time_wait() replaces the full socket with a timewait socket and the
	// tracepoint reports X -> CLOSE; no transition into TIME_WAIT is ever
	// reported. SOCK_DONE means the peer's FIN was processed: real
	// TIME_WAIT. SOCK_DEAD alone: close() orphaned the socket and our FIN
	// was acked, so the timewait socket holds FIN_WAIT2 until the peer's FIN
	// or tcp_fin_timeout. A reset or a timeout is no handoff.
	if e.Errno == 0 && !conn.RSTReceived {
		switch {
		case e.SockDone && (e.OldState == StateFinWait1 || e.OldState == StateFinWait2 || e.OldState == StateClosing):
			step.To, step.TimewaitSocket = StateTimeWait, true
			// The peer's FIN reached a socket the application still
			// held: it had only shut down its sending side.
			conn.HalfClose = !e.SockDead && e.OldState == StateFinWait2
		case e.SockDead && e.OldState == StateFinWait2:
			step.To, step.TimewaitSocket = StateFinWait2, true
		}
	}
	conn.closed, conn.closedAt = true, e.Time
	conn.closeFrom = e.OldState
	c.watch.remove(conn)
	c.open.remove(conn)
	c.closing.pushBack(conn)
}

func (c *Correlator) addState(conn *Connection, s State) {
	if n := len(conn.States); n > 0 && conn.States[n-1] == s {
		return
	}
	if len(conn.States) >= 2*c.cfg.MaxSteps {
		return
	}
	conn.States = append(conn.States, s)
}

func (c *Correlator) addStep(conn *Connection, s Step) {
	limit := c.cfg.MaxSteps
	if s.Kind == StepState {
		// State changes are few in a real connection; keep them all, within
		// a hard bound against nonsense input.
		limit = 2 * c.cfg.MaxSteps
	}
	if len(conn.Steps) >= limit {
		conn.StepsDropped++
		return
	}
	conn.Steps = append(conn.Steps, s)
}

// How a record starts: the first event of a socket (its role from its first
// transition), or a socket found by the start-up scan (Seed).

package timeline

type portKey struct {
	netns uint32
	port  uint16
}

// isStart: the first transition of a socket whose whole life is traced.
func isStart(e *Event) bool {
	return e.OldState == StateClose && (e.NewState == StateSynSent || e.NewState == StateListen) ||
		e.OldState == StateListen && e.NewState == StateSynRecv
}

// start creates the record for a cookie seen for the first time.
func (c *Correlator) start(e *Event) *Connection {
	conn := c.newConnection(e.Cookie, e.Time)
	conn.LAddr, conn.RAddr = e.LAddr, e.RAddr
	conn.LPort, conn.RPort = e.LPort, e.RPort
	conn.NetNS = e.NetNS

	switch {
	case e.Type == EventState && e.OldState == StateClose && e.NewState == StateSynSent:
		conn.Role = RoleClient
	case e.Type == EventState && e.OldState == StateClose && e.NewState == StateListen:
		conn.Role = RoleListener
	case e.Type == EventState && e.OldState == StateListen && e.NewState == StateSynRecv,
		// Before Linux 6.15 the LISTEN -> SYN_RECV event of an accepted
		// socket carries no tuple, and the kernel side drops it: the
		// socket's first event is then SYN_RECV -> ESTABLISHED.
		e.Type == EventState && e.OldState == StateSynRecv && e.NewState == StateEstablished:
		// Cloned from the listener when the final ACK arrived; the SYN and
		// SYN+ACK lived in a request socket this tracepoint never sees.
		conn.Role = RoleServer
		if e.OldState == StateSynRecv {
			conn.States = append(conn.States, StateSynRecv)
		}
		c.joinSynAcks(conn)
	default:
		conn.Partial = true
		first := e.NewState
		if e.Type == EventState {
			first = e.OldState
		}
		conn.Role = c.guessRole(conn, first)
		conn.States = append(conn.States, first)
		conn.sinceUnknown = true
		c.watchState(conn, first, e.Time)
	}
	return conn
}

// newConnection allocates (or recycles) a record and links it as open.
func (c *Correlator) newConnection(cookie uint64, t int64) *Connection {
	if len(c.live) >= c.cfg.MaxConnections {
		c.evictOldest()
	}
	conn := c.alloc()
	conn.Cookie = cookie
	conn.Start, conn.End = t, t
	conn.lastSyn = t
	c.live[cookie] = conn
	c.open.pushBack(conn)
	return conn
}

// Seed creates a partial record for a socket found by the start-up scan,
// owned by pid/comm (0/"" when unknown), unless it is known already.
// Timewait and request sockets are not connections to follow.
func (c *Correlator) Seed(now int64, s *Socket, pid uint32, comm string) {
	if s.Cookie == 0 || c.live[s.Cookie] != nil || c.packed.has(s.Cookie) || s.State == StateTimeWait || s.State == StateNewSynRecv ||
		s.State == StateClose {
		return
	}
	conn := c.newConnection(s.Cookie, now)
	conn.seeded = true
	conn.Partial = true
	conn.LAddr, conn.RAddr, conn.LPort, conn.RPort = s.LAddr, s.RAddr, s.LPort, s.RPort
	conn.NetNS, conn.UID, conn.PID, conn.Comm = s.NetNS, s.UID, pid, comm
	conn.Cgroup = s.Cgroup
	conn.BytesSent, conn.BytesReceived, conn.SRTT, conn.SegsRetrans = s.BytesAcked, s.BytesReceived, s.SRTT, s.TotalRetrans
	if s.State == StateListen {
		conn.Role = RoleListener
		c.listening[portKey{conn.NetNS, conn.LPort}]++
		c.ObserveListener(s, now)
	} else {
		conn.Role = c.guessRole(conn, s.State)
	}
	conn.States = append(conn.States, s.State)
	conn.sinceUnknown = true
	c.watchState(conn, s.State, now)
}

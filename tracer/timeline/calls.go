// System calls that failed in the application: connect(), bind(),
// listen(), accept(). A failed connect() whose socket has a record joins
// it (EADDRNOTAVAIL: no free local port, with the numbers behind it); the
// others are alerts, at most one per process, call, errno and port every
// callAlertEvery, with the count since the last.

package timeline

import "syscall"

const (
	callAlertEvery = 10e9
	maxCallAlerts  = 1024
)

type callKey struct {
	netns uint32
	pid   uint32
	call  Syscall
	errno uint16
	port  uint16
	// cause: port_in_use alerts again when who holds the port changes.
	cause uint8
}

type callAlertState struct {
	last  int64
	count uint64
}

// syscallFailed handles an EventSyscallError.
func (c *Correlator) syscallFailed(e *Event) {
	if c.stats.SyscallErrors == nil {
		c.stats.SyscallErrors = make(map[SyscallErrno]uint64)
	}
	c.stats.SyscallErrors[SyscallErrno{e.Syscall, e.Errno}]++
	errno := syscall.Errno(e.Errno)
	switch {
	case e.Syscall == SyscallAccept:
		c.acceptFailed(e)
		c.callAlert(e, nil)
	case e.Syscall == SyscallConnect && e.Cookie != 0 && e.NewState == StateClose:
		// The socket went 7 -> 2 -> 7 in the call: its record ends with
		// it and says why.
		n := c.noteFor(e.Cookie, flowKey{}, e.Time)
		if n == nil {
			return
		}
		n.syscall, n.errno = e.Syscall, e.Errno
		if errno == syscall.EADDRNOTAVAIL {
			n.portUse = c.portUse(e)
		}
	case errno == syscall.EADDRINUSE && (e.Syscall == SyscallBind || e.Syscall == SyscallListen):
		h := c.portHolders(e.NetNS, e.LPort)
		c.callAlert(e, &h)
	default:
		c.callAlert(e, nil)
	}
}

// callAlert raises an AlertPortInUse or AlertSyscallError, deduplicated.
func (c *Correlator) callAlert(e *Event, holders *PortHolders) {
	k := callKey{e.NetNS, e.PID, e.Syscall, e.Errno, e.LPort, 0}
	if holders != nil {
		switch {
		case len(holders.Listeners) > 0:
			k.cause = 1
		case holders.TimeWait > 0:
			k.cause = 2
		default:
			k.cause = 3
		}
	}
	st := c.callAlerts[k]
	if st == nil {
		if len(c.callAlerts) >= maxCallAlerts {
			clear(c.callAlerts)
		}
		st = &callAlertState{}
		c.callAlerts[k] = st
	}
	st.count++
	if st.last != 0 && e.Time-st.last < callAlertEvery {
		return
	}
	a := Alert{Time: e.Time, Kind: AlertSyscallError, Cookie: e.Cookie, LAddr: e.LAddr, RAddr: e.RAddr,
		LPort: e.LPort, RPort: e.RPort, NetNS: e.NetNS, PID: e.PID, Comm: e.Comm, Cgroup: e.Cgroup,
		State: e.NewState, Since: e.Time, Syscall: e.Syscall, Errno: e.Errno, Count: st.count, Queue: e.Queue,
		Somaxconn: -1}
	if holders != nil {
		a.Kind, a.Holders = AlertPortInUse, *holders
	}
	st.last, st.count = e.Time, 0
	c.stats.Alerts++
	c.alert(&a)
}

// portUse counts the sockets towards a connect()'s destination, and the
// size of the range its local port comes from.
func (c *Correlator) portUse(e *Event) PortUse {
	u := PortUse{}
	if sys := c.sys[e.NetNS]; sys != nil && sys.LocalPorts[1] >= sys.LocalPorts[0] && sys.LocalPorts[1] != 0 {
		u.Range = int(sys.LocalPorts[1]) - int(sys.LocalPorts[0]) + 1
	}
	if c.cfg.ScanNetNS == nil {
		return u
	}
	err := c.cfg.ScanNetNS(e.NetNS, func(s *Socket) {
		if s.RAddr != e.RAddr || s.RPort != e.RPort || s.State == StateListen || s.State == StateNewSynRecv {
			return
		}
		u.InUse++
		if s.State == StateTimeWait {
			u.TimeWait++
		}
	})
	u.Known = err == nil
	return u
}

// portHolders finds who holds a local port: listeners (with their owner
// when known), TIME_WAIT sockets, other connections.
func (c *Correlator) portHolders(netns uint32, port uint16) PortHolders {
	var h PortHolders
	if c.cfg.ScanNetNS == nil {
		return h
	}
	err := c.cfg.ScanNetNS(netns, func(s *Socket) {
		if s.LPort != port {
			return
		}
		switch s.State {
		case StateListen:
			hd := Holder{Cookie: s.Cookie, Cgroup: s.Cgroup}
			if l := c.live[s.Cookie]; l != nil {
				hd.PID, hd.Comm = l.PID, l.Comm
			}
			if len(h.Listeners) < 8 {
				h.Listeners = append(h.Listeners, hd)
			}
		case StateTimeWait:
			h.TimeWait++
		case StateNewSynRecv:
		default:
			h.Other++
		}
	})
	h.Known = err == nil
	return h
}

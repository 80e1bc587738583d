// System calls that failed in the application: connect(), bind(),
// listen(), accept(). A failed connect() whose socket has a record joins
// it (EADDRNOTAVAIL: no free local port, with the numbers behind it); the
// others are alerts, at most one per process, call, errno and port every
// callAlertEvery, with the count since the last.
//
// The numbers come from a walk of the namespace's TCP sockets, made per
// failure: the alert deduplication cannot spare it, as it keys on who
// holds the port (a new holder alerts again), and each failed connect()
// has a record of its own. An application failing in a tight loop would
// make tcptrace walk the tables thousands of times a second, so the walks
// are rate-limited per namespace (scanFor). A failure past the limit says
// that its sockets were not looked at: it never reuses an earlier walk's
// numbers, which may name a holder gone since (a listener whose port has
// passed to TIME_WAIT), and a wrong cause is worse than none.

package timeline

import (
	"syscall"
)

const (
	callAlertEvery = 10e9
	maxCallAlerts  = 1024
)

// A namespace's walks: a burst of scanBurst, then one per scanEvery of
// event time, however fast the application fails. The burst explains a
// namespace's first failures all, as each wants its own numbers: Go's
// net.Dial alone makes three connect() calls for one EADDRNOTAVAIL
// (spuriousENOTAVAIL). Past it, a walk every 200 ms bounds the cost to a
// few percent of a CPU where a walk takes a few ms (2 to 7 ms in the
// integration tests' namespaces here). Counted in event time only, never
// in the walks' own cost: the same events must give the same records,
// whichever tracer reads them and however loaded the machine is.
const (
	scanBurst      = 16
	scanEvery      = 200e6
	maxScanBudgets = 1024 // namespaces
)

// scanBudget is how many walks of a namespace's sockets may run now.
type scanBudget struct {
	at   int64 // last topped up, event time
	left int   // walks
}

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
		h := c.portHolders(e.NetNS, e.LPort, e.Time)
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
		case holders.NotRescanned:
			k.cause = 4 // names no holder: its own alerts and count
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
	u.Known, u.NotRescanned = c.scanFor(e.NetNS, e.Time, func(s *Socket) {
		if s.RAddr != e.RAddr || s.RPort != e.RPort || s.State == StateListen || s.State == StateNewSynRecv {
			return
		}
		u.InUse++
		if s.State == StateTimeWait {
			u.TimeWait++
		}
	})
	return u
}

// portHolders finds who holds a local port: listeners (with their owner
// when known), TIME_WAIT sockets, other connections.
func (c *Correlator) portHolders(netns uint32, port uint16, now int64) PortHolders {
	var h PortHolders
	if c.cfg.ScanNetNS == nil {
		return h
	}
	h.Known, h.NotRescanned = c.scanFor(netns, now, func(s *Socket) {
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
	return h
}

// scanFor walks netns's sockets for a failure at now, if its budget
// allows: known when the walk ran and succeeded, limited when it did not
// run for the budget.
func (c *Correlator) scanFor(netns uint32, now int64, fn func(*Socket)) (known, limited bool) {
	b := c.scanBudget(netns, now)
	if b.left <= 0 {
		return false, true
	}
	err := c.cfg.ScanNetNS(netns, fn)
	b.left--
	return err == nil, false
}

// scanBudget tops up netns's budget for the time since it was last topped
// up. A namespace not seen starts full.
func (c *Correlator) scanBudget(netns uint32, now int64) *scanBudget {
	b := c.scanBudgets[netns]
	if b == nil {
		if c.scanBudgets == nil {
			c.scanBudgets = make(map[uint32]*scanBudget)
		}
		c.evictScanBudgets(now)
		b = &scanBudget{at: now, left: scanBurst}
		c.scanBudgets[netns] = b
	}
	if n := (now - b.at) / scanEvery; n > 0 {
		b.left = int(min(scanBurst, int64(b.left)+n))
		b.at += n * scanEvery
	}
	return b
}

// evictScanBudgets makes room when maxScanBudgets are kept: the full ones
// go (as good as absent), else one; clearing all would hand every
// namespace a new burst.
func (c *Correlator) evictScanBudgets(now int64) {
	if len(c.scanBudgets) < maxScanBudgets {
		return
	}
	for ns, b := range c.scanBudgets {
		if int64(b.left)+(now-b.at)/scanEvery >= scanBurst {
			delete(c.scanBudgets, ns)
		}
	}
	for ns := range c.scanBudgets {
		if len(c.scanBudgets) < maxScanBudgets {
			return
		}
		delete(c.scanBudgets, ns)
	}
}

// Listeners and their accept queues: how full each is and what it dropped.
// The kernel counts every SYN or final ACK a listener throws away for a
// full accept queue (tcp_listendrop() bumps its sk_drops); the loader
// reads that count, the queue's length and its limit in socket scans and
// on the events that concern a listener (a SYN+ACK retry, a drop at it, a
// failed accept()). A count that grew starts a burst, alerted once; a
// client of a local listener that dropped while it tried is told so.

package timeline

import (
	"net/netip"
	"sort"
)

type listenerState struct {
	addr   netip.Addr
	cookie uint64
	q      Queue
	seen   int64 // last looked at
	closed bool
	// The burst under way: when the first drop was seen, the last one,
	// and how many so far; alerted once.
	burstStart, lastDrop int64
	burstDropped         uint64
	// accept() failures on this listener by errno.
	acceptErrs []ErrnoCount
}

const (
	maxListeners = 4096
	// burstGap: drops this far apart are two bursts, each alerted.
	burstGap = 10e9
	// listenerTTL: a closed listener is forgotten after this.
	listenerTTL = 120e9
)

// ObserveListener takes what a scan found of a listening socket.
func (c *Correlator) ObserveListener(s *Socket, now int64) {
	c.observeListener(s.NetNS, s.LAddr, s.LPort, s.Cookie, s.Queue, now)
}

// observeListener updates a listener's queue; a grown drop count raises
// the burst's alert, once.
func (c *Correlator) observeListener(netns uint32, addr netip.Addr, port uint16, cookie uint64, q Queue, now int64) {
	k := portKey{netns, port}
	st := c.listeners[k]
	if st == nil {
		if len(c.listeners) >= maxListeners {
			return
		}
		st = &listenerState{addr: addr}
		c.listeners[k] = st
	}
	if cookie != 0 && st.cookie != 0 && cookie != st.cookie {
		*st = listenerState{addr: addr} // another socket on the port: counts anew
	}
	st.seen, st.closed = now, false
	if cookie != 0 {
		st.cookie = cookie
	}
	if !q.Known {
		return
	}
	grew := st.q.Known && q.Drops > st.q.Drops
	if grew {
		n := uint64(q.Drops - st.q.Drops)
		c.stats.ListenDrops += n
		if st.burstStart == 0 || now-st.lastDrop > burstGap {
			st.burstStart, st.burstDropped = now, 0
		}
		first := st.burstDropped == 0
		st.burstDropped += n
		st.lastDrop = now
		st.q = q
		if first {
			c.raiseListenOverflow(k, st, now)
		}
		return
	}
	if q.Max != 0 || !st.q.Known {
		st.q = q
	}
}

// listenStarted: listen() made a new listener, which has dropped nothing:
// the first scan's count is all growth.
func (c *Correlator) listenStarted(conn *Connection) {
	c.observeListener(conn.NetNS, conn.LAddr, conn.LPort, conn.Cookie, Queue{Known: true}, conn.Start)
}

func (c *Correlator) listenStopped(conn *Connection) {
	if st := c.listeners[portKey{conn.NetNS, conn.LPort}]; st != nil && st.cookie == conn.Cookie {
		st.closed, st.seen = true, conn.End
	}
}

func (c *Correlator) raiseListenOverflow(k portKey, st *listenerState, now int64) {
	a := Alert{Time: now, Kind: AlertListenOverflow, Cookie: st.cookie, LAddr: st.addr, LPort: k.port,
		NetNS: k.netns, State: StateListen, Since: st.burstStart, Queue: st.q, Dropped: st.burstDropped,
		Somaxconn: -1, AcceptErrors: append([]ErrnoCount(nil), st.acceptErrs...)}
	if l := c.live[st.cookie]; l != nil {
		a.PID, a.Comm, a.Cgroup = l.PID, l.Comm, l.Cgroup
	}
	if sys := c.sys[k.netns]; sys != nil {
		a.Somaxconn = sys.Somaxconn
	}
	c.stats.Alerts++
	c.alert(&a)
}

// acceptFailed counts a failed accept() on its listener.
func (c *Correlator) acceptFailed(e *Event) {
	c.observeListener(e.NetNS, e.LAddr, e.LPort, e.Cookie, e.Queue, e.Time)
	st := c.listeners[portKey{e.NetNS, e.LPort}]
	if st == nil {
		return
	}
	for i := range st.acceptErrs {
		if st.acceptErrs[i].Errno == e.Errno {
			st.acceptErrs[i].Count++
			return
		}
	}
	if len(st.acceptErrs) < 8 {
		st.acceptErrs = append(st.acceptErrs, ErrnoCount{e.Errno, 1})
	}
}

// listenerFullFor: a client of a listener on this host whose SYNs were
// retried or timed out is told whether that listener was dropping while
// it tried.
func (c *Correlator) listenerFullFor(conn *Connection) {
	port, addr, from := conn.RPort, conn.RAddr, conn.Start
	switch {
	case conn.Role == RoleClient && (conn.SynRetries > 0 || conn.Reason == ReasonSynTimeout):
	case conn.Role == RoleServer && conn.SynAckRetries > 0:
		// Its SYN+ACK retries came before the record starts (accepted).
		port, addr, from = conn.LPort, conn.LAddr, conn.Start-70e9
	default:
		return
	}
	st := c.listeners[portKey{conn.NetNS, port}]
	if st == nil || st.lastDrop == 0 || (known(st.addr) && st.addr != addr) {
		return
	}
	// Scans see the drops up to a second late: a burst that was under way
	// while the connection tried counts.
	if st.lastDrop < from || st.burstStart > conn.End+2e9 {
		return
	}
	conn.ListenerFull = ListenerFull{Known: true, Addr: addr, Port: port, Queue: st.q, Dropped: st.burstDropped}
}

// ListenerFull: the accept queue of the local listener a client connected
// to was full while it tried, with what the listener dropped in that burst.
type ListenerFull struct {
	Known   bool
	Addr    netip.Addr
	Port    uint16
	Queue   Queue
	Dropped uint64
}

// WantsListenerLook: a client's SYN was retried towards a listener on this
// host; a look at the listeners now tells whether its queue was full
// before the client's record ends. Reading it clears it.
func (c *Correlator) WantsListenerLook() bool {
	w := c.wantListenerLook
	c.wantListenerLook = false
	return w
}

func (c *Correlator) pruneListeners(now int64) {
	for k, st := range c.listeners {
		if (st.closed && now-st.seen > listenerTTL) || now-st.seen > 10*listenerTTL {
			delete(c.listeners, k)
		}
	}
}

// ListenerInfo is one listener's accept queue as last looked at.
type ListenerInfo struct {
	NetNS uint32
	Addr  netip.Addr
	Port  uint16
	Queue Queue
}

// Listeners lists the listeners whose queues are known, fullest first.
func (c *Correlator) Listeners() []ListenerInfo {
	out := make([]ListenerInfo, 0, len(c.listeners))
	for k, st := range c.listeners {
		if st.q.Known && !st.closed && st.q.Max > 0 {
			out = append(out, ListenerInfo{k.netns, st.addr, k.port, st.q})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Queue, out[j].Queue
		if a.Len*b.Max != b.Len*a.Max {
			return uint64(a.Len)*uint64(b.Max) > uint64(b.Len)*uint64(a.Max)
		}
		return a.Drops > b.Drops
	})
	return out
}

// Connections held by a full receive window: the peer's application stopped
// reading, so this host cannot send. No transition tells it; the flush
// scans (tracer/queue.go) report each socket whose window-limited spell has
// lasted half of StuckAfter (EventStall), then mark the scan's end. An
// alert is raised once the spell passes StuckAfter, again every StuckAfter
// while it lasts, and a last one when a scan finds it over.

package timeline

const maxStalls = 4096

type stall struct {
	since   int64 // when the spell began (Unix ns)
	alerted int64 // when last alerted; 0: not yet
	seen    uint64
	probes  uint8
	pid     uint32
	comm    string
	cgroup  uint64
	laddr   Endpoint
	raddr   Endpoint
	netns   uint32
}

// Stalled takes a flush scan's notice (EventStall) of a connection held by
// a full receive window.
func (c *Correlator) Stalled(e *Event) {
	if e.Info.StalledFor <= 0 {
		return
	}
	st := c.stalls[e.Cookie]
	if st == nil {
		if len(c.stalls) >= maxStalls {
			return
		}
		st = &stall{}
		c.stalls[e.Cookie] = st
	}
	st.since = e.Time - e.Info.StalledFor
	st.seen = c.stallGen
	st.probes = e.Info.Probes
	st.pid, st.comm, st.cgroup = e.PID, e.Comm, e.Cgroup
	st.laddr, st.raddr, st.netns = Endpoint{Addr: e.LAddr, Port: e.LPort}, Endpoint{Addr: e.RAddr, Port: e.RPort}, e.NetNS
	if c.cfg.StuckAfter <= 0 || e.Time-st.since < c.cfg.StuckAfter {
		return
	}
	if st.alerted == 0 || e.Time-st.alerted >= c.cfg.StuckAfter {
		st.alerted = e.Time
		c.raiseStall(e.Cookie, st, e.Time, "")
	}
}

// StallScanEnded: the spells the scan that just ended did not see are over.
func (c *Correlator) StallScanEnded(now int64) {
	for cookie, st := range c.stalls {
		if st.seen == c.stallGen {
			continue
		}
		if st.alerted != 0 {
			c.raiseStall(cookie, st, now, "window_opened")
		}
		delete(c.stalls, cookie)
	}
	c.stallGen++
}

func (c *Correlator) raiseStall(cookie uint64, st *stall, now int64, ended string) {
	a := Alert{Time: now, Kind: AlertZeroWindow, Cookie: cookie, LAddr: st.laddr.Addr, LPort: st.laddr.Port,
		RAddr: st.raddr.Addr, RPort: st.raddr.Port, NetNS: st.netns, State: StateEstablished, Since: st.since,
		Ended: ended, Retries: int(st.probes), Somaxconn: -1, PID: st.pid, Comm: st.comm, Cgroup: st.cgroup}
	c.stats.Alerts++
	c.alert(&a)
}

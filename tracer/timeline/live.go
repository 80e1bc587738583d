// Read-only views of the connections the correlator holds now, for a live
// display (tcptrace top): records are only emitted when connections end.

package timeline

import "net/netip"

// LiveConn is what a live display needs of one open connection: its
// identity, owner, current state and since when. It is a copy.
type LiveConn struct {
	Cookie uint64
	Start  int64 // Unix ns of its first event (or of the scan that found it)
	// Partial: its start was not seen (it predates tracing).
	Partial bool
	LAddr   netip.Addr
	RAddr   netip.Addr
	LPort   uint16
	RPort   uint16
	NetNS   uint32
	Role    Role
	PID     uint32
	Comm    string
	Cgroup  uint64
	State   State
	// Since is when it entered State (Unix ns); SinceUnknown when it was
	// already there when tracing began (Since is then that moment).
	Since        int64
	SinceUnknown bool
}

// EachLive calls fn for every connection open now: the live table (but
// not the closed ones waiting out CloseGrace), the packed ones at rest
// (ESTABLISHED), and the orphaned FIN_WAIT2 sockets followed by scans. lc
// is reused between calls. Its cost grows with the connections held: call
// it about once a second, not per event.
func (c *Correlator) EachLive(fn func(lc *LiveConn)) {
	var lc LiveConn
	for _, conn := range c.live {
		if conn.closed || len(conn.States) == 0 {
			continue
		}
		liveOf(conn, &lc)
		fn(&lc)
	}
	c.packed.each(func(cc *packedConn) {
		c.liveOfPacked(cc, &lc)
		fn(&lc)
	})
	for cookie, o := range c.orphans {
		if o.timeWait || o.substate == StateTimeWait {
			continue // no trouble: TIME_WAIT is counted by the scans
		}
		a := &o.alert
		lc = LiveConn{Cookie: cookie, LAddr: a.LAddr, RAddr: a.RAddr, LPort: a.LPort, RPort: a.RPort, NetNS: a.NetNS,
			Role: RoleUnknown, PID: a.PID, Comm: a.Comm, Cgroup: a.Cgroup, State: StateFinWait2, Since: a.Since}
		fn(&lc)
	}
}

// LiveConn fills lc with the live connection of cookie, if the live table
// holds it unpacked (a packed one is at rest: no event touched it lately).
// It does not change the table.
func (c *Correlator) LiveConn(cookie uint64, lc *LiveConn) bool {
	conn := c.live[cookie]
	if conn == nil {
		return false
	}
	liveOf(conn, lc)
	return true
}

func liveOf(conn *Connection, lc *LiveConn) {
	*lc = LiveConn{Cookie: conn.Cookie, Start: conn.Start, Partial: conn.Partial, LAddr: conn.LAddr, RAddr: conn.RAddr, LPort: conn.LPort, RPort: conn.RPort,
		NetNS: conn.NetNS, Role: conn.Role, PID: conn.PID, Comm: conn.Comm, Cgroup: conn.Cgroup,
		State: conn.LastState(), Since: conn.stateSince, SinceUnknown: conn.sinceUnknown}
	if lc.Since == 0 {
		lc.Since = conn.End
	}
}

// liveOfPacked unpacks only what LiveConn needs of a packed connection.
func (c *Correlator) liveOfPacked(cc *packedConn, lc *LiveConn) {
	ctx := &c.packed.ctxs[cc.ctx]
	since := cc.start
	if n := int(cc.counts & 15); n > 1 {
		since += int64(cc.later[n-2])
	}
	*lc = LiveConn{Cookie: cc.cookie, Start: cc.start, Partial: cc.flags&packedPartial != 0, LAddr: ctx.laddr, RAddr: netip.AddrFrom4(cc.raddr), LPort: cc.lport,
		RPort: cc.rport, NetNS: ctx.netns, Role: Role(cc.flags & 3), PID: ctx.pid, Comm: ctx.comm, Cgroup: ctx.cgroup,
		State: StateEstablished, Since: since, SinceUnknown: cc.flags&packedSinceUnknown != 0}
}

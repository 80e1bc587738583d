// RSTs the stack sent with no socket (nothing listening, or a listener
// answering a segment for a connection it does not know): matched to the
// connection on this host that receives them, which is then half-open.

package timeline

// noSocketTTL: a socketless RST is matched to a RST received within this.
const noSocketTTL = 1e9

// addNoSocketRST remembers a RST this host sent for a connection it has no
// socket for, keyed by the flow as its receiver sees it.
func (c *Correlator) addNoSocketRST(e *Event) {
	if len(c.noSocket) >= maxPending {
		clear(c.noSocket)
	}
	c.noSocket[flowKey{laddr: e.RAddr, raddr: e.LAddr, lport: e.RPort, rport: e.LPort, netns: e.NetNS}] = e.Time
}

// matchNoSocketRST: the RST conn received was sent by this host's stack
// because the other end had no socket: the peer had forgotten the
// connection while conn still sent to it.
func (c *Correlator) matchNoSocketRST(conn *Connection, t int64) bool {
	k := flowKey{laddr: conn.LAddr, raddr: conn.RAddr, lport: conn.LPort, rport: conn.RPort, netns: conn.NetNS}
	sent, ok := c.noSocket[k]
	if ok {
		delete(c.noSocket, k)
	}
	return ok && t-sent < noSocketTTL && t >= sent
}

// SYN+ACK retransmissions: reported on the listener for a request socket
// that has no record of its own, kept by 4-tuple until the socket accepted
// from it appears, and alerted on when no socket ever does.

package timeline

import (
	"net/netip"
)

// flowKey identifies a connection by its 4-tuple, to join the SYN-ACK
// retransmissions of a request socket to the socket later accepted from it,
// and a socketless RST to the connection it answers.
type flowKey struct {
	laddr, raddr netip.Addr
	lport, rport uint16
	netns        uint32
}

const maxSynAckKept = 8

type synAckRetries struct {
	times     [maxSynAckKept]int64
	n         int
	alertedAt int64
	alert     Alert // identity for a lingering SYN_RECV alert
	// Scans follow the request socket (synack_gone.go): the scan that last
	// saw it, and the one that first missed it (0: none).
	seen, missed uint64
	// scanned: its namespace is one the scans walk, so they tell when the
	// request is gone (counted in Correlator.synAcksScanned).
	scanned bool
}

// maxPending bounds the SYN-ACK retransmissions waiting for their accepted
// socket (a client that gives up never produces one) and the socketless
// RSTs waiting to be matched to the connection that receives them.
const maxPending = 4096

// synAckTTL: SYN-ACK retries older than this are forgotten (the kernel gives
// up after tcp_synack_retries, 5 by default, about 63 s).
const synAckTTL = 120e9

func (c *Correlator) addSynAck(e *Event) {
	if l := c.lookup(e.Cookie); l != nil {
		l.SynAckRetries++ // the listener's own count, across all its requests
		l.End = e.Time
	}
	k := flowKey{laddr: e.LAddr, raddr: e.RAddr, lport: e.LPort, rport: e.RPort, netns: e.NetNS}
	r, ok := c.synAcks[k]
	if !ok {
		if len(c.synAcks) >= maxPending {
			c.pruneSynAcks(e.Time, true)
		}
		r.alert = Alert{Kind: AlertSynRecv, Cookie: e.Cookie, LAddr: e.LAddr, RAddr: e.RAddr, LPort: e.LPort,
			RPort: e.RPort, NetNS: e.NetNS, PID: e.PID, Comm: e.Comm, Cgroup: e.Cgroup, State: StateSynRecv, Since: e.Time}
		r.seen = c.scanGen // not judged by a scan that ran before it came
		if r.scanned = c.scans(k.netns); r.scanned {
			c.synAcksScanned++
		}
	}
	if r.n < maxSynAckKept {
		r.times[r.n] = e.Time
	}
	r.n++
	c.synAcks[k] = r
}

func (c *Correlator) joinSynAcks(conn *Connection) {
	k := flowKey{laddr: conn.LAddr, raddr: conn.RAddr, lport: conn.LPort, rport: conn.RPort, netns: conn.NetNS}
	r, ok := c.synAcks[k]
	if !ok {
		return
	}
	c.forgetSynAck(k)
	conn.SynAckRetries = r.n
	kept := min(r.n, maxSynAckKept)
	if kept > 0 && r.times[0] < conn.Start {
		conn.Start = r.times[0]
	}
	for i := 0; i < kept; i++ {
		var since int64
		if i > 0 {
			since = r.times[i] - r.times[i-1]
		}
		c.addStep(conn, Step{Time: r.times[i], Kind: StepSynAckRetransmit, From: StateSynRecv,
			To: StateSynRecv, N: i + 1, Since: since})
	}
}

// pruneSynAcks forgets SYN-ACK retries older than synAckTTL; with force it
// also drops one entry so that the table stays within maxPending.
func (c *Correlator) pruneSynAcks(now int64, force bool) {
	for k, r := range c.synAcks {
		last := r.times[min(r.n, maxSynAckKept)-1]
		if now-last > synAckTTL || force {
			c.forgetSynAck(k)
			force = false
		}
	}
}

// alertSynAcks raises an alert for each handshake that has retransmitted
// its SYN+ACK for longer than StuckAfter without an accepted socket.
func (c *Correlator) alertSynAcks(now int64) {
	if c.cfg.StuckAfter <= 0 {
		return
	}
	for k, r := range c.synAcks {
		if c.synAckExpired(k, &r, now) || r.missed != 0 {
			continue // gone, or likely so: the next scan tells
		}
		if now-r.alert.Since < c.cfg.StuckAfter || now-r.alertedAt < c.cfg.StuckAfter {
			continue
		}
		r.alertedAt = now
		c.synAcks[k] = r
		a := r.alert
		a.Time, a.Retries = now, r.n
		c.stats.Alerts++
		c.alert(&a)
	}
}

// forgetSynAck deletes a handshake's entry.
func (c *Correlator) forgetSynAck(k flowKey) {
	if r, ok := c.synAcks[k]; ok && r.scanned {
		c.synAcksScanned--
	}
	delete(c.synAcks, k)
}

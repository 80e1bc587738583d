// The end of a half-made connection: a request socket (SYN received,
// SYN+ACK sent) waits for the client's final ACK, and the kernel drops it
// after tcp_synack_retries. No tracepoint reports that. Scans see it gone
// (exactly, in the scanned namespace); elsewhere, or before any scan ran,
// the retry budget running out tells. Either way a handshake that was
// alerted on gets one last alert, Ended "dropped", and the alerts stop.

package timeline

// synAckGrace is added to the retry budget: timers fire a little late.
const synAckGrace = 1e9

// defaultSynAckRetries is the kernel's tcp_synack_retries.
const defaultSynAckRetries = 5

// scanSynAck: a socket with the 4-tuple of a followed handshake was seen,
// the request socket itself or the socket accepted from it (whose first
// events may still be on their way).
func (c *Correlator) scanSynAck(s *Socket) {
	k := flowKey{laddr: s.LAddr, raddr: s.RAddr, lport: s.LPort, rport: s.RPort, netns: s.NetNS}
	if r, ok := c.synAcks[k]; ok {
		r.seen = c.scanGen
		c.synAcks[k] = r
	}
}

// checkSynAcks, at the end of a scan: a handshake missed by two scans in a
// row is gone. One miss is not enough: the final ACK may have come just
// before the scan, and the accepted socket's first event (which takes the
// entry) may still be in the ring buffer; by the next scan it has been read.
func (c *Correlator) checkSynAcks(now int64) {
	for k, r := range c.synAcks {
		if !r.scanned {
			continue
		}
		switch {
		case r.seen == c.scanGen:
			r.missed = 0
		case r.missed == 0:
			r.missed = c.scanGen
		default:
			c.synAckGone(k, &r, now)
			continue
		}
		c.synAcks[k] = r
	}
}

// synAckExpired ends a handshake that scans do not follow once the kernel
// has surely given up on it: it sends the SYN+ACK, retries after 1 s,
// doubling (up to TCP_RTO_MAX, 120 s), and drops the request one timeout
// after the last retry, so 2 + 4 + … + 2^retries seconds after the first
// retry.
func (c *Correlator) synAckExpired(k flowKey, r *synAckRetries, now int64) bool {
	if r.scanned && c.scanned {
		return false // scans tell, exactly
	}
	retries := -1
	if sys := c.sys[k.netns]; sys != nil {
		retries = sys.SynAckRetries
	}
	if retries < 0 {
		retries = defaultSynAckRetries
	}
	retries = max(retries, r.n)
	var budget int64
	for i := 1; i <= retries; i++ {
		budget += min(int64(1e9)<<min(i, 20), 120e9)
	}
	if now < r.times[0]+budget+synAckGrace {
		return false
	}
	c.synAckGone(k, r, now)
	return true
}

// synAckGone says once that an alerted handshake's request socket is gone,
// and forgets it.
func (c *Correlator) synAckGone(k flowKey, r *synAckRetries, now int64) {
	if r.alertedAt != 0 {
		a := r.alert
		a.Time, a.Retries, a.Ended = now, r.n, "dropped"
		c.stats.Alerts++
		c.alert(&a)
	}
	c.forgetSynAck(k)
}

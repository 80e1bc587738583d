// Socket scans (iter/tcp): TIME_WAIT counts per remote endpoint, and the
// sockets followed after their record is out (orphan.go).

package timeline

// BeginScan starts taking in a scan of the kernel's TCP sockets (ScanSocket
// for each, then EndScan).
func (c *Correlator) BeginScan() {
	c.scanGen++
	clear(c.tw)
	c.twTotal = 0
}

// ScanSocket takes in one socket of the current scan.
func (c *Correlator) ScanSocket(s *Socket) {
	if c.synAcksScanned > 0 {
		c.scanSynAck(s)
	}
	if s.State != StateTimeWait {
		return
	}
	c.twTotal++
	if s.Substate == StateTimeWait {
		ep := Endpoint{s.RAddr, s.RPort}
		if _, ok := c.tw[ep]; ok || len(c.tw) < maxFailureEndpoints {
			c.tw[ep]++
		}
	}
	if o := c.orphans[s.Cookie]; o != nil {
		o.seen = c.scanGen
		o.substate = s.Substate
	}
}

// EndScan ends a scan; the orphans followed learn what became of them.
func (c *Correlator) EndScan(now int64) {
	c.scanned = true
	c.checkOrphans(now)
	c.checkSynAcks(now)
}

// WantsScan says whether scans are following sockets now (orphans, or
// request sockets waiting for the client's final ACK): the caller should
// then scan regularly, about once a second.
func (c *Correlator) WantsScan() bool { return len(c.orphans) > 0 || c.synAcksScanned > 0 }

// TimeWait returns the TIME_WAIT sockets counted by the last scan: the
// total (timewait sockets of any substate) and up to n remote endpoints with
// the most, most first. ok is false when no scan ran.
func (c *Correlator) TimeWait(n int) (total uint64, top []EndpointCount, ok bool) {
	return c.twTotal, topN(c.tw, n), c.scanned
}

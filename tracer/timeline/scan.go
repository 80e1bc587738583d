// Socket scans (iter/tcp): TIME_WAIT counts per remote endpoint, and the
// sockets followed after their record is out (orphan.go).

package timeline

// BeginScan starts taking in a scan of the kernel's TCP sockets (ScanSocket
// for each, then EndScan).
func (c *Correlator) BeginScan() {
	c.scanGen++
	c.followScan = false
	clear(c.tw)
	c.twTotal = 0
}

// BeginFollowScan starts taking in a scan of only the namespaces that
// FollowedNetNS names: it follows the sockets followed there, and leaves
// the TIME_WAIT counts of the last full scan as they are. On a host with
// many namespaces it costs a fraction of a full one: iter/tcp walks the
// whole host's tables for each namespace.
func (c *Correlator) BeginFollowScan() {
	c.scanGen++
	c.followScan = true
}

// FollowedNetNS calls fn once for each namespace where scans follow a
// socket (an orphaned FIN_WAIT2, or TIME_WAIT with FollowTimeWait).
func (c *Correlator) FollowedNetNS(fn func(netns uint32)) {
	done := make(map[uint32]bool)
	for _, o := range c.orphans {
		if ns := o.alert.NetNS; !done[ns] {
			done[ns] = true
			fn(ns)
		}
	}
}

// ScanSocket takes in one socket of the current scan.
func (c *Correlator) ScanSocket(s *Socket) {
	if s.State != StateTimeWait {
		return
	}
	if !c.followScan {
		c.twTotal++
		if s.Substate == StateTimeWait {
			ep := Endpoint{s.RAddr, s.RPort}
			if _, ok := c.tw[ep]; ok || len(c.tw) < maxFailureEndpoints {
				c.tw[ep]++
			}
		}
	}
	if o := c.orphans[s.Cookie]; o != nil {
		o.seen = c.scanGen
		o.substate = s.Substate
	}
}

// EndScan ends a scan; the orphans followed learn what became of them.
func (c *Correlator) EndScan(now int64) {
	if !c.followScan {
		c.scanned = true
	}
	c.followScan = false
	c.checkOrphans(now)
}

// TimeWait returns the TIME_WAIT sockets counted by the last scan: the
// total (timewait sockets of any substate) and up to n remote endpoints with
// the most, most first. ok is false when no scan ran.
func (c *Correlator) TimeWait(n int) (total uint64, top []EndpointCount, ok bool) {
	return c.twTotal, topN(c.tw, n), c.scanned
}

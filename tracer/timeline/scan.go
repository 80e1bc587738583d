// Socket scans (iter/tcp): TIME_WAIT counts per endpoint, and the
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
// socket (an orphaned FIN_WAIT2, TIME_WAIT with FollowTimeWait, or a
// request socket waiting for its final ACK).
func (c *Correlator) FollowedNetNS(fn func(netns uint32)) {
	done := make(map[uint32]bool)
	once := func(ns uint32) {
		if !done[ns] {
			done[ns] = true
			fn(ns)
		}
	}
	for _, o := range c.orphans {
		once(o.alert.NetNS)
	}
	if c.synAcksScanned > 0 {
		for k, r := range c.synAcks {
			if r.scanned {
				once(k.netns)
			}
		}
	}
}

// scans reports whether the socket scans walk namespace ns.
func (c *Correlator) scans(ns uint32) bool { return c.cfg.ScansNetNS != nil && c.cfg.ScansNetNS(ns) }

// ScanSocket takes in one socket of the current scan.
func (c *Correlator) ScanSocket(s *Socket) {
	if c.synAcksScanned > 0 {
		c.scanSynAck(s)
	}
	if s.State == StateListen {
		c.ObserveListener(s, c.clock)
	}
	if s.State != StateTimeWait {
		return
	}
	if !c.followScan {
		c.twTotal++
		if s.Substate == StateTimeWait {
			ep := Endpoint{Addr: s.RAddr, Port: s.RPort}
			if c.listening[portKey{s.NetNS, s.LPort}] > 0 {
				// A server's: by the address and port its clients came
				// to, not by their ephemeral ports, one each.
				ep = Endpoint{Addr: s.LAddr, Port: s.LPort, Local: true}
			}
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
	c.checkSynAcks(now)
}

// WantsScan says whether scans are following sockets now (orphans, or
// request sockets waiting for the client's final ACK): the caller should
// then scan regularly, about once a second.
func (c *Correlator) WantsScan() bool { return len(c.orphans) > 0 || c.synAcksScanned > 0 }

// TimeWait returns the TIME_WAIT sockets counted by the last scan: the
// total (timewait sockets of any substate) and up to n endpoints with the
// most, most first. A server's TIME_WAIT sockets (their local port has a
// listener) are counted by local address and port (Local), a client's by
// remote endpoint. ok is false when no scan ran.
func (c *Correlator) TimeWait(n int) (total uint64, top []EndpointCount, ok bool) {
	top = topN(c.tw, len(c.tw))
	// topN orders equal counts by address and port, which a local and a
	// remote endpoint may share (their order from the map): local first.
	for i := 1; i < len(top); i++ {
		a, b := &top[i-1], &top[i]
		if b.Local && !a.Local && a.Count == b.Count && a.Addr == b.Addr && a.Port == b.Port {
			*a, *b = *b, *a
		}
	}
	return c.twTotal, top[:min(n, len(top))], c.scanned
}

package timeline

import "net/netip"

// Packed connections at rest.
//
// A busy host holds many connections that are simply open: ESTABLISHED,
// idle as far as TCP's state machine goes, for minutes or days. A full
// Connection costs about 600 bytes with its slices and its map entry; at
// rest, one needs under 64. So a connection ESTABLISHED and without events
// for Config.PackAfter is packed into a packedConn and leaves the live map;
// its next event unpacks it, exactly as it was (see canPack). What a
// packedConn cannot hold exactly (IPv6, retransmissions, RSTs, more than
// three steps, a watched state…) stays a full Connection. packedStore is
// the hash table that holds them by cookie.

// maxPackedSteps and maxPackedStates bound what a packed connection holds: the
// handshake of a client (CLOSE -> SYN_SENT -> ESTABLISHED) or a server
// (LISTEN -> SYN_RECV -> ESTABLISHED) and a little more.
const (
	maxPackedSteps  = 3
	maxPackedStates = 4
)

// Flags of a packedConn: the role in the low two bits, then booleans.
const (
	packedPartial = 1 << (2 + iota)
	packedIncomplete
	packedSinceUnknown
	packedSeeded
	packedRoleInferred
)

// packedConn is a Connection at rest, packed: 48 bytes.
type packedConn struct {
	cookie uint64 // 0: a free slot
	start  int64
	// later are the times of the state steps after the first (which is at
	// start), ns after start; stepFT the steps' states, from << 4 | to.
	later  [maxPackedSteps - 1]uint32
	ctx    uint32 // index into packedStore.ctxs
	raddr  [4]byte
	lport  uint16
	rport  uint16
	srtt   uint32 // SRTT and HandshakeRTT, equal while at rest
	states uint16 // 4 bits each, the first in the low bits
	stepFT [maxPackedSteps]uint8
	counts uint8 // number of states << 4 | number of steps
	flags  uint8
	// bytes is BytesSent << 4 | BytesReceived: at ESTABLISHED the kernel's
	// counters hold the SYN at most.
	bytes uint8
}

// packedCtx is what many connections share: their host address, namespace
// and owner. Interned, so that a packed connection holds an index.
type packedCtx struct {
	laddr  netip.Addr
	netns  uint32
	pid    uint32
	uid    uint32
	cgroup uint64
	comm   string
}

// maxPackedCtxs bounds the interned contexts; past it, connections with a
// new context stay unpacked.
const maxPackedCtxs = 1 << 16

// packedChunk is how many packedConns one slab chunk holds: the slab grows a
// chunk at a time instead of doubling.
const packedChunk = 4096

// packedStore is a hash table of packed connections: a slab in chunks, and
// an index from cookie to slab position with open addressing (linear
// probing, at most half full), so that a packed connection costs its 48 bytes plus 8 to 16
// of index and nothing for the garbage collector to scan.
type packedStore struct {
	chunks [][]packedConn
	free   []uint32 // free slab positions
	used   int      // slab positions ever handed out
	n      int      // packed connections now
	index  []uint32 // slab position + 1; 0: empty
	cursor int      // where evictOne looks next

	ctxs     []packedCtx
	ctxIndex map[packedCtx]uint32
}

func (s *packedStore) at(pos uint32) *packedConn {
	return &s.chunks[pos/packedChunk][pos%packedChunk]
}

func packedHash(cookie uint64) uint64 { return cookie * 0x9E3779B97F4A7C15 }

// find returns the index slot of cookie, and whether it is there.
func (s *packedStore) find(cookie uint64) (int, bool) {
	if len(s.index) == 0 {
		return 0, false
	}
	mask := uint64(len(s.index) - 1)
	for i := packedHash(cookie) >> 32 & mask; ; i = (i + 1) & mask {
		v := s.index[i]
		if v == 0 {
			return int(i), false
		}
		if s.at(v-1).cookie == cookie {
			return int(i), true
		}
	}
}

// has says whether cookie is packed here.
func (s *packedStore) has(cookie uint64) bool {
	_, ok := s.find(cookie)
	return ok
}

// add takes a slab position for cookie, which must not be here already.
func (s *packedStore) add(cookie uint64) *packedConn {
	if 2*(s.n+1) > len(s.index) {
		s.grow()
	}
	var pos uint32
	if k := len(s.free); k > 0 {
		pos = s.free[k-1]
		s.free = s.free[:k-1]
	} else {
		if s.used == len(s.chunks)*packedChunk {
			s.chunks = append(s.chunks, make([]packedConn, packedChunk))
		}
		pos = uint32(s.used)
		s.used++
	}
	slot, _ := s.find(cookie)
	s.index[slot] = pos + 1
	s.n++
	cc := s.at(pos)
	cc.cookie = cookie
	return cc
}

func (s *packedStore) grow() {
	old := s.index
	s.index = make([]uint32, max(2*len(old), 1024))
	mask := uint64(len(s.index) - 1)
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := packedHash(s.at(v-1).cookie) >> 32 & mask
		for s.index[i] != 0 {
			i = (i + 1) & mask
		}
		s.index[i] = v
	}
}

// remove takes the packed connection in index slot out, and returns it
// (valid until the next add).
func (s *packedStore) remove(slot int) packedConn {
	pos := s.index[slot] - 1
	cc := *s.at(pos)
	*s.at(pos) = packedConn{}
	s.free = append(s.free, pos)
	s.n--
	// Backward-shift deletion: pull later entries of the probe run into
	// the hole, so that lookups never need tombstones.
	mask := len(s.index) - 1
	hole := slot
	for i := (slot + 1) & mask; s.index[i] != 0; i = (i + 1) & mask {
		home := int(packedHash(s.at(s.index[i]-1).cookie) >> 32 & uint64(mask))
		// Move entry i into the hole if its home is not in (hole, i].
		if (i-home)&mask >= (i-hole)&mask {
			s.index[hole] = s.index[i]
			hole = i
		}
	}
	s.index[hole] = 0
	return cc
}

// any returns the index slot of some packed connection, moving round the
// slab from call to call; -1 when there is none.
func (s *packedStore) any() int {
	if s.n == 0 {
		return -1
	}
	for range s.used {
		if s.cursor >= s.used {
			s.cursor = 0
		}
		cc := s.at(uint32(s.cursor))
		s.cursor++
		if cc.cookie != 0 {
			slot, _ := s.find(cc.cookie)
			return slot
		}
	}
	return -1
}

// each calls fn for every packed connection.
func (s *packedStore) each(fn func(*packedConn)) {
	for pos := 0; pos < s.used; pos++ {
		if cc := s.at(uint32(pos)); cc.cookie != 0 {
			fn(cc)
		}
	}
}

// intern returns the index of ctx, adding it if there is room.
func (s *packedStore) intern(ctx packedCtx) (uint32, bool) {
	if i, ok := s.ctxIndex[ctx]; ok {
		return i, true
	}
	if len(s.ctxs) >= maxPackedCtxs {
		return 0, false
	}
	if s.ctxIndex == nil {
		s.ctxIndex = make(map[packedCtx]uint32)
	}
	i := uint32(len(s.ctxs))
	s.ctxs = append(s.ctxs, ctx)
	s.ctxIndex[ctx] = i
	return i, true
}

// canPack says whether conn can be packed and unpacked exactly: at rest
// in ESTABLISHED, and with nothing a packedConn does not hold.
func canPack(conn *Connection) bool {
	if conn.closed || conn.watched || conn.Evicted || conn.LastState() != StateEstablished ||
		conn.ClosedBy != ClosedByNone || conn.SynRetries != 0 || conn.SynAckRetries != 0 || conn.Retransmits != 0 ||
		conn.RSTSent || conn.RSTReceived || conn.rstSentLive || conn.RSTReason != "" || conn.Errno != 0 ||
		conn.HalfClose || conn.HalfOpen || conn.StepsDropped != 0 || conn.Reason != "" ||
		len(conn.States) > maxPackedStates || len(conn.Steps) > maxPackedSteps ||
		!conn.LAddr.Is4() || !conn.RAddr.Is4() || conn.SRTT != conn.HandshakeRTT ||
		conn.BytesSent > 15 || conn.BytesReceived > 15 || conn.SegsRetrans != 0 ||
		conn.lastSyn != conn.Start || len(conn.Steps) > 0 && conn.Steps[0].Time != conn.Start {
		return false
	}
	for _, st := range conn.States {
		if st > 15 { // packed in 4 bits; the decoder passes what the kernel wrote
			return false
		}
	}
	end := conn.Start
	for _, st := range conn.Steps {
		if st.Kind != StepState || st.TimewaitSocket || st.N != 0 || st.Since != 0 || st.Errno != 0 ||
			st.RSTReason != "" || st.NoSocket || st.Time < conn.Start || st.Time-conn.Start > 0xffffffff ||
			st.From > 15 || st.To > 15 {
			return false
		}
		end = st.Time
	}
	return conn.End == end && conn.Handshake == packedHandshake(conn.Role, conn.Partial, conn.Start, conn.Steps)
}

// packedHandshake is Connection.Handshake as the correlator sets it: for a
// client seen from its start, connect() to ESTABLISHED.
func packedHandshake(role Role, partial bool, start int64, steps []Step) int64 {
	if role != RoleClient || partial {
		return -1
	}
	for _, st := range steps {
		if st.From == StateSynSent && st.To == StateEstablished {
			return st.Time - start
		}
	}
	return -1
}

// pack packs conn and takes it off the live table, if canPack allows
// and there is room for its context.
func (c *Correlator) pack(conn *Connection) bool {
	if !canPack(conn) {
		return false
	}
	ctx, ok := c.packed.intern(packedCtx{laddr: conn.LAddr, netns: conn.NetNS, pid: conn.PID, uid: conn.UID,
		cgroup: conn.Cgroup, comm: conn.Comm})
	if !ok {
		return false
	}
	cc := c.packed.add(conn.Cookie)
	cc.start = conn.Start
	cc.ctx = ctx
	cc.raddr = conn.RAddr.As4()
	cc.lport, cc.rport = conn.LPort, conn.RPort
	cc.srtt = conn.SRTT
	cc.bytes = uint8(conn.BytesSent)<<4 | uint8(conn.BytesReceived)
	for i, s := range conn.States {
		cc.states |= uint16(s) << (4 * i)
	}
	for i, st := range conn.Steps {
		if i > 0 {
			cc.later[i-1] = uint32(st.Time - conn.Start)
		}
		cc.stepFT[i] = uint8(st.From)<<4 | uint8(st.To)
	}
	cc.counts = uint8(len(conn.States))<<4 | uint8(len(conn.Steps))
	cc.flags = uint8(conn.Role)
	for _, f := range []struct {
		on   bool
		flag uint8
	}{{conn.Partial, packedPartial}, {conn.Incomplete, packedIncomplete}, {conn.sinceUnknown, packedSinceUnknown},
		{conn.seeded, packedSeeded}, {conn.RoleInferred, packedRoleInferred}} {
		if f.on {
			cc.flags |= f.flag
		}
	}
	c.drop(conn)
	return true
}

// unpack unpacks the connection with cookie, if it is packed, back into the
// live table as the most recently active; nil if it is not packed.
func (c *Correlator) unpack(cookie uint64) *Connection {
	slot, ok := c.packed.find(cookie)
	if !ok {
		return nil
	}
	return c.unpackSlot(slot)
}

func (c *Correlator) unpackSlot(slot int) *Connection {
	cc := c.packed.remove(slot)
	ctx := &c.packed.ctxs[cc.ctx]
	conn := c.alloc()
	conn.Cookie, conn.Start, conn.End = cc.cookie, cc.start, cc.start
	conn.lastSyn = cc.start
	conn.LAddr, conn.RAddr = ctx.laddr, netip.AddrFrom4(cc.raddr)
	conn.LPort, conn.RPort = cc.lport, cc.rport
	conn.NetNS, conn.PID, conn.UID, conn.Cgroup, conn.Comm = ctx.netns, ctx.pid, ctx.uid, ctx.cgroup, ctx.comm
	conn.Role = Role(cc.flags & 3)
	conn.Partial = cc.flags&packedPartial != 0
	conn.Incomplete = cc.flags&packedIncomplete != 0
	conn.sinceUnknown = cc.flags&packedSinceUnknown != 0
	conn.seeded = cc.flags&packedSeeded != 0
	conn.RoleInferred = cc.flags&packedRoleInferred != 0
	conn.SRTT, conn.HandshakeRTT = cc.srtt, cc.srtt
	conn.BytesSent, conn.BytesReceived = uint64(cc.bytes>>4), uint64(cc.bytes&15)
	for i := range int(cc.counts >> 4) {
		conn.States = append(conn.States, State(cc.states>>(4*i)&15))
	}
	for i := range int(cc.counts & 15) {
		t := cc.start
		if i > 0 {
			t += int64(cc.later[i-1])
		}
		conn.Steps = append(conn.Steps, Step{Time: t, Kind: StepState, From: State(cc.stepFT[i] >> 4),
			To: State(cc.stepFT[i] & 15)})
		conn.End = t
	}
	conn.Handshake = packedHandshake(conn.Role, conn.Partial, conn.Start, conn.Steps)
	conn.stateSince = conn.End
	c.live[conn.Cookie] = conn
	c.open.pushBack(conn)
	return conn
}

// packIdle packs the connections idle for PackAfter. The open list is in
// order of activity, so they are at its head; one that can't be packed
// (IPv6, in a watched state…) is moved to the tail as if active, so that it
// is looked at again only after another PackAfter, not at every Advance.
func (c *Correlator) packIdle(now int64) {
	for conn := c.open.head; conn != nil && now-max(conn.End, conn.packChecked) >= c.cfg.PackAfter; {
		next := conn.next
		if !c.pack(conn) {
			conn.packChecked = now
			c.open.remove(conn)
			c.open.pushBack(conn)
		}
		conn = next
	}
}

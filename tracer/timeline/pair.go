// Pairing: when both ends of a connection are on this host (loopback, or
// two network namespaces joined by a veth pair), each end is a socket of
// its own with its own record. The Pairer sits between the correlator's
// emit and the output: it holds a record that may have a peer for a short,
// bounded while, and lets it out with its peer when the peer's record comes.

package timeline

import (
	"encoding/binary"
	"net/netip"
)

// PairConfig bounds the pairing stage.
type PairConfig struct {
	// Wait (ns) is the longest a record is held for its peer's record.
	// Both ends usually close within milliseconds of each other.
	Wait int64
	// MaxHeld bounds the records held at once; past it the oldest goes out
	// unpaired.
	MaxHeld int
}

// DefaultPairConfig is what the CLI uses unless told otherwise.
func DefaultPairConfig() PairConfig { return PairConfig{Wait: 1e9, MaxHeld: 1 << 16} }

// Pairer matches the two records of a connection whose ends are both on
// this host: A's (laddr, lport, raddr, rport) is B's (raddr, rport, laddr,
// lport), in one network namespace or in two. It is not safe for
// concurrent use; like the correlator it runs on the tracer's goroutine.
type Pairer struct {
	cfg PairConfig
	// out receives every record once: alone (peer nil), or with its peer,
	// the one held first as c. Both are valid only during the call.
	out func(c, peer *Connection)

	byKey  map[uint64]*heldRecord // held records, chained by pairKey
	queue  heldQueue              // held records, oldest (first due) first
	held   int
	free   []*heldRecord
	now    int64 // latest time seen: record ends and Advance
	paired uint64
}

// heldRecord is a copy of a record waiting for its peer: the correlator
// recycles its own once emit returns.
type heldRecord struct {
	conn       Connection
	key        uint64
	due        int64
	prev, next *heldRecord // queue
	sameKey    *heldRecord // chain of the byKey entry
}

// NewPairer returns a pairing stage that hands records to out.
func NewPairer(cfg PairConfig, out func(c, peer *Connection)) *Pairer {
	def := DefaultPairConfig()
	if cfg.Wait < 0 {
		cfg.Wait = 0
	}
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = def.MaxHeld
	}
	return &Pairer{cfg: cfg, out: out, byKey: make(map[uint64]*heldRecord)}
}

// Paired is the number of records let out with their peer (two a pair).
func (p *Pairer) Paired() uint64 { return p.paired }

// Held is the number of records waiting for their peer now.
func (p *Pairer) Held() int { return p.held }

// Add takes a record from the correlator's emit.
func (p *Pairer) Add(c *Connection) {
	p.now = max(p.now, c.End)
	if !mayHavePeer(c) {
		p.out(c, nil)
		return
	}
	k := pairKey(c)
	if h := p.match(k, c); h != nil {
		p.unhold(h)
		setPeer(&h.conn, c)
		setPeer(c, &h.conn)
		p.paired += 2
		p.out(&h.conn, c)
		p.recycle(h)
		return
	}
	if p.cfg.Wait == 0 {
		p.out(c, nil)
		return
	}
	if p.held >= p.cfg.MaxHeld {
		p.release(p.queue.head)
	}
	h := p.alloc()
	c.cloneInto(&h.conn)
	h.key, h.due = k, p.now+p.cfg.Wait
	h.sameKey = p.byKey[k]
	p.byKey[k] = h
	p.queue.pushBack(h)
	p.held++
}

// Advance lets out, unpaired, the records held since before now - Wait.
// Call it regularly, also when no records come.
func (p *Pairer) Advance(now int64) {
	p.now = max(p.now, now)
	for h := p.queue.head; h != nil && h.due <= p.now; h = p.queue.head {
		p.release(h)
	}
}

// Flush lets out every record held. Call it after the correlator's Flush.
func (p *Pairer) Flush() {
	for p.queue.head != nil {
		p.release(p.queue.head)
	}
}

// mayHavePeer: only a connection whose handshake completed has a socket
// at the other end (a refused or unanswered connect() has none), and only
// a full 4-tuple can be matched.
func mayHavePeer(c *Connection) bool {
	if c.Role == RoleListener || c.LPort == 0 || c.RPort == 0 || !known(c.LAddr) || !known(c.RAddr) {
		return false
	}
	if c.LPort == c.RPort && c.LAddr.Unmap() == c.RAddr.Unmap() {
		return false // connected to itself: one socket
	}
	for _, s := range c.States {
		switch s {
		case StateEstablished, StateFinWait1, StateFinWait2, StateCloseWait, StateClosing, StateLastAck, StateTimeWait:
			return true
		}
	}
	return false
}

// pairKey hashes the connection's two endpoints so that both ends of a
// connection have the same key: a sum, which does not depend on the order.
// Keys may collide; isPeer then tells. A uint64 key keeps the map cheap.
func pairKey(c *Connection) uint64 {
	return endpointHash(c.LAddr, c.LPort) + endpointHash(c.RAddr, c.RPort)
}

func endpointHash(a netip.Addr, port uint16) uint64 {
	// A dual-stack socket sees an IPv4 peer as ::ffff:a.b.c.d.
	b := a.Unmap().As16()
	return mix64(binary.BigEndian.Uint64(b[:8]) ^ mix64(binary.BigEndian.Uint64(b[8:])^uint64(port)<<48))
}

// mix64 is SplitMix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// isPeer: b is the other end of a. Two loopback ends are in one namespace
// (each namespace has its own 127.0.0.1); other addresses may be in two,
// joined by a veth pair. Peers live at the same time: the 4-tuple of a
// closed connection can be used again (TIME_WAIT reuse), by records that
// do not overlap.
func isPeer(a, b *Connection) bool {
	if a.Cookie == b.Cookie || a.LPort != b.RPort || a.RPort != b.LPort ||
		a.LAddr.Unmap() != b.RAddr.Unmap() || a.RAddr.Unmap() != b.LAddr.Unmap() {
		return false
	}
	if a.NetNS != b.NetNS && (a.LAddr.Unmap().IsLoopback() || a.RAddr.Unmap().IsLoopback()) {
		return false
	}
	return a.Start <= b.End && b.Start <= a.End
}

// match finds the held peer of c, the nearest in time if several.
func (p *Pairer) match(k uint64, c *Connection) *heldRecord {
	var best *heldRecord
	var bestGap int64
	for h := p.byKey[k]; h != nil; h = h.sameKey {
		if !isPeer(&h.conn, c) {
			continue
		}
		gap := h.conn.Start - c.Start
		if gap < 0 {
			gap = -gap
		}
		if best == nil || gap < bestGap {
			best, bestGap = h, gap
		}
	}
	return best
}

func setPeer(c, peer *Connection) {
	c.PeerCookie, c.PeerPID, c.PeerComm = peer.Cookie, peer.PID, peer.Comm
}

// release lets a held record out without its peer.
func (p *Pairer) release(h *heldRecord) {
	p.unhold(h)
	p.out(&h.conn, nil)
	p.recycle(h)
}

// unhold takes h off the queue and its key's chain.
func (p *Pairer) unhold(h *heldRecord) {
	p.queue.remove(h)
	p.held--
	first := p.byKey[h.key]
	if first == h {
		if h.sameKey == nil {
			delete(p.byKey, h.key)
		} else {
			p.byKey[h.key] = h.sameKey
		}
	} else {
		for prev := first; prev != nil; prev = prev.sameKey {
			if prev.sameKey == h {
				prev.sameKey = h.sameKey
				break
			}
		}
	}
	h.sameKey = nil
}

// maxPairFree bounds the held records kept for reuse: enough for what one
// tick lets out at 80,000 records a second (ticks come every 100 ms at most),
// a few MB at most after a burst.
const maxPairFree = 8192

func (p *Pairer) alloc() *heldRecord {
	if n := len(p.free); n > 0 {
		h := p.free[n-1]
		p.free = p.free[:n-1]
		return h
	}
	return &heldRecord{}
}

func (p *Pairer) recycle(h *heldRecord) {
	states, steps := h.conn.States[:0], h.conn.Steps[:0]
	h.conn = Connection{States: states, Steps: steps} // nothing kept alive through it
	if len(p.free) < maxPairFree {
		p.free = append(p.free, h)
	}
}

// heldQueue is the intrusive list of held records in the order they are
// due: each is due Wait after it came, and p.now never goes back.
type heldQueue struct{ head, tail *heldRecord }

func (q *heldQueue) pushBack(h *heldRecord) {
	h.prev, h.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = h
	} else {
		q.head = h
	}
	q.tail = h
}

func (q *heldQueue) remove(h *heldRecord) {
	if h.prev != nil {
		h.prev.next = h.next
	} else {
		q.head = h.next
	}
	if h.next != nil {
		h.next.prev = h.prev
	} else {
		q.tail = h.prev
	}
	h.prev, h.next = nil, nil
}

// Host-side causes: what the host did to a connection rather than what the
// connection did. Packets the kernel dropped (skb:kfree_skb, with its
// reason) and system calls that failed in the application (connect(),
// bind(), listen(), accept()) arrive as events of their own, sent at once
// while the socket's transitions may still be queued in the kernel: they
// are kept here as notes, by socket cookie or, with no socket, by 4-tuple,
// and joined to the record when it ends (finish). Notes never touch a live
// record, so packing, batching and eviction see nothing of them.

package timeline

import "sort"

// DropCount is how many TCP packets of a connection the kernel dropped on
// this host for one reason (enum skb_drop_reason, e.g. NETFILTER_DROP).
type DropCount struct {
	Reason string
	Count  int
}

// PortUse: a namespace's use of its local port range towards one
// destination, counted by a socket scan when connect() found no free port.
type PortUse struct {
	Known bool
	// Range is the size of ip_local_port_range; InUse the sockets towards
	// the destination; TimeWait how many of them are in TIME_WAIT.
	Range, InUse, TimeWait int
	// NotRescanned: not counted (Known false) as the namespace's scans
	// were rate-limited (calls.go).
	NotRescanned bool
}

// note is what the host said of one socket or flow before its record ended.
type note struct {
	at int64 // last added, Unix ns
	// drops, each with its time: a record takes those up to its last
	// event, so a late segment to a socket already gone (NO_SOCKET) counts
	// for no record, whenever its event is read. Past maxNoteDrops they
	// are counted in extra, taken whatever their time.
	drops   []dropAt
	extra   []DropCount
	syscall Syscall
	errno   uint16
	portUse PortUse
}

type dropAt struct {
	t      int64
	reason string
}

// maxNotes bounds the notes kept; past it new ones are counted and lost
// (Stats.NotesLost). maxDropReasons bounds the reasons kept per note.
const (
	maxNotes       = 8192
	maxDropReasons = 8
	maxNoteDrops   = 256
	noteTTL        = 120e9 // a note whose socket is gone is kept this long
)

func (n *note) addDrop(t int64, reason string) {
	if len(n.drops) < maxNoteDrops {
		n.drops = append(n.drops, dropAt{t, reason})
		return
	}
	n.extra = addDropCount(n.extra, reason, 1)
}

// addDropCount adds to a reason's count, at most maxDropReasons reasons
// (the rest as OTHER).
func addDropCount(counts []DropCount, reason string, n int) []DropCount {
	for i := range counts {
		if counts[i].Reason == reason {
			counts[i].Count += n
			return counts
		}
	}
	if len(counts) >= maxDropReasons {
		return addDropCount(counts[:maxDropReasons-1], "OTHER", n+counts[maxDropReasons-1].Count)
	}
	return append(counts, DropCount{reason, n})
}

// noteFor finds or makes the note of a cookie or, with cookie 0, a flow.
func (c *Correlator) noteFor(cookie uint64, k flowKey, now int64) *note {
	var n *note
	if cookie != 0 {
		n = c.notes[cookie]
	} else {
		n = c.flowNotes[k]
	}
	if n == nil {
		if len(c.notes)+len(c.flowNotes) >= maxNotes {
			c.stats.NotesLost++
			return nil
		}
		n = &note{}
		if cookie != 0 {
			c.notes[cookie] = n
		} else {
			c.flowNotes[k] = n
		}
	}
	n.at = now
	return n
}

// addDrop records a dropped TCP packet: on its socket's note, or by flow
// when the kernel had no socket for it (a SYN a firewall dropped on input)
// or the socket was a listener (the flow is the client's).
func (c *Correlator) addDrop(e *Event) {
	c.stats.addDrop(e.DropReason)
	if e.NewState == StateListen {
		c.observeListener(e.NetNS, e.LAddr, e.LPort, e.Cookie, e.Queue, e.Time)
	}
	cookie := e.Cookie
	if e.NewState == StateListen || e.NoSocket {
		cookie = 0
	}
	k := flowKey{laddr: e.LAddr, raddr: e.RAddr, lport: e.LPort, rport: e.RPort, netns: e.NetNS}
	if n := c.noteFor(cookie, k, e.Time); n != nil {
		n.addDrop(e.Time, e.DropReason)
	}
}

// joinNotes adds to a record what the host said of it: its cookie's note,
// and the notes of its flow in either direction (a packet dropped on its
// way in names the receiver as the local end).
func (c *Correlator) joinNotes(conn *Connection) {
	if n := c.notes[conn.Cookie]; n != nil {
		conn.join(n)
		delete(c.notes, conn.Cookie)
	}
	if len(c.flowNotes) == 0 {
		return
	}
	k := flowKey{laddr: conn.LAddr, raddr: conn.RAddr, lport: conn.LPort, rport: conn.RPort, netns: conn.NetNS}
	if n := c.flowNotes[k]; n != nil {
		conn.join(n) // kept: the other end's record may want it too
	}
	k.laddr, k.raddr, k.lport, k.rport = k.raddr, k.laddr, k.rport, k.lport
	if n := c.flowNotes[k]; n != nil {
		conn.join(n)
	}
}

func (conn *Connection) join(n *note) {
	for _, d := range n.drops {
		if d.t <= conn.End {
			conn.Drops = addDropCount(conn.Drops, d.reason, 1)
		}
	}
	for _, d := range n.extra {
		conn.Drops = addDropCount(conn.Drops, d.Reason, d.Count)
	}
	sort.SliceStable(conn.Drops, func(i, j int) bool { return conn.Drops[i].Count > conn.Drops[j].Count })
	if n.errno != 0 {
		conn.Syscall, conn.SyscallErrno = n.syscall, n.errno
		conn.PortUse = n.portUse
	}
}

// pruneNotes forgets the notes of sockets gone for noteTTL, and flow notes
// that old. A note of a live socket stays until its record ends.
func (c *Correlator) pruneNotes(now int64) {
	for cookie, n := range c.notes {
		if now-n.at > noteTTL && c.live[cookie] == nil && !c.packed.has(cookie) {
			delete(c.notes, cookie)
		}
	}
	for k, n := range c.flowNotes {
		if now-n.at > noteTTL {
			delete(c.flowNotes, k)
		}
	}
}

// DroppedBy reports whether the kernel dropped packets of the record for
// a reason matching any of reasons, and how many.
func (conn *Connection) DroppedBy(reasons ...string) int {
	n := 0
	for _, d := range conn.Drops {
		for _, r := range reasons {
			if d.Reason == r {
				n += d.Count
			}
		}
	}
	return n
}

// DropsTotal is how many of the record's packets the kernel dropped here.
func (conn *Connection) DropsTotal() int {
	n := 0
	for _, d := range conn.Drops {
		n += d.Count
	}
	return n
}

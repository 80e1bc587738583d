package timeline

// Config bounds the correlator's memory and sets its timing.
type Config struct {
	// MaxConnections caps the live table; when full, a connection at rest
	// (packed) or else the least recently active one is emitted early
	// (Evicted, outcome open) and counted.
	MaxConnections int
	// MaxSteps caps the retransmit/RST/error steps kept per connection;
	// state changes are always kept. Steps beyond it are counted.
	MaxSteps int
	// CloseGrace is how long (ns) a connection that reached CLOSE is held
	// before it is emitted: the kernel moves a socket to CLOSE first and only
	// then sends the RST of an abortive close (tcp_disconnect, __tcp_close
	// with unread data) or reports the error, so those events trail CLOSE.
	CloseGrace int64
	// StuckAfter (ns): a connection in CLOSE_WAIT, FIN_WAIT2, SYN_SENT or
	// SYN_RECV for longer raises an alert, repeated at most once per
	// StuckAfter while it stays. 0 disables alerts.
	StuckAfter int64
	// ScansNetNS reports whether the socket scans see a namespace: only
	// orphans of those can be followed after their record is out. nil: none.
	ScansNetNS func(netns uint32) bool
	// FollowTimeWait also follows TIME_WAIT sockets through scans, to
	// report when each ends (AlertTimeWaitEnded): a notice per connection
	// this host closed first, so for --events only.
	FollowTimeWait bool
	// PackAfter (ns): a connection ESTABLISHED with no event for this
	// long is packed to a tenth of its size until its next event (rest.go).
	// 0 never packs.
	PackAfter int64
	// ScanNetNS walks the TCP sockets of one namespace, for the numbers
	// behind a failed bind() or connect() (calls.go); nil: not known.
	ScanNetNS func(netns uint32, fn func(*Socket)) error
	// DropsTraced: the kernel reports dropped packets (kfree_skb with a
	// reason), so a drop not seen here did not happen on this host.
	DropsTraced bool
}

// DefaultConfig is what the CLI uses unless told otherwise.
func DefaultConfig() Config {
	return Config{MaxConnections: 1 << 20, MaxSteps: 64, CloseGrace: 50e6, StuckAfter: 30e9, PackAfter: 5e9}
}

// Correlator builds connection records from events. It is not safe for
// concurrent use. The *Connection handed to emit and the *Alert handed to
// the alert callback are only valid during the call.
type Correlator struct {
	cfg   Config
	emit  func(*Connection)
	alert func(*Alert)

	live map[uint64]*Connection
	// packed holds the connections at rest, packed; they count as live.
	packed packedStore
	// open is the list of live, not yet closed connections, least recently
	// active first;
	// closing is the FIFO of connections in CLOSE waiting out CloseGrace.
	// A connection is on exactly one of them, and on watch too while in a
	// watchable state.
	open, closing list
	watch         watchList
	free          []*Connection

	synAcks   map[flowKey]synAckRetries
	noSocket  map[flowKey]int64 // socketless RSTs sent, by the flow that receives them
	listening map[portKey]int
	lastPrune int64
	// synAcksScanned counts the synAcks entries in a scanned namespace: scans can
	// tell when their request socket is gone.
	synAcksScanned int

	sys     map[uint32]*Sysctls // by namespace (sysctls.go)
	orphans map[uint64]*orphan
	scanGen uint64
	// What the host said of sockets and flows whose records are not out
	// yet (host.go), listeners' accept queues (listener.go), failed
	// calls alerted on (calls.go).
	notes            map[uint64]*note
	flowNotes        map[flowKey]*note
	listeners        map[portKey]*listenerState
	callAlerts       map[callKey]*callAlertState
	scanBudgets      map[uint32]*scanBudget // by namespace (calls.go)
	wantListenerLook bool
	lastHostPrune    int64
	clock            int64 // the latest time Advance was given
	stalls           map[uint64]*stall
	stallGen         uint64

	tw      map[Endpoint]uint64 // TIME_WAIT sockets per remote, last scan
	twTotal uint64
	scanned bool
	// followScan: the scan under way walks the namespaces with followed
	// sockets only (scan.go).
	followScan bool

	stats Stats
}

// New returns a correlator that hands each finished record to emit.
func New(cfg Config, emit func(*Connection)) *Correlator {
	def := DefaultConfig()
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = def.MaxConnections
	}
	if cfg.MaxSteps <= 0 {
		cfg.MaxSteps = def.MaxSteps
	}
	if cfg.CloseGrace < 0 {
		cfg.CloseGrace = 0
	}
	c := &Correlator{
		cfg:        cfg,
		emit:       emit,
		alert:      func(*Alert) {},
		live:       make(map[uint64]*Connection),
		synAcks:    make(map[flowKey]synAckRetries),
		noSocket:   make(map[flowKey]int64),
		listening:  make(map[portKey]int),
		orphans:    make(map[uint64]*orphan),
		tw:         make(map[Endpoint]uint64),
		notes:      make(map[uint64]*note),
		flowNotes:  make(map[flowKey]*note),
		listeners:  make(map[portKey]*listenerState),
		callAlerts: make(map[callKey]*callAlertState),
		stalls:     make(map[uint64]*stall),
	}
	c.stats.ByReason = make(map[string]uint64)
	c.stats.failures = make(map[Endpoint]uint64)
	return c
}

// OnAlert sets the function that receives alerts.
func (c *Correlator) OnAlert(f func(*Alert)) { c.alert = f }

// Stats returns the counters so far.
func (c *Correlator) Stats() Stats { return c.stats }

// Packed is how many of the live connections are at rest, packed.
func (c *Correlator) Packed() int { return c.packed.n }

// Live is the number of connections tracked now.
func (c *Correlator) Live() int { return len(c.live) + c.packed.n }

// MarkLost flags every live connection as incomplete: the kernel dropped
// events while they were open, and any of them may be missing steps.
func (c *Correlator) MarkLost() {
	for _, conn := range c.live {
		conn.Incomplete = true
	}
	c.packed.each(func(cc *packedConn) { cc.flags |= packedIncomplete })
}

// Add feeds one event.
func (c *Correlator) Add(e *Event) {
	c.stats.Events++
	if c.addHostEvent(e) {
		return
	}
	conn := c.recordOf(e)
	if conn == nil {
		return
	}
	conn.End = e.Time
	conn.learnTuple(e)
	if e.PID != 0 {
		// The kernel side sends the best owner it knows; later is better.
		conn.PID, conn.Comm = e.PID, e.Comm
	}
	if e.Cgroup != 0 {
		conn.Cgroup = e.Cgroup
	}
	switch e.Type {
	case EventState:
		conn.UID = e.UID
		c.transition(conn, e)
	case EventRetransmit:
		c.retransmitted(conn, e)
	case EventRSTSent:
		c.rstSent(conn, e)
	case EventRSTReceived:
		conn.RSTReceived = true
		if e.NewState != StateSynSent && c.matchNoSocketRST(conn, e.Time) {
			conn.HalfOpen = true
		}
		c.addStep(conn, Step{Time: e.Time, Kind: StepRSTReceived, From: e.NewState, To: e.NewState})
	case EventError:
		if e.Errno == 0 {
			return // already consumed by the application: nothing to tell
		}
		conn.Errno = e.Errno
		c.addStep(conn, Step{Time: e.Time, Kind: StepError, From: e.NewState, To: e.NewState, Errno: e.Errno})
	}
}

// addHostEvent takes the events that belong to no record of their own:
// drops and failed calls (host.go, calls.go), RSTs sent with no socket,
// SYN+ACK retries of request sockets. It reports whether e was one.
func (c *Correlator) addHostEvent(e *Event) bool {
	switch {
	case e.Type == EventDrop:
		c.addDrop(e)
	case e.Type == EventSyscallError:
		c.syscallFailed(e)
	case e.Cookie == 0:
		if e.Type == EventRSTSent {
			c.stats.ResetsNoSocket++
			c.addNoSocketRST(e)
		}
	case e.Type == EventSynAckRetransmit:
		// The listener's queue at the retry: full, the final ACK was
		// dropped for it.
		c.observeListener(e.NetNS, e.LAddr, e.LPort, 0, e.Queue, e.Time)
		c.addSynAck(e)
	default:
		return false
	}
	return true
}

// recordOf finds or starts the record an event belongs to; nil for the
// stray events of a socket whose record has ended.
func (c *Correlator) recordOf(e *Event) *Connection {
	conn := c.lookup(e.Cookie)
	if conn != nil && !conn.closed && conn != c.open.tail {
		// The open list is kept in order of activity: the least recently
		// active first, to pack and to evict.
		c.open.remove(conn)
		c.open.pushBack(conn)
	}
	if conn != nil && conn.closed && e.Type == EventState {
		// A socket in CLOSE that moves again was reused (connect() after a
		// failed attempt): the old record is complete.
		c.finish(conn)
		conn = nil
	}
	if conn != nil && conn.seeded && e.Type == EventState && isStart(e) {
		// Created by the start-up scan while its first events were still
		// in the ring buffer: it is not partial after all.
		c.drop(conn)
		conn = nil
	}
	if conn == nil {
		if e.Type != EventState && (e.NewState == StateTimeWait || e.NewState == StateClose ||
			e.NewState == StateNewSynRecv) {
			// A timewait or already closed socket whose record has ended.
			c.stats.Stray++
			return nil
		}
		conn = c.start(e)
	}
	conn.seeded = false
	return conn
}

func (c *Correlator) retransmitted(conn *Connection, e *Event) {
	if e.NewState != StateSynSent {
		conn.Retransmits++
		conn.countRetransmit(e)
		c.addStep(conn, Step{Time: e.Time, Kind: StepRetransmit, From: e.NewState, To: e.NewState,
			N: conn.Retransmits, Retrans: e.Retrans, Backoff: e.Backoff})
		return
	}
	conn.SynRetries++
	if c.listeners[portKey{conn.NetNS, conn.RPort}] != nil {
		c.wantListenerLook = true // a listener on this host: was it full?
	}
	c.addStep(conn, Step{Time: e.Time, Kind: StepSynRetransmit, From: e.NewState, To: e.NewState,
		N: conn.SynRetries, Since: e.Time - conn.lastSyn})
	conn.lastSyn = e.Time
}

func (c *Correlator) rstSent(conn *Connection, e *Event) {
	conn.RSTSent = true
	// A timewait socket outliving the connection may answer a late
	// segment with a RST; only the socket's own RST makes the close
	// abortive.
	if e.NewState != StateTimeWait && !conn.rstSentLive {
		conn.rstSentLive = true
		conn.RSTReason = e.RSTReason
	}
	c.addStep(conn, Step{Time: e.Time, Kind: StepRSTSent, From: e.NewState, To: e.NewState,
		RSTReason: e.RSTReason})
}

// Advance emits the connections that reached CLOSE more than CloseGrace
// before now (Unix ns) and raises the alerts that are due. Call it
// regularly, also when no events arrive.
func (c *Correlator) Advance(now int64) {
	c.clock = now
	for conn := c.closing.head; conn != nil && now-conn.closedAt >= c.cfg.CloseGrace; conn = c.closing.head {
		c.finish(conn)
	}
	for conn := c.watch.head; conn != nil && conn.nextAlert <= now; conn = c.watch.head {
		c.raise(conn, now)
		c.watch.remove(conn)
		conn.nextAlert = now + c.cfg.StuckAfter
		c.watch.pushBack(conn)
	}
	if c.cfg.PackAfter > 0 {
		c.packIdle(now)
	}
	if now-c.lastHostPrune > 10e9 {
		c.lastHostPrune = now
		c.pruneNotes(now)
		c.pruneListeners(now)
	}
	if now-c.lastPrune > 1e9 {
		c.lastPrune = now
		c.pruneSynAcks(now, false)
		c.alertSynAcks(now)
	}
}

// Flush emits every connection: the closed ones, then those still open, with
// outcome open. Call it when tracing stops.
func (c *Correlator) Flush() {
	for c.closing.head != nil {
		c.finish(c.closing.head)
	}
	for c.open.head != nil {
		c.finish(c.open.head)
	}
	for slot := c.packed.any(); slot >= 0; slot = c.packed.any() {
		c.finish(c.unpackSlot(slot))
	}
	clear(c.synAcks)
	c.synAcksScanned = 0
}

func (c *Correlator) alloc() *Connection {
	if n := len(c.free); n > 0 {
		conn := c.free[n-1]
		c.free = c.free[:n-1]
		return conn
	}
	return &Connection{Handshake: -1}
}

// list is an intrusive doubly linked list of connections.
type list struct{ head, tail *Connection }

func (l *list) pushBack(c *Connection) {
	c.prev, c.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
}

func (l *list) remove(c *Connection) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if l.head == c {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else if l.tail == c {
		l.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

// lookup finds the live record of cookie, unpacking it if it is at rest.
func (c *Correlator) lookup(cookie uint64) *Connection {
	if conn := c.live[cookie]; conn != nil || c.packed.n == 0 {
		return conn
	}
	return c.unpack(cookie)
}

package timeline

import (
	"net/netip"
	"syscall"
)

// Config bounds the correlator's memory and sets its timing.
type Config struct {
	// MaxConnections caps the live table; when full, the oldest open
	// connection is emitted early (Evicted, outcome open) and counted.
	MaxConnections int
	// MaxSteps caps the retransmit/RST/error steps kept per connection;
	// state changes are always kept. Steps beyond it are counted.
	MaxSteps int
	// CloseGrace is how long (ns) a connection that reached CLOSE is held
	// before it is emitted: the kernel moves a socket to CLOSE first and only
	// then sends the RST of an abortive close (tcp_disconnect, __tcp_close
	// with unread data) or reports the error, so those events trail CLOSE.
	CloseGrace int64
}

// DefaultConfig is what the CLI uses unless told otherwise.
func DefaultConfig() Config {
	return Config{MaxConnections: 262144, MaxSteps: 64, CloseGrace: 50e6}
}

// Stats counts what the correlator saw and did.
type Stats struct {
	Events      uint64
	Connections uint64 // records emitted
	ByOutcome   [numOutcomes]uint64
	Evicted     uint64
	// Stray counts events for sockets whose record had already ended, such
	// as a RST sent by a timewait socket long after its connection closed.
	Stray uint64
	// ResetsNoSocket counts RSTs the stack sent with no socket: a packet to
	// a port nothing listens on.
	ResetsNoSocket uint64
}

// flowKey identifies a connection by its 4-tuple, to join the SYN-ACK
// retransmissions of a request socket to the socket later accepted from it.
type flowKey struct {
	laddr, raddr netip.Addr
	lport, rport uint16
	netns        uint32
}

const maxSynAckKept = 8

type synAckRetries struct {
	times [maxSynAckKept]int64
	n     int
}

type portKey struct {
	netns uint32
	port  uint16
}

// maxPending bounds the SYN-ACK retransmissions waiting for their accepted
// socket; a client that gives up never produces one.
const maxPending = 4096

// synAckTTL: SYN-ACK retries older than this are forgotten (the kernel gives
// up after tcp_synack_retries, 5 by default, about 63 s).
const synAckTTL = 120e9

// Correlator builds connection records from events. It is not safe for
// concurrent use. The *Connection handed to emit is only valid during the
// call: it is recycled afterwards.
type Correlator struct {
	cfg  Config
	emit func(*Connection)

	live map[uint64]*Connection
	// open is the list of live, not yet closed connections, oldest first;
	// closing is the FIFO of connections in CLOSE waiting out CloseGrace.
	// A connection is on exactly one of them.
	open, closing list
	free          []*Connection

	synAcks   map[flowKey]synAckRetries
	listening map[portKey]int
	lastPrune int64

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
	return &Correlator{
		cfg:       cfg,
		emit:      emit,
		live:      make(map[uint64]*Connection),
		synAcks:   make(map[flowKey]synAckRetries),
		listening: make(map[portKey]int),
	}
}

// Stats returns the counters so far.
func (c *Correlator) Stats() Stats { return c.stats }

// Live is the number of connections tracked now.
func (c *Correlator) Live() int { return len(c.live) }

// Add feeds one event.
func (c *Correlator) Add(e *Event) {
	c.stats.Events++
	if e.Cookie == 0 {
		if e.Type == EventRSTSent {
			c.stats.ResetsNoSocket++
		}
		return
	}
	if e.Type == EventSynAckRetransmit {
		c.addSynAck(e)
		return
	}

	conn := c.live[e.Cookie]
	if conn != nil && conn.closedAt != 0 && e.Type == EventState {
		// A socket in CLOSE that moves again was reused (connect() after a
		// failed attempt): the old record is complete.
		c.finish(conn)
		conn = nil
	}
	if conn == nil {
		if e.Type != EventState && (e.NewState == StateTimeWait || e.NewState == StateClose ||
			e.NewState == StateNewSynRecv) {
			// A timewait or already closed socket whose record has ended.
			c.stats.Stray++
			return
		}
		conn = c.start(e)
	}

	conn.End = e.Time
	conn.learnTuple(e)
	if e.PID != 0 {
		// The kernel side sends the best owner it knows; later is better.
		conn.PID, conn.Comm = e.PID, e.Comm
	}

	switch e.Type {
	case EventState:
		conn.UID = e.UID
		c.transition(conn, e)
	case EventRetransmit:
		if e.NewState == StateSynSent {
			conn.SynRetries++
			c.addStep(conn, Step{Time: e.Time, Kind: StepSynRetransmit, From: e.NewState, To: e.NewState,
				N: conn.SynRetries, Since: e.Time - conn.lastSyn})
			conn.lastSyn = e.Time
		} else {
			conn.Retransmits++
			c.addStep(conn, Step{Time: e.Time, Kind: StepRetransmit, From: e.NewState, To: e.NewState,
				N: conn.Retransmits})
		}
	case EventRSTSent:
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
	case EventRSTReceived:
		conn.RSTReceived = true
		c.addStep(conn, Step{Time: e.Time, Kind: StepRSTReceived, From: e.NewState, To: e.NewState})
	case EventError:
		if e.Errno == 0 {
			return // already consumed by the application: nothing to tell
		}
		conn.Errno = e.Errno
		c.addStep(conn, Step{Time: e.Time, Kind: StepError, From: e.NewState, To: e.NewState, Errno: e.Errno})
	}
}

// start creates the record for a cookie seen for the first time.
func (c *Correlator) start(e *Event) *Connection {
	if len(c.live) >= c.cfg.MaxConnections {
		c.evictOldest()
	}
	conn := c.alloc()
	conn.Cookie = e.Cookie
	conn.Start, conn.End = e.Time, e.Time
	conn.LAddr, conn.RAddr = e.LAddr, e.RAddr
	conn.LPort, conn.RPort = e.LPort, e.RPort
	conn.NetNS = e.NetNS
	conn.lastSyn = e.Time

	switch {
	case e.Type == EventState && e.OldState == StateClose && e.NewState == StateSynSent:
		conn.Role = RoleClient
	case e.Type == EventState && e.OldState == StateClose && e.NewState == StateListen:
		conn.Role = RoleListener
	case e.Type == EventState && e.OldState == StateListen && e.NewState == StateSynRecv:
		// Cloned from the listener when the final ACK arrived; the SYN and
		// SYN+ACK lived in a request socket this tracepoint never sees.
		conn.Role = RoleServer
		c.joinSynAcks(conn)
	default:
		conn.Partial = true
		first := e.NewState
		if e.Type == EventState {
			first = e.OldState
		}
		conn.Role = c.guessRole(conn, first)
		conn.States = append(conn.States, first)
	}
	c.live[e.Cookie] = conn
	c.open.pushBack(conn)
	return conn
}

func (c *Correlator) guessRole(conn *Connection, first State) Role {
	switch first {
	case StateListen:
		return RoleListener
	case StateSynSent:
		return RoleClient
	case StateSynRecv:
		return RoleServer
	}
	if c.listening[portKey{conn.NetNS, conn.LPort}] > 0 {
		return RoleServer
	}
	return RoleUnknown
}

func (c *Correlator) transition(conn *Connection, e *Event) {
	step := Step{Time: e.Time, Kind: StepState, From: e.OldState, To: e.NewState}
	switch e.NewState {
	case StateEstablished:
		if conn.Role == RoleClient && e.OldState == StateSynSent && !conn.Partial {
			conn.Handshake = e.Time - conn.Start
		}
	case StateFinWait1, StateFinWait2:
		if conn.ClosedBy == ClosedByNone {
			conn.ClosedBy = ClosedByLocal
		}
	case StateCloseWait, StateLastAck:
		if conn.ClosedBy == ClosedByNone {
			conn.ClosedBy = ClosedByPeer
		}
	case StateClosing:
		conn.ClosedBy = ClosedByBoth
	case StateListen:
		c.listening[portKey{conn.NetNS, conn.LPort}]++
	case StateClose:
		c.closed(conn, e, &step)
	}
	c.addState(conn, step.To)
	c.addStep(conn, step)
}

// closed handles X -> CLOSE: it decides whether the connection really went to
// a timewait socket, and parks the record for CloseGrace.
func (c *Correlator) closed(conn *Connection, e *Event, step *Step) {
	if e.Errno != 0 {
		conn.Errno = e.Errno
	}
	if e.OldState == StateListen {
		k := portKey{conn.NetNS, conn.LPort}
		if c.listening[k]--; c.listening[k] <= 0 {
			delete(c.listening, k)
		}
	}
	// tcp_time_wait() replaces the full socket with a timewait socket and the
	// tracepoint reports X -> CLOSE; no transition into TIME_WAIT is ever
	// reported. SOCK_DONE means the peer's FIN was processed: real
	// TIME_WAIT. SOCK_DEAD alone: close() orphaned the socket and our FIN
	// was acked, so the timewait socket holds FIN_WAIT2 until the peer's FIN
	// or tcp_fin_timeout. A reset or a timeout is no handoff.
	if e.Errno == 0 && !conn.RSTReceived {
		switch {
		case e.SockDone && (e.OldState == StateFinWait1 || e.OldState == StateFinWait2 || e.OldState == StateClosing):
			step.To, step.TimewaitSocket = StateTimeWait, true
		case e.SockDead && e.OldState == StateFinWait2:
			step.To, step.TimewaitSocket = StateFinWait2, true
		}
	}
	conn.closedAt = e.Time
	conn.closeFrom = e.OldState
	c.open.remove(conn)
	c.closing.pushBack(conn)
}

func (c *Correlator) addState(conn *Connection, s State) {
	if n := len(conn.States); n > 0 && conn.States[n-1] == s {
		return
	}
	if len(conn.States) >= 2*c.cfg.MaxSteps {
		return
	}
	conn.States = append(conn.States, s)
}

func (c *Correlator) addStep(conn *Connection, s Step) {
	limit := c.cfg.MaxSteps
	if s.Kind == StepState {
		// State changes are few in a real connection; keep them all, within
		// a hard bound against nonsense input.
		limit = 2 * c.cfg.MaxSteps
	}
	if len(conn.Steps) >= limit {
		conn.StepsDropped++
		return
	}
	conn.Steps = append(conn.Steps, s)
}

func (c *Correlator) addSynAck(e *Event) {
	if l := c.live[e.Cookie]; l != nil {
		l.SynAckRetries++ // the listener's own count, across all its requests
		l.End = e.Time
	}
	k := flowKey{laddr: e.LAddr, raddr: e.RAddr, lport: e.LPort, rport: e.RPort, netns: e.NetNS}
	r, ok := c.synAcks[k]
	if !ok && len(c.synAcks) >= maxPending {
		c.pruneSynAcks(e.Time, true)
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
	delete(c.synAcks, k)
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
			delete(c.synAcks, k)
			force = false
		}
	}
}

// Advance emits the connections that reached CLOSE more than CloseGrace
// before now (Unix ns). Call it regularly, also when no events arrive.
func (c *Correlator) Advance(now int64) {
	for conn := c.closing.head; conn != nil && now-conn.closedAt >= c.cfg.CloseGrace; conn = c.closing.head {
		c.finish(conn)
	}
	if now-c.lastPrune > 1e9 {
		c.lastPrune = now
		c.pruneSynAcks(now, false)
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
	clear(c.synAcks)
}

func (c *Correlator) evictOldest() {
	conn := c.open.head
	if conn == nil {
		conn = c.closing.head
	}
	if conn == nil {
		return
	}
	conn.Evicted = true
	c.stats.Evicted++
	c.finish(conn)
}

// finish decides the outcome, emits the record and recycles it.
func (c *Correlator) finish(conn *Connection) {
	conn.Outcome = outcome(conn)
	if conn.Outcome != OutcomeClosed {
		conn.ClosedBy = ClosedByNone
	} else if conn.ClosedBy == ClosedByNone {
		conn.ClosedBy = ClosedByLocal // a listener, closed by its owner
	}
	if conn.closedAt != 0 {
		c.closing.remove(conn)
	} else {
		c.open.remove(conn)
	}
	delete(c.live, conn.Cookie)
	c.stats.Connections++
	c.stats.ByOutcome[conn.Outcome]++
	c.emit(conn)
	conn.reset()
	c.free = append(c.free, conn)
}

func outcome(conn *Connection) Outcome {
	if conn.closedAt == 0 {
		return OutcomeOpen
	}
	from := conn.closeFrom
	errno := syscall.Errno(conn.Errno)
	rstSentLive := conn.rstSentLive
	switch from {
	case StateListen:
		return OutcomeClosed
	case StateSynSent:
		switch {
		case conn.RSTReceived || errno == syscall.ECONNREFUSED:
			return OutcomeRefused
		case errno == syscall.ETIMEDOUT:
			return OutcomeTimeout
		case rstSentLive:
			return OutcomeResetLocal
		}
		return OutcomeAborted
	case StateSynRecv:
		switch {
		case conn.RSTReceived:
			return OutcomeResetByPeer
		case errno == syscall.ETIMEDOUT:
			return OutcomeTimeout
		case rstSentLive:
			return OutcomeResetLocal
		}
		return OutcomeAborted
	}
	switch {
	case conn.RSTReceived:
		return OutcomeResetByPeer
	case errno == syscall.ETIMEDOUT:
		return OutcomeTimeout
	case rstSentLive:
		return OutcomeResetLocal
	}
	return OutcomeClosed
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

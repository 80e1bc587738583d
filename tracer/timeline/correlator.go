package timeline

import (
	"math"
	"net/netip"
	"slices"
	"syscall"
)

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
	// ScanNetNS is the namespace the socket scans see: only orphans of that
	// namespace can be followed after their record is out.
	ScanNetNS uint32
	// FollowTimeWait also follows TIME_WAIT sockets through scans, to
	// report when each ends (AlertTimeWaitEnded): a notice per connection
	// this host closed first, so for --events only.
	FollowTimeWait bool
	// FreezeAfter (ns): a connection ESTABLISHED with no event for this
	// long is packed to a tenth of its size until its next event (cold.go).
	// 0 never packs.
	FreezeAfter int64
}

// DefaultConfig is what the CLI uses unless told otherwise.
func DefaultConfig() Config {
	return Config{MaxConnections: 1 << 20, MaxSteps: 64, CloseGrace: 50e6, StuckAfter: 30e9, FreezeAfter: 5e9}
}

// Stats counts what the correlator saw and did.
type Stats struct {
	Events      uint64
	Connections uint64 // records emitted
	ByOutcome   [numOutcomes]uint64
	// ByReason counts records by Reason.
	ByReason map[string]uint64
	Evicted  uint64
	// Stray counts events for sockets whose record had already ended, such
	// as a RST sent by a timewait socket long after its connection closed.
	Stray uint64
	// ResetsNoSocket counts RSTs the stack sent with no socket: a packet to
	// a port nothing listens on.
	ResetsNoSocket uint64
	Alerts         uint64
	// OrphansUnwatched counts orphaned FIN_WAIT2 sockets not followed
	// because the table was full or scans can't see their namespace.
	OrphansUnwatched uint64
	// Handshakes is a histogram of client handshake times (see Percentile).
	Handshakes Histogram
	// failures counts failed connections per remote endpoint (bounded).
	failures map[Endpoint]uint64
}

// TopFailures returns up to n remote endpoints with the most failed
// connections (any outcome but closed and open), most first. The clients of
// accepted connections are counted per address, with port 0.
func (s *Stats) TopFailures(n int) []EndpointCount {
	return topN(s.failures, n)
}

func topN(m map[Endpoint]uint64, n int) []EndpointCount {
	out := make([]EndpointCount, 0, len(m))
	for e, c := range m {
		out = append(out, EndpointCount{e, c})
	}
	slices.SortFunc(out, func(a, b EndpointCount) int {
		if a.Count != b.Count {
			return int(b.Count) - int(a.Count)
		}
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return out[:min(n, len(out))]
}

// maxFailureEndpoints bounds the per-endpoint failure counts.
const maxFailureEndpoints = 4096

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
}

type portKey struct {
	netns uint32
	port  uint16
}

// maxPending bounds the SYN-ACK retransmissions waiting for their accepted
// socket (a client that gives up never produces one) and the socketless
// RSTs waiting to be matched to the connection that receives them.
const maxPending = 4096

// synAckTTL: SYN-ACK retries older than this are forgotten (the kernel gives
// up after tcp_synack_retries, 5 by default, about 63 s).
const synAckTTL = 120e9

// noSocketTTL: a socketless RST is matched to a RST received within this.
const noSocketTTL = 1e9

// Correlator builds connection records from events. It is not safe for
// concurrent use. The *Connection handed to emit and the *Alert handed to
// the alert callback are only valid during the call.
type Correlator struct {
	cfg   Config
	emit  func(*Connection)
	alert func(*Alert)

	live map[uint64]*Connection
	// cold holds the connections at rest, packed; they count as live.
	cold coldStore
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

	sys     Sysctls
	sysSet  bool
	orphans map[uint64]*orphan
	scanGen uint64
	tw      map[Endpoint]uint64 // TIME_WAIT sockets per remote, last scan
	twTotal uint64
	scanned bool

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
		cfg:       cfg,
		emit:      emit,
		alert:     func(*Alert) {},
		live:      make(map[uint64]*Connection),
		synAcks:   make(map[flowKey]synAckRetries),
		noSocket:  make(map[flowKey]int64),
		listening: make(map[portKey]int),
		orphans:   make(map[uint64]*orphan),
		tw:        make(map[Endpoint]uint64),
	}
	c.stats.ByReason = make(map[string]uint64)
	c.stats.failures = make(map[Endpoint]uint64)
	return c
}

// OnAlert sets the function that receives alerts.
func (c *Correlator) OnAlert(f func(*Alert)) { c.alert = f }

// SetSysctls records the TCP sysctls of namespace s.NetNS, quoted in the
// explanations of its connections.
func (c *Correlator) SetSysctls(s Sysctls) { c.sys, c.sysSet = s, true }

// Stats returns the counters so far.
func (c *Correlator) Stats() Stats { return c.stats }

// Packed is how many of the live connections are at rest, packed.
func (c *Correlator) Packed() int { return c.cold.n }

// Live is the number of connections tracked now.
func (c *Correlator) Live() int { return len(c.live) + c.cold.n }

// MarkLost flags every live connection as incomplete: the kernel dropped
// events while they were open, and any of them may be missing steps.
func (c *Correlator) MarkLost() {
	for _, conn := range c.live {
		conn.Incomplete = true
	}
	c.cold.each(func(cc *coldConn) { cc.flags |= coldIncomplete })
}

// Add feeds one event.
func (c *Correlator) Add(e *Event) {
	c.stats.Events++
	if e.Cookie == 0 {
		if e.Type == EventRSTSent {
			c.stats.ResetsNoSocket++
			c.addNoSocketRST(e)
		}
		return
	}
	if e.Type == EventSynAckRetransmit {
		c.addSynAck(e)
		return
	}

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
			return
		}
		conn = c.start(e)
	}
	conn.seeded = false

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

// lookup finds the live record of cookie, unpacking it if it is at rest.
func (c *Correlator) lookup(cookie uint64) *Connection {
	if conn := c.live[cookie]; conn != nil || c.cold.n == 0 {
		return conn
	}
	return c.thaw(cookie)
}

// isStart: the first transition of a socket whose whole life is traced.
func isStart(e *Event) bool {
	return e.OldState == StateClose && (e.NewState == StateSynSent || e.NewState == StateListen) ||
		e.OldState == StateListen && e.NewState == StateSynRecv
}

// start creates the record for a cookie seen for the first time.
func (c *Correlator) start(e *Event) *Connection {
	conn := c.newConnection(e.Cookie, e.Time)
	conn.LAddr, conn.RAddr = e.LAddr, e.RAddr
	conn.LPort, conn.RPort = e.LPort, e.RPort
	conn.NetNS = e.NetNS

	switch {
	case e.Type == EventState && e.OldState == StateClose && e.NewState == StateSynSent:
		conn.Role = RoleClient
	case e.Type == EventState && e.OldState == StateClose && e.NewState == StateListen:
		conn.Role = RoleListener
	case e.Type == EventState && e.OldState == StateListen && e.NewState == StateSynRecv,
		// Before Linux 6.15 the LISTEN -> SYN_RECV event of an accepted
		// socket carries no tuple, and the kernel side drops it: the
		// socket's first event is then SYN_RECV -> ESTABLISHED.
		e.Type == EventState && e.OldState == StateSynRecv && e.NewState == StateEstablished:
		// Cloned from the listener when the final ACK arrived; the SYN and
		// SYN+ACK lived in a request socket this tracepoint never sees.
		conn.Role = RoleServer
		if e.OldState == StateSynRecv {
			conn.States = append(conn.States, StateSynRecv)
		}
		c.joinSynAcks(conn)
	default:
		conn.Partial = true
		first := e.NewState
		if e.Type == EventState {
			first = e.OldState
		}
		conn.Role = c.guessRole(conn, first)
		conn.States = append(conn.States, first)
		conn.sinceUnknown = true
		c.watchState(conn, first, e.Time)
	}
	return conn
}

// newConnection allocates (or recycles) a record and links it as open.
func (c *Correlator) newConnection(cookie uint64, t int64) *Connection {
	if len(c.live) >= c.cfg.MaxConnections {
		c.evictOldest()
	}
	conn := c.alloc()
	conn.Cookie = cookie
	conn.Start, conn.End = t, t
	conn.lastSyn = t
	c.live[cookie] = conn
	c.open.pushBack(conn)
	return conn
}

// Seed creates a partial record for a socket found by the start-up scan,
// owned by pid/comm (0/"" when unknown), unless it is known already.
// Timewait and request sockets are not connections to follow.
func (c *Correlator) Seed(now int64, s *Socket, pid uint32, comm string) {
	if s.Cookie == 0 || c.live[s.Cookie] != nil || c.cold.has(s.Cookie) || s.State == StateTimeWait || s.State == StateNewSynRecv ||
		s.State == StateClose {
		return
	}
	conn := c.newConnection(s.Cookie, now)
	conn.seeded = true
	conn.Partial = true
	conn.LAddr, conn.RAddr, conn.LPort, conn.RPort = s.LAddr, s.RAddr, s.LPort, s.RPort
	conn.NetNS, conn.UID, conn.PID, conn.Comm = s.NetNS, s.UID, pid, comm
	conn.BytesSent, conn.BytesReceived, conn.SRTT, conn.SegsRetrans = s.BytesAcked, s.BytesReceived, s.SRTT, s.TotalRetrans
	if s.State == StateListen {
		conn.Role = RoleListener
		c.listening[portKey{conn.NetNS, conn.LPort}]++
	} else {
		conn.Role = c.guessRole(conn, s.State)
	}
	conn.States = append(conn.States, s.State)
	conn.sinceUnknown = true
	c.watchState(conn, s.State, now)
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
	if e.BytesAcked != 0 || e.BytesReceived != 0 || e.SRTT != 0 {
		conn.BytesSent, conn.BytesReceived = e.BytesAcked, e.BytesReceived
		conn.SRTT, conn.SegsRetrans = e.SRTT, e.TotalRetrans
	}
	switch e.NewState {
	case StateEstablished:
		if e.OldState == StateSynSent || e.OldState == StateSynRecv {
			// The first RTT sample: SYN to SYN+ACK for a client, SYN+ACK
			// to ACK for an accepted socket.
			conn.HandshakeRTT = e.SRTT
		}
		if conn.Role == RoleClient && e.OldState == StateSynSent && !conn.Partial {
			conn.Handshake = e.Time - conn.Start
			c.stats.Handshakes.Add(conn.Handshake)
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
	conn.sinceUnknown = false
	if !conn.closed {
		c.watchState(conn, e.NewState, e.Time)
	}
}

// watchState puts the connection on the watch list if it entered a state
// it should not stay in, and takes it off otherwise.
func (c *Correlator) watchState(conn *Connection, s State, t int64) {
	c.watch.remove(conn)
	conn.stateSince = t
	if c.cfg.StuckAfter <= 0 || watchable(s) == 0 {
		return
	}
	conn.nextAlert = t + c.cfg.StuckAfter
	c.watch.pushBack(conn)
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
			// The peer's FIN reached a socket the application still
			// held: it had only shut down its sending side.
			conn.HalfClose = !e.SockDead && e.OldState == StateFinWait2
		case e.SockDead && e.OldState == StateFinWait2:
			step.To, step.TimewaitSocket = StateFinWait2, true
		}
	}
	conn.closed, conn.closedAt = true, e.Time
	conn.closeFrom = e.OldState
	c.watch.remove(conn)
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

// addNoSocketRST remembers a RST this host sent for a connection it has no
// socket for, keyed by the flow as its receiver sees it.
func (c *Correlator) addNoSocketRST(e *Event) {
	if len(c.noSocket) >= maxPending {
		clear(c.noSocket)
	}
	c.noSocket[flowKey{laddr: e.RAddr, raddr: e.LAddr, lport: e.RPort, rport: e.LPort, netns: e.NetNS}] = e.Time
}

// matchNoSocketRST: the RST conn received was sent by this host's stack
// because the other end had no socket: the peer had forgotten the
// connection while conn still sent to it.
func (c *Correlator) matchNoSocketRST(conn *Connection, t int64) bool {
	k := flowKey{laddr: conn.LAddr, raddr: conn.RAddr, lport: conn.LPort, rport: conn.RPort, netns: conn.NetNS}
	sent, ok := c.noSocket[k]
	if ok {
		delete(c.noSocket, k)
	}
	return ok && t-sent < noSocketTTL && t >= sent
}

// Advance emits the connections that reached CLOSE more than CloseGrace
// before now (Unix ns) and raises the alerts that are due. Call it
// regularly, also when no events arrive.
func (c *Correlator) Advance(now int64) {
	for conn := c.closing.head; conn != nil && now-conn.closedAt >= c.cfg.CloseGrace; conn = c.closing.head {
		c.finish(conn)
	}
	for conn := c.watch.head; conn != nil && conn.nextAlert <= now; conn = c.watch.head {
		c.raise(conn, now)
		c.watch.remove(conn)
		conn.nextAlert = now + c.cfg.StuckAfter
		c.watch.pushBack(conn)
	}
	if c.cfg.FreezeAfter > 0 {
		c.freezeIdle(now)
	}
	if now-c.lastPrune > 1e9 {
		c.lastPrune = now
		c.pruneSynAcks(now, false)
		c.alertSynAcks(now)
	}
}

// freezeIdle packs the connections idle for FreezeAfter. The open list is in
// order of activity, so they are at its head; one that can't be packed
// (IPv6, in a watched state…) is moved to the tail as if active, so that it
// is looked at again only after another FreezeAfter, not at every Advance.
func (c *Correlator) freezeIdle(now int64) {
	for conn := c.open.head; conn != nil && now-max(conn.End, conn.packChecked) >= c.cfg.FreezeAfter; {
		next := conn.next
		if !c.freeze(conn) {
			conn.packChecked = now
			c.open.remove(conn)
			c.open.pushBack(conn)
		}
		conn = next
	}
}

func (c *Correlator) raise(conn *Connection, now int64) {
	s := conn.LastState()
	a := Alert{Time: now, Kind: watchable(s), Cookie: conn.Cookie, LAddr: conn.LAddr, RAddr: conn.RAddr,
		LPort: conn.LPort, RPort: conn.RPort, NetNS: conn.NetNS, PID: conn.PID, Comm: conn.Comm, Cgroup: conn.Cgroup, State: s,
		Since: conn.stateSince, SinceUnknown: conn.sinceUnknown}
	switch s {
	case StateSynSent:
		a.Retries = conn.SynRetries
	case StateSynRecv:
		a.Retries = conn.SynAckRetries
	}
	c.stats.Alerts++
	c.alert(&a)
}

// alertSynAcks raises an alert for each handshake that has retransmitted
// its SYN+ACK for longer than StuckAfter without an accepted socket.
func (c *Correlator) alertSynAcks(now int64) {
	if c.cfg.StuckAfter <= 0 {
		return
	}
	for k, r := range c.synAcks {
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

// BeginScan starts taking in a scan of the kernel's TCP sockets (ScanSocket
// for each, then EndScan).
func (c *Correlator) BeginScan() {
	c.scanGen++
	clear(c.tw)
	c.twTotal = 0
}

// ScanSocket takes in one socket of the current scan.
func (c *Correlator) ScanSocket(s *Socket) {
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

// EndScan ends a scan: orphans it did not see were dropped by the kernel,
// those now in TIME_WAIT got their FIN, the others may be due an alert.
func (c *Correlator) EndScan(now int64) {
	c.scanned = true
	for cookie, o := range c.orphans {
		switch {
		case o.seen != c.scanGen && o.timeWait:
			a := o.alert
			a.Kind, a.Time = AlertTimeWaitEnded, now
			c.alert(&a) // a notice, not counted as an alert
		case o.seen != c.scanGen:
			// Gone. Worth a word only if it was alerted on: one that goes
			// sooner got its FIN and its TIME_WAIT was reused (tcp_tw_reuse)
			// or cut short between two scans, as under connection churn.
			if o.alerted {
				c.orphanEnded(o, now, "dropped")
			}
		case o.timeWait:
			continue
		case o.substate == StateTimeWait:
			if o.alerted {
				c.orphanEnded(o, now, "fin_received")
			}
			if c.cfg.FollowTimeWait {
				// Its FIN came between two scans: TIME_WAIT since then.
				o.timeWait = true
				o.alert.State, o.alert.Since = StateTimeWait, now
				continue
			}
		default:
			if c.cfg.StuckAfter > 0 && now >= o.nextAlert {
				o.alerted = true
				o.nextAlert = now + c.cfg.StuckAfter
				a := o.alert
				a.Time = now
				c.stats.Alerts++
				c.alert(&a)
			}
			continue
		}
		delete(c.orphans, cookie)
	}
}

func (c *Correlator) orphanEnded(o *orphan, now int64, how string) {
	a := o.alert
	a.Kind, a.Time, a.Ended = AlertFinWait2OrphanEnded, now, how
	c.stats.Alerts++
	c.alert(&a)
}

// Orphans is the number of timewait sockets (orphaned FIN_WAIT2, or
// TIME_WAIT with FollowTimeWait) followed by scans; while there are any,
// the caller should scan regularly.
func (c *Correlator) Orphans() int { return len(c.orphans) }

// TimeWait returns the TIME_WAIT sockets counted by the last scan: the
// total (timewait sockets of any substate) and up to n remote endpoints with
// the most, most first. ok is false when no scan ran.
func (c *Correlator) TimeWait(n int) (total uint64, top []EndpointCount, ok bool) {
	return c.twTotal, topN(c.tw, n), c.scanned
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
	for slot := c.cold.any(); slot >= 0; slot = c.cold.any() {
		c.finish(c.thawSlot(slot))
	}
	clear(c.synAcks)
}

// evictOldest makes room: a connection at rest if there is one (packed
// connections are the idle ones), else the least recently active.
func (c *Correlator) evictOldest() {
	var conn *Connection
	if slot := c.cold.any(); slot >= 0 {
		conn = c.thawSlot(slot)
	} else {
		conn = c.open.head
	}
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
	if c.sysSet && c.sys.NetNS == conn.NetNS {
		conn.sys = &c.sys
	}
	conn.dataBytes()
	conn.Reason = reason(conn)
	c.stats.Connections++
	c.stats.ByOutcome[conn.Outcome]++
	c.stats.ByReason[conn.Reason]++
	if isFailure(conn.Outcome) {
		ep := Endpoint{conn.RAddr, conn.RPort}
		if conn.Role == RoleServer {
			ep.Port = 0 // a client's ephemeral port says nothing: count per address
		}
		if _, ok := c.stats.failures[ep]; ok || len(c.stats.failures) < maxFailureEndpoints {
			c.stats.failures[ep]++
		}
	}
	switch {
	case conn.Reason == ReasonClosedLocalOrphan:
		c.follow(conn, false)
	case c.cfg.FollowTimeWait && conn.LastState() == StateTimeWait:
		c.follow(conn, true)
	}
	c.emit(conn)
	c.drop(conn)
}

// follow keeps what scans need to follow an orphaned FIN_WAIT2, or a
// TIME_WAIT socket, after its record is out. TIME_WAIT sockets get half of
// the table at most: orphans are the ones that may be trouble.
func (c *Correlator) follow(conn *Connection, timeWait bool) {
	limit := maxOrphans
	if timeWait {
		limit /= 2
	}
	if conn.NetNS != c.cfg.ScanNetNS || len(c.orphans) >= limit {
		if !timeWait {
			c.stats.OrphansUnwatched++
		}
		return
	}
	state := StateFinWait2
	if timeWait {
		state = StateTimeWait
	}
	c.orphans[conn.Cookie] = &orphan{
		timeWait: timeWait,
		alert: Alert{Kind: AlertFinWait2Orphan, Cookie: conn.Cookie, LAddr: conn.LAddr, RAddr: conn.RAddr,
			LPort: conn.LPort, RPort: conn.RPort, NetNS: conn.NetNS, PID: conn.PID, Comm: conn.Comm,
			Cgroup: conn.Cgroup, State: state, Since: conn.closedAt},
		nextAlert: conn.closedAt + c.cfg.StuckAfter,
		seen:      c.scanGen + 1, // not gone before the next scan had a chance to see it
	}
}

// drop unlinks a record and recycles it.
func (c *Correlator) drop(conn *Connection) {
	if conn.closed {
		c.closing.remove(conn)
	} else {
		c.open.remove(conn)
	}
	c.watch.remove(conn)
	delete(c.live, conn.Cookie)
	conn.reset()
	// Keep a few records for reuse; after a burst the rest go to the GC.
	if len(c.free) < maxFree {
		c.free = append(c.free, conn)
	}
}

// maxFree bounds the recycled records kept for reuse.
const maxFree = 4096

func outcome(conn *Connection) Outcome {
	if !conn.closed {
		return OutcomeOpen
	}
	from := conn.closeFrom
	errno := syscall.Errno(conn.Errno)
	switch from {
	case StateListen:
		return OutcomeClosed
	case StateSynSent:
		switch {
		case conn.RSTReceived || errno == syscall.ECONNREFUSED:
			return OutcomeRefused
		case errno == syscall.ETIMEDOUT:
			return OutcomeTimeout
		case conn.rstSentLive:
			return OutcomeResetLocal
		}
		return OutcomeAborted
	case StateSynRecv:
		switch {
		case conn.RSTReceived:
			return OutcomeResetByPeer
		case errno == syscall.ETIMEDOUT:
			return OutcomeTimeout
		case conn.rstSentLive:
			return OutcomeResetLocal
		}
		return OutcomeAborted
	}
	switch {
	case conn.RSTReceived:
		return OutcomeResetByPeer
	case errno == syscall.ETIMEDOUT:
		return OutcomeTimeout
	case conn.rstSentLive:
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

// Histogram counts durations in logarithmic buckets (about 4.5% wide), from
// 1 µs to over an hour, in constant memory.
type Histogram struct {
	buckets [histBuckets]uint64
	n       uint64
}

const (
	histBase    = 1.045
	histBuckets = 512
)

// Add counts one duration in ns.
func (h *Histogram) Add(ns int64) {
	i := 0
	if us := float64(ns) / 1e3; us > 1 {
		i = min(int(math.Log(us)/math.Log(histBase))+1, histBuckets-1)
	}
	h.buckets[i]++
	h.n++
}

// Count is how many durations were added.
func (h *Histogram) Count() uint64 { return h.n }

// Percentile returns the p-th percentile (0-100) in ns, as the upper bound
// of its bucket; 0 when empty.
func (h *Histogram) Percentile(p float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.n)))
	var seen uint64
	for i, b := range h.buckets {
		seen += b
		if seen >= max(rank, 1) {
			return int64(math.Pow(histBase, float64(i)) * 1e3)
		}
	}
	return 0
}

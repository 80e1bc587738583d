package timeline

import (
	"net/netip"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Role is how the connection came to be on this host.
type Role uint8

// Roles.
const (
	RoleUnknown  Role = iota // started before tracing, could not tell
	RoleClient               // active open: connect()
	RoleServer               // passive open: accepted from a listener
	RoleListener             // a listening socket
)

var roleNames = [...]string{"unknown", "client", "server", "listener"}

func (r Role) String() string { return roleNames[r] }

// Outcome is how the connection ended.
type Outcome uint8

// Outcomes.
const (
	OutcomeOpen        Outcome = iota // still open when tracing stopped (or evicted)
	OutcomeClosed                     // graceful FIN exchange
	OutcomeRefused                    // RST in reply to our SYN
	OutcomeTimeout                    // SYN retries exhausted, or retransmissions gave up
	OutcomeResetByPeer                // RST received after establishment
	OutcomeResetLocal                 // this host sent the RST
	OutcomeAborted                    // closed before the handshake completed, without RST
	numOutcomes
)

var outcomeNames = [...]string{"open", "closed", "refused", "timeout", "reset_by_peer", "reset_local", "aborted"}

func (o Outcome) String() string { return outcomeNames[o] }

// Outcomes lists every outcome, in a fixed order, for summaries.
func Outcomes() []Outcome {
	out := make([]Outcome, numOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

// Closer says which side sent the first FIN of a graceful close.
type Closer uint8

// Closers.
const (
	ClosedByNone  Closer = iota // not closed gracefully, or not known
	ClosedByLocal               // this host closed first (FIN_WAIT1)
	ClosedByPeer                // the peer closed first (CLOSE_WAIT)
	ClosedByBoth                // simultaneous close (CLOSING)
)

var closerNames = [...]string{"", "local", "peer", "both"}

func (c Closer) String() string { return closerNames[c] }

// StepKind is what a timeline step records.
type StepKind uint8

// Step kinds; their String is the JSON "event" name.
const (
	StepState StepKind = iota
	StepSynRetransmit
	StepSynAckRetransmit
	StepRetransmit
	StepRSTSent
	StepRSTReceived
	StepError
)

var stepNames = [...]string{"state", "syn_retransmit", "synack_retransmit", "retransmit", "rst_sent", "rst_received", "error"}

func (k StepKind) String() string { return stepNames[k] }

// Step is one line of a connection's timeline.
type Step struct {
	Time int64 // Unix nanoseconds
	Kind StepKind
	From State // StepState: kernel transition; others: state at the time
	To   State
	// TimewaitSocket: the kernel reported X -> CLOSE because it handed the
	// connection to a timewait socket; To is the state that socket holds
	// (TIME_WAIT, or FIN_WAIT2 for an orphan still waiting for the peer's FIN).
	TimewaitSocket bool
	N              int   // retransmit steps: which retry (1-based)
	Since          int64 // retransmit steps: ns since the previous (re)transmission
	Errno          uint16
	RSTReason      string
	NoSocket       bool
	// StepRetransmit: its kind, and a timeout's backoffs before it.
	Retrans RetransKind
	Backoff uint8
}

// ErrnoName is the symbolic name of a Linux errno ("ECONNREFUSED").
func ErrnoName(errno uint16) string {
	if name := unix.ErrnoName(syscall.Errno(errno)); name != "" {
		return name
	}
	return "E" + strconv.Itoa(int(errno))
}

// Connection is the record of one socket, identified by its cookie.
type Connection struct {
	Cookie uint64
	Start  int64 // Unix ns of the first event seen
	End    int64 // Unix ns of the last event seen
	LAddr  netip.Addr
	RAddr  netip.Addr
	LPort  uint16
	RPort  uint16
	NetNS  uint32
	Role   Role
	// RoleInferred: the role was not seen (the connection predates
	// tracing) but worked out from the listeners and the ephemeral port
	// range (infer.go).
	RoleInferred bool
	PID          uint32
	UID          uint32
	Comm         string
	Cgroup       uint64 // cgroup v2 id of the socket

	Outcome  Outcome
	ClosedBy Closer
	// Handshake is connect() to ESTABLISHED, retries included, for clients;
	// -1 when not seen.
	Handshake     int64
	SynRetries    int
	SynAckRetries int
	Retransmits   int
	RSTSent       bool
	RSTReceived   bool
	// RSTReason is the kernel's reason for the RST this host sent, if any.
	RSTReason string
	// Errno is the last error the socket reported (sk_err), 0 if none.
	Errno uint16
	// Reason is a short machine word for how the connection ended; the
	// Explanation method says it in one sentence for people.
	Reason string

	// Figures from struct tcp_sock at the last state change (like ss -i).
	BytesSent     uint64 // data bytes sent and acknowledged (tcpi_bytes_acked less SYN and FIN)
	BytesReceived uint64 // data bytes received (tcpi_bytes_received less the FIN)
	SegsRetrans   uint32 // segments retransmitted (tcpi_total_retrans)
	SRTT          uint32 // smoothed RTT, microseconds
	// HandshakeRTT is the first RTT sample (µs): SYN to SYN+ACK for a
	// client, SYN+ACK to ACK for a server; 0 when not measured (the kernel
	// takes no sample from a retransmitted SYN).
	HandshakeRTT uint32

	// HalfClose: this host shut down its sending side and kept reading
	// until the peer's FIN (shutdown(SHUT_WR)).
	HalfClose bool
	// HalfOpen: the RST received answered data sent to a peer that no
	// longer knew the connection (seen when the peer is on this host).
	HalfOpen bool
	// Partial: the connection's start was not seen (it predates tracing).
	Partial bool
	// Incomplete: events were lost (ring buffer full) while it was live,
	// so the record may miss steps.
	Incomplete bool
	// Evicted: flushed early because the live table was full.
	Evicted bool
	States  []State
	Steps   []Step
	// StepsDropped counts steps not kept once the timeline reached its cap.
	StepsDropped int

	// What the host did to it (host.go): TCP packets of this connection
	// the kernel dropped here, by reason, most first; the system call that
	// failed in the application (a connect() with no free local port);
	// for a client of a local listener, that listener's accept queue
	// while it dropped (ListenerFull).
	Drops        []DropCount
	Syscall      Syscall
	SyscallErrno uint16
	ListenerFull ListenerFull
	// PortUse: for a connect() that found no free local port, the ports
	// of the range in use towards the destination (a scan at the error).
	PortUse PortUse
	// NeverAccepted: reset when its listener closed while it waited in
	// the accept queue: no application ever had it (no owner).
	NeverAccepted bool
	// What the socket knew (socket.go): its sequence numbers, the kinds
	// of its retransmissions, and tcp_info with its stalls at the end.
	Seq           Seq
	RetransByKind [numRetransKinds]int
	MaxBackoff    uint8 // the most a retransmission timeout backed off
	Info          TCPInfo
	// The socket's own settings at its end: TCP_SYNCNT (0: the sysctl)
	// and TCP_USER_TIMEOUT in ms (0: none).
	SockSynRetries uint8
	UserTimeout    uint32

	// The other end of this connection, when it is on this host too and
	// its record was paired with this one (pair.go); PeerCookie 0 if not.
	PeerCookie uint64
	PeerPID    uint32
	PeerComm   string

	// Bookkeeping, not part of the record.
	lastSyn     int64    // time the last SYN was sent
	closed      bool     // it reached CLOSE and waits out CloseGrace
	closedAt    int64    // time of the X -> CLOSE transition
	closeFrom   State    // the state the socket left for CLOSE
	rstSentLive bool     // the socket itself (not its timewait successor) sent a RST
	closedDead  bool     // orphaned by close() when it reached CLOSE: no application saw its end
	dropsTraced bool     // the kernel reported drops while it lived (Config.DropsTraced)
	seeded      bool     // created from a socket scan, no event seen yet
	packChecked int64    // when it was last found at rest but not packable
	sys         *Sysctls // its namespace's sysctls, when known
	prev, next  *Connection

	// Stuck-state watch: while in CLOSE_WAIT, FIN_WAIT2, SYN_SENT or
	// SYN_RECV the connection is on the correlator's watch list.
	stateSince   int64 // when it entered its current state
	sinceUnknown bool  // it was already in that state when tracing began
	nextAlert    int64
	watched      bool
	wprev, wnext *Connection
}

// Clone returns a copy that stays valid after the correlator recycles c.
func (c *Connection) Clone() *Connection {
	cp := *c
	cp.States = append([]State(nil), c.States...)
	cp.Steps = append([]Step(nil), c.Steps...)
	cp.Drops = append([]DropCount(nil), c.Drops...)
	cp.prev, cp.next, cp.wprev, cp.wnext = nil, nil, nil, nil
	return &cp
}

// Sysctls are the TCP sysctls of the connection's network namespace, nil
// when not known (set on records the correlator emits).
func (c *Connection) Sysctls() *Sysctls { return c.sys }

// cloneInto is Clone into dst, reusing dst's slices: a record held past
// its emit costs no allocation once dst has grown.
func (c *Connection) cloneInto(dst *Connection) {
	states, steps := dst.States[:0], dst.Steps[:0]
	*dst = *c
	dst.States = append(states, c.States...)
	dst.Steps = append(steps, c.Steps...)
	dst.Drops = append([]DropCount(nil), c.Drops...)
	dst.prev, dst.next, dst.wprev, dst.wnext = nil, nil, nil, nil
}

// Family is "ipv4" or "ipv6".
func (c *Connection) Family() string { return family(c.LAddr) }

// Duration is End - Start in nanoseconds.
func (c *Connection) Duration() int64 { return c.End - c.Start }

// LastState is the last state the connection was seen in.
func (c *Connection) LastState() State {
	if len(c.States) == 0 {
		return StateUnknown
	}
	return c.States[len(c.States)-1]
}

// learnTuple fills in what earlier events lacked: connect() reports
// SYN_SENT before the local port is chosen, and X -> CLOSE comes after
// tcp_set_state() released it, so no single event has the whole 4-tuple.
func (c *Connection) learnTuple(e *Event) {
	if c.LPort == 0 {
		c.LPort = e.LPort
	}
	if c.RPort == 0 {
		c.RPort = e.RPort
	}
	if !known(c.LAddr) && known(e.LAddr) {
		c.LAddr = e.LAddr
	}
	if !known(c.RAddr) && known(e.RAddr) {
		c.RAddr = e.RAddr
	}
}

func known(a netip.Addr) bool { return a.IsValid() && !a.IsUnspecified() }

// dataBytes turns the kernel's byte counters into data bytes. bytes_acked
// and bytes_received advance with sequence numbers, and the SYN and the FIN
// each take one: a client's SYN is in bytes_acked once the handshake is
// acked (an accepted socket is created with its SYN+ACK acked already, so
// never counts it), our FIN once the peer acked it, the peer's FIN in
// bytes_received once it came.
func (c *Connection) dataBytes() {
	var synAcked, finAcked, peerFIN bool
	for i, s := range c.States {
		switch s {
		case StateEstablished, StateFinWait1, StateCloseWait, StateClosing, StateLastAck:
			synAcked = true
		case StateFinWait2:
			synAcked, finAcked = true, true
		case StateTimeWait:
			finAcked, peerFIN = true, true
		case StateClose:
			finAcked = finAcked || i > 0 && c.States[i-1] == StateLastAck && c.Outcome == OutcomeClosed
		}
		if s == StateCloseWait || s == StateClosing || s == StateLastAck {
			peerFIN = true
		}
	}
	if synAcked && c.Role == RoleClient && c.BytesSent > 0 {
		c.BytesSent--
	}
	if finAcked && c.BytesSent > 0 {
		c.BytesSent--
	}
	if peerFIN && c.BytesReceived > 0 {
		c.BytesReceived--
	}
}

func (c *Connection) reset() {
	states, steps := c.States[:0], c.Steps[:0]
	*c = Connection{States: states, Steps: steps, Handshake: -1}
}

// Package timeline turns a stream of decoded kernel TCP events into one
// record per connection: the states it went through, its retransmissions and
// resets, and how it ended. It is pure Go so it can be tested with event
// sequences, without a kernel.
package timeline

import (
	"net/netip"
	"strconv"
)

// State is a kernel TCP state (include/net/tcp_states.h).
type State uint8

// Kernel TCP state numbers.
const (
	StateUnknown     State = 0
	StateEstablished State = 1
	StateSynSent     State = 2
	StateSynRecv     State = 3
	StateFinWait1    State = 4
	StateFinWait2    State = 5
	StateTimeWait    State = 6
	StateClose       State = 7
	StateCloseWait   State = 8
	StateLastAck     State = 9
	StateListen      State = 10
	StateClosing     State = 11
	StateNewSynRecv  State = 12
)

var stateNames = [...]string{
	StateUnknown:     "UNKNOWN",
	StateEstablished: "ESTABLISHED",
	StateSynSent:     "SYN_SENT",
	StateSynRecv:     "SYN_RECV",
	StateFinWait1:    "FIN_WAIT1",
	StateFinWait2:    "FIN_WAIT2",
	StateTimeWait:    "TIME_WAIT",
	StateClose:       "CLOSE",
	StateCloseWait:   "CLOSE_WAIT",
	StateLastAck:     "LAST_ACK",
	StateListen:      "LISTEN",
	StateClosing:     "CLOSING",
	StateNewSynRecv:  "NEW_SYN_RECV",
}

// String is the kernel's name without the TCP_ prefix.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "STATE_" + strconv.Itoa(int(s))
}

// EventType says which tracepoint an Event came from.
type EventType uint8

// Event types; the numbers match enum event_type in bpf/tcptrace.bpf.c.
const (
	EventState            EventType = 1 // sock:inet_sock_set_state
	EventRetransmit       EventType = 2 // tcp:tcp_retransmit_skb
	EventSynAckRetransmit EventType = 3 // tcp:tcp_retransmit_synack
	EventRSTSent          EventType = 4 // tcp:tcp_send_reset
	EventRSTReceived      EventType = 5 // tcp:tcp_receive_reset
	EventError            EventType = 6 // sock:inet_sk_error_report
	EventDrop             EventType = 7 // skb:kfree_skb of a TCP packet
	EventSyscallError     EventType = 8 // connect(), bind(), listen() or accept() failed
	// EventStall: a flush scan found the socket held by the peer's full
	// receive window (Info.StalledFor): an observation, handed to
	// Correlator.Stalled, not Add.
	EventStall EventType = 9
)

var eventTypeNames = [...]string{
	EventState:            "state",
	EventRetransmit:       "retransmit",
	EventSynAckRetransmit: "synack_retransmit",
	EventRSTSent:          "rst_sent",
	EventRSTReceived:      "rst_received",
	EventError:            "error",
	EventDrop:             "drop",
	EventSyscallError:     "syscall_error",
	EventStall:            "stall",
}

func (t EventType) String() string {
	if int(t) < len(eventTypeNames) && eventTypeNames[t] != "" {
		return eventTypeNames[t]
	}
	return "type_" + strconv.Itoa(int(t))
}

// Event is one kernel event, decoded. Addresses are from the local socket's
// point of view: L is this host's end, R the peer's.
type Event struct {
	Time     int64 // Unix nanoseconds
	Cookie   uint64
	Type     EventType
	OldState State // EventState only
	NewState State // EventState: the new state; others: the socket's state then
	LAddr    netip.Addr
	RAddr    netip.Addr
	LPort    uint16
	RPort    uint16
	NetNS    uint32
	PID      uint32 // owning process, 0 when not known
	UID      uint32
	Comm     string
	// Errno: for EventState the socket's sk_err at the transition, for
	// EventError the error reported to the application.
	Errno uint16
	// RSTReason is the kernel's enum sk_rst_reason name for EventRSTSent,
	// without the SK_RST_REASON_ prefix; empty when the kernel gives none.
	RSTReason string
	// SockDead and SockDone are the socket's SOCK_DEAD (orphaned) and
	// SOCK_DONE (peer FIN processed) flags at an EventState.
	SockDead bool
	SockDone bool
	// NoSocket marks a RST sent by the stack with no socket (nothing
	// listening); Cookie is 0 and the tuple comes from the packet.
	NoSocket bool
	// OwnerSeen: PID/Comm were read in the owner's own system call.
	OwnerSeen bool
	// Cgroup is the socket's cgroup v2 id (0 when not a full socket).
	Cgroup uint64
	// From struct tcp_sock, on EventState of full sockets.
	BytesAcked    uint64 // bytes sent and acknowledged
	BytesReceived uint64
	SRTT          uint32 // smoothed RTT, microseconds
	TotalRetrans  uint32 // segments retransmitted
	// The socket's own settings, on the same events: TCP_SYNCNT (0: the
	// namespace's tcp_syn_retries) and TCP_USER_TIMEOUT in ms (0: none).
	SockSynRetries uint8
	UserTimeout    uint32
	// NoFile: at X -> CLOSE no file held the socket and it was not
	// orphaned: accepted by the kernel, never by the application.
	NoFile bool
	// Info: what else the socket knew at ESTABLISHED and CLOSE.
	Info TCPInfo
	// Retrans: EventRetransmit: what kind of retransmission, and for a
	// timeout how many times it had backed off before.
	Retrans RetransKind
	Backoff uint8

	// DropReason: EventDrop: the kernel's enum skb_drop_reason name,
	// without the SKB_DROP_REASON_ prefix.
	DropReason string
	// TCPFlags: EventDrop: the dropped segment's TCP flags.
	TCPFlags uint8
	// Syscall: EventSyscallError: the call that failed, Errno its error.
	Syscall Syscall
	// Queue: a listener's accept queue, on the events that concern one
	// (SYN+ACK retries, drops at a listener, a failed accept()).
	Queue Queue
}

// TCPInfo is what a socket knew at its ESTABLISHED or CLOSE transition
// beyond the byte counts: its sequence space, what tcp_info reports, and
// the time it spent limited (the kernel's chrono statistics). Read once
// per transition, never per packet.
type TCPInfo struct {
	Known bool // read at this event
	End   bool // the full figures of a CLOSE, not only ESTABLISHED's
	// SndUna: oldest unacked sequence number; RcvNxt: next expected;
	// WriteSeq: one past the last byte written (a FIN takes one).
	SndUna, RcvNxt, WriteSeq uint32
	Cwnd, Ssthresh           uint32 // segments
	MinRTT                   uint32 // µs
	Delivered, Lost          uint32 // segments
	Reordering               uint32
	SndMSS, RcvMSS           uint32
	DSACKDups                uint32 // retransmissions the peer already had
	// Busy, RwndLimited, SndbufLimited: ns with data to send (as
	// tcpi_busy_time: the two limited spells included), limited by the
	// peer's receive window, by the send buffer; -1 where the tick rate
	// (HZ) is not known yet.
	Busy, RwndLimited, SndbufLimited int64
	// StalledFor: the spell limited by the peer's window under way, ns
	// (0: none; -1: HZ unknown).
	StalledFor int64
	Probes     uint8 // zero-window probes unanswered
}

// RetransKind is what made the kernel retransmit.
type RetransKind uint8

// Retransmission kinds; the numbers match enum retransmit_kind in bpf/.
const (
	RetransOther    RetransKind = 0 // none of these (e.g. RACK reordering timer)
	RetransRTO      RetransKind = 1 // the retransmission timer fired
	RetransFast     RetransKind = 2 // fast retransmit, in recovery
	RetransTLP      RetransKind = 3 // a tail-loss probe
	numRetransKinds             = 4
)

var retransKindNames = [...]string{"other", "rto", "fast", "tlp"}

func (k RetransKind) String() string {
	if int(k) < len(retransKindNames) {
		return retransKindNames[k]
	}
	return "other"
}

// RetransKinds lists the kinds in a fixed order.
func RetransKinds() []RetransKind {
	return []RetransKind{RetransRTO, RetransFast, RetransTLP, RetransOther}
}

// TCP flags of a segment (EventDrop).
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagACK = 0x10
)

// Syscall names a system call whose failures are traced.
type Syscall uint8

// Traced system calls; the numbers match enum syscall_id in bpf/.
const (
	SyscallConnect Syscall = 1
	SyscallBind    Syscall = 2
	SyscallListen  Syscall = 3
	SyscallAccept  Syscall = 4
)

var syscallNames = [...]string{"", "connect", "bind", "listen", "accept"}

func (s Syscall) String() string {
	if int(s) < len(syscallNames) && s != 0 {
		return syscallNames[s]
	}
	return ""
}

// Queue is a listener's accept queue as the kernel keeps it: the
// connections waiting for accept() (sk_ack_backlog), the limit
// (sk_max_ack_backlog: the listen() backlog capped by net.core.somaxconn;
// the queue is full past it), and the SYNs and final ACKs the listener
// dropped since it was made (sk_drops).
type Queue struct {
	Len, Max, Drops uint32
	Known           bool
}

// Full: a new connection finds no room (sk_acceptq_is_full()).
func (q Queue) Full() bool { return q.Known && q.Len > q.Max }

// Family is "ipv4" or "ipv6".
func (e *Event) Family() string { return family(e.LAddr) }

func family(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// Socket is one TCP socket as a scan of the kernel's tables shows it.
type Socket struct {
	Cookie   uint64
	State    State // TIME_WAIT for timewait sockets, NEW_SYN_RECV for request sockets
	Substate State // timewait sockets: TIME_WAIT, or FIN_WAIT2 for an orphan
	LAddr    netip.Addr
	RAddr    netip.Addr
	LPort    uint16
	RPort    uint16
	NetNS    uint32
	UID      uint32
	Cgroup   uint64 // full sockets' cgroup v2 id; 0 for the others

	BytesAcked    uint64
	BytesReceived uint64
	SRTT          uint32 // microseconds
	TotalRetrans  uint32
	Queue         Queue // listeners: their accept queue
}

// Sysctls are the TCP sysctls of one network namespace; -1 where unknown
// or absent on this kernel.
type Sysctls struct {
	NetNS             uint32
	SynRetries        int
	SynAckRetries     int
	SynLinearTimeouts int // Linux >= 6.15
	FinTimeout        int
	// LocalPorts is ip_local_port_range, where connect() picks the local
	// port of a client; zero when unknown.
	LocalPorts [2]uint16
	// Somaxconn caps every listen() backlog (net.core.somaxconn).
	Somaxconn int
	// MaxOrphans is tcp_max_orphans (host-wide): past it the kernel resets
	// orphaned connections (TCP_ABORT_ON_MEMORY).
	MaxOrphans int
}

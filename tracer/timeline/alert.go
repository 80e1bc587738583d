package timeline

import "net/netip"

// AlertKind names a problem that produces no end event: a connection stuck
// in a state it should leave.
type AlertKind uint8

// Alert kinds.
const (
	// AlertCloseWait: the peer closed, the local application never called
	// close(): a file descriptor leak or a stuck worker.
	AlertCloseWait AlertKind = iota + 1
	// AlertFinWait2: our FIN was acked, the peer never sends its own; the
	// socket is still open (shutdown(SHUT_WR)) so no timer ends it.
	AlertFinWait2
	// AlertFinWait2Orphan: same, after close(): the kernel holds a timewait
	// socket in FIN_WAIT2 until the FIN comes or tcp_fin_timeout passes.
	AlertFinWait2Orphan
	// AlertFinWait2OrphanEnded: such an orphan ended: the kernel dropped it
	// (Ended "dropped") or the peer's FIN finally came ("fin_received").
	AlertFinWait2OrphanEnded
	// AlertSynSent: connect() is still retrying its SYN.
	AlertSynSent
	// AlertSynRecv: a handshake waits for the client's final ACK while the
	// server retransmits its SYN+ACK. Once the kernel has dropped the
	// request socket, a last one says so, with Ended "dropped".
	AlertSynRecv
	// AlertTimeWaitEnded is no problem but a notice (Config.FollowTimeWait):
	// a TIME_WAIT socket is gone, after 2MSL or reused (tcp_tw_reuse).
	AlertTimeWaitEnded
	// AlertListenOverflow: a listener dropped SYNs or final ACKs (its
	// sk_drops grew): its accept queue was full. Once per burst.
	AlertListenOverflow
	// AlertPortInUse: bind() or listen() failed with EADDRINUSE; Holders
	// says who holds the port.
	AlertPortInUse
	// AlertSyscallError: connect() or accept() failed with an error no
	// connection record carries (EMFILE, ENFILE, ENOBUFS, EACCES...).
	AlertSyscallError
	// AlertZeroWindow: the peer's receive window has been full for
	// StuckAfter: its application stopped reading (stall.go). Ended
	// "window_opened" when a later scan finds it sending again.
	AlertZeroWindow
)

var alertNames = [...]string{"", "close_wait", "fin_wait2", "fin_wait2_orphan", "fin_wait2_orphan_ended", "syn_sent",
	"syn_recv", "time_wait_ended", "listen_overflow", "port_in_use", "syscall_error", "zero_window"}

func (k AlertKind) String() string { return alertNames[k] }

// Alert is a live notice about one connection.
type Alert struct {
	Time   int64 // Unix ns when raised
	Kind   AlertKind
	Cookie uint64
	LAddr  netip.Addr
	RAddr  netip.Addr
	LPort  uint16
	RPort  uint16
	NetNS  uint32
	PID    uint32
	Comm   string
	Cgroup uint64 // cgroup v2 id of the socket (a listener's for SYN_RECV); 0: unknown
	State  State
	// Since is when the connection entered State; SinceUnknown when it was
	// already there when tracing began (Since is then that moment).
	Since        int64
	SinceUnknown bool
	Retries      int // SYN or SYN+ACK retries so far
	// Ended: AlertFinWait2OrphanEnded: "dropped" or "fin_received";
	// AlertSynRecv: "dropped" once the request socket is gone, else "".
	Ended string

	// Host-side alerts (host.go, listener.go).
	// Queue: the listener's accept queue (listen_overflow; a failed
	// accept()); Dropped: what the listener dropped in this burst so far.
	Queue   Queue
	Dropped uint64
	// Somaxconn: net.core.somaxconn of the namespace, -1 if unknown.
	Somaxconn int
	// Syscall and Errno: the call that failed; Count: how many times
	// since the previous alert for the same process, call and error.
	Syscall Syscall
	Errno   uint16
	Count   uint64
	// AcceptErrors: listen_overflow: accept() failures on the listener.
	AcceptErrors []ErrnoCount
	// Holders: port_in_use: who holds the port.
	Holders PortHolders
}

// ErrnoCount is how many times a call failed with one errno.
type ErrnoCount struct {
	Errno uint16
	Count uint64
}

// PortHolders are the sockets of a namespace on one local port, from a
// scan of its TCP tables made when a bind() or listen() failed.
type PortHolders struct {
	Known     bool
	Listeners []Holder
	// TimeWait: sockets in TIME_WAIT on the port (the kernel keeps each
	// for 60 s, TCP_TIMEWAIT_LEN); Other: connections in any other state.
	TimeWait int
	Other    int
	// NotRescanned: not looked for (Known false) as the namespace's scans
	// were rate-limited (calls.go).
	NotRescanned bool
}

// Holder is a listener holding a port.
type Holder struct {
	Cookie uint64
	PID    uint32
	Comm   string
	Cgroup uint64
}

// For is how long the connection has been in its state.
func (a *Alert) For() int64 { return a.Time - a.Since }

// Endpoint is a remote address and port, or with Local one of this host's
// where it serves (TIME_WAIT counts).
type Endpoint struct {
	Addr  netip.Addr
	Port  uint16
	Local bool
}

// EndpointCount is a count for one endpoint.
type EndpointCount struct {
	Endpoint
	Count uint64
}

// AppendAlertExplanation appends what an alert means, for people.
func AppendAlertExplanation(b []byte, a *Alert) []byte {
	switch a.Kind {
	case AlertCloseWait:
		b = append(b, "the peer closed its side and the application has not called close(): a leaked socket or a stuck worker"...)
	case AlertFinWait2:
		b = append(b, "our FIN was acked but the peer never sends its own: its application has not closed; this socket is still open, so no timer will end it"...)
	case AlertFinWait2Orphan:
		b = append(b, "closed here, but the peer never sent its FIN: the kernel holds an orphaned FIN_WAIT2 socket until tcp_fin_timeout"...)
	case AlertFinWait2OrphanEnded:
		if a.Ended == "dropped" {
			b = append(b, "the kernel dropped the orphaned FIN_WAIT2 socket (tcp_fin_timeout): the peer never closed"...)
		} else {
			b = append(b, "the peer's FIN finally came: the orphan moved to TIME_WAIT"...)
		}
	case AlertSynSent:
		b = append(b, "connect() still has no answer after "...)
		b = appendCount(b, a.Retries, "SYN retry", "SYN retries")
		b = append(b, ": SYNs dropped, or the peer is down"...)
	case AlertListenOverflow, AlertPortInUse, AlertSyscallError:
		b = appendHostAlert(b, a)
	case AlertZeroWindow:
		if a.Ended != "" {
			b = append(b, "the peer's receive window opened again: this host sends again"...)
			break
		}
		b = append(b, "the peer's receive window is full: its application stopped reading, so this host cannot send ("...)
		b = appendCount(b, a.Retries, "window probe", "window probes")
		b = append(b, " unanswered)"...)
	case AlertTimeWaitEnded:
		b = append(b, "the TIME_WAIT socket is gone: 2MSL (60 s) passed, or a new connection reused the port pair (tcp_tw_reuse)"...)
	case AlertSynRecv:
		if a.Ended != "" {
			b = append(b, "the kernel dropped the half-open connection after "...)
			b = appendCount(b, a.Retries, "SYN+ACK retry", "SYN+ACK retries")
			b = append(b, " (tcp_synack_retries), or the client reset it: the final ACK never came"...)
			break
		}
		b = append(b, "the client's final ACK has not come after "...)
		b = appendCount(b, a.Retries, "SYN+ACK retry", "SYN+ACK retries")
		b = append(b, ": ACKs lost, or a SYN flood"...)
	}
	return b
}

// Anomalous: the record is worth a look on a busy host: it did not end in
// a clean close (nor is merely still open), or its handshake needed
// retries, or events were lost while it was live.
func (c *Connection) Anomalous() bool {
	return isFailure(c.Outcome) || c.SynRetries > 0 || c.SynAckRetries > 0 || c.Incomplete
}

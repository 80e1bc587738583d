package timeline

import (
	"net/netip"
	"strconv"
	"syscall"
)

// Reasons: a short machine word for how a connection ended, set on each
// record when it is emitted. Constant strings, so records allocate nothing.
const (
	ReasonClosedLocal       = "closed_local"        // this host sent the first FIN; TIME_WAIT here
	ReasonClosedLocalOrphan = "closed_local_orphan" // ... and the peer's FIN had not come yet
	ReasonHalfClose         = "half_close"          // shutdown(SHUT_WR), read until the peer's FIN
	ReasonClosedPeer        = "closed_peer"         // the peer sent the first FIN
	ReasonSimultaneous      = "simultaneous_close"  // both sent FIN at once (CLOSING)
	ReasonListenerClosed    = "listener_closed"
	ReasonNothingListening  = "nothing_listening" // RST in reply to our SYN
	ReasonSynTimeout        = "syn_timeout"       // SYN retries exhausted
	ReasonSynAckTimeout     = "synack_timeout"    // accepted side: final ACK never came
	ReasonRetransTimeout    = "retransmit_timeout"
	ReasonKeepaliveTimeout  = "keepalive_timeout"
	ReasonPeerReset         = "peer_reset"
	ReasonHalfOpen          = "half_open" // our data reached a peer that no longer knew us
	ReasonUnreadData        = "closed_with_unread_data"
	ReasonLingerAbort       = "linger_abort" // close() with SO_LINGER {1, 0}
	ReasonDataAfterClose    = "data_after_close"
	ReasonLocalAbort        = "local_abort" // this host sent a RST, reason unknown
	ReasonHandshakeAbandon  = "closed_during_handshake"
	ReasonOpen              = "open"
	ReasonNoLocalPort       = "no_local_port"   // connect(): EADDRNOTAVAIL, the local port range used up
	ReasonConnectFailed     = "connect_failed"  // connect() failed in the call with another errno
	ReasonNeverAccepted     = "never_accepted"  // reset in the accept queue when its listener closed
	ReasonAbortOnMemory     = "abort_on_memory" // reset by the kernel: orphans or TCP memory over the limit
)

// reason decides a record's Reason from its outcome and what the kernel said.
func reason(c *Connection) string {
	switch c.Outcome {
	case OutcomeOpen:
		return ReasonOpen
	case OutcomeRefused:
		return ReasonNothingListening
	case OutcomeAborted:
		switch {
		case c.Syscall == SyscallConnect && c.SyscallErrno == uint16(syscall.EADDRNOTAVAIL):
			return ReasonNoLocalPort
		case c.Syscall == SyscallConnect && c.SyscallErrno != 0:
			return ReasonConnectFailed
		}
		return ReasonHandshakeAbandon
	case OutcomeTimeout:
		switch {
		case c.closeFrom == StateSynSent:
			return ReasonSynTimeout
		case c.closeFrom == StateSynRecv:
			return ReasonSynAckTimeout
		case c.RSTReason == "TCP_KEEPALIVE_TIMEOUT":
			return ReasonKeepaliveTimeout
		}
		return ReasonRetransTimeout
	case OutcomeResetByPeer:
		if c.HalfOpen {
			return ReasonHalfOpen
		}
		return ReasonPeerReset
	case OutcomeResetLocal:
		if c.NeverAccepted {
			// inet_child_forget() resets them with TCP_STATE too: only
			// the missing file tells them from SO_LINGER {1, 0}.
			return ReasonNeverAccepted
		}
		switch c.RSTReason {
		case "TCP_ABORT_ON_CLOSE":
			return ReasonUnreadData
		case "TCP_ABORT_ON_LINGER", "TCP_STATE":
			// close() with SO_LINGER {1, 0} goes through tcp_disconnect(),
			// which sends its RST with reason TCP_STATE.
			return ReasonLingerAbort
		case "TCP_ABORT_ON_DATA":
			return ReasonDataAfterClose
		case "TCP_KEEPALIVE_TIMEOUT":
			return ReasonKeepaliveTimeout
		case "TCP_ABORT_ON_MEMORY":
			return ReasonAbortOnMemory
		}
		return ReasonLocalAbort
	}
	switch {
	case c.Role == RoleListener:
		return ReasonListenerClosed
	case c.ClosedBy == ClosedByBoth:
		return ReasonSimultaneous
	case c.ClosedBy == ClosedByPeer:
		return ReasonClosedPeer
	case c.HalfClose:
		return ReasonHalfClose
	case c.LastState() == StateFinWait2:
		return ReasonClosedLocalOrphan
	}
	return ReasonClosedLocal
}

// Explanation says in one sentence what happened, as an experienced network
// engineer would. It allocates; output code uses AppendExplanation.
func (c *Connection) Explanation() string { return string(AppendExplanation(nil, c)) }

// AppendExplanation appends the record's explanation to b.
func AppendExplanation(b []byte, c *Connection) []byte {
	switch c.Reason {
	case ReasonClosedLocal:
		b = append(b, "closed cleanly; this host sent the first FIN, so it holds TIME_WAIT for 2MSL (60 s)"...)
	case ReasonClosedLocalOrphan:
		b = append(b, "closed by this host first; the peer had not sent its FIN yet, so the kernel keeps an orphaned FIN_WAIT2 socket until it does or "...)
		b = appendSysctl(b, c, "tcp_fin_timeout", sysFinTimeout, " s pass")
	case ReasonHalfClose:
		b = append(b, "half-close: this host shut down its sending side (shutdown SHUT_WR) and kept reading until the peer's FIN; TIME_WAIT here"...)
	case ReasonClosedPeer:
		b = append(b, "closed cleanly; the peer sent the first FIN, this host answered with its own"...)
	case ReasonSimultaneous:
		b = append(b, "simultaneous close: both ends sent FIN at once (FIN_WAIT1, CLOSING, TIME_WAIT)"...)
	case ReasonListenerClosed:
		b = append(b, "the listening socket was closed"...)
	case ReasonNothingListening:
		b = append(b, "RST in reply to the SYN: nothing listening on "...)
		b = appendEndpoint(b, c)
		b = append(b, " (or the port was held)"...)
	case ReasonSynTimeout:
		b = appendSynTimeout(b, c)
	case ReasonSynAckTimeout:
		b = append(b, "the client's final ACK never came after "...)
		b = appendCount(b, c.SynAckRetries, "SYN+ACK retry", "SYN+ACK retries")
		b = append(b, " ("...)
		b = appendSysctl(b, c, "tcp_synack_retries", sysSynAckRetries, "")
		b = append(b, ")"...)
	case ReasonRetransTimeout:
		b = appendRetransTimeout(b, c)
	case ReasonKeepaliveTimeout:
		b = append(b, "keepalive probes went unanswered: the peer vanished (tcp_keepalive_probes)"...)
	case ReasonPeerReset:
		b = append(b, "the peer aborted the connection with a RST (closed with SO_LINGER 0 or unread data, crashed, or a middlebox reset it)"...)
	case ReasonHalfOpen:
		b = append(b, "half-open: data sent to a peer that no longer knew the connection, which answered with RST"...)
	case ReasonUnreadData:
		b = append(b, "the application closed the socket with unread data in its receive queue, so the kernel sent RST instead of FIN (RFC 2525)"...)
	case ReasonLingerAbort:
		b = append(b, "the application aborted the connection: close() with SO_LINGER {1, 0} sends RST instead of FIN, skipping TIME_WAIT"...)
	case ReasonDataAfterClose:
		b = append(b, "data arrived after the application closed the socket; the kernel answered with RST"...)
	case ReasonLocalAbort:
		if c.RSTReason != "" {
			b = append(b, "this host reset the connection ("...)
			b = appendRSTReason(b, c.RSTReason)
			b = append(b, ')')
			break
		}
		b = append(b, "this host aborted the connection with RST (SO_LINGER 0 or close with unread data; this kernel gives no reason)"...)
	case ReasonNoLocalPort:
		b = appendNoLocalPort(b, c)
	case ReasonConnectFailed:
		b = append(b, "connect() failed with "...)
		b = append(b, ErrnoName(c.SyscallErrno)...)
		b = appendErrnoMeaning(b, c.SyscallErrno)
	case ReasonNeverAccepted:
		b = append(b, "reset when its listener closed: it waited in the accept queue and the application never accept()ed it"...)
	case ReasonAbortOnMemory:
		b = appendAbortOnMemory(b, c)
	case ReasonHandshakeAbandon:
		b = append(b, "the application closed the socket before the handshake completed (its own connect timeout?)"...)
	case ReasonOpen:
		b = append(b, "still open when tracing stopped"...)
	default:
		b = append(b, c.Reason...)
	}
	return appendCircumstances(b, c)
}

// appendSynTimeout: the SYN went unanswered; the socket's TCP_SYNCNT or the
// sysctls in force, and where the SYNs were lost (the host's evidence).
func appendSynTimeout(b []byte, c *Connection) []byte {
	b = append(b, "no answer to the SYN after "...)
	b = appendCount(b, c.SynRetries, "retry", "retries")
	b = append(b, " over "...)
	b = appendSeconds(b, c.Duration())
	b = append(b, " ("...)
	if c.SockSynRetries > 0 {
		// TCP_SYNCNT on the socket overrides the sysctl.
		b = append(b, "TCP_SYNCNT="...)
		b = strconv.AppendUint(b, uint64(c.SockSynRetries), 10)
		b = append(b, " on the socket"...)
	} else {
		b = appendSysctl(b, c, "tcp_syn_retries", sysSynRetries, "")
	}
	if c.sys != nil && c.sys.SynLinearTimeouts >= 0 {
		b = append(b, ", "...)
		b = appendSysctl(b, c, "tcp_syn_linear_timeouts", sysSynLinear, "")
	}
	b = append(b, "): "...)
	b = appendLossCause(b, c, "SYNs")
	return b
}

// appendRetransTimeout: retransmissions went unanswered until the
// socket's TCP_USER_TIMEOUT or tcp_retries2 ran out.
func appendRetransTimeout(b []byte, c *Connection) []byte {
	b = append(b, "gave up after "...)
	b = appendCount(b, c.Retransmits, "unanswered retransmission", "unanswered retransmissions")
	if c.UserTimeout > 0 {
		b = append(b, ": TCP_USER_TIMEOUT="...)
		b = strconv.AppendUint(b, uint64(c.UserTimeout), 10)
		b = append(b, " ms on the socket expired"...)
	} else {
		b = append(b, ": the peer or the path stopped responding (tcp_retries2)"...)
	}
	return b
}

func appendAbortOnMemory(b []byte, c *Connection) []byte {
	b = append(b, "the kernel reset this orphaned connection (RST reason TCP_ABORT_ON_MEMORY): too many orphaned sockets ("...)
	if c.sys != nil && c.sys.MaxOrphans >= 0 {
		b = append(b, "tcp_max_orphans="...)
		b = strconv.AppendInt(b, int64(c.sys.MaxOrphans), 10)
	} else {
		b = append(b, "tcp_max_orphans"...)
	}
	b = append(b, ") or TCP memory short (tcp_mem)"...)
	return b
}

// appendCircumstances adds what else the record says: retries that
// succeeded, drops on this host, kinds of retransmission, stalls, and the
// error an application saw.
func appendCircumstances(b []byte, c *Connection) []byte {
	if c.SynRetries > 0 && c.Reason != ReasonSynTimeout {
		b = append(b, "; connected after "...)
		b = appendCount(b, c.SynRetries, "SYN retry", "SYN retries")
		if c.ListenerFull.Known || c.DropsTotal() > 0 {
			b = append(b, ": "...)
			b = appendLossCause(b, c, "SYNs")
		}
	}
	if c.SynAckRetries > 0 && c.Reason != ReasonSynAckTimeout {
		b = append(b, "; "...)
		b = appendCount(b, c.SynAckRetries, "SYN+ACK retry", "SYN+ACK retries")
		if c.ListenerFull.Known {
			b = append(b, ": the client's final ACK was dropped, "...)
			b = appendLossCause(b, c, "")
		} else {
			b = append(b, ": the client's final ACK was lost"...)
		}
	}
	if c.DropsTotal() > 0 && c.Reason != ReasonSynTimeout && c.SynRetries == 0 {
		b = append(b, "; the kernel dropped "...)
		b = appendDrops(b, c)
		b = append(b, " on this host"...)
	}
	b = appendRetransKinds(b, c)
	b = appendStall(b, c)
	// Only a socket an application still held could report the error:
	// an orphan's end (closed already) reaches no one.
	if c.Errno != 0 && c.Outcome != OutcomeClosed && c.ErrorSeen() {
		b = append(b, "; the application saw "...)
		b = append(b, ErrnoName(c.Errno)...)
	}
	return b
}

const (
	sysSynRetries = iota
	sysSynAckRetries
	sysSynLinear
	sysFinTimeout
)

// appendSysctl writes name=value when the connection's namespace's sysctls
// are known, and the bare name otherwise.
func appendSysctl(b []byte, c *Connection, name string, which int, unit string) []byte {
	b = append(b, name...)
	if c.sys == nil {
		return b
	}
	v := -1
	switch which {
	case sysSynRetries:
		v = c.sys.SynRetries
	case sysSynAckRetries:
		v = c.sys.SynAckRetries
	case sysSynLinear:
		v = c.sys.SynLinearTimeouts
	case sysFinTimeout:
		v = c.sys.FinTimeout
	}
	if v < 0 {
		return b
	}
	b = append(b, '=')
	b = strconv.AppendInt(b, int64(v), 10)
	return append(b, unit...)
}

// appendCount writes "1 retry" or "3 retries".
func appendCount(b []byte, n int, one, many string) []byte {
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ' ')
	if n == 1 {
		return append(b, one...)
	}
	return append(b, many...)
}

func appendEndpoint(b []byte, c *Connection) []byte { return AppendAddrPort(b, c.RAddr, c.RPort) }

// AppendAddrPort writes 1.2.3.4:80 or [::1]:80; port 0 of a known address
// is written "*" (any port: the clients of a server).
func AppendAddrPort(b []byte, a netip.Addr, port uint16) []byte {
	if a.Is6() {
		b = append(b, '[')
		b = a.AppendTo(b)
		b = append(b, ']')
	} else {
		b = a.AppendTo(b)
	}
	b = append(b, ':')
	if port == 0 && a.IsValid() && !a.IsUnspecified() {
		return append(b, '*')
	}
	return strconv.AppendUint(b, uint64(port), 10)
}

func appendSeconds(b []byte, ns int64) []byte {
	b = strconv.AppendFloat(b, float64(ns)/1e9, 'f', 1, 64)
	return append(b, " s"...)
}

// isFailure: the outcomes an SRE looks at first.
func isFailure(o Outcome) bool {
	return o != OutcomeClosed && o != OutcomeOpen
}

// ErrorSeen: an application still held the socket when its error was
// reported. Not an orphan (closed already), nor a reset the application's
// own close() caused (SO_LINGER {1, 0}, unread data), nor one no
// application ever had.
func (c *Connection) ErrorSeen() bool {
	switch c.Reason {
	case ReasonLingerAbort, ReasonUnreadData, ReasonNeverAccepted, ReasonAbortOnMemory, ReasonDataAfterClose:
		return false
	}
	return !c.closedDead
}

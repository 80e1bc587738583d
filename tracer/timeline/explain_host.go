// The host's part in an explanation: the evidence the kernel gave for a
// cause that lies outside the connection (a full accept queue, a firewall
// rule, no free local port, a failed system call), and what an alert about
// the host says. Each sentence names its evidence; where there is none,
// it says what is known and what is not.

package timeline

import (
	"strconv"
	"syscall"
)

// appendLossCause says why a handshake's packets went unanswered, from
// what this host saw: its listener's full queue, its firewall's drops, its
// other drops; or that none was seen here.
func appendLossCause(b []byte, c *Connection, what string) []byte {
	switch lf := &c.ListenerFull; {
	case lf.Known:
		b = append(b, "the accept queue of "...)
		b = AppendAddrPort(b, lf.Addr, lf.Port)
		b = append(b, " on this host was full ("...)
		b = appendQueue(b, lf.Queue)
		b = append(b, "): it dropped "...)
		b = strconv.AppendUint(b, lf.Dropped, 10)
		b = append(b, " SYNs or final ACKs; its application is not calling accept() fast enough, or its listen() backlog is too small"...)
	case c.DroppedBy("NETFILTER_DROP") > 0:
		b = append(b, "a firewall rule on this host (nftables/iptables) dropped "...)
		b = appendCount(b, c.DroppedBy("NETFILTER_DROP"), "packet", "packets")
		b = append(b, " of it (NETFILTER_DROP)"...)
	case c.DropsTotal() > 0:
		b = append(b, "this host dropped "...)
		b = appendDrops(b, c)
	case c.dropsTraced:
		b = append(b, "no drop was seen on this host: the "...)
		b = append(b, what...)
		b = append(b, " or their answers were lost beyond it, or "...)
		b = appendEndpoint(b, c)
		b = append(b, " is down or unreachable"...)
	default:
		b = append(b, what...)
		b = append(b, " dropped by a firewall, or "...)
		b = appendEndpoint(b, c)
		b = append(b, " is down or unreachable"...)
	}
	return b
}

// appendQueue writes "2 waiting, limit 1".
func appendQueue(b []byte, q Queue) []byte {
	b = strconv.AppendUint(b, uint64(q.Len), 10)
	b = append(b, " waiting, limit "...)
	return strconv.AppendUint(b, uint64(q.Max), 10)
}

// appendDrops writes "3 of its packets (NETFILTER_DROP 2, TCP_ZEROWINDOW 1)".
func appendDrops(b []byte, c *Connection) []byte {
	b = appendCount(b, c.DropsTotal(), "packet", "packets")
	b = append(b, " of it ("...)
	for i, d := range c.Drops {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, d.Reason...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(d.Count), 10)
	}
	return append(b, ')')
}

// appendNoLocalPort explains a connect() that found no free local port.
func appendNoLocalPort(b []byte, c *Connection) []byte {
	b = append(b, "connect() found no free local port (EADDRNOTAVAIL)"...)
	if u := c.PortUse; u.Range > 0 || u.Known || u.NotRescanned {
		b = append(b, ": "...)
		if u.Range > 0 {
			b = append(b, "ip_local_port_range has "...)
			b = appendCount(b, u.Range, "port", "ports")
		}
		if u.NotRescanned {
			if u.Range > 0 {
				b = append(b, "; "...)
			}
			b = append(b, "ports in use not counted: "...)
			b = appendNotRescanned(b)
		}
		if u.Known {
			if u.Range > 0 {
				b = append(b, ", "...)
			}
			b = strconv.AppendInt(b, int64(u.InUse), 10)
			b = append(b, " in use towards "...)
			b = appendEndpoint(b, c)
			b = append(b, " ("...)
			b = strconv.AppendInt(b, int64(u.TimeWait), 10)
			b = append(b, " in TIME_WAIT)"...)
		}
	}
	return append(b, "; reuse connections (keep-alive, a pool), set net.ipv4.tcp_tw_reuse=1, widen ip_local_port_range, or spread over more destination addresses"...)
}

// errnoMeanings says what a failed call's errno means on a TCP socket.
var errnoMeanings = map[syscall.Errno]string{
	syscall.EMFILE:        "the process is at its file descriptor limit (ulimit -n, RLIMIT_NOFILE)",
	syscall.ENFILE:        "the host is at its file limit (fs.file-max)",
	syscall.ENOBUFS:       "the kernel is short of socket memory",
	syscall.ENOMEM:        "the kernel is short of memory",
	syscall.EACCES:        "refused by a policy: a BPF cgroup program, an LSM (SELinux, AppArmor), or a privileged port",
	syscall.EPERM:         "refused by a policy: a BPF cgroup program, an LSM, or a firewall rule on output",
	syscall.ENETUNREACH:   "no route to that network from this host",
	syscall.EHOSTUNREACH:  "no route to that host",
	syscall.EADDRNOTAVAIL: "no free local port, or the local address is not on this host",
	syscall.EADDRINUSE:    "the address and port are in use",
	syscall.ECONNABORTED:  "a connection was reset while it waited in the accept queue",
	syscall.ECONNREFUSED:  "nothing listens there",
	syscall.ETIMEDOUT:     "the handshake timed out",
	syscall.EINVAL:        "the socket is not in a state for this call (not listening, already bound)",
}

// appendErrnoMeaning writes ": meaning" for errno when known.
func appendErrnoMeaning(b []byte, errno uint16) []byte {
	if m, ok := errnoMeanings[syscall.Errno(errno)]; ok {
		b = append(b, ": "...)
		b = append(b, m...)
	}
	return b
}

// appendHostAlert explains listen_overflow, port_in_use and syscall_error.
func appendHostAlert(b []byte, a *Alert) []byte {
	switch a.Kind {
	case AlertListenOverflow:
		b = append(b, "the accept queue of "...)
		b = AppendAddrPort(b, a.LAddr, a.LPort)
		b = append(b, " is full ("...)
		b = appendQueue(b, a.Queue)
		if a.Somaxconn > 0 {
			if a.Queue.Max < uint32(a.Somaxconn) {
				b = append(b, ": the listen() backlog; net.core.somaxconn="...)
			} else {
				b = append(b, ": capped by net.core.somaxconn="...)
			}
			b = strconv.AppendInt(b, int64(a.Somaxconn), 10)
		}
		b = append(b, "): it dropped "...)
		b = strconv.AppendUint(b, a.Dropped, 10)
		b = append(b, " SYNs or final ACKs; the application is not calling accept() fast enough, or its backlog is too small"...)
		for _, ec := range a.AcceptErrors {
			b = append(b, "; accept() failed "...)
			b = appendCount(b, int(ec.Count), "time", "times")
			b = append(b, " with "...)
			b = append(b, ErrnoName(ec.Errno)...)
			b = appendErrnoMeaning(b, ec.Errno)
		}
	case AlertPortInUse:
		b = append(b, a.Syscall.String()...)
		b = append(b, "() of "...)
		b = AppendAddrPort(b, a.LAddr, a.LPort)
		b = append(b, " failed with EADDRINUSE: "...)
		b = appendHolders(b, &a.Holders)
	case AlertSyscallError:
		b = append(b, a.Syscall.String()...)
		b = append(b, "() failed with "...)
		b = append(b, ErrnoName(a.Errno)...)
		if a.Count > 1 {
			b = append(b, " ("...)
			b = appendCount(b, int(a.Count), "time", "times")
			b = append(b, " since the last alert)"...)
		}
		b = appendErrnoMeaning(b, a.Errno)
	}
	return b
}

// appendNotRescanned says why a failure's sockets were not looked at.
func appendNotRescanned(b []byte) []byte {
	return append(b, "this namespace's sockets were just scanned for earlier failures and are not scanned again so soon (rate limit)"...)
}

func appendHolders(b []byte, h *PortHolders) []byte {
	switch {
	case h.NotRescanned:
		b = append(b, "who holds the port was not looked at: "...)
		return appendNotRescanned(b)
	case !h.Known:
		return append(b, "who holds the port is not known (no socket scan)"...)
	case len(h.Listeners) > 0:
		b = append(b, "a listener holds the port"...)
		for i, l := range h.Listeners {
			if i == 0 {
				b = append(b, " ("...)
			} else {
				b = append(b, ", "...)
			}
			if l.PID != 0 {
				b = append(b, l.Comm...)
				b = append(b, '[')
				b = strconv.AppendUint(b, uint64(l.PID), 10)
				b = append(b, ']')
			} else {
				b = append(b, "owner unknown"...)
			}
		}
		b = append(b, "); stop it, or pick another port (SO_REUSEPORT if both are meant to share it)"...)
	case h.TimeWait > 0:
		b = append(b, "held by "...)
		b = appendCount(b, h.TimeWait, "socket", "sockets")
		b = append(b, " in TIME_WAIT (a previous run closed first; the last leaves within 60 s, TCP_TIMEWAIT_LEN); set SO_REUSEADDR before bind()"...)
	case h.Other > 0:
		b = append(b, "held by "...)
		b = appendCount(b, h.Other, "connection", "connections")
		b = append(b, " using it as their local port; set SO_REUSEADDR before bind()"...)
	default:
		b = append(b, "no TCP socket holds it now: it was released meanwhile"...)
	}
	return b
}

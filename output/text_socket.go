package output

import (
	"strconv"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// hasTCPInfo: tcp_info at the end says something of a connection that was
// established; of a listener or a handshake that failed, nothing.
func hasTCPInfo(c *timeline.Connection) bool {
	if !c.Info.End || c.Role == timeline.RoleListener {
		return false
	}
	for _, s := range c.States {
		if s == timeline.StateEstablished {
			return true
		}
	}
	return false
}

// noRTT is tcp_sock's minimum RTT before any sample (~0U).
const noRTT = ^uint32(0)

// appendTCPInfo writes the compact line of what tcp_info said at the
// connection's end: "    tcp_info cwnd 10, ssthresh -, min rtt 21µs, ...".
func appendTCPInfo(b []byte, c *timeline.Connection) []byte {
	in := &c.Info
	b = append(b, "    tcp_info cwnd "...)
	b = strconv.AppendUint(b, uint64(in.Cwnd), 10)
	b = append(b, ", ssthresh "...)
	if in.Ssthresh >= 0x7fffffff {
		b = append(b, '-')
	} else {
		b = strconv.AppendUint(b, uint64(in.Ssthresh), 10)
	}
	b = append(b, ", min rtt "...)
	if in.MinRTT == noRTT {
		b = append(b, '-')
	} else {
		b = appendDuration(b, int64(in.MinRTT)*1e3)
	}
	b = append(b, ", delivered "...)
	b = strconv.AppendUint(b, uint64(in.Delivered), 10)
	b = append(b, ", lost "...)
	b = strconv.AppendUint(b, uint64(in.Lost), 10)
	b = append(b, ", reordering "...)
	b = strconv.AppendUint(b, uint64(in.Reordering), 10)
	b = append(b, ", mss "...)
	b = strconv.AppendUint(b, uint64(in.SndMSS), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(in.RcvMSS), 10)
	if in.Busy >= 0 {
		b = append(b, ", busy "...)
		b = appendDuration(b, in.Busy)
		b = append(b, ", rwnd-limited "...)
		b = appendDuration(b, in.RwndLimited)
		b = append(b, ", sndbuf-limited "...)
		b = appendDuration(b, in.SndbufLimited)
	}
	if n := c.RetransByKind; c.Retransmits > 0 {
		b = append(b, ", retransmits rto "...)
		b = strconv.AppendInt(b, int64(n[timeline.RetransRTO]), 10)
		b = append(b, " fast "...)
		b = strconv.AppendInt(b, int64(n[timeline.RetransFast]), 10)
		b = append(b, " tlp "...)
		b = strconv.AppendInt(b, int64(n[timeline.RetransTLP]), 10)
	}
	return append(b, '\n')
}

// appendHostAlertHead starts the line of an alert about the host rather
// than a connection held in a state: what happened, not a state and how
// long; ok false for the others.
func appendHostAlertHead(b []byte, a *timeline.Alert) (_ []byte, ok bool) {
	switch a.Kind {
	case timeline.AlertListenOverflow:
		b = append(b, "listen overflow: "...)
	case timeline.AlertPortInUse:
		b = append(b, a.Syscall.String()...)
		b = append(b, "() EADDRINUSE: "...)
	case timeline.AlertSyscallError:
		b = append(b, a.Syscall.String()...)
		b = append(b, "() "...)
		b = append(b, timeline.ErrnoName(a.Errno)...)
		b = append(b, ": "...)
	default:
		return b, false
	}
	return b, true
}

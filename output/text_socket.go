package output

import (
	"strconv"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

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
	b = appendDuration(b, int64(in.MinRTT)*1e3)
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

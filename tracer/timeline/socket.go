// What the socket knew, read at its transitions (never per packet): the
// initial sequence numbers of both sides and the sequence numbers of both
// FINs, as the textbook draws them; the kind of each retransmission; and at
// its end what tcp_info says, with the time it spent stalled.

package timeline

import "strconv"

// Seq holds a connection's sequence numbers as the wire carries them
// (absolute). The Has flags say which are known.
type Seq struct {
	// ISN and PeerISN: the initial sequence numbers of this end and of
	// the peer (read at ESTABLISHED: snd_una and rcv_nxt are one past).
	ISN, PeerISN uint32
	HasISN       bool
	// FIN and PeerFIN: the sequence numbers of each side's FIN (read at
	// the end: write_seq and rcv_nxt are one past a FIN sent and one
	// received).
	FIN, PeerFIN       uint32
	HasFIN, HasPeerFIN bool
}

// learnSeq takes the sequence numbers an ESTABLISHED or CLOSE event read.
func (c *Connection) learnSeq(e *Event) {
	in := &e.Info
	switch e.NewState {
	case StateEstablished:
		if e.OldState == StateSynSent || e.OldState == StateSynRecv {
			c.Seq.ISN, c.Seq.PeerISN, c.Seq.HasISN = in.SndUna-1, in.RcvNxt-1, true
		}
	case StateClose:
		c.Info = *in
		if e.Errno != 0 || c.RSTReceived {
			return // reset: no FIN exchange to read
		}
		if c.sentFIN() {
			c.Seq.FIN, c.Seq.HasFIN = in.WriteSeq-1, true
		}
		if c.gotFIN(e) {
			c.Seq.PeerFIN, c.Seq.HasPeerFIN = in.RcvNxt-1, true
		}
	}
}

// sentFIN: this end closed its side (FIN_WAIT1, LAST_ACK or CLOSING seen).
func (c *Connection) sentFIN() bool {
	for _, s := range c.States {
		if s == StateFinWait1 || s == StateLastAck || s == StateClosing {
			return true
		}
	}
	return false
}

// gotFIN: the peer's FIN came (CLOSE_WAIT or CLOSING seen, or the
// timewait handoff after it: SOCK_DONE).
func (c *Connection) gotFIN(e *Event) bool {
	if e.SockDone {
		return true
	}
	for _, s := range c.States {
		if s == StateCloseWait || s == StateLastAck || s == StateClosing {
			return true
		}
	}
	return false
}

func (c *Connection) countRetransmit(e *Event) {
	if int(e.Retrans) < len(c.RetransByKind) {
		c.RetransByKind[e.Retrans]++
	}
	if e.Retrans == RetransRTO && e.Backoff+1 > c.MaxBackoff {
		c.MaxBackoff = e.Backoff + 1
	}
}

// appendRetransKinds explains the kinds of a record's retransmissions:
// timeouts point at a peer or path gone silent, fast retransmits at loss
// on a path that still delivers.
func appendRetransKinds(b []byte, c *Connection) []byte {
	rto, fast, tlp := c.RetransByKind[RetransRTO], c.RetransByKind[RetransFast], c.RetransByKind[RetransTLP]
	if c.Retransmits == 0 {
		return b
	}
	b = append(b, "; "...)
	b = appendCount(b, c.Retransmits, "retransmission", "retransmissions")
	b = append(b, ": "...)
	first := true
	part := func(n int, one, many, meaning string) {
		if n == 0 {
			return
		}
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = appendCount(b, n, one, many)
		b = append(b, meaning...)
	}
	part(rto, "timeout", "timeouts", " (the peer or the path went silent")
	if rto > 0 {
		if c.MaxBackoff > 1 {
			b = append(b, "; backed off "...)
			b = strconv.AppendUint(b, uint64(c.MaxBackoff), 10)
			b = append(b, " times"...)
		}
		b = append(b, ')')
	}
	part(fast, "fast retransmit", "fast retransmits", " (loss on a path that still delivers)")
	part(tlp, "tail-loss probe", "tail-loss probes", " (the last segments went unacked)")
	part(c.RetransByKind[RetransOther], "other", "others", "")
	if c.Info.End && c.Info.DSACKDups > 0 {
		b = append(b, "; the peer had "...)
		b = strconv.AppendUint(b, uint64(c.Info.DSACKDups), 10)
		b = append(b, " of them already (DSACK): spurious"...)
	}
	return b
}

// appendStall says when the peer's window or the send buffer held the
// connection for a large part of its life.
func appendStall(b []byte, c *Connection) []byte {
	life := c.Duration()
	if !c.Info.End || life <= 0 {
		return b
	}
	big := func(ns int64) bool { return ns >= 1e9 && ns*4 >= life }
	if big(c.Info.RwndLimited) {
		b = append(b, "; the peer's receive window was full for "...)
		b = appendSeconds(b, c.Info.RwndLimited)
		b = append(b, " of "...)
		b = appendSeconds(b, life)
		b = append(b, ": the peer application stopped reading"...)
	}
	if big(c.Info.SndbufLimited) {
		b = append(b, "; limited by its own send buffer for "...)
		b = appendSeconds(b, c.Info.SndbufLimited)
		b = append(b, " of "...)
		b = appendSeconds(b, life)
		b = append(b, " (SO_SNDBUF, tcp_wmem)"...)
	}
	return b
}

package output

import (
	"strconv"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// Sequence numbers on the arrows, as the textbook writes them: SYN seq=x,
// SYN+ACK seq=y ack=x+1, ACK ack=y+1, FIN seq=u ack=v, ACK ack=u+1. The
// records hold them as the socket knew them at its transitions (never per
// packet): both initial sequence numbers, read at ESTABLISHED, and both
// FINs, read at CLOSE (timeline.Seq).
//
// A label is a claim: it carries only numbers that are exactly known.
//
//   - Relative numbers (the default, as Wireshark shows them) count from
//     each side's own ISN: a seq from its sender's, an ack from its
//     receiver's. A side whose ISN is not known gets no relative numbers.
//   - Absolute numbers (--absolute-seq, like tcpdump -S) are the wire's.
//   - SYN seq=ISN. SYN+ACK seq=ISN ack=peer ISN+1. The handshake's ACK
//     ack=peer ISN+1 (its seq, ISN+1, says nothing new). Retries carry
//     the same numbers as the first segment.
//   - FIN seq=FIN. The ACK of a FIN, and a FIN+ACK's ack: FIN+1 (it
//     acknowledges the FIN, past which there is nothing).
//   - A FIN's ack is what its sender had received when it went out, and
//     is written only where the records prove it (see finAck): when the
//     sender had already received the other side's FIN (it closed from
//     CLOSE_WAIT): the other FIN+1; or when the other side sent no data
//     (its FIN is its ISN+1) and its FIN provably came after ours went
//     out: the other ISN+1. Otherwise data could have come in between,
//     and the ack is left out.
//   - Nothing on RSTs and data retransmissions: the socket's
//     transitions do not tell their numbers.
//
// When a label with numbers is too wide for the arrow (two ten-digit
// absolute numbers), seq= and ack= become s= and a=, then the ack is
// left out, then the seq.

// endSeq is what is known of one side's sequence numbers (absolute).
type endSeq struct {
	isn, fin       uint32
	hasISN, hasFIN bool
}

// seqNums are both sides' numbers, indexed by side of the diagram, and the
// records they come from (rec[right] is nil when the peer is inferred).
type seqNums struct {
	abs  bool
	ends [2]endSeq
	rec  [2]*timeline.Connection
}

// newSeqNums merges what local (and peer, if not nil) knew. Where the two
// records disagree the number is not known: the label would be a guess.
func newSeqNums(local, peer *timeline.Connection, abs bool) *seqNums {
	n := &seqNums{abs: abs, rec: [2]*timeline.Connection{local, peer}}
	s := &local.Seq
	n.ends[left] = endSeq{isn: s.ISN, hasISN: s.HasISN, fin: s.FIN, hasFIN: s.HasFIN}
	n.ends[right] = endSeq{isn: s.PeerISN, hasISN: s.HasISN, fin: s.PeerFIN, hasFIN: s.HasPeerFIN}
	if peer == nil {
		return n
	}
	p := &peer.Seq
	merge := func(e *endSeq, isn uint32, hasISN bool, fin uint32, hasFIN bool) {
		switch {
		case !hasISN:
		case !e.hasISN:
			e.isn, e.hasISN = isn, true
		case e.isn != isn:
			e.hasISN = false
		}
		switch {
		case !hasFIN:
		case !e.hasFIN:
			e.fin, e.hasFIN = fin, true
		case e.fin != fin:
			e.hasFIN = false
		}
	}
	merge(&n.ends[right], p.ISN, p.HasISN, p.FIN, p.HasFIN)
	merge(&n.ends[left], p.PeerISN, p.HasISN, p.PeerFIN, p.HasPeerFIN)
	return n
}

// seqValue is one number of a label: in the sequence space of side sp.
type seqValue struct {
	v  uint32
	sp side
	ok bool
}

// value returns v of side sp's space as it is written, if it can be.
func (n *seqNums) value(x seqValue) (string, bool) {
	if !x.ok {
		return "", false
	}
	if n.abs {
		return strconv.FormatUint(uint64(x.v), 10), true
	}
	e := &n.ends[x.sp]
	if !e.hasISN {
		return "", false
	}
	return strconv.FormatUint(uint64(x.v-e.isn), 10), true
}

// isn is side s's ISN plus add, if known.
func (n *seqNums) isn(s side, add uint32) seqValue {
	e := &n.ends[s]
	return seqValue{e.isn + add, s, e.hasISN}
}

// fin is side s's FIN plus add, if known.
func (n *seqNums) fin(s side, add uint32) seqValue {
	e := &n.ends[s]
	return seqValue{e.fin + add, s, e.hasFIN}
}

// finAck is the ack carried by the FIN side s sent, where it is proven.
func (n *seqNums) finAck(s side) seqValue {
	o := 1 - s
	// The sender had received the other FIN: it closed from CLOSE_WAIT,
	// and its rcv_nxt stays one past that FIN.
	if r := n.rec[s]; r != nil && hasStep(r, timeline.StateCloseWait, timeline.StateLastAck, false) {
		return n.fin(o, 1)
	}
	// The other side sent nothing but its FIN, and that FIN came after
	// ours went out: ours acknowledged its ISN+1 alone. Proven by the
	// ACK of ours coming before the other FIN (FIN_WAIT2, or one FIN+ACK
	// segment to TIME_WAIT), or by the other side having read our FIN
	// before it sent its own (CLOSE_WAIT).
	e := &n.ends[o]
	if !e.hasISN || !e.hasFIN || e.fin != e.isn+1 {
		return seqValue{}
	}
	r, ro := n.rec[s], n.rec[o]
	if r != nil && (hasStep(r, timeline.StateFinWait1, timeline.StateFinWait2, false) ||
		hasStep(r, timeline.StateFinWait1, timeline.StateTimeWait, true)) ||
		ro != nil && hasStep(ro, timeline.StateEstablished, timeline.StateCloseWait, false) {
		return n.isn(o, 1)
	}
	return seqValue{}
}

// hasStep says whether c went from -> to (in its timewait socket or not).
func hasStep(c *timeline.Connection, from, to timeline.State, timewait bool) bool {
	for _, s := range c.Steps {
		if s.Kind == timeline.StepState && s.From == from && s.To == to && s.TimewaitSocket == timewait {
			return true
		}
	}
	return false
}

// maxLabel is the widest arrow label: a blank each side of it, and room
// for the shaft between it and each line (ladder_draw.go).
const maxLabel = middleCols - 6

// label writes base with the numbers of a segment of this kind sent by
// side from. A "FIN+ACK" acknowledges the receiver's FIN.
func (n *seqNums) label(kind segKind, from side, base string) string {
	if n == nil {
		return base
	}
	to := 1 - from
	var seq, ack seqValue
	switch kind {
	case segSYN:
		seq = n.isn(from, 0)
	case segSynAck:
		seq, ack = n.isn(from, 0), n.isn(to, 1)
	case segAckSyn:
		ack = n.isn(to, 1)
	case segFIN:
		seq, ack = n.fin(from, 0), n.finAck(from)
		if base == "FIN+ACK" {
			ack = n.fin(to, 1)
		}
	case segAckFIN:
		ack = n.fin(to, 1)
	}
	s, hasSeq := n.value(seq)
	a, hasAck := n.value(ack)
	write := func(sk, ak string, withSeq, withAck bool) string {
		l := base
		if withSeq {
			l += " " + sk + s
		}
		if withAck {
			l += " " + ak + a
		}
		return l
	}
	for _, try := range [...]string{
		write("seq=", "ack=", hasSeq, hasAck),
		write("s=", "a=", hasSeq, hasAck),
		write("s=", "", hasSeq, false),
	} {
		if len(try) <= maxLabel {
			return try
		}
	}
	return base
}

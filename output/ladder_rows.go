package output

import (
	"cmp"
	"math"
	"slices"
	"strconv"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// A ladder diagram is a list of rows, time going down. This file turns a
// connection's steps into rows: the segments its state changes imply (as a
// TCP textbook draws them), those its tracepoints reported, and the states
// of each end beside its line. ladder_draw.go lays the rows out.

// side is a vertical line of the diagram.
type side uint8

const (
	left  side = iota // this host's end: the record rendered
	right             // the other end: the peer, inferred or its own record
)

// segKind says which segment an arrow is, so that the two ends of a pair,
// which each infer the segments they exchanged, draw each one once.
type segKind uint8

const (
	segSYN segKind = iota + 1
	segSynAck
	segAckSyn // the ACK that completes the handshake
	segFIN
	segAckFIN
	segRST
	segRetransmit // seen on its sender only: never paired
)

type arrow struct {
	kind    segKind
	toRight bool
	label   string
	seen    bool // a tracepoint reported it (solid shaft); else inferred (dashed)
}

// row is one line of the diagram.
type row struct {
	t     int64 // ns since the diagram's start
	timed bool  // t is known: the kernel reported the moment
	arrow arrow // arrow.kind 0: no arrow
	// label is written beside each line: a state, or a timer waited.
	label [2]string
	note  string // in the middle, when there is no arrow
	// dotted draws the lines dotted: before tracing began, after the end.
	dotted bool
	tail   bool // after the last event: what the kernel does next
	// after: an untimed row that sorts with the row before it (the bytes
	// exchanged, after the handshake), not with the next timed one.
	after bool

	// For pairing the two ends.
	from   side  // whose record the row comes from
	sender bool  // the arrow was inferred by the end that sent it
	ord    int   // the arrow's ordinal among its kind and direction
	key    int64 // where it sorts among both ends' rows
	gone   bool  // dropped as the duplicate of the other end's arrow
	// detached: a label row taken from a dropped duplicate arrow; it
	// belongs to the arrow row kept, rows[arrowRow] in pairRows.
	detached bool
	arrowRow int
}

// inferred marks a state of the end whose record is not drawn: what the
// textbook says it must be, not what was seen.
func inferred(s string) string { return "(" + s + ")" }

// rowBuilder collects the rows of one end's record.
type rowBuilder struct {
	rows  []row
	c     *timeline.Connection
	from  side
	base  int64 // the diagram's time zero
	other bool  // also write the other end's textbook states
	ords  map[[2]int]int
	// Pairs: this end's FIN reached the other end's orphaned FIN_WAIT2
	// timewait socket (peerTimeWait), or the other end's FIN reached ours
	// (finToOrphan); no tracepoint reports a timewait socket's moves.
	peerTimeWait, finToOrphan bool
	lastRetransmit            int64 // time of the last data retransmission, -1: none
	lastSyn                   int64 // time of the last SYN sent
	accepted                  bool  // the handshake of an accepted socket is drawn
	seq                       *seqNums
}

// lab is the label of a segment this record's end sent (out) or received,
// with its sequence numbers where they are known.
func (g *rowBuilder) lab(kind segKind, out bool, base string) string {
	from := g.from
	if !out {
		from = 1 - from
	}
	return g.seq.label(kind, from, base)
}

func (g *rowBuilder) add(r row) *row {
	r.from = g.from
	if r.arrow.kind != 0 && r.arrow.kind != segRetransmit {
		k := [2]int{int(r.arrow.kind), 0}
		if r.arrow.toRight {
			k[1] = 1
		}
		g.ords[k]++
		r.ord = g.ords[k]
	}
	g.rows = append(g.rows, r)
	return &g.rows[len(g.rows)-1]
}

// own and peer are the label slots of this record's end and of the other.
func (g *rowBuilder) own() int  { return int(g.from) }
func (g *rowBuilder) peer() int { return 1 - int(g.from) }

// segment adds an arrow sent (out) or received by this record's end at t.
func (g *rowBuilder) segment(t int64, timed, out bool, kind segKind, label string, seen bool, own, peer string) *row {
	r := row{t: t - g.base, timed: timed, sender: out,
		arrow: arrow{kind: kind, toRight: out == (g.from == left), label: label, seen: seen}}
	r.label[g.own()] = own
	if g.other {
		r.label[g.peer()] = peer
	}
	return g.add(r)
}

func (g *rowBuilder) send(t int64, kind segKind, label, own, peer string) *row {
	return g.segment(t, true, true, kind, label, false, own, peer)
}

func (g *rowBuilder) recv(t int64, kind segKind, label, own, peer string) *row {
	return g.segment(t, true, false, kind, label, false, own, peer)
}

func (g *rowBuilder) state(t int64, own string) *row {
	r := row{t: t - g.base, timed: true}
	r.label[g.own()] = own
	return g.add(r)
}

// wait adds the time a retransmission timer waited, beside this end's line.
func (g *rowBuilder) wait(ns int64) {
	if ns <= 0 {
		return
	}
	r := row{}
	r.label[g.own()] = "wait " + string(appendWait(nil, ns))
	g.add(r)
}

// build turns the record's steps into rows.
func (g *rowBuilder) build() {
	c := g.c
	if c.Partial && len(c.States) > 0 {
		r := row{t: c.Start - g.base, dotted: true, note: "started before tracing"}
		r.label[g.own()] = c.States[0].String()
		g.add(r)
	}
	g.lastSyn = c.Start
	g.lastRetransmit = -1
	g.accepted = false
	steps := c.Steps
	for i := 0; i < len(steps); i++ {
		var next *timeline.Step
		if i+1 < len(steps) {
			next = &steps[i+1]
		}
		if g.step(&steps[i], next) {
			i++
		}
	}
	g.end()
}

// step adds the rows of s, and says whether they also drew next.
func (g *rowBuilder) step(s, next *timeline.Step) bool {
	switch s.Kind {
	case timeline.StepSynRetransmit, timeline.StepSynAckRetransmit, timeline.StepRetransmit:
		g.retransmission(s)
		return false
	case timeline.StepRSTSent:
		peer := inferred("CLOSE")
		if s.From == timeline.StateTimeWait {
			peer = ""
		}
		g.segment(s.Time, true, true, segRST, "RST", true, "", peer)
		return false
	case timeline.StepRSTReceived:
		return g.rstReceived(s, next)
	case timeline.StepError:
		return false // the explanation says what the application saw
	}
	if g.acceptsHandshake(s) {
		return g.acceptedACK(s, next)
	}
	g.transition(s)
	if s.Kind == timeline.StepState && s.To == timeline.StateClose && next != nil &&
		next.Kind == timeline.StepRSTSent && next.Time-s.Time < 1e6 {
		// close() sent a RST: the RST row carries the CLOSE.
		last := &g.rows[len(g.rows)-1]
		if last.arrow.kind == 0 && last.note == "" {
			g.rows = g.rows[:len(g.rows)-1]
			g.segment(s.Time, true, true, segRST, "RST", true, s.To.String(), inferred("CLOSE"))
			return true
		}
	}
	return false
}

// retransmission adds a retransmitted SYN, SYN+ACK or segment, after the
// timer's wait.
func (g *rowBuilder) retransmission(s *timeline.Step) {
	switch s.Kind {
	case timeline.StepSynRetransmit:
		g.wait(s.Since)
		g.segment(s.Time, true, true, segRetransmit, g.lab(segSYN, true, "SYN (retry "+strconv.Itoa(s.N)+")"), true, "", "")
		g.lastSyn = s.Time
	case timeline.StepSynAckRetransmit:
		if !g.accepted {
			g.passiveOpen()
			g.accepted = true
		}
		g.wait(s.Since)
		g.segment(s.Time, true, true, segRetransmit, g.lab(segSynAck, true, "SYN+ACK (retry "+strconv.Itoa(s.N)+")"), true,
			"", "")
	case timeline.StepRetransmit:
		// The wait before the first one is not known: the original
		// send is not traced. Between retransmissions it is the RTO.
		if g.lastRetransmit >= 0 {
			g.wait(s.Time - g.lastRetransmit)
		}
		g.lastRetransmit = s.Time
		g.segment(s.Time, true, true, segRetransmit, "retransmission "+strconv.Itoa(s.N), true, "", "")
	}
}

// rstReceived adds a RST received, and says whether it also drew next: the
// CLOSE it caused.
func (g *rowBuilder) rstReceived(s, next *timeline.Step) bool {
	c := g.c
	peer := inferred("CLOSE")
	switch {
	case s.From == timeline.StateSynSent && c.Reason == timeline.ReasonNothingListening:
		peer = inferred("no listener")
	case s.From == timeline.StateSynSent:
		peer = ""
	case c.HalfOpen:
		peer = inferred("no socket")
	}
	own := ""
	closed := next != nil && next.Kind == timeline.StepState && next.To == timeline.StateClose &&
		!next.TimewaitSocket && next.Time-s.Time < 1e6
	if closed {
		// The RST closed the socket: one row.
		own = next.To.String()
	}
	g.segment(s.Time, true, false, segRST, "RST", true, own, peer)
	return closed
}

// acceptsHandshake says whether s is the end of an accepted socket's
// handshake: LISTEN -> SYN_RECV when the final ACK came (before Linux 6.15
// only SYN_RECV -> ESTABLISHED is reported).
func (g *rowBuilder) acceptsHandshake(s *timeline.Step) bool {
	c := g.c
	return s.Kind == timeline.StepState && (s.From == timeline.StateListen && s.To == timeline.StateSynRecv ||
		s.From == timeline.StateSynRecv && s.To == timeline.StateEstablished && !g.accepted && !c.Partial &&
			c.Role == timeline.RoleServer)
}

// acceptedACK adds an accepted socket's handshake and its final ACK, and
// says whether it also drew next: SYN_RECV -> ESTABLISHED.
func (g *rowBuilder) acceptedACK(s, next *timeline.Step) bool {
	if !g.accepted {
		g.passiveOpen()
		g.accepted = true
	}
	r := g.recv(s.Time, segAckSyn, g.lab(segAckSyn, false, "ACK"), "", inferred("ESTABLISHED"))
	if s.To == timeline.StateEstablished {
		r.label[g.own()] = s.To.String()
		g.data()
		return false
	}
	if next != nil && next.Kind == timeline.StepState && next.From == timeline.StateSynRecv &&
		next.To == timeline.StateEstablished {
		r.label[g.own()] = next.To.String()
		g.data()
		return true
	}
	return false
}

// passiveOpen draws the handshake of an accepted socket up to its
// SYN+ACK: the SYN and SYN+ACK went through a request socket that no
// tracepoint reports, so their times are not known.
func (g *rowBuilder) passiveOpen() {
	g.segment(g.c.Start, false, false, segSYN, g.lab(segSYN, false, "SYN"), false, timeline.StateListen.String(), inferred("SYN_SENT"))
	g.segment(g.c.Start, false, true, segSynAck, g.lab(segSynAck, true, "SYN+ACK"), false, timeline.StateSynRecv.String(), "")
}

// data adds the bytes exchanged, once, after the handshake: the
// connection's totals, not segments (no tracepoint reports each one).
func (g *rowBuilder) data() {
	c := g.c
	if g.from != left || c.BytesSent == 0 && c.BytesReceived == 0 && c.SRTT == 0 {
		return
	}
	b := appendBytes(nil, c.BytesSent)
	b = append(b, " sent, "...)
	b = appendBytes(b, c.BytesReceived)
	b = append(b, " received"...)
	g.add(row{note: "⇄ " + string(b), after: true})
}

// transition adds the rows of one state change.
func (g *rowBuilder) transition(s *timeline.Step) {
	switch {
	case s.From == s.To && !s.TimewaitSocket:
		g.stateSetAgain(s)
	case s.TimewaitSocket:
		g.timewaitMove(s)
	case g.segmentsOf(s):
	case s.To != timeline.StateClose:
		g.state(s.Time, s.To.String())
	default:
		g.closedWithoutFIN(s)
	}
}

// stateSetAgain: close() after shutdown(), the state set again, unchanged
// (the FIN went out at shutdown()). No segment, no new state.
func (g *rowBuilder) stateSetAgain(s *timeline.Step) {
	if !afterShutdown(s.To) {
		return
	}
	note := "close() after shutdown()"
	if g.from == right {
		note = "peer's " + note
	}
	g.add(row{t: s.Time - g.base, timed: true, note: note})
}

// timewaitMove adds what a timewait socket's step implies.
func (g *rowBuilder) timewaitMove(s *timeline.Step) {
	to := s.To.String()
	switch {
	case s.To == timeline.StateFinWait2:
		// Orphaned: the end notes say what it waits for.
	case s.From == timeline.StateClosing:
		g.recv(s.Time, segAckFIN, g.lab(segAckFIN, false, "ACK"), to, inferred("TIME_WAIT"))
	case s.From == timeline.StateFinWait1:
		// The peer's FIN came with the ACK of ours.
		g.recv(s.Time, segFIN, g.lab(segFIN, false, "FIN+ACK"), "", inferred("LAST_ACK"))
		g.send(s.Time, segAckFIN, g.lab(segAckFIN, true, "ACK"), to, inferred("CLOSE"))
	default:
		g.recv(s.Time, segFIN, g.lab(segFIN, false, "FIN"), "", inferred("LAST_ACK"))
		g.send(s.Time, segAckFIN, g.lab(segAckFIN, true, "ACK"), to, inferred("CLOSE"))
	}
}

// segmentsOf adds the segments a state change of the handshake or of the
// FIN exchange implies, and says whether s is one.
func (g *rowBuilder) segmentsOf(s *timeline.Step) bool {
	c := g.c
	to := s.To.String()
	switch [2]timeline.State{s.From, s.To} {
	case [2]timeline.State{timeline.StateClose, timeline.StateSynSent}:
		if g.c.SyscallErrno != 0 && g.c.Outcome == timeline.OutcomeAborted {
			// connect() failed before any SYN (no free local port).
			g.state(s.Time, to)
			return true
		}
		g.send(s.Time, segSYN, g.lab(segSYN, true, "SYN"), to, "")
		g.lastSyn = s.Time
	case [2]timeline.State{timeline.StateSynSent, timeline.StateEstablished}:
		g.recv(s.Time, segSynAck, g.lab(segSynAck, false, "SYN+ACK"), "", inferred("SYN_RECV"))
		g.send(s.Time, segAckSyn, g.lab(segAckSyn, true, "ACK"), to, inferred("ESTABLISHED"))
		g.data()
	case [2]timeline.State{timeline.StateEstablished, timeline.StateFinWait1}:
		peer := inferred("CLOSE_WAIT")
		if c.ClosedBy == timeline.ClosedByBoth {
			peer = "" // its own FIN crosses ours
		}
		g.send(s.Time, segFIN, g.lab(segFIN, true, "FIN"), to, peer)
	case [2]timeline.State{timeline.StateFinWait1, timeline.StateFinWait2}:
		g.recv(s.Time, segAckFIN, g.lab(segAckFIN, false, "ACK"), to, "")
	case [2]timeline.State{timeline.StateFinWait1, timeline.StateClosing}:
		g.recv(s.Time, segFIN, g.lab(segFIN, false, "FIN"), "", inferred("FIN_WAIT1"))
		g.send(s.Time, segAckFIN, g.lab(segAckFIN, true, "ACK"), to, inferred("CLOSING"))
	case [2]timeline.State{timeline.StateEstablished, timeline.StateCloseWait}:
		g.recv(s.Time, segFIN, g.lab(segFIN, false, "FIN"), to, inferred("FIN_WAIT1"))
		g.send(s.Time, segAckFIN, g.lab(segAckFIN, true, "ACK"), "", inferred("FIN_WAIT2"))
	case [2]timeline.State{timeline.StateCloseWait, timeline.StateLastAck}:
		r := g.send(s.Time, segFIN, g.lab(segFIN, true, "FIN"), to, inferred("TIME_WAIT"))
		if g.peerTimeWait {
			r.label[g.peer()] = inferred("TIME_WAIT")
		}
	case [2]timeline.State{timeline.StateLastAck, timeline.StateClose}:
		if c.Outcome != timeline.OutcomeClosed {
			return false
		}
		g.recv(s.Time, segAckFIN, g.lab(segAckFIN, false, "ACK"), to, "")
	default:
		return false
	}
	return true
}

// closedWithoutFIN adds a CLOSE without a FIN exchange, with why.
func (g *rowBuilder) closedWithoutFIN(s *timeline.Step) {
	c := g.c
	var note string
	switch {
	case c.Outcome == timeline.OutcomeTimeout && s.From == timeline.StateSynSent:
		g.wait(s.Time - g.lastSyn)
		note = "✗ gave up: no answer to the SYN"
	case c.Outcome == timeline.OutcomeTimeout:
		if g.lastRetransmit >= 0 {
			g.wait(s.Time - g.lastRetransmit)
		}
		note = "✗ gave up: no ACK of what it sent"
	case c.Outcome == timeline.OutcomeAborted && c.SyscallErrno != 0:
		note = "✗ connect() failed: " + timeline.ErrnoName(c.SyscallErrno)
	case c.Outcome == timeline.OutcomeAborted:
		note = "✗ the application closed it"
	}
	r := g.state(s.Time, s.To.String())
	r.note = note
}

// end adds what happens after the last event: the timewait socket's wait,
// or that the connection was still open.
func (g *rowBuilder) end() {
	c := g.c
	var last *timeline.Step
	for i := range c.Steps {
		if c.Steps[i].Kind == timeline.StepState {
			last = &c.Steps[i]
		}
	}
	who := ""
	if g.from == right {
		who = "peer "
	}
	note := func(s string) { g.add(row{note: s, dotted: true, tail: true}) }
	switch {
	case c.Outcome == timeline.OutcomeOpen && c.Evicted:
		note(who + "evicted early: the table was full")
	case c.Outcome == timeline.OutcomeOpen:
		note(who + "still open when tracing stopped")
	case last != nil && last.TimewaitSocket && (last.To == timeline.StateTimeWait || g.finToOrphan):
		// 2MSL is TCP_TIMEWAIT_LEN, fixed at 60 s in Linux.
		if who == "" {
			note("TIME_WAIT for 2MSL (60 s), then gone")
		} else {
			note(who + "TIME_WAIT 2MSL (60 s), then gone")
		}
	case last != nil && last.TimewaitSocket:
		note(who + "orphaned FIN_WAIT2: waits for the FIN")
		fin := "at most tcp_fin_timeout (60 s default)"
		if sys := c.Sysctls(); sys != nil && sys.FinTimeout >= 0 {
			fin = "at most tcp_fin_timeout = " + strconv.Itoa(sys.FinTimeout) + " s"
		}
		note(fin)
	}
	if c.Incomplete {
		note(who + "events were lost: steps may be missing")
	}
	if c.StepsDropped > 0 {
		note(strconv.Itoa(c.StepsDropped) + " more retransmit/RST steps not kept")
	}
}

// ladderRows builds the rows of local's record and, when peer is given,
// those of the peer's record merged in, each segment drawn once.
func ladderRows(local, peer *timeline.Connection, absSeq bool) []row {
	base := local.Start
	if peer != nil {
		base = min(base, peer.Start)
	}
	seq := newSeqNums(local, peer, absSeq)
	g := rowBuilder{c: local, from: left, base: base, other: peer == nil, ords: map[[2]int]int{}, seq: seq}
	if peer == nil {
		g.build()
		return g.rows
	}
	p := rowBuilder{c: peer, from: right, base: base, ords: map[[2]int]int{}, seq: seq}
	g.finToOrphan, p.finToOrphan = finToOrphan(local, peer), finToOrphan(peer, local)
	g.peerTimeWait, p.peerTimeWait = p.finToOrphan, g.finToOrphan
	g.build()
	p.build()
	return pairRows(g.rows, p.rows)
}

// finToOrphan: c was handed to an orphaned FIN_WAIT2 timewait socket and
// other then sent its FIN, which that socket took to TIME_WAIT.
func finToOrphan(c, other *timeline.Connection) bool {
	var closed int64 = -1
	for _, s := range c.Steps {
		if s.Kind == timeline.StepState && s.TimewaitSocket && s.To == timeline.StateFinWait2 {
			closed = s.Time
		}
	}
	if closed < 0 {
		return false
	}
	for _, s := range other.Steps {
		if s.Kind == timeline.StepState && s.From == timeline.StateCloseWait && s.To == timeline.StateLastAck &&
			s.Time >= closed {
			return true
		}
	}
	return false
}

// pairRows merges the rows of both ends in time order. A segment both ends
// inferred (the sender from its state change, the receiver from its own)
// is drawn once: the one a tracepoint saw, else the one whose time is
// known, else the sender's. The other end's state from the dropped row is
// written beside the arrow kept, or on a row of its own at its own time.
func pairRows(a, b []row) []row {
	rows := append(slices.Clip(a), b...)
	sortKeys(rows[:len(a)])
	sortKeys(rows[len(a):])
	detached := dropDuplicateArrows(rows)
	return mergeRows(rows, detached)
}

// dropDuplicateArrows marks gone, of each segment drawn by both ends, the
// row that is not better, and moves its labels to the row kept or to
// detached label rows, which it returns.
func dropDuplicateArrows(rows []row) []row {
	type segKey struct {
		kind    segKind
		toRight bool
		ord     int
	}
	first := map[segKey]int{}
	var detached []row
	for i := range rows {
		r := &rows[i]
		if r.arrow.kind == 0 || r.arrow.kind == segRetransmit {
			continue
		}
		k := segKey{r.arrow.kind, r.arrow.toRight, r.ord}
		j, ok := first[k]
		if !ok {
			first[k] = i
			continue
		}
		keep, drop := &rows[j], r
		if better(r, keep) {
			keep, drop = r, keep
			first[k] = i
		}
		drop.gone = true
		for s := range drop.label {
			l := drop.label[s]
			switch {
			case l == "":
			case keep.label[s] == "" && !drop.timed:
				keep.label[s] = l
			default:
				d := row{t: drop.t, timed: drop.timed, key: max(drop.key, keep.key), from: drop.from,
					detached: true, arrowRow: first[k]}
				d.label[s] = l
				detached = append(detached, d)
			}
		}
	}
	return detached
}

// mergeRows sorts rows and the detached label rows by key, leaving out
// those gone, and writes a detached label beside its arrow when it can.
func mergeRows(rows, detached []row) []row {
	// The detached rows point at the row they belong to by index: keep
	// indices stable until they are resolved.
	out := make([]row, 0, len(rows)+len(detached))
	byIndex := make([]int, len(rows)) // index in rows -> index in out, -1 before
	for i := range byIndex {
		byIndex[i] = -1
	}
	all := append(rows, detached...)
	order := make([]int, len(all))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(all[x].key, all[y].key) })
	for _, i := range order {
		r := all[i]
		if r.gone {
			continue
		}
		if r.detached {
			// A state the segment caused at its receiver: beside the
			// arrow, when it is the row just before and has room.
			k := byIndex[r.arrowRow]
			if k >= 0 && k >= len(out)-2 && out[k].label[slotOf(r)] == "" && !laterOwn(out[k+1:], r) {
				out[k].label[slotOf(r)] = r.label[slotOf(r)]
				continue
			}
			r.detached = false
		}
		if i < len(rows) {
			byIndex[i] = len(out)
		}
		out = append(out, r)
	}
	return out
}

// laterOwn says whether rows has a timed row of r's end before r: then r's
// state came after it, and is not written beside an arrow above it.
func laterOwn(rows []row, r row) bool {
	for _, o := range rows {
		if o.from == r.from && o.timed && (!r.timed || o.t < r.t) {
			return true
		}
	}
	return false
}

func slotOf(r row) int {
	if r.label[0] != "" {
		return 0
	}
	return 1
}

// better says whether arrow row r is a better record of a segment than o.
func better(r, o *row) bool {
	if r.arrow.seen != o.arrow.seen {
		return r.arrow.seen
	}
	if r.timed != o.timed {
		return r.timed
	}
	return r.sender && !o.sender
}

// sortKeys gives each row of one end the time it sorts by: its own, or for
// an untimed row (a timer's wait, the handshake of an accepted socket) that
// of the next timed row, so it stays before it.
func sortKeys(rows []row) {
	next := int64(-1)
	for i := len(rows) - 1; i >= 0; i-- {
		if rows[i].timed {
			next = rows[i].t
		}
		rows[i].key = next
		if rows[i].tail {
			rows[i].key = math.MaxInt64
		}
	}
	last := int64(-1)
	for i := range rows {
		if rows[i].key < 0 || rows[i].after && i > 0 {
			rows[i].key = last
		}
		last = rows[i].key
	}
}

package output

import (
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// Text writes a header line per connection and its timeline below it,
// in the words of TCP, sized for an 80-column terminal.
type Text struct {
	base
	loc     *time.Location
	scratch []byte
}

// NewText returns a text writer; times are shown in loc (nil: local time).
func NewText(w io.Writer, loc *time.Location, opts Options) *Text {
	if loc == nil {
		loc = time.Local
	}
	return &Text{base: newBase(w, opts), loc: loc}
}

// width is the terminal width the text is laid out for.
const width = 80

// Connection writes the header and the timeline of one connection:
//
//	14:02:11.204 curl[812] 127.0.0.1:41230 → 127.0.0.1:8080 client closed by local 1.2ms
//	     +0.000ms  SYN sent                                       SYN_SENT
func (t *Text) Connection(c *timeline.Connection) error {
	start := len(t.buf)
	b, what := appendHeader(t.buf, c, t.loc, t.opts.container(c.Cgroup))
	b = fitHeader(b, start, what-start, &t.scratch)
	start = len(b)
	b = append(b, "    ↳ "...)
	b = timeline.AppendExplanation(b, c)
	b = t.wrap(b, start, "      ")
	fig := len(b)
	if b = appendFigures(b, c, t.opts.cgroupPath(c.Cgroup)); len(b) > fig {
		b = t.wrap(b[:len(b)-1], fig, "      ") // a long cgroup path
	}
	if info := len(b); hasTCPInfo(c) {
		b = appendTCPInfo(b, c)
		b = t.wrap(b[:len(b)-1], info, "      ")
	}
	for i := range c.Steps {
		s := &c.Steps[i]
		b = append(b, "    "...)
		b = appendPadLeft(b, "+", s.Time-c.Start, 11)
		b = append(b, "  "...)
		start := len(b)
		b = describe(b, c, s)
		if s.Kind == timeline.StepState {
			for len(b)-start < 46 {
				b = append(b, ' ')
			}
			b = append(b, ' ')
			b = append(b, s.To.String()...)
		}
		b = append(b, '\n')
	}
	if c.StepsDropped > 0 {
		b = append(b, "    ("...)
		b = strconv.AppendInt(b, int64(c.StepsDropped), 10)
		b = append(b, " more retransmit/RST steps not kept)\n"...)
	}
	t.buf = b
	return t.write()
}

// appendHeader writes the one-line summary of a connection that heads its
// timeline, without the newline: when, who, the 4-tuple, role, outcome,
// duration and flags. what is the offset where the role begins (after the
// 4-tuple), where a narrower layout may break the line.
func appendHeader(b []byte, c *timeline.Connection, loc *time.Location, ctr *containers.Info) (_ []byte, what int) {
	b = time.Unix(0, c.Start).In(loc).AppendFormat(b, "15:04:05.000")
	b = append(b, ' ')
	b = appendOwner(b, c.Comm, c.PID)
	b = appendContainerLabel(b, ctr)
	b = append(b, ' ')
	b = appendAddrPort(b, c.LAddr, c.LPort)
	b = append(b, " → "...)
	b = appendAddrPort(b, c.RAddr, c.RPort)
	if c.PeerCookie != 0 {
		// The other end is on this host: whose it is.
		b = append(b, ' ')
		b = appendOwner(b, c.PeerComm, c.PeerPID)
	}
	b = append(b, ' ')
	what = len(b)
	b = append(b, c.Role.String()...)
	b = append(b, ' ')
	b = append(b, c.Outcome.String()...)
	if c.ClosedBy != timeline.ClosedByNone {
		b = append(b, " by "...)
		b = append(b, c.ClosedBy.String()...)
	}
	b = append(b, ' ')
	b = appendDuration(b, c.Duration())
	switch {
	case c.Partial && c.RoleInferred:
		b = append(b, " (started before tracing, role inferred)"...)
	case c.Partial:
		b = append(b, " (started before tracing)"...)
	}
	if c.Evicted {
		b = append(b, " (evicted: table full)"...)
	}
	if c.Incomplete {
		b = append(b, " (incomplete: events lost)"...)
	}
	return b, what
}

// fitHeader ends the header line that starts at b[start:], whose role
// begins rel bytes in, with a newline; when it is wider than the screen it
// breaks it before the role (the line's second half indented), and wraps
// what is still too wide (long IPv6 addresses, many flags).
func fitHeader(b []byte, start, rel int, scratch *[]byte) []byte {
	if utf8.RuneCount(b[start:]) <= width {
		return append(b, '\n')
	}
	if utf8.RuneCount(b[start:start+rel]) > width {
		return wrapLine(b, start, "    ", scratch)
	}
	rest := string(b[start+rel:])
	b = append(b[:start+rel-1], '\n') // the blank before the role
	second := len(b)
	b = append(b, "    "...)
	b = append(b, rest...)
	return wrapLine(b, second, "    ", scratch)
}

// appendContainerLabel writes " [pod NAMESPACE/NAME container NAME]" for
// a socket in a container, with the first 12 digits of ids where names are
// not known (yet); nothing for a host process.
func appendContainerLabel(b []byte, c *containers.Info) []byte {
	if c == nil {
		return b
	}
	b = append(b, " ["...)
	switch {
	case c.Pod != "":
		b = append(b, "pod "...)
		if c.Namespace != "" {
			b = appendSafe(b, c.Namespace)
			b = append(b, '/')
		}
		b = appendSafe(b, c.Pod)
	case c.PodUID != "":
		b = append(b, "pod "...)
		b = appendSafe(b, c.PodUID)
	}
	if c.ID != "" || c.Name != "" {
		if c.Pod != "" || c.PodUID != "" {
			b = append(b, ' ')
		}
		b = append(b, "container "...)
		if c.Name != "" {
			b = appendSafe(b, c.Name)
		} else {
			b = appendSafe(b, c.ID[:min(12, len(c.ID))])
		}
	}
	return append(b, ']')
}

// appendFigures writes the tcp_sock figures line, when there are any.
func appendFigures(b []byte, c *timeline.Connection, cgroup string) []byte {
	if cgroup == "/" {
		cgroup = "" // the root: says nothing
	}
	if c.BytesSent == 0 && c.BytesReceived == 0 && c.SRTT == 0 && cgroup == "" {
		return b
	}
	b = append(b, "    sent "...)
	b = appendBytes(b, c.BytesSent)
	b = append(b, ", received "...)
	b = appendBytes(b, c.BytesReceived)
	b = appendRTTFigures(b, c, cgroup)
	return append(b, '\n')
}

// appendRTTFigures writes ", srtt …, handshake rtt …, retransmitted
// segments …, cgroup …", each only when known: a record's figures besides
// its bytes (which the ladder writer draws).
func appendRTTFigures(b []byte, c *timeline.Connection, cgroup string) []byte {
	if c.SRTT != 0 {
		b = append(b, ", srtt "...)
		b = appendDuration(b, int64(c.SRTT)*1e3)
	}
	if c.HandshakeRTT != 0 {
		b = append(b, ", handshake rtt "...)
		b = appendDuration(b, int64(c.HandshakeRTT)*1e3)
	}
	if c.SegsRetrans != 0 {
		b = append(b, ", retransmitted segments "...)
		b = strconv.AppendUint(b, uint64(c.SegsRetrans), 10)
	}
	if cgroup != "" {
		b = append(b, ", cgroup "...)
		b = appendSafe(b, cgroup)
	}
	return b
}

func appendBytes(b []byte, n uint64) []byte {
	switch {
	case n < 1<<10:
		b = strconv.AppendUint(b, n, 10)
		return append(b, " B"...)
	case n < 1<<20:
		b = strconv.AppendFloat(b, float64(n)/(1<<10), 'f', 1, 64)
		return append(b, " KiB"...)
	case n < 1<<30:
		b = strconv.AppendFloat(b, float64(n)/(1<<20), 'f', 1, 64)
		return append(b, " MiB"...)
	}
	b = strconv.AppendFloat(b, float64(n)/(1<<30), 'f', 1, 64)
	return append(b, " GiB"...)
}

// wrap folds the line that starts at b[start:] at width columns, indenting
// the continuation lines, and ends it with a newline. It works from a copy
// in t.scratch, reused, so it allocates nothing once warm.
func (t *Text) wrap(b []byte, start int, indent string) []byte {
	return wrapLine(b, start, indent, &t.scratch)
}

// wrapLine is wrap with the scratch buffer given.
func wrapLine(b []byte, start int, indent string, scratch *[]byte) []byte {
	*scratch = append((*scratch)[:0], b[start:]...)
	line := *scratch
	b = b[:start]
	col := 0
	for i := 0; i < len(line) && line[i] == ' '; i++ {
		b = append(b, ' ') // keep the leading indentation
		col++
	}
	first := true
	for i := 0; i < len(line); {
		if line[i] == ' ' {
			i++
			continue
		}
		end := i
		for end < len(line) && line[end] != ' ' {
			end++
		}
		word := line[i:end]
		n := utf8.RuneCount(word)
		if !first {
			if col+1+n > width {
				b = append(b, '\n')
				b = append(b, indent...)
				col = len(indent)
			} else {
				b = append(b, ' ')
				col++
			}
		}
		first = false
		b = append(b, word...)
		col += n
		i = end
	}
	return append(b, '\n')
}

// Alert writes a highlighted line about a connection stuck in a state.
func (t *Text) Alert(a *timeline.Alert) error {
	b := t.buf
	start := len(b)
	b = time.Unix(0, a.Time).In(t.loc).AppendFormat(b, "15:04:05.000")
	if a.Kind == timeline.AlertTimeWaitEnded {
		b = append(b, " -- "...) // a notice, not a problem
	} else {
		b = append(b, " !! "...)
	}
	if b, ok := appendHostAlertHead(b, a); ok {
		b = appendOwner(b, a.Comm, a.PID)
		b = appendContainerLabel(b, t.opts.container(a.Cgroup))
		b = append(b, ' ')
		b = appendAddrPort(b, a.LAddr, a.LPort)
		b = append(b, ": "...)
		b = timeline.AppendAlertExplanation(b, a)
		t.buf = t.wrap(b, start, "    ")
		return t.write()
	}
	b = append(b, a.State.String()...)
	switch {
	case a.Kind == timeline.AlertFinWait2OrphanEnded:
		b = append(b, " orphan ended after "...)
	case a.Kind == timeline.AlertSynRecv && a.Ended != "":
		b = append(b, " request dropped after "...)
	case a.Kind == timeline.AlertTimeWaitEnded:
		b = append(b, " ended after "...)
	case a.SinceUnknown:
		b = append(b, " for more than "...)
	default:
		b = append(b, " for "...)
	}
	b = appendDuration(b, a.For())
	b = append(b, ": "...)
	b = appendOwner(b, a.Comm, a.PID)
	b = appendContainerLabel(b, t.opts.container(a.Cgroup))
	b = append(b, ' ')
	b = appendAddrPort(b, a.LAddr, a.LPort)
	b = append(b, " → "...)
	b = appendAddrPort(b, a.RAddr, a.RPort)
	b = append(b, ": "...)
	b = timeline.AppendAlertExplanation(b, a)
	t.buf = t.wrap(b, start, "    ")
	return t.write()
}

// describe says what a step means, as a TCP textbook would.
func describe(b []byte, c *timeline.Connection, s *timeline.Step) []byte {
	switch s.Kind {
	case timeline.StepSynRetransmit:
		b = append(b, "SYN retry #"...)
		b = strconv.AppendInt(b, int64(s.N), 10)
		b = append(b, " after "...)
		return appendWait(b, s.Since)
	case timeline.StepSynAckRetransmit:
		b = append(b, "SYN+ACK retry #"...)
		b = strconv.AppendInt(b, int64(s.N), 10)
		if s.N > 1 {
			b = append(b, " after "...)
			b = appendWait(b, s.Since)
		}
		return append(b, " (final ACK missing)"...)
	case timeline.StepRetransmit:
		b = append(b, "retransmission #"...)
		b = strconv.AppendInt(b, int64(s.N), 10)
		b = append(b, " in "...)
		return append(b, s.From.String()...)
	case timeline.StepRSTSent:
		b = append(b, "RST sent"...)
		if s.RSTReason != "" {
			b = append(b, " ("...)
			b = append(b, s.RSTReason...)
			b = append(b, ')')
		}
		return b
	case timeline.StepRSTReceived:
		if s.From == timeline.StateSynSent {
			return append(b, "RST received: connection refused"...)
		}
		return append(b, "RST received: connection reset by peer"...)
	case timeline.StepError:
		if !c.ErrorSeen() {
			// Set on a socket no application holds any more (or ever).
			b = append(b, "error set on the socket, no application holds it: "...)
			return append(b, timeline.ErrnoName(s.Errno)...)
		}
		b = append(b, "error reported to the application: "...)
		return append(b, timeline.ErrnoName(s.Errno)...)
	}
	return describeTransition(b, c, s)
}

func describeTransition(b []byte, c *timeline.Connection, s *timeline.Step) []byte {
	if s.TimewaitSocket {
		if s.To == timeline.StateTimeWait {
			if s.From == timeline.StateClosing {
				return append(b, "ACK of FIN received: TIME_WAIT (2MSL)"...)
			}
			return append(b, "FIN received, ACK sent: TIME_WAIT (2MSL)"...)
		}
		return append(b, "orphaned: waiting for the peer's FIN"...)
	}
	if s.From == s.To {
		return describeUnchanged(b, s.To)
	}
	switch [2]timeline.State{s.From, s.To} {
	case [2]timeline.State{timeline.StateClose, timeline.StateSynSent}:
		if c.Reason == timeline.ReasonNoLocalPort || c.Reason == timeline.ReasonConnectFailed {
			return append(b, "connect(): no SYN went out"...) // it failed before any
		}
		return append(b, "SYN sent"...)
	case [2]timeline.State{timeline.StateSynSent, timeline.StateEstablished}:
		b = append(b, "SYN+ACK received, ACK sent: connected"...)
		return b
	case [2]timeline.State{timeline.StateClose, timeline.StateListen}:
		return append(b, "listening"...)
	case [2]timeline.State{timeline.StateListen, timeline.StateSynRecv}:
		return append(b, "SYN, SYN+ACK, then ACK received"...)
	case [2]timeline.State{timeline.StateSynRecv, timeline.StateEstablished}:
		return append(b, "handshake complete: connected"...)
	case [2]timeline.State{timeline.StateEstablished, timeline.StateFinWait1}:
		return append(b, "FIN sent (local close)"...)
	case [2]timeline.State{timeline.StateEstablished, timeline.StateCloseWait}:
		return append(b, "FIN received (peer closed)"...)
	case [2]timeline.State{timeline.StateFinWait1, timeline.StateFinWait2}:
		return append(b, "ACK of our FIN received"...)
	case [2]timeline.State{timeline.StateFinWait1, timeline.StateClosing}:
		return append(b, "FIN received before our FIN was acked"...)
	case [2]timeline.State{timeline.StateCloseWait, timeline.StateLastAck}:
		return append(b, "FIN sent (local close after peer)"...)
	case [2]timeline.State{timeline.StateLastAck, timeline.StateClose}:
		return append(b, "ACK of our FIN received: closed"...)
	case [2]timeline.State{timeline.StateListen, timeline.StateClose}:
		return append(b, "listener closed"...)
	}
	if s.To != timeline.StateClose {
		b = append(b, s.From.String()...)
		b = append(b, " → "...)
		return append(b, s.To.String()...)
	}
	switch c.Outcome {
	case timeline.OutcomeRefused:
		return append(b, "closed: connection refused"...)
	case timeline.OutcomeTimeout:
		if s.From == timeline.StateSynSent {
			return append(b, "gave up: no answer to SYN"...)
		}
		return append(b, "gave up: retransmissions timed out"...)
	case timeline.OutcomeResetByPeer:
		return append(b, "closed by RST from peer"...)
	case timeline.OutcomeResetLocal:
		return append(b, "aborted: this host resets the connection"...)
	case timeline.OutcomeAborted:
		if c.SyscallErrno != 0 {
			b = append(b, "connect() failed: "...)
			return append(b, timeline.ErrnoName(c.SyscallErrno)...)
		}
		return append(b, "closed before the handshake completed"...)
	}
	return append(b, "closed"...)
}

// describeUnchanged says what a "change" to the same state is. The kernel
// reports one when close() follows shutdown(SHUT_WR): the FIN went out at
// shutdown(), so tcp_close() keeps the state it finds (FIN_WAIT1,
// FIN_WAIT2, CLOSING or LAST_ACK) and sets it again.
func describeUnchanged(b []byte, st timeline.State) []byte {
	if afterShutdown(st) {
		return append(b, "close() after shutdown(): FIN already sent"...)
	}
	b = append(b, "state set again, unchanged: "...)
	return append(b, st.String()...)
}

// afterShutdown says whether close() may leave a socket in st, its FIN
// sent by an earlier shutdown().
func afterShutdown(st timeline.State) bool {
	switch st {
	case timeline.StateFinWait1, timeline.StateFinWait2, timeline.StateClosing, timeline.StateLastAck:
		return true
	}
	return false
}

// Event writes one kernel event, wrapped at the screen's width.
func (t *Text) Event(e *timeline.Event) error {
	b := t.buf
	start := len(b)
	b = time.Unix(0, e.Time).In(t.loc).AppendFormat(b, "15:04:05.000000")
	b = append(b, " event "...)
	b = strconv.AppendUint(b, e.Cookie, 10)
	b = append(b, ' ')
	b = append(b, e.Type.String()...)
	b = append(b, ' ')
	if e.Type == timeline.EventState {
		b = append(b, e.OldState.String()...)
		b = append(b, " → "...)
	}
	b = append(b, e.NewState.String()...)
	b = append(b, ' ')
	b = appendAddrPort(b, e.LAddr, e.LPort)
	b = append(b, " → "...)
	b = appendAddrPort(b, e.RAddr, e.RPort)
	b = append(b, ' ')
	b = appendOwner(b, e.Comm, e.PID)
	b = appendContainerLabel(b, t.opts.container(e.Cgroup))
	if e.Errno != 0 {
		b = append(b, ' ')
		b = append(b, timeline.ErrnoName(e.Errno)...)
	}
	if e.RSTReason != "" {
		b = append(b, " reason="...)
		b = append(b, e.RSTReason...)
	}
	t.buf = t.wrap(b, start, "    ")
	return t.write()
}

// TimeWait writes the TIME_WAIT counts of a scan.
func (t *Text) TimeWait(at time.Time, total uint64, top []timeline.EndpointCount) error {
	b := at.In(t.loc).AppendFormat(nil, "15:04:05.000")
	b = append(b, " TIME_WAIT sockets: "...)
	b = strconv.AppendUint(b, total, 10)
	l := items{b: t.buf, line: len(t.buf)}
	l.b = append(l.b, b...)
	l.timeWait(top)
	t.buf = append(l.b, '\n')
	return t.write()
}

// Lost writes a visible line as soon as the kernel reports dropped events.
func (t *Text) Lost(at time.Time, n, total uint64) error {
	b := t.buf
	start := len(b)
	b = at.In(t.loc).AppendFormat(b, "15:04:05.000")
	b = append(b, " !! LOST "...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, " events (ring buffer full; "...)
	b = strconv.AppendUint(b, total, 10)
	b = append(b, " in all): some records below are incomplete"...)
	t.buf = t.wrap(b, start, "    ")
	return t.write()
}

// Summary writes the closing summary: lines that begin with "---", each
// broken between its items to fit the screen.
func (t *Text) Summary(s *Summary) error {
	l := items{b: append(t.buf, '\n')}
	l.start("--- " + strconv.FormatUint(s.Connections, 10) + " connections in " +
		s.Duration.Round(time.Millisecond).String() + ":")
	for _, o := range timeline.Outcomes() {
		if n := s.ByOutcome[o.String()]; n > 0 {
			l.add(" ", o.String()+"="+strconv.FormatUint(n, 10))
		}
	}
	if len(s.ByReason) > 0 {
		l.start("--- reasons:")
		for _, r := range sortedKeys(s.ByReason) {
			l.add(" ", r+"="+strconv.FormatUint(s.ByReason[r], 10))
		}
	}
	if n := s.Handshakes.Count(); n > 0 {
		l.start("--- client handshakes: " + strconv.FormatUint(n, 10))
		l.add(", ", "p50 "+string(appendDuration(nil, s.Handshakes.Percentile(50))))
		l.add(", ", "p99 "+string(appendDuration(nil, s.Handshakes.Percentile(99))))
	}
	if len(s.TopFailures) > 0 {
		l.start("--- most failures:")
		for _, e := range s.TopFailures {
			l.add(" ", endpointCount(e))
		}
	}
	if s.TimeWaitKnown {
		l.start("--- TIME_WAIT now: " + strconv.FormatUint(s.TimeWaitTotal, 10))
		l.timeWait(s.TimeWaitTop)
	}
	l.start("--- events " + strconv.FormatUint(s.Events, 10))
	counter := func(name string, n uint64, always bool) {
		if n > 0 || always {
			l.add(", ", name+" "+strconv.FormatUint(n, 10))
		}
	}
	counter("lost", s.LostEvents, true)
	counter("evicted", s.Evicted, true)
	counter("recursion misses", s.RecursionMisses, true)
	counter("ring-buffer records", s.RingRecords, true)
	counter("alerts", s.Alerts, false)
	counter("RSTs to closed ports", s.ResetsNoSocket, false)
	counter("paired", s.Paired, false)
	counter("undecodable", s.DecodeErrors, false)
	t.buf = append(l.b, '\n')
	if err := t.write(); err != nil {
		return err
	}
	return t.Flush()
}

// items lays out lines of items (counters, endpoints) that break between
// two items, never inside one, to fit the screen; a continuation line is
// indented.
type items struct {
	b    []byte
	line int // where the current line starts in b
}

// start begins a new line with head.
func (l *items) start(head string) {
	if len(l.b) > 0 && l.b[len(l.b)-1] != '\n' {
		l.b = append(l.b, '\n')
	}
	l.line = len(l.b)
	l.b = append(l.b, head...)
}

// add writes sep and item or, where they would pass the screen's edge, sep
// without its blanks and item on a new, indented line.
func (l *items) add(sep, item string) {
	if utf8.RuneCount(l.b[l.line:])+len(sep)+utf8.RuneCountInString(item) <= width {
		l.b = append(l.b, sep...)
		l.b = append(l.b, item...)
		return
	}
	l.b = append(l.b, strings.TrimRight(sep, " ")...)
	l.b = append(l.b, '\n')
	l.line = len(l.b)
	l.b = append(l.b, "    "...)
	l.b = append(l.b, item...)
}

// timeWait writes TIME_WAIT counts in two groups: ", at local ADDR:PORT=N
// ..." for those this host holds as a server, by the address and port its
// clients came to (their ephemeral ports say nothing), then "; to remote
// ADDR:PORT=N ..." for those it holds as a client, by where they went.
func (l *items) timeWait(top []timeline.EndpointCount) {
	sep := ", "
	for _, local := range []bool{true, false} {
		lead := "to remote "
		if local {
			lead = "at local "
		}
		first := true
		for _, e := range top {
			switch {
			case e.Local != local:
			case first:
				l.add(sep, lead+endpointCount(e))
				first, sep = false, "; "
			default:
				l.add(" ", endpointCount(e))
			}
		}
	}
}

// endpointCount writes "1.2.3.4:80=3", "[::1]:443=1".
func endpointCount(e timeline.EndpointCount) string {
	b := appendAddrPort(nil, e.Addr, e.Port)
	b = append(b, '=')
	return string(strconv.AppendUint(b, e.Count, 10))
}

func appendOwner(b []byte, comm string, pid uint32) []byte {
	if pid == 0 {
		return append(b, "?[?]"...)
	}
	b = appendSafe(b, comm)
	b = append(b, '[')
	b = strconv.AppendUint(b, uint64(pid), 10)
	return append(b, ']')
}

// appendPadLeft writes prefix and a relative time ("+12.345ms", "+7.103s")
// right-aligned in width columns.
func appendPadLeft(b []byte, prefix string, ns int64, width int) []byte {
	var tmp [32]byte
	s := append(tmp[:0], prefix...)
	if ns < 1e9 {
		s = strconv.AppendFloat(s, ms(ns), 'f', 3, 64)
		s = append(s, "ms"...)
	} else {
		s = strconv.AppendFloat(s, float64(ns)/1e9, 'f', 3, 64)
		s = append(s, 's')
	}
	for i := len(s); i < width; i++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}

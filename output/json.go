package output

import (
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// SchemaVersion is the first field of every JSON line ("schema_version").
// Version 1 (no such field) had no "container"; version 2 added it;
// version 3 added what the host did (drops, failed calls, accept queues),
// the socket's own settings, and the host-side alerts. Fields are added,
// never renamed or removed.
const SchemaVersion = 3

// lineStart opens every JSON line: the schema version, then the type.
const lineStart = `{"schema_version":3,"type":`

// JSON writes one JSON object per line. The schema is documented in the
// README and kept stable: fields are added, never renamed or removed.
type JSON struct {
	base
	// lastSecond caches the formatted date and time of the last second
	// seen: records come in bursts within the same second.
	lastSecond     int64
	lastSecondText []byte
	// compactBuf: the line being compacted (--compact), reused.
	compactBuf []byte
	// lineCap: the capacity of the bufio.Writer's free space the line
	// under way is built in; 0 when it is built in buf (json_line.go).
	lineCap int
}

// NewJSON returns a JSON-lines writer.
func NewJSON(w io.Writer, opts Options) *JSON { return &JSON{base: newBase(w, opts)} }

// Connection writes a {"type":"connection"} record.
func (j *JSON) Connection(c *timeline.Connection) error {
	b := j.startLine()
	b = append(b, lineStart+`"connection","cookie":`...)
	b = appendUint(b, c.Cookie)
	b = j.appendTimeField(b, `,"start":`, c.Start)
	b = j.appendTimeField(b, `,"end":`, c.End)
	b = appendMillisField(b, `,"duration_ms":`, c.Duration())
	b = j.appendEndpoints(b, c)
	b = appendOutcome(b, c)
	b = appendJSONFigures(b, c)
	b = appendTimeline(b, c)
	b = appendHostFields(b, c)
	return j.endLine(append(b, "}\n"...))
}

// appendEndpoints writes the connection's addresses, its owner, and where
// it lives (cgroup, container, namespace).
func (j *JSON) appendEndpoints(b []byte, c *timeline.Connection) []byte {
	b = append(b, familyField(c.LAddr)...)
	b = appendAddrField(b, `,"laddr":`, c.LAddr)
	b = appendUintField(b, `,"lport":`, uint64(c.LPort))
	b = appendAddrField(b, `,"raddr":`, c.RAddr)
	b = appendUintField(b, `,"rport":`, uint64(c.RPort))
	b = appendRole(append(b, `,"role":`...), c.Role)
	b = appendBoolField(b, `,"role_inferred":`, c.RoleInferred)
	b = appendUintField(b, `,"pid":`, uint64(c.PID))
	b = appendStringField(b, `,"comm":`, c.Comm)
	b = appendUintField(b, `,"uid":`, uint64(c.UID))
	b = appendNullableString(b, `,"cgroup":`, j.opts.cgroupPath(c.Cgroup))
	b = appendContainer(b, j.opts.container(c.Cgroup))
	b = appendUintField(b, `,"netns":`, uint64(c.NetNS))
	if c.PeerCookie == 0 {
		return append(b, `,"peer_cookie":null`...)
	}
	return appendUintField(b, `,"peer_cookie":`, c.PeerCookie)
}

// appendOutcome writes how the connection ended, and why.
func appendOutcome(b []byte, c *timeline.Connection) []byte {
	b = appendOutcomeName(append(b, `,"outcome":`...), c.Outcome)
	if c.ClosedBy == timeline.ClosedByNone {
		b = append(b, `,"closed_by":null`...)
	} else {
		b = appendCloser(append(b, `,"closed_by":`...), c.ClosedBy)
	}
	if c.Handshake < 0 {
		b = append(b, `,"handshake_ms":null`...)
	} else {
		b = appendMillisField(b, `,"handshake_ms":`, c.Handshake)
	}
	if c.SynRetries == 0 && c.SynAckRetries == 0 && c.Retransmits == 0 && !c.RSTSent && !c.RSTReceived &&
		c.RSTReason == "" && c.Errno == 0 {
		b = append(b, noTroubleFields...)
	} else {
		b = appendTrouble(b, c)
	}
	b = appendStringField(b, `,"reason":`, c.Reason)
	b = append(b, `,"explanation":"`...)
	start := len(b)
	b = timeline.AppendExplanation(b, c)
	b = escapeInPlace(b, start)
	return append(b, '"')
}

// noTroubleFields are what appendTrouble writes for a connection with no
// retries, resets or errors, the commonest, in one piece.
const noTroubleFields = `,"syn_retries":0,"synack_retries":0,"retransmits":0,"rst_sent":false,"rst_received":false,` +
	`"rst_reason":null,"errno":null`

// appendTrouble writes the retries, the resets and the error.
func appendTrouble(b []byte, c *timeline.Connection) []byte {
	b = appendUintField(b, `,"syn_retries":`, uint64(c.SynRetries))
	b = appendUintField(b, `,"synack_retries":`, uint64(c.SynAckRetries))
	b = appendUintField(b, `,"retransmits":`, uint64(c.Retransmits))
	b = appendBoolField(b, `,"rst_sent":`, c.RSTSent)
	b = appendBoolField(b, `,"rst_received":`, c.RSTReceived)
	if c.RSTReason == "" {
		b = append(b, `,"rst_reason":null`...)
	} else {
		b = appendStringField(b, `,"rst_reason":`, c.RSTReason)
	}
	if c.Errno == 0 {
		return append(b, `,"errno":null`...)
	}
	return appendStringField(b, `,"errno":`, timeline.ErrnoName(c.Errno))
}

// appendJSONFigures writes the kernel's counters and RTTs, and how complete
// the record is.
func appendJSONFigures(b []byte, c *timeline.Connection) []byte {
	b = appendUintField(b, `,"bytes_sent":`, c.BytesSent)
	b = appendUintField(b, `,"bytes_received":`, c.BytesReceived)
	b = appendUintField(b, `,"segs_retransmitted":`, uint64(c.SegsRetrans))
	if c.SRTT == 0 {
		b = append(b, `,"srtt_ms":null`...)
	} else {
		b = appendMillisField(b, `,"srtt_ms":`, int64(c.SRTT)*1e3)
	}
	if c.HandshakeRTT == 0 {
		b = append(b, `,"handshake_rtt_ms":null`...)
	} else {
		b = appendMillisField(b, `,"handshake_rtt_ms":`, int64(c.HandshakeRTT)*1e3)
	}
	if !c.Partial && !c.Incomplete && !c.Evicted {
		return append(b, `,"partial":false,"incomplete":false,"evicted":false`...)
	}
	b = appendBoolField(b, `,"partial":`, c.Partial)
	b = appendBoolField(b, `,"incomplete":`, c.Incomplete)
	return appendBoolField(b, `,"evicted":`, c.Evicted)
}

// appendTimeline writes the states the connection went through and its
// steps.
func appendTimeline(b []byte, c *timeline.Connection) []byte {
	b = append(b, `,"states":[`...)
	for i, s := range c.States {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendState(b, s)
	}
	b = append(b, `],"timeline":[`...)
	for i := range c.Steps {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendStep(b, c, &c.Steps[i])
	}
	return appendUintField(b, `],"timeline_dropped":`, uint64(c.StepsDropped))
}

func appendStep(b []byte, c *timeline.Connection, s *timeline.Step) []byte {
	b = append(b, `{"t_ms":`...)
	b = appendMillis(b, s.Time-c.Start)
	if s.Kind == timeline.StepState { // most steps: one constant up to the first state
		b = appendState(append(b, `,"event":"state","from":`...), s.From)
	} else {
		b = appendStepKind(append(b, `,"event":`...), s.Kind)
	}
	switch s.Kind {
	case timeline.StepState:
		b = appendState(append(b, `,"to":`...), s.To)
		if s.TimewaitSocket {
			b = append(b, `,"timewait_socket":true`...)
		}
	case timeline.StepSynRetransmit, timeline.StepSynAckRetransmit, timeline.StepRetransmit:
		b = appendUintField(b, `,"n":`, uint64(s.N))
		if s.Kind != timeline.StepRetransmit {
			b = appendMillisField(b, `,"since_ms":`, s.Since)
		}
		b = appendState(append(b, `,"state":`...), s.From)
	case timeline.StepRSTSent:
		if s.RSTReason != "" {
			b = appendStringField(b, `,"reason":`, s.RSTReason)
		}
		b = appendState(append(b, `,"state":`...), s.From)
	case timeline.StepRSTReceived:
		b = appendState(append(b, `,"state":`...), s.From)
	case timeline.StepError:
		b = appendStringField(b, `,"errno":`, timeline.ErrnoName(s.Errno))
	}
	return append(b, '}')
}

// Event writes a {"type":"event"} line for one kernel event.
func (j *JSON) Event(e *timeline.Event) error {
	b := j.buf
	b = append(b, lineStart+`"event"`...)
	b = j.appendTimeField(b, `,"time":`, e.Time)
	b = appendUintField(b, `,"cookie":`, e.Cookie)
	b = appendStringField(b, `,"event":`, e.Type.String())
	if e.Type == timeline.EventState {
		b = appendState(append(b, `,"from":`...), e.OldState)
		b = appendState(append(b, `,"to":`...), e.NewState)
	} else if !e.NoSocket {
		b = appendState(append(b, `,"state":`...), e.NewState)
	}
	b = appendEndpoints(b, e.LAddr, e.LPort, e.RAddr, e.RPort, e.PID, e.Comm, e.NetNS)
	b = appendContainer(b, j.opts.container(e.Cgroup))
	if e.Errno != 0 {
		b = appendStringField(b, `,"errno":`, timeline.ErrnoName(e.Errno))
	}
	if e.RSTReason != "" {
		b = appendStringField(b, `,"reason":`, e.RSTReason)
	}
	if e.DropReason != "" {
		b = appendStringField(b, `,"drop_reason":`, e.DropReason)
	}
	if e.Syscall != 0 {
		b = appendStringField(b, `,"syscall":`, e.Syscall.String())
	}
	if e.Queue.Known {
		b = appendQueue(b, e.Queue)
	}
	if e.Type == timeline.EventState && (e.SockDead || e.SockDone) {
		b = appendBoolField(b, `,"sock_dead":`, e.SockDead)
		b = appendBoolField(b, `,"sock_done":`, e.SockDone)
	}
	if e.NoSocket {
		b = append(b, `,"no_socket":true`...)
	}
	b = append(b, "}\n"...)
	j.buf = b
	return j.write()
}

// Alert writes a {"type":"alert"} line.
func (j *JSON) Alert(a *timeline.Alert) error {
	b := j.buf
	b = append(b, lineStart+`"alert"`...)
	b = j.appendTimeField(b, `,"time":`, a.Time)
	b = appendStringField(b, `,"kind":`, a.Kind.String())
	b = appendState(append(b, `,"state":`...), a.State)
	b = appendMillisField(b, `,"for_ms":`, a.For())
	b = appendBoolField(b, `,"since_unknown":`, a.SinceUnknown)
	b = appendUintField(b, `,"cookie":`, a.Cookie)
	b = appendEndpoints(b, a.LAddr, a.LPort, a.RAddr, a.RPort, a.PID, a.Comm, a.NetNS)
	b = appendContainer(b, j.opts.container(a.Cgroup))
	b = appendUintField(b, `,"retries":`, uint64(a.Retries))
	b = appendNullableString(b, `,"ended":`, a.Ended)
	b = appendHostAlertFields(b, a)
	b = append(b, `,"explanation":"`...)
	start := len(b)
	b = timeline.AppendAlertExplanation(b, a)
	b = escapeInPlace(b, start)
	b = append(b, "\"}\n"...)
	j.buf = b
	return j.write()
}

// TimeWait writes a {"type":"time_wait"} line.
func (j *JSON) TimeWait(at time.Time, total uint64, top []timeline.EndpointCount) error {
	b := j.buf
	b = append(b, lineStart+`"time_wait"`...)
	b = j.appendTimeField(b, `,"time":`, at.UnixNano())
	b = appendUintField(b, `,"total":`, total)
	b = append(b, `,"by_remote":[`...)
	b = appendEndpointCounts(b, top)
	b = append(b, "]}\n"...)
	j.buf = b
	return j.write()
}

// Lost writes a {"type":"lost"} line.
func (j *JSON) Lost(at time.Time, n, total uint64) error {
	b := j.buf
	b = append(b, lineStart+`"lost"`...)
	b = j.appendTimeField(b, `,"time":`, at.UnixNano())
	b = appendUintField(b, `,"count":`, n)
	b = appendUintField(b, `,"total":`, total)
	b = append(b, "}\n"...)
	j.buf = b
	return j.write()
}

// Summary writes the closing {"type":"summary"} line.
func (j *JSON) Summary(s *Summary) error {
	b := j.buf
	b = append(b, lineStart+`"summary"`...)
	b = appendMillisField(b, `,"duration_ms":`, int64(s.Duration))
	b = appendUintField(b, `,"connections":`, s.Connections)
	b = append(b, `,"by_outcome":{`...)
	for i, o := range timeline.Outcomes() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, o.String())
		b = append(b, ':')
		b = strconv.AppendUint(b, s.ByOutcome[o.String()], 10)
	}
	b = append(b, '}')
	b = append(b, `,"by_reason":{`...)
	for i, r := range sortedKeys(s.ByReason) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, r)
		b = append(b, ':')
		b = strconv.AppendUint(b, s.ByReason[r], 10)
	}
	b = append(b, '}')
	b = appendUintField(b, `,"alerts":`, s.Alerts)
	b = append(b, `,"top_failures":[`...)
	b = appendEndpointCounts(b, s.TopFailures)
	b = append(b, ']')
	b = append(b, `,"handshake_ms":{"count":`...)
	b = strconv.AppendUint(b, s.Handshakes.Count(), 10)
	if s.Handshakes.Count() > 0 {
		b = appendMillisField(b, `,"p50":`, s.Handshakes.Percentile(50))
		b = appendMillisField(b, `,"p99":`, s.Handshakes.Percentile(99))
	} else {
		b = append(b, `,"p50":null,"p99":null`...)
	}
	b = append(b, '}')
	if s.TimeWaitKnown {
		b = append(b, `,"time_wait":{"total":`...)
		b = strconv.AppendUint(b, s.TimeWaitTotal, 10)
		b = append(b, `,"by_remote":[`...)
		b = appendEndpointCounts(b, s.TimeWaitTop)
		b = append(b, "]}"...)
	} else {
		b = append(b, `,"time_wait":null`...)
	}
	b = appendUintField(b, `,"events":`, s.Events)
	b = appendUintField(b, `,"ring_records":`, s.RingRecords)
	b = appendUintField(b, `,"lost_events":`, s.LostEvents)
	b = appendUintField(b, `,"evicted":`, s.Evicted)
	b = appendUintField(b, `,"recursion_misses":`, s.RecursionMisses)
	b = appendUintField(b, `,"decode_errors":`, s.DecodeErrors)
	b = appendUintField(b, `,"stray_events":`, s.StrayEvents)
	b = appendUintField(b, `,"resets_without_socket":`, s.ResetsNoSocket)
	b = appendUintField(b, `,"paired":`, s.Paired)
	b = appendHostSummary(b, s)
	b = append(b, "}\n"...)
	j.buf = b
	if err := j.write(); err != nil {
		return err
	}
	return j.Flush()
}

// appendEndpoints writes the family, both ends, the owner and the
// namespace, as events and alerts share them.
func appendEndpoints(b []byte, laddr netip.Addr, lport uint16, raddr netip.Addr, rport uint16,
	pid uint32, comm string, netns uint32) []byte {
	b = append(b, familyField(laddr)...)
	b = appendAddrField(b, `,"laddr":`, laddr)
	b = appendUintField(b, `,"lport":`, uint64(lport))
	b = appendAddrField(b, `,"raddr":`, raddr)
	b = appendUintField(b, `,"rport":`, uint64(rport))
	b = appendUintField(b, `,"pid":`, uint64(pid))
	b = appendStringField(b, `,"comm":`, comm)
	return appendUintField(b, `,"netns":`, uint64(netns))
}

// appendContainer writes "container": an object, or null for a host
// process. Fields the cgroup path and the runtime did not tell are null.
func appendContainer(b []byte, c *containers.Info) []byte {
	b = appendKey(b, `,"container":`)
	if c == nil {
		return appendNull(b)
	}
	b = append(b, '{', '"', 'i', 'd', '"', ':')
	b = appendNullable(b, c.ID)
	b = appendNullableString(b, `,"name":`, c.Name)
	b = appendNullableString(b, `,"runtime":`, c.Runtime)
	b = appendNullableString(b, `,"pod":`, c.Pod)
	b = appendNullableString(b, `,"namespace":`, c.Namespace)
	b = appendNullableString(b, `,"pod_uid":`, c.PodUID)
	return append(b, '}')
}

func appendNullable(b []byte, v string) []byte {
	if v == "" {
		return appendNull(b)
	}
	return appendString(b, v)
}

func appendEndpointCounts(b []byte, eps []timeline.EndpointCount) []byte {
	for i, e := range eps {
		if i > 0 {
			b = append(b, ',')
		}
		// A server's TIME_WAIT sockets are grouped by its service
		// (laddr, lport); a client's by the remote they went to.
		addr, port := `{"raddr":`, `,"rport":`
		if e.Local {
			addr, port = `{"laddr":`, `,"lport":`
		}
		b = append(b, addr...)
		b = append(b, '"')
		b = e.Addr.AppendTo(b)
		b = append(b, '"')
		b = appendUintField(b, port, uint64(e.Port))
		b = appendUintField(b, `,"count":`, e.Count)
		b = append(b, '}')
	}
	return b
}

func appendNullableString(b []byte, key, v string) []byte {
	return appendNullable(appendKey(b, key), v)
}

// appendKey writes a member's key as the callers spell it whole, comma
// and colon included (`,"lport":`): one append of a constant instead of
// three.
func appendKey(b []byte, key string) []byte { return append(b, key...) }

func appendStringField(b []byte, key, v string) []byte {
	return appendString(appendKey(b, key), v)
}

func appendUintField(b []byte, key string, v uint64) []byte {
	return appendUint(appendKey(b, key), v)
}

// appendMillisField writes ns as milliseconds with 3 decimals, rounded to
// the microsecond, in integer arithmetic (strconv's float formatting is a
// fifth of the cost of a record).
func appendMillisField(b []byte, key string, ns int64) []byte {
	return appendMillis(appendKey(b, key), ns)
}

// appendBoolField writes true or false byte by byte: stores, where a
// string would be a call to memmove.
func appendBoolField(b []byte, key string, v bool) []byte {
	b = appendKey(b, key)
	if v {
		return append(b, 't', 'r', 'u', 'e')
	}
	return append(b, 'f', 'a', 'l', 's', 'e')
}

// appendNull writes null, byte by byte as appendBoolField does.
func appendNull(b []byte) []byte { return append(b, 'n', 'u', 'l', 'l') }

func (j *JSON) appendTimeField(b []byte, key string, unixNano int64) []byte {
	b = append(appendKey(b, key), '"')
	b = j.appendRFC3339Nano(b, unixNano)
	return append(b, '"')
}

// appendRFC3339Nano writes what time.RFC3339Nano does, in UTC.
func (j *JSON) appendRFC3339Nano(b []byte, unixNano int64) []byte {
	sec, nsec := unixNano/1e9, unixNano%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	if j.lastSecondText == nil || j.lastSecond != sec {
		j.lastSecond = sec
		j.lastSecondText = time.Unix(sec, 0).UTC().AppendFormat(j.lastSecondText[:0], "2006-01-02T15:04:05")
	}
	b = append(b, j.lastSecondText...)
	if nsec != 0 {
		var digits [10]byte
		digits[0] = '.'
		putDigits(digits[1:], uint64(nsec))
		end := 10
		for digits[end-1] == '0' {
			end--
		}
		b = append(b, digits[:end]...)
	}
	return append(b, 'Z')
}

func appendAddrField(b []byte, key string, a netip.Addr) []byte {
	b = append(appendKey(b, key), '"')
	b = a.AppendTo(b)
	return append(b, '"')
}

package output

import (
	"io"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// JSON writes one JSON object per line. The schema is documented in the
// README and kept stable: fields are added, never renamed or removed.
type JSON struct{ base }

// NewJSON returns a JSON-lines writer.
func NewJSON(w io.Writer) *JSON { return &JSON{newBase(w)} }

// Connection writes a {"type":"connection"} record.
func (j *JSON) Connection(c *timeline.Connection) error {
	b := j.buf
	b = append(b, `{"type":"connection","cookie":`...)
	b = strconv.AppendUint(b, c.Cookie, 10)
	b = appendTimeField(b, "start", c.Start)
	b = appendTimeField(b, "end", c.End)
	b = appendFloatField(b, "duration_ms", ms(c.Duration()))
	b = appendStringField(b, "family", c.Family())
	b = appendAddrField(b, "laddr", c.LAddr)
	b = appendUintField(b, "lport", uint64(c.LPort))
	b = appendAddrField(b, "raddr", c.RAddr)
	b = appendUintField(b, "rport", uint64(c.RPort))
	b = appendStringField(b, "role", c.Role.String())
	b = appendUintField(b, "pid", uint64(c.PID))
	b = appendStringField(b, "comm", c.Comm)
	b = appendUintField(b, "uid", uint64(c.UID))
	b = appendUintField(b, "netns", uint64(c.NetNS))
	b = appendStringField(b, "outcome", c.Outcome.String())
	if c.ClosedBy == timeline.ClosedByNone {
		b = append(b, `,"closed_by":null`...)
	} else {
		b = appendStringField(b, "closed_by", c.ClosedBy.String())
	}
	if c.Handshake < 0 {
		b = append(b, `,"handshake_ms":null`...)
	} else {
		b = appendFloatField(b, "handshake_ms", ms(c.Handshake))
	}
	b = appendUintField(b, "syn_retries", uint64(c.SynRetries))
	b = appendUintField(b, "synack_retries", uint64(c.SynAckRetries))
	b = appendUintField(b, "retransmits", uint64(c.Retransmits))
	b = appendBoolField(b, "rst_sent", c.RSTSent)
	b = appendBoolField(b, "rst_received", c.RSTReceived)
	if c.RSTReason == "" {
		b = append(b, `,"rst_reason":null`...)
	} else {
		b = appendStringField(b, "rst_reason", c.RSTReason)
	}
	if c.Errno == 0 {
		b = append(b, `,"errno":null`...)
	} else {
		b = appendStringField(b, "errno", timeline.ErrnoName(c.Errno))
	}
	b = appendBoolField(b, "partial", c.Partial)
	b = appendBoolField(b, "evicted", c.Evicted)
	b = append(b, `,"states":[`...)
	for i, s := range c.States {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s.String())
	}
	b = append(b, `],"timeline":[`...)
	for i := range c.Steps {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendStep(b, c, &c.Steps[i])
	}
	b = append(b, ']')
	b = appendUintField(b, "timeline_dropped", uint64(c.StepsDropped))
	b = append(b, "}\n"...)
	j.buf = b
	return j.write()
}

func appendStep(b []byte, c *timeline.Connection, s *timeline.Step) []byte {
	b = append(b, `{"t_ms":`...)
	b = strconv.AppendFloat(b, ms(s.Time-c.Start), 'f', 3, 64)
	b = appendStringField(b, "event", s.Kind.String())
	switch s.Kind {
	case timeline.StepState:
		b = appendStringField(b, "from", s.From.String())
		b = appendStringField(b, "to", s.To.String())
		if s.TimewaitSocket {
			b = append(b, `,"timewait_socket":true`...)
		}
	case timeline.StepSynRetransmit, timeline.StepSynAckRetransmit, timeline.StepRetransmit:
		b = appendUintField(b, "n", uint64(s.N))
		if s.Kind != timeline.StepRetransmit {
			b = appendFloatField(b, "since_ms", ms(s.Since))
		}
		b = appendStringField(b, "state", s.From.String())
	case timeline.StepRSTSent:
		if s.RSTReason != "" {
			b = appendStringField(b, "reason", s.RSTReason)
		}
		b = appendStringField(b, "state", s.From.String())
	case timeline.StepRSTReceived:
		b = appendStringField(b, "state", s.From.String())
	case timeline.StepError:
		b = appendStringField(b, "errno", timeline.ErrnoName(s.Errno))
	}
	return append(b, '}')
}

// Event writes a {"type":"event"} line for one kernel event.
func (j *JSON) Event(e *timeline.Event) error {
	b := j.buf
	b = append(b, `{"type":"event"`...)
	b = appendTimeField(b, "time", e.Time)
	b = appendUintField(b, "cookie", e.Cookie)
	b = appendStringField(b, "event", e.Type.String())
	if e.Type == timeline.EventState {
		b = appendStringField(b, "from", e.OldState.String())
		b = appendStringField(b, "to", e.NewState.String())
	} else if !e.NoSocket {
		b = appendStringField(b, "state", e.NewState.String())
	}
	b = appendStringField(b, "family", e.Family())
	b = appendAddrField(b, "laddr", e.LAddr)
	b = appendUintField(b, "lport", uint64(e.LPort))
	b = appendAddrField(b, "raddr", e.RAddr)
	b = appendUintField(b, "rport", uint64(e.RPort))
	b = appendUintField(b, "pid", uint64(e.PID))
	b = appendStringField(b, "comm", e.Comm)
	b = appendUintField(b, "netns", uint64(e.NetNS))
	if e.Errno != 0 {
		b = appendStringField(b, "errno", timeline.ErrnoName(e.Errno))
	}
	if e.RSTReason != "" {
		b = appendStringField(b, "reason", e.RSTReason)
	}
	if e.Type == timeline.EventState && (e.SockDead || e.SockDone) {
		b = appendBoolField(b, "sock_dead", e.SockDead)
		b = appendBoolField(b, "sock_done", e.SockDone)
	}
	if e.NoSocket {
		b = append(b, `,"no_socket":true`...)
	}
	b = append(b, "}\n"...)
	j.buf = b
	return j.write()
}

// Lost writes a {"type":"lost"} line.
func (j *JSON) Lost(at time.Time, n, total uint64) error {
	b := j.buf
	b = append(b, `{"type":"lost"`...)
	b = appendTimeField(b, "time", at.UnixNano())
	b = appendUintField(b, "count", n)
	b = appendUintField(b, "total", total)
	b = append(b, "}\n"...)
	j.buf = b
	return j.write()
}

// Summary writes the closing {"type":"summary"} line.
func (j *JSON) Summary(s *Summary) error {
	b := j.buf
	b = append(b, `{"type":"summary"`...)
	b = appendFloatField(b, "duration_ms", ms(int64(s.Duration)))
	b = appendUintField(b, "connections", s.Connections)
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
	b = appendUintField(b, "events", s.Events)
	b = appendUintField(b, "lost_events", s.LostEvents)
	b = appendUintField(b, "evicted", s.Evicted)
	b = appendUintField(b, "recursion_misses", s.RecursionMisses)
	b = appendUintField(b, "decode_errors", s.DecodeErrors)
	b = appendUintField(b, "stray_events", s.StrayEvents)
	b = appendUintField(b, "resets_without_socket", s.ResetsNoSocket)
	b = append(b, "}\n"...)
	j.buf = b
	if err := j.write(); err != nil {
		return err
	}
	return j.Flush()
}

func appendKey(b []byte, key string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendStringField(b []byte, key, v string) []byte {
	return appendString(appendKey(b, key), v)
}

func appendUintField(b []byte, key string, v uint64) []byte {
	return strconv.AppendUint(appendKey(b, key), v, 10)
}

func appendFloatField(b []byte, key string, v float64) []byte {
	return strconv.AppendFloat(appendKey(b, key), v, 'f', 3, 64)
}

func appendBoolField(b []byte, key string, v bool) []byte {
	return strconv.AppendBool(appendKey(b, key), v)
}

func appendTimeField(b []byte, key string, unixNano int64) []byte {
	b = append(appendKey(b, key), '"')
	b = time.Unix(0, unixNano).UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendAddrField(b []byte, key string, a netip.Addr) []byte {
	b = append(appendKey(b, key), '"')
	b = a.AppendTo(b)
	return append(b, '"')
}

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD and
// control characters are escaped, so the line stays valid JSON whatever a
// process names itself.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

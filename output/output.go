// Package output renders connection records, events and summaries as a
// text timeline for people or as JSON lines for programs.
package output

import (
	"bufio"
	"io"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// Writer renders what tcptrace reports. Errors are sticky: after the first
// failed write every call returns it, so callers may check only Flush.
type Writer interface {
	Connection(c *timeline.Connection) error
	Event(e *timeline.Event) error
	Alert(a *timeline.Alert) error
	// TimeWait reports the TIME_WAIT sockets counted by a scan (SIGUSR1).
	TimeWait(at time.Time, total uint64, top []timeline.EndpointCount) error
	// Lost reports that n more events were dropped by the kernel (total so far).
	Lost(at time.Time, n, total uint64) error
	Summary(s *Summary) error
	Flush() error
}

// PairWriter is a Writer that draws both ends of a connection together
// (both on this host: loopback, or two namespaces). The session hands it
// the two records of a pair in one call; other writers get each record
// alone, with its peer's cookie and owner in it.
type PairWriter interface {
	ConnectionPair(local, peer *timeline.Connection) error
}

// Options configure both writers.
type Options struct {
	// CgroupPath names a cgroup v2 id ("" when unknown).
	CgroupPath func(id uint64) string
	// Container names the container of a cgroup v2 id (nil: a host
	// process, or none known). It must not block.
	Container containers.LookupFunc
	// Compact: JSON lines without their empty members (--compact).
	Compact bool
}

func (o *Options) cgroupPath(id uint64) string {
	if id == 0 || o.CgroupPath == nil {
		return ""
	}
	return o.CgroupPath(id)
}

func (o *Options) container(cgroup uint64) *containers.Info {
	if cgroup == 0 || o.Container == nil {
		return nil
	}
	return o.Container(cgroup)
}

// Summary is printed when tracing ends.
type Summary struct {
	Duration    time.Duration
	Connections uint64
	ByOutcome   map[string]uint64
	ByReason    map[string]uint64
	Alerts      uint64
	TopFailures []timeline.EndpointCount
	Handshakes  timeline.Histogram
	// TimeWait is from a scan at exit; TimeWaitKnown false if none ran.
	TimeWaitKnown bool
	TimeWaitTotal uint64
	TimeWaitTop   []timeline.EndpointCount
	Events        uint64
	// RingRecords is how many records the events came in: one per event,
	// or one per socket's batch of queued events.
	RingRecords     uint64
	LostEvents      uint64
	Evicted         uint64
	RecursionMisses uint64
	DecodeErrors    uint64
	StrayEvents     uint64
	ResetsNoSocket  uint64
	// Paired counts the records that found their peer's (two a pair).
	Paired uint64
	// What the host did: TCP packets dropped by reason, failed calls,
	// what listeners dropped, notes lost, failed retransmission attempts.
	Drops             map[string]uint64
	SyscallErrors     map[timeline.SyscallErrno]uint64
	ListenDrops       uint64
	NotesLost         uint64
	RetransmitsFailed uint64
}

// NewSummary fills a summary from the correlator's counters.
func NewSummary(st timeline.Stats) *Summary {
	s := &Summary{
		Connections:    st.Connections,
		ByOutcome:      make(map[string]uint64),
		ByReason:       st.ByReason,
		Alerts:         st.Alerts,
		TopFailures:    st.TopFailures(5),
		Handshakes:     st.Handshakes,
		Events:         st.Events,
		Evicted:        st.Evicted,
		StrayEvents:    st.Stray,
		ResetsNoSocket: st.ResetsNoSocket,
		Drops:          st.Drops,
		SyscallErrors:  st.SyscallErrors,
		ListenDrops:    st.ListenDrops,
		NotesLost:      st.NotesLost,
	}
	for _, o := range timeline.Outcomes() {
		s.ByOutcome[o.String()] = st.ByOutcome[o]
	}
	return s
}

// base holds the buffered destination and the sticky error.
type base struct {
	w    *bufio.Writer
	buf  []byte
	err  error
	opts Options
}

func newBase(w io.Writer, opts Options) base {
	return base{w: bufio.NewWriterSize(w, 64<<10), buf: make([]byte, 0, 4096), opts: opts}
}

// write sends buf and resets it.
func (b *base) write() error {
	if b.err == nil {
		_, b.err = b.w.Write(b.buf)
	}
	b.buf = b.buf[:0]
	return b.err
}

func (b *base) Flush() error {
	if b.err == nil {
		b.err = b.w.Flush()
	}
	return b.err
}

// appendAddrPort writes 1.2.3.4:80, [::1]:80, or 10.0.0.1:* for any port.
var appendAddrPort = timeline.AppendAddrPort

// appendSafe writes s for a terminal: control bytes (which could move the
// cursor or rewrite the screen) and invalid UTF-8 become visible \xNN.
// Process names are chosen by whoever runs the process.
func appendSafe(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			for j := 0; j < max(size, 1); j++ {
				b = append(b, '\\', 'x', hexDigits[s[i+j]>>4], hexDigits[s[i+j]&0xf])
			}
			i += max(size, 1)
			continue
		}
		b = append(b, s[i:i+size]...)
		i += size
	}
	return b
}

const hexDigits = "0123456789abcdef"

// ms is nanoseconds as fractional milliseconds.
func ms(ns int64) float64 { return float64(ns) / 1e6 }

// sortedKeys returns m's keys in order, for stable output.
func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

package output

import (
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tcptrace/tcptrace/containers"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// Ladder writes each connection as the ladder diagram of a TCP textbook:
// this host's end on the left, the peer on the right, time going down,
// segments as arrows between the two lines and each end's state beside its
// line, with their sequence numbers where the records prove them
// (ladder_seq.go). Alerts, events, TIME_WAIT counts, lost events and the
// summary are written as the text writer writes them.
//
//	14:02:11.204 curl[812] 127.0.0.1:41230 → 127.0.0.1:8080
//	    client closed by local 1.2ms
//	            local :41230                                        remote :8080
//	  +0.000ms    SYN_SENT │─ ─ SYN seq=0 ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─ ─▶│
type Ladder struct {
	Text
	style ladderStyle
}

// LadderOptions choose how diagrams are drawn.
type LadderOptions struct {
	ASCII bool // plain ASCII instead of box drawing
	Color bool // SGR colours: only for a terminal, and not with NO_COLOR
	// AbsoluteSeq writes sequence numbers as the wire carries them (like
	// tcpdump -S) instead of relative to each side's ISN.
	AbsoluteSeq bool
}

// ladderStyle is what renderLadder needs besides the records.
type ladderStyle struct {
	drawer
	loc       *time.Location
	cgroup    func(uint64) string
	container func(uint64) *containers.Info
	scratch   []byte
	absSeq    bool
}

// NewLadder returns a ladder writer; times are shown in loc (nil: local time).
func NewLadder(w io.Writer, loc *time.Location, opts Options, lo LadderOptions) *Ladder {
	l := &Ladder{Text: *NewText(w, loc, opts)}
	l.style = ladderStyle{loc: l.loc, cgroup: l.opts.cgroupPath, container: l.opts.container,
		drawer: drawer{g: &unicodeGlyphs, color: lo.Color}, absSeq: lo.AbsoluteSeq}
	if lo.ASCII {
		l.style.g, l.style.ascii = &asciiGlyphs, true
	}
	return l
}

// Connection writes the diagram of one connection whose peer is not known.
func (l *Ladder) Connection(c *timeline.Connection) error { return l.ConnectionPair(c, nil) }

// ConnectionPair writes one diagram for both ends of a connection when both
// are on this host: local's record on the left, peer's (nil: not known, its
// states inferred) on the right.
func (l *Ladder) ConnectionPair(local, peer *timeline.Connection) error {
	l.buf = renderLadder(l.buf, local, peer, &l.style)
	return l.write()
}

// renderLadder appends the diagram of local (and of peer, if not nil):
// header, diagram, legend, explanation.
func renderLadder(b []byte, local, peer *timeline.Connection, st *ladderStyle) []byte {
	b = st.header(b, local, "")
	if peer != nil {
		b = st.header(b, peer, "  peer: ")
	}
	if local.Role == timeline.RoleListener {
		// No peer, no segments: nothing to draw.
		return st.explain(b, local, "")
	}
	lh, rh := "local :"+strconv.Itoa(int(local.LPort)), "remote :"+strconv.Itoa(int(local.RPort))
	if peer != nil {
		lh = string(appendOwner(nil, local.Comm, local.PID))
		rh = string(appendOwner(nil, peer.Comm, peer.PID))
	}
	b = st.headings(b, lh, rh)
	var last [16]byte
	lastLen := 0
	rows := ladderRows(local, peer, st.absSeq)
	for i := range rows {
		b = st.row(b, &rows[i], &last, &lastLen)
	}
	b = append(b, st.g.legend...)
	for i := range rows {
		if strings.HasPrefix(rows[i].label[left], "(") || strings.HasPrefix(rows[i].label[right], "(") {
			b = append(b, st.g.legendPeer...)
			break
		}
	}
	b = append(b, '\n')
	b = st.explain(b, local, "")
	if peer != nil {
		b = st.explain(b, peer, "peer: ")
	}
	return b
}

// header writes the text writer's header line; when it is wider than the
// screen it breaks after the addresses.
func (st *ladderStyle) header(b []byte, c *timeline.Connection, lead string) []byte {
	start := len(b)
	b = append(b, lead...)
	b, what := appendHeader(b, c, st.loc, st.container(c.Cgroup))
	line := st.text(string(b[start:]))
	rel := len(st.text(string(b[start:what])))
	b = append(b[:start], line...)
	return fitHeader(b, start, rel, &st.scratch)
}

// explain writes the record's explanation as the text writer does, and
// the figures the diagram has no place for.
func (st *ladderStyle) explain(b []byte, c *timeline.Connection, lead string) []byte {
	start := len(b)
	b = append(b, st.g.explain...)
	b = append(b, lead...)
	b = timeline.AppendExplanation(b, c)
	b = wrapLine(b, start, "      ", &st.scratch)
	fig := len(b)
	b = append(b, "    "...)
	cg := st.cgroup(c.Cgroup)
	if cg == "/" {
		cg = "" // the root: says nothing
	}
	b = appendRTTFigures(b, c, cg)
	if len(b) == fig+4 {
		return b[:fig]
	}
	b = append(b[:fig+4], b[fig+6:]...) // the ", " before the first figure
	if st.ascii {
		line := toASCII.Replace(string(b[fig:]))
		b = append(b[:fig], line...)
	}
	if lead != "" {
		line := string(b[fig+4:])
		b = append(append(b[:fig+4], lead...), line...)
	}
	return wrapLine(b, fig, "      ", &st.scratch)
}

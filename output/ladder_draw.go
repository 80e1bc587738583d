package output

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The diagram's columns, 80 in all:
//
//	time (10) · local label (11) · │ · 40 between the lines · │ · remote label (14)
const (
	timeCols   = 10
	leftCols   = 11
	middleCols = 40
	rightCols  = width - timeCols - 1 - leftCols - 1 - 1 - middleCols - 1 - 1
	leftLine   = timeCols + 1 + leftCols + 1 // column of the local line
)

// glyphs are the characters a diagram is drawn with.
type glyphs struct {
	line, dotted string // the vertical lines
	shaft        string // an arrow's shaft, one column
	headR, headL string
	legend       string
	legendPeer   string // what "(STATE)" means, when the peer is inferred
	explain      string // the explanation's lead
}

var unicodeGlyphs = glyphs{
	line: "│", dotted: "┆", shaft: "─", headR: "▶", headL: "◀",
	legend:     "  ──▶ tracepoint saw it   ─ ─▶ inferred from a state change",
	legendPeer: "   (STATE) inferred",
	explain:    "    ↳ ",
}

var asciiGlyphs = glyphs{
	line: "|", dotted: ":", shaft: "-", headR: ">", headL: "<",
	legend:     "  ---> tracepoint saw it   - -> inferred from a state change",
	legendPeer: "   (STATE) inferred",
	explain:    "    > ",
}

// toASCII replaces the few non-ASCII characters the text writer's header
// and explanation and the diagram's notes use.
var toASCII = strings.NewReplacer("→", "->", "µs", "us", "⇄", "<->", "✗", "x", "↳", ">")

// SGR colours, used only on a terminal that did not ask for none.
const (
	sgrReset  = "\x1b[0m"
	sgrBold   = "\x1b[1m"
	sgrDim    = "\x1b[2m"
	sgrRed    = "\x1b[31m"
	sgrYellow = "\x1b[33m"
	sgrCyan   = "\x1b[36m"
)

// drawer lays rows out as text.
type drawer struct {
	g     *glyphs
	ascii bool
	color bool
}

func (d *drawer) paint(b []byte, sgr string, s string) []byte {
	if !d.color || s == "" {
		return append(b, s...)
	}
	b = append(b, sgr...)
	b = append(b, s...)
	return append(b, sgrReset...)
}

func (d *drawer) text(s string) string {
	if d.ascii {
		return toASCII.Replace(s)
	}
	return s
}

func spaces(b []byte, n int) []byte {
	for ; n > 0; n-- {
		b = append(b, ' ')
	}
	return b
}

// headings writes the names above the two lines.
func (d *drawer) headings(b []byte, l, r string) []byte {
	l, r = truncate(l, leftLine+1), truncate(r, width-leftLine-1-middleCols)
	// The left name ends above its line, the right one starts above its line.
	b = spaces(b, leftLine+1-utf8.RuneCountInString(l))
	b = d.paint(b, sgrBold, l)
	b = spaces(b, middleCols)
	b = d.paint(b, sgrBold, r)
	return append(b, '\n')
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "~"
}

// row writes one row; lastTime is the time written last, not repeated.
func (d *drawer) row(b []byte, r *row, lastTime *[16]byte, lastLen *int) []byte {
	start := len(b)
	var tmp [32]byte
	ts := tmp[:0]
	switch {
	case r.timed && r.t >= 1000e9:
		// Whole seconds keep the column's width.
		ts = spaces(ts, timeCols-3-len(strconv.FormatInt(r.t/1e9, 10)))
		ts = strconv.AppendInt(append(ts, '+'), r.t/1e9, 10)
		ts = append(ts, " s"...)
	case r.timed:
		ts = appendPadLeft(ts, "+", r.t, timeCols)
	}
	if len(ts) > 0 && (len(ts) != *lastLen || string(ts) != string(lastTime[:*lastLen])) {
		b = append(b, ts...)
		*lastLen = copy(lastTime[:], ts)
	} else {
		b = spaces(b, timeCols)
	}
	b = append(b, ' ')
	l := d.text(r.label[left])
	b = spaces(b, leftCols-utf8.RuneCountInString(l))
	b = d.paint(b, d.labelColor(l), l)
	b = append(b, ' ')
	line := d.g.line
	if r.dotted {
		line = d.g.dotted
	}
	b = append(b, line...)
	switch {
	case r.arrow.kind != 0:
		b = d.arrow(b, &r.arrow)
	case r.note != "":
		notes := splitNote(d.text(r.note), middleCols-2)
		b = d.note(b, notes[0])
		for _, n := range notes[1:] {
			// The rest of a long note on rows of its own, the lines beside it.
			b = append(b, line...)
			b = trimRight(b, start)
			b = append(b, '\n')
			start = len(b)
			b = spaces(b, timeCols+1+leftCols+1)
			b = append(b, line...)
			b = d.note(b, n)
		}
	default:
		b = spaces(b, middleCols)
	}
	b = append(b, line...)
	if rl := d.text(r.label[right]); rl != "" {
		b = append(b, ' ')
		b = d.paint(b, d.labelColor(rl), rl)
	}
	return append(trimRight(b, start), '\n')
}

// trimRight drops the blanks that end the line b[start:].
func trimRight(b []byte, start int) []byte {
	for len(b) > start && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}

// note writes a note centred between the lines, at least a blank from each.
func (d *drawer) note(b []byte, n string) []byte {
	w := utf8.RuneCountInString(n)
	pad := max(0, (middleCols-w)/2)
	b = spaces(b, pad)
	b = d.paint(b, sgrDim, n)
	return spaces(b, middleCols-pad-w)
}

// splitNote breaks a note wider than w columns at blanks into as few lines
// as it takes, as even as can be. A word wider than w is cut.
func splitNote(n string, w int) []string {
	words := strings.Fields(n)
	fill := func(target int) []string {
		var lines []string
		cur := ""
		for _, word := range words {
			for utf8.RuneCountInString(word) > w {
				r := []rune(word)
				if cur != "" {
					lines, cur = append(lines, cur), ""
				}
				lines, word = append(lines, string(r[:w])), string(r[w:])
			}
			switch {
			case cur == "":
				cur = word
			case utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(word) <= target:
				cur += " " + word
			default:
				lines, cur = append(lines, cur), word
			}
		}
		return append(lines, cur)
	}
	if utf8.RuneCountInString(n) <= w || len(words) == 0 {
		return []string{n}
	}
	lines := fill(w)
	// The narrowest width that takes no more lines.
	for t := (utf8.RuneCountInString(n) + len(lines) - 1) / len(lines); t < w; t++ {
		if even := fill(t); len(even) == len(lines) {
			return even
		}
	}
	return lines
}

func (d *drawer) labelColor(l string) string {
	switch {
	case strings.HasPrefix(l, "("):
		return sgrDim
	case strings.HasPrefix(l, "wait "):
		return sgrYellow
	}
	return sgrCyan
}

// arrow writes an arrow across the middle: the label near its sender, a
// solid shaft when a tracepoint saw the segment, a dashed one when it is
// inferred from a state change.
func (d *drawer) arrow(b []byte, a *arrow) []byte {
	var cells [middleCols]string
	head := middleCols - 1
	if !a.toRight {
		head = 0
	}
	for x := range cells {
		dist := x - head
		if dist < 0 {
			dist = -dist
		}
		if a.seen || dist%2 == 1 {
			cells[x] = d.g.shaft
		} else {
			cells[x] = " "
		}
	}
	label := []rune(" " + a.label + " ")
	at := 3
	if !a.toRight {
		at = middleCols - 3 - len(label)
	}
	for i, r := range label {
		if x := at + i; x > 0 && x < middleCols-1 {
			cells[x] = string(r)
		}
	}
	if a.toRight {
		cells[head] = d.g.headR
	} else {
		cells[head] = d.g.headL
	}
	sgr := sgrDim
	switch {
	case a.kind == segRST:
		sgr = sgrRed + sgrBold
	case a.kind == segRetransmit:
		sgr = sgrYellow + sgrBold
	case a.seen:
		sgr = sgrBold
	}
	if d.color {
		b = append(b, sgr...)
	}
	for _, c := range cells {
		b = append(b, c...)
	}
	if d.color {
		b = append(b, sgrReset...)
	}
	return b
}
